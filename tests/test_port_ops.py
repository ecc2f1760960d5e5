"""Native-ops mode on real SGLang ops (no pipeline): the routing, its report lines, the census of the
SGLang kernels that still ran, the restore; and each of parity's torch twins against an independent
straightforward formula (tests/test_native_twins_gpu.py checks them against the kernels on a GPU)."""

import math

import pytest
import torch

from parity.runners import native_twins, port_ops


def test_native_mode_routes_custom_ops_built_inside_it_and_restores_dispatch():
    from sglang.multimodal_gen.runtime.layers.layernorm import RMSNorm

    platform = RMSNorm(8)._forward_method.__name__
    with port_ops.native_custom_ops():
        routed = RMSNorm(8)
    after = RMSNorm(8)
    assert routed._forward_method.__name__ == "forward_native"
    assert after._forward_method.__name__ == platform  # the dispatch is SGLang's own again
    lines = port_ops.describe_custom_ops([routed])
    assert f"RMSNorm x1: {platform} -> forward_native" in lines
    x = torch.randn(2, 8)
    assert torch.allclose(routed(x), routed.forward_native(x))


def test_native_kernel_functions_swap_kernels_for_their_twins_and_put_them_back():
    import sglang.kernels.ops.diffusion.modulate.scale_shift_triton as kernel_module

    original = kernel_module.fuse_scale_shift_kernel
    x = torch.randn(1, 4, 8)
    with port_ops.native_kernel_functions() as lines:
        swapped = kernel_module.fuse_scale_shift_kernel
        out = swapped(x, torch.zeros(1, 8), torch.ones(1, 8))
    assert swapped is not original and swapped.__name__ == "fuse_scale_shift_kernel_native"
    assert torch.equal(out, x + 1)
    assert "fuse_scale_shift_kernel -> fallback_torch.fuse_scale_shift_kernel_native x1" in lines
    assert kernel_module.fuse_scale_shift_kernel is original
    assert lines.ran == {} and lines.summary == "native"


def test_kernels_without_an_sglang_twin_run_parity_twins_where_the_callers_look_them_up():
    import sglang.multimodal_gen.runtime.layers.layernorm as layernorm
    import sglang.multimodal_gen.runtime.layers.visual_embedding as visual_embedding
    import sglang.multimodal_gen.runtime.models.dits.flux as flux

    bindings = {
        (flux, "residual_gate_add"): "residual_gate_add",
        (flux, "modulate_scale_shift"): "modulate_scale_shift",
        (layernorm, "fused_inplace_qknorm_rope"): "fused_inplace_qknorm_rope",
        (layernorm, "fused_inplace_qknorm"): "fused_inplace_qknorm",
        (visual_embedding, "timestep_embedding_cuda"): "timestep_embedding",  # imported under another name
    }
    originals = {key: getattr(*key) for key in bindings}
    residual, update, gate = torch.randn(2, 3, 8), torch.randn(2, 3, 8), torch.randn(1, 1, 8)
    with port_ops.native_kernel_functions() as lines:
        for (module, attribute), twin in bindings.items():
            routed = getattr(module, attribute)
            assert routed.__module__ == "parity.runners.native_twins" and routed.__name__ == twin, attribute
        out = flux.residual_gate_add(residual, update, gate)
    assert torch.equal(out, residual + update * gate)
    assert "residual_gate_add -> parity native_twins.residual_gate_add x1" in lines
    assert all(getattr(*key) is original for key, original in originals.items())


def test_a_kernel_with_none_for_not_applicable_is_declined_so_the_caller_runs_sglangs_eager_path():
    import sglang.multimodal_gen.runtime.models.dits.qwen_image as qwen_image

    original = qwen_image.try_fused_bias_mul_add
    with port_ops.native_kernel_functions() as lines:
        assert qwen_image.try_fused_bias_mul_add(*[torch.ones(2, 4)] * 4) is None
    assert qwen_image.try_fused_bias_mul_add is original
    assert any(line.startswith("try_fused_bias_mul_add -> declined") and line.endswith("x1") for line in lines)


def test_census_counts_a_kernel_function_left_unrouted_and_says_native_except(monkeypatch):
    """With modulate_scale_shift's twin taken away, native mode leaves the kernel function in place: a call
    from SGLang's model code is counted, by name, and the summary says so."""
    import sglang.multimodal_gen.runtime.models.dits.flux as flux

    kernel = "sglang.kernels.ops.diffusion.modulate.modulate_scale_shift_jit.modulate_scale_shift"
    monkeypatch.delitem(native_twins.TWINS, kernel)
    monkeypatch.setattr(port_ops, "_bindings", port_ops._Bindings())  # routes found afresh
    original = flux.modulate_scale_shift
    x, scale, shift = torch.randn(2, 3, 8), torch.randn(2, 8), torch.randn(2, 8)
    with port_ops.native_kernel_functions() as routing:
        assert flux.modulate_scale_shift is not original  # the census's counter stands in
        out = flux.modulate_scale_shift(x, scale, shift)
        flux.modulate_scale_shift(x, scale, shift)
    assert torch.equal(out, original(x, scale, shift))
    assert flux.modulate_scale_shift is original
    assert routing.ran == {"modulate_scale_shift": 2}
    assert routing.summary == "native except: modulate_scale_shift x2"
    with port_ops.native_kernel_functions() as again:  # a census per block
        pass
    assert again.ran == {}


def test_census_counts_triton_launches_jit_kernel_calls_and_sgl_kernel_ops_only_inside_the_block():
    from types import SimpleNamespace

    import sglang.kernels.jit.utils.compile.loader as loader
    from triton import knobs

    load = loader._load
    namespace = torch.ops.sgl_kernel
    jit_module = port_ops._CountedJitModule(SimpleNamespace(qknorm_rope=lambda x: x + 1, width=4))
    with port_ops.native_kernel_functions() as routing:
        assert loader._load is not load and torch.ops.sgl_kernel is not namespace
        knobs.runtime.launch_enter_hook(SimpleNamespace(data={"name": "_fused_kernel"}))  # as Triton's launcher does
        assert jit_module.qknorm_rope(1) == 2 and jit_module.width == 4
        assert not hasattr(torch.ops.sgl_kernel, "no_such_op")
    assert loader._load is load and torch.ops.sgl_kernel is namespace
    knobs.runtime.launch_enter_hook(SimpleNamespace(data={"name": "_after"}))  # no census: not counted
    jit_module.qknorm_rope(1)
    assert routing.ran == {"triton:_fused_kernel": 1, "jit:qknorm_rope": 1}
    assert routing.summary == "native except: jit:qknorm_rope x1, triton:_fused_kernel x1"


def test_counted_sgl_kernel_namespace_counts_each_op_it_forwards():
    counted = port_ops._CountedOp(torch.ops.aten, "torch.ops.aten")
    port_ops._census, outer = port_ops.KernelCensus(), port_ops._census
    try:
        assert torch.equal(counted.add(torch.ones(2), torch.ones(2)), torch.full((2,), 2.0))
        counted.mul.Tensor(torch.ones(2), torch.ones(2))
        assert dict(port_ops._census.ran) == {"torch.ops.aten.add": 1, "torch.ops.aten.mul.Tensor": 1}
    finally:
        port_ops._census = outer


def test_fusion_gates_and_quality_sites_are_off_inside_the_block_and_back_after():
    import sglang.multimodal_gen.runtime.models.dits.flux as flux
    from sglang.kernels.ops.diffusion import FUSED_LN_MODULATE

    site = torch.nn.Linear(2, 2)
    FUSED_LN_MODULATE.mark(site)
    FUSED_LN_MODULATE.mount(site)
    assert FUSED_LN_MODULATE.is_enabled(site) and not flux._FLUX_LN_MOD.disabled
    with port_ops.native_kernel_functions() as lines:
        assert flux._FLUX_LN_MOD.disabled and not FUSED_LN_MODULATE.is_enabled(site)
    assert FUSED_LN_MODULATE.is_enabled(site) and not flux._FLUX_LN_MOD.disabled
    assert any(line.startswith("BitExactFusionGate") for line in lines)
    # A pipeline's own gates are named: those of the modules its components come from.
    block = flux.FluxAdaLayerNormZeroSingle(8)
    with port_ops.native_kernel_functions(modules=[block]) as lines:
        pass
    gate_line = next(line for line in lines if line.startswith("BitExactFusionGate"))
    assert gate_line.endswith("in this pipeline's modules: FLUX fused LN+modulate")


def test_a_kernel_the_facade_resolves_inside_the_block_is_routed_and_put_back(monkeypatch):
    import sglang.kernels.ops.diffusion as facade

    monkeypatch.delitem(facade.__dict__, "head_gate_mul", raising=False)  # not resolved yet
    with port_ops.native_kernel_functions():
        from sglang.kernels.ops.diffusion import head_gate_mul

        assert head_gate_mul.__module__ == "parity.runners.native_twins"
    assert facade.head_gate_mul.__module__ == "sglang.kernels.ops.diffusion.modulate.head_gate_triton"


def test_kernel_names_leave_out_predicates_and_helpers():
    import sglang.kernels.ops.diffusion as facade
    from sglang.kernels.kda_kernels import residual_gate_add_jit

    assert port_ops.kernel_name(residual_gate_add_jit.residual_gate_add) == "residual_gate_add"
    assert port_ops.kernel_name(residual_gate_add_jit.can_use_residual_gate_add_cuda) is None
    assert port_ops.kernel_name(facade.tensors_equal) is None
    assert port_ops.kernel_name(torch.cat) is None and port_ops.kernel_name(math.sqrt) is None
    assert port_ops.summarize({"b": 1, "a": 1, "c": 3}) == "native except: c x3, a x1, b x1"


def test_default_mode_is_native_off_the_gpu_and_kernels_mode_needs_a_real_sgl_kernel():
    assert port_ops.default_mode("cpu") == "native"
    if not torch.cuda.is_available():
        port_ops.check_mode_runs("kernels")  # on a CPU, kernels mode is SGLang's own CPU dispatch: allowed


# --- the twins against independent formulas (fp64 references) ---------------------------------------


def _rope_cache(positions: int, rope_dim: int) -> torch.Tensor:
    """[positions, rope_dim] fp32: cos | sin of pos * 10000^(-2i / rope_dim), i < rope_dim / 2."""
    freqs = 10000.0 ** (-torch.arange(0, rope_dim, 2, dtype=torch.float64) / rope_dim)
    angles = torch.arange(positions, dtype=torch.float64)[:, None] * freqs[None, :]
    return torch.cat([angles.cos(), angles.sin()], dim=-1).float()


def _reference_qknorm_rope(x, weight, cache, positions, eps, is_neox, rope_dim):
    """RMSNorm of each head in fp64, then RoPE as a rotation of complex pairs."""
    x = x.double()
    normed = x / torch.sqrt(x.square().mean(-1, keepdim=True) + eps) * weight.double()
    half = rope_dim // 2
    cos = cache.double()[positions, :half][:, None, :]
    sin = cache.double()[positions, half:rope_dim][:, None, :]
    rot = torch.complex(cos, sin)
    if is_neox:
        pairs = torch.complex(normed[..., :half], normed[..., half:rope_dim]) * rot
        rotated = torch.cat([pairs.real, pairs.imag], dim=-1)
    else:
        pairs = torch.complex(normed[..., 0:rope_dim:2], normed[..., 1:rope_dim:2]) * rot
        rotated = torch.stack([pairs.real, pairs.imag], dim=-1).flatten(-2)
    return torch.cat([rotated, normed[..., rope_dim:]], dim=-1)


@pytest.mark.parametrize("is_neox", [False, True])
@pytest.mark.parametrize("rope_dim", [64, 32])
def test_qknorm_rope_twin_is_rmsnorm_then_rope(is_neox, rope_dim):
    gen = torch.Generator().manual_seed(0)
    tokens, heads, head_dim, eps = 12, 3, 64, 1e-6
    q = torch.randn(tokens, heads, head_dim, generator=gen)
    k = torch.randn(tokens, 2, head_dim, generator=gen)
    qw, kw = 1 + 0.1 * torch.randn(head_dim, generator=gen), 1 + 0.1 * torch.randn(head_dim, generator=gen)
    cache, positions = _rope_cache(40, rope_dim), torch.randint(0, 40, (tokens,), generator=gen)
    expected = [_reference_qknorm_rope(x, w, cache, positions, eps, is_neox, rope_dim) for x, w in ((q, qw), (k, kw))]
    q_out, k_out = q.clone(), k.clone()  # fp32: the twin computes in fp32
    native_twins.fused_inplace_qknorm_rope(q_out, k_out, qw, kw, cache, positions, is_neox=is_neox, eps=eps)
    for out, ref in zip((q_out, k_out), expected, strict=True):
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)
    q16, k16 = q.bfloat16(), k.bfloat16()  # bf16: one rounding of the fp32 result, so within a bf16 step
    native_twins.fused_inplace_qknorm_rope(q16, k16, qw.bfloat16(), kw.bfloat16(), cache, positions, is_neox=is_neox)
    ref16 = _reference_qknorm_rope(q.bfloat16(), qw.bfloat16(), cache, positions, 1e-6, is_neox, rope_dim)
    torch.testing.assert_close(q16.double(), ref16, rtol=2**-7, atol=1e-6)


def test_qknorm_rope_twin_reads_a_full_width_cache_and_rounds_the_norm_first_when_asked():
    gen = torch.Generator().manual_seed(1)
    q, k = torch.randn(6, 2, 64, generator=gen).bfloat16(), torch.randn(6, 2, 64, generator=gen).bfloat16()
    w = torch.ones(64, dtype=torch.bfloat16)
    half_cache, positions = _rope_cache(8, 64), torch.arange(6)
    cos, sin = half_cache[:, :32], half_cache[:, 32:]
    full_cache = torch.cat([cos.repeat_interleave(2, -1), sin.repeat_interleave(2, -1)], dim=-1)  # per feature
    a, b = q.clone(), k.clone()
    native_twins.fused_inplace_qknorm_rope(a, b, w, w, half_cache, positions, is_neox=False)
    c, d = q.clone(), k.clone()
    native_twins.fused_inplace_qknorm_rope(c, d, w, w, full_cache, positions, is_neox=False, cache_has_full_width=True)
    assert torch.equal(a, c) and torch.equal(b, d)
    e, f = q.clone(), k.clone()
    rounded = {"is_neox": False, "round_norm_before_rope": True}
    native_twins.fused_inplace_qknorm_rope(e, f, w, w, half_cache, positions, **rounded)
    ref = _reference_qknorm_rope(q, w, half_cache, positions, 1e-6, False, 64)
    # Two roundings: the norm's output (|x| up to ~4, a bf16 step of 2^-6 there), then the rotation's.
    torch.testing.assert_close(e.double(), ref, rtol=2**-7, atol=2**-6)


def test_qknorm_twin_is_per_head_rmsnorm():
    gen = torch.Generator().manual_seed(2)
    q, k = torch.randn(2, 10, 128, generator=gen), torch.randn(2, 6, 128, generator=gen)
    w = 1 + 0.1 * torch.randn(128, generator=gen)
    expected = [x.double() / torch.sqrt(x.double().square().mean(-1, keepdim=True) + 1e-6) * w.double() for x in (q, k)]
    native_twins.fused_inplace_qknorm(q, k, w, w, 1e-6)
    torch.testing.assert_close(q.double(), expected[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(k.double(), expected[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("flip", "shift", "scale"), [(True, 0.0, 1.0), (False, 1.0, 1.0), (True, 0.0, 1000.0)])
def test_timestep_embedding_twin_matches_diffusers_get_timestep_embedding(flip, shift, scale):
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.tensor([0.0, 1.0, 0.5, 999.0, 250.25]) / (1000.0 if scale > 1 else 1.0)
    ours = native_twins.timestep_embedding(t, 256, flip_sin_to_cos=flip, downscale_freq_shift=shift, scale=scale)
    theirs = get_timestep_embedding(t, 256, flip_sin_to_cos=flip, downscale_freq_shift=shift, scale=scale)
    assert ours.dtype == torch.float32 and ours.shape == (5, 256)
    # Both compute angles up to ~1000 rad in fp32 (in another order): they differ by a few fp32 steps
    # of the angle, |angle| * 2^-22 here.
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1000 * 2**-22)
    half = 128
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float64) / (half - shift))
    angle = scale * t.double()[:, None] * freqs[None, :]
    exact = torch.cat([angle.cos(), angle.sin()] if flip else [angle.sin(), angle.cos()], dim=-1)
    torch.testing.assert_close(ours.double(), exact, rtol=0, atol=1000 * 2**-22)


def test_elementwise_twins_are_sglangs_eager_chains():
    from sglang.kernels.ops.diffusion.modulate.modulate_scale_shift_jit import modulate_scale_shift
    from sglang.multimodal_gen.runtime.layers.parallel_conv import causal_conv3d_cat_pad
    from sglang.multimodal_gen.runtime.models.dits.helios import apply_rotary_emb_transposed
    from sglang.multimodal_gen.runtime.models.dits.ltx_2 import apply_split_rotary_emb

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 5, 16, generator=gen).bfloat16()
    scale, shift = torch.randn(2, 16, generator=gen).bfloat16(), torch.randn(2, 16, generator=gen).bfloat16()
    assert torch.equal(native_twins.modulate_scale_shift(x, scale, shift), modulate_scale_shift(x, scale, shift))
    # Helios: the twin rounds each product in fp32, like SGLang's eager RoPE on fp32 input.
    q = torch.randn(4, 3, 8, generator=gen)
    freqs = torch.randn(4, 16, generator=gen)
    expected = apply_rotary_emb_transposed(q, freqs)
    k = q.clone()
    native_twins.fused_inplace_helios_qk_rope(q, k, freqs)
    assert torch.equal(q, expected) and torch.equal(k, expected)
    # LTX-2: the eager split RoPE SGLang runs off CUDA (bf16 x * cos, then addcmul in fp32).
    x = torch.randn(2, 5, 4 * 8, generator=gen).bfloat16()
    cos, sin = torch.randn(2, 4, 5, 4, generator=gen).bfloat16(), torch.randn(2, 4, 5, 4, generator=gen).bfloat16()
    expected = apply_split_rotary_emb(x, (cos, sin))
    torch.testing.assert_close(native_twins.apply_ltx2_split_rotary_emb(x, cos, sin), expected)
    # LTX-2's nine adaLN values: the (bf16-rounded) table row plus its slice of the timestep embedding.
    table, timestep = torch.randn(9, 16, generator=gen), torch.randn(2, 3, 9 * 16, generator=gen).bfloat16()
    values = native_twins.ltx2_ada_values9(table, timestep)
    assert len(values) == 9 and values[4].shape == (2, 3, 16)
    assert torch.equal(values[4], table[4].bfloat16() + timestep[..., 64:80])
    # LTX-2.3's head gate: x * (2 * gate) per head.
    gate = torch.rand(2, 5, 4, generator=gen).bfloat16()
    expected = (x.view(2, 5, 4, 8) * (2.0 * gate.unsqueeze(-1))).view(2, 5, 32)
    assert torch.equal(native_twins.head_gate_mul(x, gate), expected)
    # The causal conv's cache + padding, and the conv bias epilogue.
    x5, cache = torch.randn(1, 3, 2, 4, 5, generator=gen), torch.randn(1, 3, 2, 4, 5, generator=gen)
    padding = [1, 1, 1, 1, 2, 0]
    expected = causal_conv3d_cat_pad(x5, cache, list(padding))
    assert torch.equal(native_twins.fused_causal_conv3d_cat_pad(x5, cache, padding), expected)
    assert padding == [1, 1, 1, 1, 2, 0]  # the caller's list is left alone
    conv = torch.nn.Conv3d(3, 6, 3, padding=1).to(memory_format=torch.channels_last_3d)
    raw = torch.nn.functional.conv3d(x5, conv.weight, padding=1)
    torch.testing.assert_close(native_twins.conv_bias_epilogue(raw, conv.bias), conv(x5), rtol=1e-6, atol=1e-6)
    residual = torch.randn_like(raw)
    expected = raw + conv.bias.view(1, -1, 1, 1, 1) + residual
    assert torch.equal(native_twins.conv_bias_epilogue(raw, conv.bias, residual), expected)


def test_group_norm_silu_twin_is_group_norm_then_silu():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 8, 3, 4, 5, generator=gen) + 0.5
    norm = torch.nn.GroupNorm(4, 8, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_(1, 0.1, generator=gen)
        norm.bias.normal_(0, 0.1, generator=gen)
        normed = torch.nn.functional.group_norm(x.double(), 4, norm.weight.double(), norm.bias.double(), 1e-6)
        expected = torch.nn.functional.silu(normed)
        twin = native_twins.triton_group_norm_silu(x, norm.weight, norm.bias, 4, 1e-6)
        torch.testing.assert_close(twin.double(), expected, rtol=1e-5, atol=1e-5)
        # Off CUDA apply_group_norm_silu is SGLang's eager chain, as the kernel's own wrapper is.
        assert torch.equal(native_twins.apply_group_norm_silu(x, norm, torch.nn.SiLU()), torch.nn.SiLU()(norm(x)))


@pytest.mark.parametrize("is_neox", [False, True])
def test_flashinfer_rope_twin_matches_sglangs_torch_rope(is_neox):
    from sglang.multimodal_gen.runtime.layers.rotary_embedding.utils import apply_flashinfer_rope_qk_inplace

    gen = torch.Generator().manual_seed(4)
    q, k = torch.randn(1, 6, 2, 64, generator=gen), torch.randn(1, 6, 2, 64, generator=gen)
    cache, positions = _rope_cache(16, 64), torch.randint(0, 16, (6,), generator=gen)
    expected_q, expected_k = apply_flashinfer_rope_qk_inplace(q, k, cache, is_neox=is_neox, positions=positions)
    q_flat, k_flat = q.reshape(6, -1).clone(), k.reshape(6, -1).clone()
    native_twins.flashinfer_apply_rope_inplace(positions, q_flat, k_flat, 64, cache, is_neox)
    torch.testing.assert_close(q_flat.view_as(q), expected_q, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(k_flat.view_as(k), expected_k, rtol=1e-6, atol=1e-6)


def test_every_twin_has_a_kernel_comparison_in_the_gpu_tests():
    """A twin added to native_twins needs its comparison with the kernel in tests/test_native_twins_gpu.py."""
    from pathlib import Path

    source = (Path(__file__).parent / "test_native_twins_gpu.py").read_text()
    twins = {twin.__name__ for twin in [*native_twins.TWINS.values(), *native_twins.ATTRIBUTE_TWINS.values()]}
    assert sorted(name for name in twins if f"native_twins.{name}(" not in source) == []


def test_report_md_says_native_or_native_except_beside_the_rerouted_list():
    import io

    from parity.report import _md_head

    def head(port_ops):
        out = io.StringIO()
        _md_head({"verdict": "pass", "summary": {"passed": 1, "checks": 1}, "port_ops": port_ops}, out)
        return [line for line in out.getvalue().splitlines() if line.startswith("Port ops")]

    assert head({"mode": "native", "summary": "native", "rerouted": ["x"]}) == [
        "Port ops: native: no SGLang kernel ran; what was rerouted: report.json `port_ops.rerouted`."
    ]
    leftover = head({"mode": "native", "summary": port_ops.summarize({"triton:_k": 3})})
    assert leftover[0].startswith("Port ops: native except: triton:_k x3 (SGLang kernels that still ran)")
    assert head({"mode": "kernels", "rerouted": []}) == []  # SGLang as it ships: nothing counted
