"""Hints fire on evidence only: synthetic checks built from real tensor differences."""

import torch

from parity import hints, stages
from parity.align import Pair
from parity.capture import BlockCapture
from parity.compare import compare
from parity.tolerance import Policy
from parity.trace import Key
from parity.verdict import decide

G = torch.Generator().manual_seed(0)
X = torch.randn(2, 16, 8, generator=G)


def run(*pairs):
    checks = compare(list(pairs), Policy("float32"))
    return hints.for_causes(decide(checks).causes, checks)


def p(tensor, stage, ref, port, step=None, block=None):
    return Pair(Key(tensor, step, block), stage, ref, port)


def test_no_failure_no_hint():
    assert run(p("prompt_embeds", stages.TEXT_ENCODING, X, X.clone())) == []


def test_schedule_scaled_by_1000_and_off_by_one():
    t = torch.linspace(1000, 100, 4)
    [h] = run(p("timesteps", stages.TIMESTEP_PREPARATION, t, t / 1000))
    assert "x1000" in h["likely_cause"]
    [h] = run(p("sigmas", stages.TIMESTEP_PREPARATION, torch.linspace(1, 0, 5), torch.linspace(1, 0, 4)))
    assert "off-by-one" in h["likely_cause"]


def test_embeddings_with_equal_ids_vs_tokenization():
    ids = torch.arange(8).unsqueeze(0)
    [h] = run(
        p("input_ids.1", stages.TEXT_ENCODING, ids, ids),
        p("prompt_embeds", stages.TEXT_ENCODING, X, X + 0.1 * torch.randn(X.shape, generator=G)),
    )
    assert "hidden layer" in h["likely_cause"]
    hs = run(p("input_ids.1", stages.TEXT_ENCODING, ids, ids.flip(-1)), p("prompt_embeds", stages.TEXT_ENCODING, X, -X))
    assert len(hs) == 1 and "tokenization" in hs[0]["likely_cause"]  # the embeddings are downstream


def test_initial_noise_reordered_or_redrawn():
    [h] = run(p("latents", stages.LATENT_PREPARATION, X, X.transpose(-1, -2).reshape(X.shape)))
    assert "another order" in h["likely_cause"]
    [h] = run(p("latents", stages.LATENT_PREPARATION, X, torch.randn(X.shape, generator=G)))
    assert "generator" in h["likely_cause"]


def test_first_block_with_equal_inputs_vs_a_later_block():
    steps = [p("dit_input", stages.DENOISING, X, X, step=0), p("dit_timestep", stages.DENOISING, X, X, step=0)]
    b0 = p("hidden_states", stages.DENOISING, X, X * 1.01, step=0, block="transformer_blocks.0")
    [h] = run(*steps, b0)
    assert "RoPE" in h["likely_cause"]
    ok0 = p("hidden_states", stages.DENOISING, X, X, step=0, block="transformer_blocks.0")
    b1 = p("hidden_states", stages.DENOISING, X, X * 1.01, step=0, block="transformer_blocks.1")
    [h] = run(*steps, ok0, b1)
    assert "transformer_blocks.1 itself" in h["likely_cause"]


def test_cfg_formula_and_decode_shift():
    [h] = run(
        p("noise_pred_cond", stages.DENOISING, X, X, step=0),
        p("noise_pred_uncond", stages.DENOISING, X, X, step=0),
        p("noise_pred", stages.DENOISING, X, 2 * X, step=0),
    )
    assert "guidance formula" in h["likely_cause"]
    [h] = run(p("vae_input", stages.DECODING, X, X + 0.0609))
    assert "shift_factor" in h["likely_cause"] and "0.0609" in h["likely_cause"]
    [h] = run(p("vae_input", stages.DECODING, X, X), p("frames", stages.DECODING, X, X.clamp(-0.5, 0.5)))
    assert "VAE precision" in h["likely_cause"]


def test_block_capture_policy():
    default = BlockCapture.parse("default")
    assert default.first_pass(28) == {0, 27}
    assert default.second_pass(frozenset({0, 27}), 5) == {5}
    assert default.second_pass(frozenset({0, 27}), 0) == frozenset()
    assert BlockCapture.parse("all").first_pass(3) == {0, 1, 2}
    assert BlockCapture.parse("1,4").first_pass(3) == {1}
    assert BlockCapture.parse("none").second_pass(frozenset(), 2) == frozenset()


def test_nan_from_step_1_block_1_names_that_step_and_block():
    nan = X.clone()
    nan[0, 3, :] = float("nan")  # 8 of 256 elements
    pairs = [p(t, stages.DENOISING, X, X, step=s) for s in (0, 1) for t in ("dit_input", "dit_timestep")]
    pairs += [p("hidden_states", stages.DENOISING, X, X, step=s, block="transformer_blocks.0") for s in (0, 1)]
    pairs += [
        p("hidden_states", stages.DENOISING, X, X, step=0, block="transformer_blocks.1"),
        p("noise_pred", stages.DENOISING, X, X, step=0),
        p("latents", stages.DENOISING, X, X, step=0),
        p("hidden_states", stages.DENOISING, X, nan, step=1, block="transformer_blocks.1"),
        p("noise_pred", stages.DENOISING, X, nan, step=1),
        p("latents", stages.DENOISING, X, nan, step=1),
    ]
    [h] = run(*reversed(pairs))  # the trace order is not the execution order
    assert h["at"] == "denoising/hidden_states step 1 block transformer_blocks.1"
    assert "NaN/Inf in the port, first at denoising/hidden_states step 1 block transformer_blocks.1" in h["symptom"]
    assert "8 of 256 elements" in h["symptom"]
    assert "overflow" in h["likely_cause"] and "zero norm" in h["likely_cause"] and "log of 0" in h["likely_cause"]


def test_nan_in_the_dit_output_at_step_1_when_its_blocks_were_not_recorded():
    nan = X.clone()
    nan[1] = float("nan")
    [h] = run(
        p("noise_pred", stages.DENOISING, X, X, step=0),
        p("dit_input", stages.DENOISING, X, X, step=1),
        p("noise_pred", stages.DENOISING, X, nan, step=1),
        p("latents", stages.DENOISING, X, nan, step=1),
    )
    assert "first at denoising/noise_pred step 1 (the DiT's output): 128 of 256 elements" in h["symptom"]


def test_nan_only_in_the_reference_says_so():
    nan = X.clone()
    nan[0, 0, 0] = float("nan")
    [h] = run(p("prompt_embeds", stages.TEXT_ENCODING, nan, X))
    assert "NaN/Inf in the reference, first at text_encoding/prompt_embeds" in h["symptom"]
    assert h["likely_cause"].startswith("the reference itself, not the port")


def _blocks(errors, step=1, tensor="hidden_states"):
    """One block output per relative error in `errors`, in order (port = reference + that much noise)."""
    out = []
    for index, error in enumerate(errors):
        noise = torch.randn(X.shape, generator=G)
        port = X + error * noise * X.norm() / noise.norm()
        out.append(p(tensor, stages.DENOISING, X, port, step=step, block=f"transformer_blocks.{index}"))
    return out


def _bf16_run(pairs, isolated=None):
    policy = Policy("bfloat16")  # blocks: rel_l2 <= 0.05
    checks = compare(list(pairs), policy)
    return hints.for_causes(decide(checks).causes, checks, isolated)


def test_a_step_change_at_one_block_blames_that_block():
    steps = [p("dit_input", stages.DENOISING, X, X, step=1), p("dit_timestep", stages.DENOISING, X, X, step=1)]
    [h] = _bf16_run([*steps, *_blocks([0.001, 0.0012, 0.0011, 0.09])])
    assert "transformer_blocks.3 itself" in h["likely_cause"]
    assert "first block to differ" in h["symptom"]


def test_smooth_growth_across_the_limit_is_drift_and_names_the_conditioning_that_differs():
    t = torch.tensor([760.0])
    steps = [
        p("dit_input", stages.DENOISING, X, X, step=1),
        p("dit_timestep", stages.DENOISING, t, t + 1.45, step=1),  # within bf16's conditioning tolerance
    ]
    growth = [0.01 * 1.25**i for i in range(10)]  # 0.01 -> 0.075, crossing 0.05 at block 8
    [h] = _bf16_run([*steps, *_blocks(growth)])
    assert h["at"].endswith("block transformer_blocks.8")
    assert "grows along the blocks" in h["symptom"] and "itself" not in h["likely_cause"]
    assert "accumulated drift" in h["likely_cause"]
    assert "timestep input differs by 1.45 at step 1" in h["likely_cause"]
    assert "--mode isolated" in h["likely_cause"]
    # isolated mode, run beside: the block passes on the reference's inputs
    block8 = p("hidden_states", stages.DENOISING, X, X, step=1, block="transformer_blocks.8")
    alone = compare([block8], Policy("bfloat16"))
    [h] = _bf16_run([*steps, *_blocks(growth)], isolated=alone)
    assert "in isolated mode block transformer_blocks.8 passes" in h["likely_cause"]


def _dit_step(step=0, blocks=("transformer_blocks.0", "transformer_blocks.1"), broken=()):
    """The DiT's inputs and captured block outputs of one step, equal on both sides but for the `broken` blocks."""
    pairs = [p("dit_input", stages.DENOISING, X, X, step=step), p("dit_timestep", stages.DENOISING, X, X, step=step)]
    for block in blocks:
        port = X * 1.01 if block in broken else X + 1e-7 * torch.randn(X.shape, generator=G)
        pairs.append(p("hidden_states", stages.DENOISING, X, port, step=step, block=block))
    return pairs


def test_the_dit_output_differing_behind_matching_blocks_points_after_the_last_block():
    [h] = run(*_dit_step(), p("noise_pred", stages.DENOISING, X, X * 1.02, step=0))
    assert "while all 2 captured blocks of that step pass" in h["symptom"] and "noise_pred rel L2 0.02" in h["symptom"]
    assert "after the last block (transformer_blocks.1)" in h["likely_cause"] and "norm_out" in h["likely_cause"]
    assert "scaled copy (x1.02)" in h["likely_cause"]
    reordered = X.transpose(-1, -2).reshape(X.shape)  # unpatchify's axes in another order
    [h] = run(*_dit_step(), p("noise_pred_cond", stages.DENOISING, X, reordered, step=0))
    assert "unpatchify's axis order" in h["likely_cause"]
    # a failing block is the cause then (the block rules), and without captured blocks there is no such evidence
    [h] = run(*_dit_step(broken={"transformer_blocks.1"}), p("noise_pred", stages.DENOISING, X, X * 1.02, step=0))
    assert "after the last block" not in h["likely_cause"]
    assert run(*_dit_step(blocks=()), p("noise_pred", stages.DENOISING, X, X * 1.02, step=0)) == []


def test_only_one_cfg_branch_differing_names_that_branch_and_its_inputs():
    embeds = [
        p("prompt_embeds", stages.TEXT_ENCODING, X, X),
        p("negative_prompt_embeds", stages.TEXT_ENCODING, X, X),
    ]
    branches = [
        p("noise_pred_cond", stages.DENOISING, X, X, step=1),
        p("noise_pred_uncond", stages.DENOISING, X, X * 1.1, step=1),
        p("noise_pred", stages.DENOISING, X, X * 1.2, step=1),
    ]
    [h] = run(*embeds, *_dit_step(step=1), *branches)
    assert h["at"] == "denoising/noise_pred_uncond step 1"
    assert "only the unconditional CFG branch differs at step 1" in h["symptom"]
    assert "negative_prompt_embeds as the DiT receives them" in h["likely_cause"]
    assert "negative_prompt_embeds match at text encoding" in h["likely_cause"]
    [h] = run(
        *_dit_step(step=1),
        p("noise_pred_cond", stages.DENOISING, X, X * 1.1, step=1),
        p("noise_pred_uncond", stages.DENOISING, X, X, step=1),
    )
    assert "only the conditional CFG branch" in h["symptom"] and "prompt_embeds as the DiT" in h["likely_cause"]
    # both branches differ: not one branch's inputs, but what follows the (matching) blocks
    [h] = run(
        *_dit_step(step=1),
        p("noise_pred_cond", stages.DENOISING, X, X * 1.1, step=1),
        p("noise_pred_uncond", stages.DENOISING, X, X * 1.1, step=1),
    )
    assert "only" not in h["symptom"] and "after the last block" in h["likely_cause"]


def test_prompt_embeddings_cut_at_another_token_window_name_lengths_and_shift():
    tokens = torch.randn(1, 13, 8, generator=G)
    [h] = run(p("prompt_embeds", stages.TEXT_ENCODING, tokens[:, 1:], tokens))  # a drop index one too small
    assert "13 tokens in the port, 12 in the reference (+1)" in h["symptom"]
    assert "port token i+1 = reference token i over 12 tokens" in h["symptom"]
    assert "keeps 1 more token(s) at the start" in h["likely_cause"] and "drop_idx off by 1" in h["likely_cause"]
    padded = torch.cat([tokens, torch.zeros(1, 19, 8)], dim=1)
    [h] = run(p("prompt_embeds", stages.TEXT_ENCODING, padded, tokens))  # the zero padding dropped
    assert (
        "13 tokens in the port, 32 in the reference (-19)" in h["symptom"] and "first 13 tokens agree" in h["symptom"]
    )
    assert "stops 19 earlier" in h["likely_cause"] and "padding dropped" in h["likely_cause"]
    shifted = torch.cat([tokens[:, 1:], torch.zeros(1, 1, 8)], dim=1)  # equal length, first token stripped
    [h] = run(p("prompt_embeds", stages.TEXT_ENCODING, tokens, shifted))
    assert "shifted by -1" in h["symptom"] and "drops 1 token(s) at the start" in h["likely_cause"]
    ids = torch.arange(5, 17).unsqueeze(0)
    [h] = run(p("input_ids.0", stages.TEXT_ENCODING, ids, torch.cat([torch.tensor([[1]]), ids], dim=1)))
    assert "BOS" in h["likely_cause"] and "drop_idx" not in h["likely_cause"]
    # another prompt altogether: no window to name, the usual hints
    [h] = run(p("prompt_embeds", stages.TEXT_ENCODING, tokens, torch.randn(1, 13, 8, generator=G)))
    assert "token window" not in h["symptom"] and "hidden layer" in h["likely_cause"]


def test_a_per_channel_affine_decoder_input_names_latents_mean_and_std():
    latents = torch.randn(1, 4, 1, 8, 8, generator=G)
    mean = torch.tensor([-0.7571, -0.7089, -0.9113, 0.1075]).view(1, 4, 1, 1, 1)
    std = torch.tensor([2.8184, 1.4541, 2.3275, 2.6558]).view(1, 4, 1, 1, 1)
    ref, swapped = latents * std + mean, latents * mean + std
    [h] = run(p("vae_input", stages.DECODING, ref, swapped))
    assert "per-channel affine map" in h["symptom"] and "a = (-0.269, -0.488, -0.392, 0.0405)" in h["symptom"]
    assert "over its 4 channels" in h["symptom"] and "no single scale or offset fits" in h["symptom"]
    assert "latents_mean / latents_std swapped" in h["likely_cause"]
    [h] = run(p("vae_input", stages.DECODING, ref, ref * 2 + 0.5))  # one map for every channel
    assert "scaling_factor and shift_factor both" in h["likely_cause"]
    [h] = run(p("vae_input", stages.DECODING, ref, ref * 1.5))  # a single scale keeps its own hint
    assert "the VAE scaling_factor" in h["likely_cause"] and "per-channel" not in h["symptom"]
    frames = torch.rand(1, 3, 16, 16, generator=G)
    normalized = (frames - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / 0.25
    [h] = run(p("vae_input", stages.DECODING, X, X), p("frames", stages.DECODING, frames, normalized))
    assert "frames is a per-channel affine map" in h["symptom"] and "per-channel output" in h["likely_cause"]
