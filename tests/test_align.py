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


class _Doubling:
    """A family adapter whose canonical layout is twice the recorded value (to see it applied)."""

    def to_canonical(self, record):
        return record.value * 2


def _trace(side, entries):
    trace = Trace(side)
    for tensor, stage, value, step in entries:
        trace.add(tensor, stage, torch.tensor([float(value)]), step=step)
    return trace


def test_pairs_follow_the_reference_order_then_the_port_only_keys_in_port_order():
    ref = _trace(
        "reference",
        [("a", stages.TEXT_ENCODING, 1, None), ("b", stages.DENOISING, 2, 0), ("c", stages.DECODING, 3, None)],
    )
    port = _trace(
        "port",
        [
            ("c", stages.DECODING, 30, None),
            ("e", stages.DENOISING, 50, 1),
            ("b", stages.DENOISING, 20, 0),
            ("d", stages.DENOISING, 40, 0),
            ("a", stages.TEXT_ENCODING, 10, None),
        ],
    )
    pairs = align(ref, port, _Doubling())
    assert [p.key.tensor for p in pairs] == ["a", "b", "c", "e", "d"]
    assert [(p.reference.item(), p.port.item()) for p in pairs[:3]] == [(2.0, 20.0), (4.0, 40.0), (6.0, 60.0)]
    assert [(p.reference, p.port.item()) for p in pairs[3:]] == [(None, 100.0), (None, 80.0)]


def test_a_pair_has_the_reference_stage_or_for_a_port_only_key_the_ports():
    ref = _trace("reference", [("x", stages.DENOISING, 1, 0), ("only_ref", stages.DECODING, 2, None)])
    port = _trace("port", [("x", stages.DECODING, 1, 0), ("only_port", stages.TEXT_ENCODING, 3, None)])
    pairs = {p.key.tensor: p for p in align(ref, port, _Doubling())}
    assert pairs["x"].stage == stages.DENOISING
    assert pairs["only_ref"].stage == stages.DECODING and pairs["only_ref"].port is None
    assert pairs["only_port"].stage == stages.TEXT_ENCODING and pairs["only_port"].reference is None


def test_a_key_recorded_twice_is_one_pair_of_the_last_records():
    ref = _trace(
        "reference", [("x", stages.DENOISING, 1, 0), ("y", stages.DENOISING, 2, 0), ("x", stages.DENOISING, 3, 0)]
    )
    port = _trace(
        "port",
        [
            ("y", stages.DENOISING, 5, 0),
            ("y", stages.DENOISING, 6, 0),
            ("z", stages.DECODING, 7, None),
            ("z", stages.DECODING, 8, None),
        ],
    )
    pairs = align(ref, port, _Doubling())
    assert [(p.key.tensor, p.reference and p.reference.item(), p.port and p.port.item()) for p in pairs] == [
        ("x", 6.0, None),
        ("y", 4.0, 12.0),
        ("z", None, 16.0),
    ]


def test_keys_differ_by_step_and_block():
    ref, port = Trace("reference"), Trace("port")
    for trace in (ref, port):
        trace.add("h", stages.DENOISING, torch.zeros(1), step=0, block="b.0")
        trace.add("h", stages.DENOISING, torch.ones(1), step=0, block="b.1")
        trace.add("h", stages.DENOISING, torch.full((1,), 2.0), step=1, block="b.0")
    pairs = align(ref, port, _Doubling())
    assert [(p.key.step, p.key.block) for p in pairs] == [(0, "b.0"), (0, "b.1"), (1, "b.0")]
    assert [p.reference.item() for p in pairs] == [0.0, 2.0, 4.0]


keys = st.tuples(st.sampled_from("abcd"), st.sampled_from([None, 0, 1]))


@given(st.lists(keys, max_size=8), st.lists(keys, max_size=8))
def test_every_key_once_with_the_last_record_of_each_side(ref_keys, port_keys):
    ref, port = Trace("reference"), Trace("port")
    for trace, entries, offset in ((ref, ref_keys, 0), (port, port_keys, 100)):
        for i, (tensor, step) in enumerate(entries):
            trace.add(tensor, stages.DENOISING, torch.tensor([float(offset + i)]), step=step)
    pairs = align(ref, port, _Doubling())
    order = list(dict.fromkeys(ref_keys + port_keys))  # first appearance: the reference's, then the port's
    assert [(p.key.tensor, p.key.step) for p in pairs] == order

    def last(entries, key, offset):
        at = [i for i, k in enumerate(entries) if k == key]
        return 2.0 * (offset + at[-1]) if at else None

    for p, key in zip(pairs, order, strict=True):
        assert (p.reference.item() if p.reference is not None else None) == last(ref_keys, key, 0)
        assert (p.port.item() if p.port is not None else None) == last(port_keys, key, 100)


def test_a_key_recorded_in_two_stages_takes_the_stage_of_the_record_paired():
    ref = _trace("reference", [("latents", stages.LATENT_PREPARATION, 1, None), ("latents", stages.DECODING, 2, None)])
    port = _trace("port", [("latents", stages.DECODING, 2, None)])
    (pair,) = align(ref, port, _Doubling())
    assert pair.stage == stages.DECODING and pair.reference.item() == 4.0  # the last record, and its stage
