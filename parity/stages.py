"""Canonical stage names (public contract, see README 'Vocabulary')."""

TEXT_ENCODING = "text_encoding"
LATENT_PREPARATION = "latent_preparation"
TIMESTEP_PREPARATION = "timestep_preparation"
DENOISING = "denoising"
DECODING = "decoding"

# Execution order: the first divergence is the earliest failing check in this order.
ORDER: tuple[str, ...] = (
    TEXT_ENCODING,
    LATENT_PREPARATION,
    TIMESTEP_PREPARATION,
    DENOISING,
    DECODING,
)


def rank(stage: str) -> int:
    return ORDER.index(stage)
