"""Canonical stage names (public contract, see README, 'What is compared (public vocabulary)')."""

# The Req contract: the fields the port's denoising stage receives (types, lengths, shapes, the seed's
# use), judged before any tensor is compared (parity.contract). A broken contract makes every later
# comparison suspect (the harness reads the port's tensors from those fields), so it orders first.
CONTRACT = "contract"
TEXT_ENCODING = "text_encoding"
LATENT_PREPARATION = "latent_preparation"
TIMESTEP_PREPARATION = "timestep_preparation"
DENOISING = "denoising"
DECODING = "decoding"
# --audit fp64 (parity.audit): the first step's DiT call and blocks replayed in float64 on both sides, the
# port teacher-forced. Runs after the pipelines, on the reference's inputs: ordered last, each flag a cause.
AUDIT = "audit"

# Execution order: the first divergence is the earliest failing check in this order.
ORDER: tuple[str, ...] = (
    CONTRACT,
    TEXT_ENCODING,
    LATENT_PREPARATION,
    TIMESTEP_PREPARATION,
    DENOISING,
    DECODING,
    AUDIT,
)


def rank(stage: str) -> int:
    return ORDER.index(stage)


# Within one denoising step, in execution order: the DiT's inputs, its blocks, its outputs per
# CFG branch, the guided prediction the scheduler receives, the scheduler's output.
_STEP_PHASE = {
    "dit_input": 0,
    "dit_timestep": 0,
    "dit_guidance": 0,
    "dit_time_embedding_input": 0,
    "noise_pred_cond": 2,
    "noise_pred_uncond": 2,
    "noise_pred": 3,
    "latents": 4,
}
BLOCK_PHASE = 1
EMBEDDERS = "embedders"  # pseudo block: the DiT's embedded inputs, as its first block receives them
# Pseudo block "<list>:input": the input of the first block of a list that does not continue the
# previous list (FamilyAdapter.block_lists_chained = False), as that block receives it.
BLOCK_INPUT_SUFFIX = ":input"


def is_block_input(block: str | None) -> bool:
    """Whether a block name is a pseudo block holding inputs (`embedders`, `<list>:input`), not a block's output."""
    return block is not None and (block == EMBEDDERS or block.endswith(BLOCK_INPUT_SUFFIX))


def phase_in_step(tensor: str, block: str | None) -> int:
    return BLOCK_PHASE if block is not None else _STEP_PHASE.get(tensor.split(".")[0], BLOCK_PHASE)


def execution_key(stage: str, step: int | None, tensor: str, block: str | None, position: int) -> tuple:
    """Sort key in execution order: stage, step, place within the step, then trace position. The Req
    contract's checks are named by Req field (`latents` among them), not placed in a step: listed order."""
    phase = 0 if stage == CONTRACT else phase_in_step(tensor, block)
    return (rank(stage), -1 if step is None else step, phase, position)
