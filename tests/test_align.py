import torch
from diffusers import FluxPipeline
from hypothesis import given, settings
from hypothesis import strategies as st

from parity import stages
from parity.align import align
from parity.families.flux import FLUX, unpack_2x2
from parity.trace import Trace


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(1, 2),
    channels=st.integers(1, 5),
    rows=st.integers(1, 6),
    cols=st.integers(1, 6),
    scale=st.sampled_from([1, 2, 8]),
)
def test_unpack_inverts_diffusers_flux_packing(batch, channels, rows, cols, scale):
    latents = torch.randn(batch, channels, 2 * rows, 2 * cols)
    packed = FluxPipeline._pack_latents(latents, batch, channels, 2 * rows, 2 * cols)
    image_h, image_w = 2 * rows * scale, 2 * cols * scale
    assert torch.equal(unpack_2x2(packed, image_h, image_w), latents)


def test_align_pairs_packed_with_unpacked_and_squeezes_image_time_axis():
    latents = torch.randn(1, 4, 8, 8)
    packed = FluxPipeline._pack_latents(latents, 1, 4, 8, 8)
    ref, port = Trace("reference"), Trace("port")
    ref.add("latents", stages.LATENT_PREPARATION, packed, layout="packed", height=16, width=16)
    port.add("latents", stages.LATENT_PREPARATION, latents)  # a port that keeps latents unpacked
    frames = torch.rand(1, 3, 16, 16)
    ref.add("frames", stages.DECODING, frames, layout="frames_bcthw")
    port.add("frames", stages.DECODING, frames.unsqueeze(2), layout="frames_bcthw")
    port.add("extra", stages.DENOISING, torch.zeros(1))
    pairs = align(ref, port, FLUX)
    assert [p.key.tensor for p in pairs] == ["latents", "frames", "extra"]
    assert torch.equal(pairs[0].reference, pairs[0].port)
    assert torch.equal(pairs[1].reference, pairs[1].port)
    assert pairs[2].reference is None


def test_a_port_that_fuses_blocks_declares_its_mapping():
    import dataclasses

    from parity.families.base import FamilyAdapter

    class Fused(FamilyAdapter):
        def block_name(self, side, reference_path, index):
            return (
                f"{reference_path}.{2 * index + 1}"
                if side == "port"
                else super().block_name(side, reference_path, index)
            )

    fused = Fused(**{f.name: getattr(FLUX, f.name) for f in dataclasses.fields(FLUX)})
    assert fused.block_name("port", "transformer_blocks", 0) == "transformer_blocks.1"
    assert fused.block_name("reference", "transformer_blocks", 0) == "transformer_blocks.0"
    assert FLUX.block_name("port", "single_transformer_blocks", 3) == "single_transformer_blocks.3"
