"""Each torch twin of parity.runners.native_twins against the SGLang kernel it replaces, on a GPU, on the
same random inputs at a real model's sizes (Flux: 24 heads x 128, 4096 image + 512 text tokens,
hidden 3072), in bf16 and fp16 and, where the kernel takes it, fp32.

    python -m pytest tests/test_native_twins_gpu.py -q

Skipped without CUDA; a kernel that cannot be built or run on the machine (its JIT build fails, its
library is missing) skips its own test. Each comparison's errors are printed at the end of the run and
written to reports/native-twins-gpu.json: the largest absolute difference, the largest difference in
steps of the output dtype (ulps) and the share of bit-identical elements.

The tolerance is the kernel's own rounding, per kernel:
- exact (0 ulps) where the kernel states that it is bit-exact against the eager chain the twin is, or
  rounds each step separately (residual-gate-add, modulate, Helios RoPE, head gate, conv bias, cat+pad);
- otherwise one rounding step of the output dtype, plus the fp32 noise of the step before that rounding
  (a few fp32 steps of the operands' magnitude): the kernel keeps an fp32 intermediate that the twin
  computes in another summation order (RMSNorm's sum of squares over a warp), with an approximate
  rsqrtf, or with a fused multiply-add the kernel's compiler emits (RoPE), so the fp32 values differ in
  their last bits and the final rounding can land one step apart;
- the timestep embedding (fp32 out): a few fp32 steps of the angle (sin/cos of angles up to ~1000 rad).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from parity.runners import native_twins

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CUDA = "cuda"
TOKENS, TEXT, HEADS, HEAD_DIM, HIDDEN = 4096, 512, 24, 128, 3072
SEQ = TOKENS + TEXT
RESULTS: list[dict] = []
REPORT = Path(__file__).resolve().parent.parent / "reports" / "native-twins-gpu.json"
_MANTISSA = {torch.bfloat16: (7, -125), torch.float16: (10, -13), torch.float32: (23, -125)}
FP32_NOISE = 8 * 2**-24  # a few fp32 steps, relative to the operands' magnitude


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    yield
    if not RESULTS:
        return
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(RESULTS, indent=1) + "\n")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\nnative twins vs SGLang kernels ({torch.cuda.get_device_name()}), also in {REPORT}:")
        for r in RESULTS:
            reporter.write_line(
                f"  {r['kernel']:<40} {r['case']:<34} max abs {r['max_abs']:.3g}  max ulps {r['max_ulps']:.3g}"
                f"  identical {100 * r['identical']:.2f}%"
            )


def _kernel(name: str):
    """The SGLang kernel `name` from its facade, or a skip where it cannot be imported here."""
    try:
        import sglang.kernels.ops.diffusion as facade

        return getattr(facade, name)
    except Exception as exc:  # an import error of its backend (Triton, tvm-ffi, CuTe DSL)
        pytest.skip(f"{name} cannot be imported here: {exc}")


def _runs(call):
    """Run the kernel once; a skip where it cannot be built or run on this machine."""
    try:
        out = call()
        torch.cuda.synchronize()
        return out
    except Exception as exc:
        pytest.skip(f"the kernel cannot run here: {type(exc).__name__}: {exc}")


def _ulp(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """One step of `dtype` at |x| (its subnormal step at and below the smallest normal)."""
    bits, lowest = _MANTISSA[dtype]
    _, exponent = torch.frexp(x.double().abs())
    exponent = torch.where(x == 0, lowest, exponent.clamp(min=lowest))
    return torch.ldexp(torch.ones_like(x, dtype=torch.float64), exponent - 1 - bits)


def compare(kernel: str, case: str, got, want, *, ulps: int, noise: float | torch.Tensor = 0.0) -> None:
    """`got` (the twin) against `want` (the kernel): |got - want| <= ulps steps of the output dtype at
    |want| + `noise` (absolute; a tensor gives one bound per element), element by element; recorded
    either way."""
    got, want = (torch.as_tensor(t) for t in (got, want))
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    diff = (got.double() - want.double()).abs()
    step = torch.maximum(_ulp(want, want.dtype), _ulp(got, want.dtype))
    record = {
        "kernel": kernel,
        "case": case,
        "dtype": str(want.dtype).removeprefix("torch."),
        "max_abs": diff.max().item(),
        "max_ulps": (diff / step).max().item(),
        "identical": (diff == 0).double().mean().item(),
        "tolerance": f"{ulps} ulp" + _noise_text(noise),
    }
    RESULTS.append(record)
    bad = diff > ulps * step + noise
    assert not bad.any(), f"{kernel} [{case}]: {int(bad.sum())} elements off, {record}"


def _noise_text(noise: float | torch.Tensor) -> str:
    if isinstance(noise, torch.Tensor):
        return f" + per-element bound up to {noise.max().item():.3g}"
    return f" + {noise:.3g}" if noise else ""


def _rope_cache(rows: int, rope_dim: int, dtype=torch.float32, full_width: bool = False) -> torch.Tensor:
    """[rows, rope_dim] (or 2 * rope_dim, full width): cos | sin of pos * 10000^(-2i / rope_dim)."""
    freqs = 10000.0 ** (-torch.arange(0, rope_dim, 2, dtype=torch.float64, device=CUDA) / rope_dim)
    angles = torch.arange(rows, dtype=torch.float64, device=CUDA)[:, None] * freqs[None, :]
    if full_width:  # one value per feature: each pair's angle twice
        angles = angles.repeat_interleave(2, dim=-1)
    return torch.cat([angles.cos(), angles.sin()], dim=-1).to(dtype)


def _weights(dim: int, dtype) -> torch.Tensor:
    return (1 + 0.1 * torch.randn(dim, device=CUDA)).to(dtype)


QKNORM_ROPE_CASES = {  # name: (rope_dim, cache dtype or None = the activation's, round first, full width)
    "rope 128, fp32 cache": (128, torch.float32, False, False),
    "rope 64 of 128, fp32 cache": (64, torch.float32, False, False),
    "rounded norm, fp32 cache": (128, torch.float32, True, False),
    "rounded norm, cache in dtype": (128, None, True, False),
    "full-width fp32 cache": (128, torch.float32, False, True),
}


@pytest.mark.parametrize("case", list(QKNORM_ROPE_CASES))
@pytest.mark.parametrize("is_neox", [False, True], ids=["interleaved", "neox"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_fused_inplace_qknorm_rope(dtype, is_neox, case):
    rope_dim, cache_dtype, round_first, full_width = QKNORM_ROPE_CASES[case]
    cache_dtype = cache_dtype or dtype
    kernel = _kernel("fused_inplace_qknorm_rope")
    can_use = _kernel("can_use_fused_inplace_qknorm_rope")
    options = {"round_norm_before_rope": round_first, "cache_has_full_width": full_width}
    if not can_use(HEAD_DIM, rope_dim, is_neox, dtype, cache_dtype, **options):
        pytest.skip("SGLang does not take this configuration (or cannot build the kernel here)")
    torch.manual_seed(0)
    q = torch.randn(SEQ, HEADS, HEAD_DIM, device=CUDA).to(dtype)
    k = torch.randn(SEQ, HEADS, HEAD_DIM, device=CUDA).to(dtype)
    qw, kw = _weights(HEAD_DIM, dtype), _weights(HEAD_DIM, dtype)
    cache = _rope_cache(SEQ, rope_dim, cache_dtype, full_width)
    positions = torch.arange(SEQ, device=CUDA)
    args = {"is_neox": is_neox, "eps": 1e-6, "head_dim": HEAD_DIM, "rope_dim": rope_dim, **options}
    kq, kk = q.clone(), k.clone()
    _runs(lambda: kernel(kq, kk, qw, kw, cache, positions, **args))
    tq, tk = q.clone(), k.clone()
    native_twins.fused_inplace_qknorm_rope(tq, tk, qw, kw, cache, positions, **args)
    # The normalized rows are |x| <~ 5: the fp32 noise of the norm before the final rounding is that
    # magnitude's last bits; a norm rounded to the dtype first may round one step apart there too.
    noise = FP32_NOISE * 8 + (_ulp(torch.tensor(4.0), dtype).item() if round_first else 0.0)
    compare("fused_inplace_qknorm_rope", f"{case}, {'neox' if is_neox else 'interleaved'}", tq, kq, ulps=1, noise=noise)
    compare("fused_inplace_qknorm_rope", f"{case} (k)", tk, kk, ulps=1, noise=noise)


@pytest.mark.parametrize("head_dim", [64, 128, 256, 512])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_fused_inplace_qknorm(dtype, head_dim):
    try:
        from sglang.kernels.ops.layernorm.norm import can_use_fused_inplace_qknorm, fused_inplace_qknorm
    except Exception as exc:
        pytest.skip(f"cannot import the JIT qk-norm: {exc}")
    if not can_use_fused_inplace_qknorm(head_dim, dtype):
        pytest.skip("the JIT qk-norm cannot be built here")
    torch.manual_seed(1)
    heads = HEADS * HEAD_DIM // head_dim
    q = torch.randn(1, SEQ * heads, head_dim, device=CUDA).to(dtype)
    k = torch.randn(1, SEQ * heads // 2, head_dim, device=CUDA).to(dtype)
    qw, kw = _weights(head_dim, dtype), _weights(head_dim, dtype)
    kq, kk = q.clone(), k.clone()
    _runs(lambda: fused_inplace_qknorm(kq, kk, qw, kw, 1e-6, head_dim=head_dim))
    tq, tk = q.clone(), k.clone()
    native_twins.fused_inplace_qknorm(tq, tk, qw, kw, 1e-6, head_dim=head_dim)
    compare("fused_inplace_qknorm", f"head_dim {head_dim} (q)", tq, kq, ulps=1, noise=FP32_NOISE * 8)
    compare("fused_inplace_qknorm", f"head_dim {head_dim} (k)", tk, kk, ulps=1, noise=FP32_NOISE * 8)


def _gate_cases(dtype):
    """The operand layouts residual_gate_add routes to its JIT kernel (gate modes 0-3) and to its Triton
    kernel (a transposed-dense residual)."""
    r = torch.randn(1, TOKENS, HIDDEN, device=CUDA).to(dtype)
    u = torch.randn(1, TOKENS, HIDDEN, device=CUDA).to(dtype)
    r2 = torch.randn(2, TOKENS, HIDDEN, device=CUDA).to(dtype)
    u2 = torch.randn(2, TOKENS, HIDDEN, device=CUDA).to(dtype)
    transposed = torch.randn(1, HIDDEN, TOKENS, device=CUDA).to(dtype).transpose(1, 2)
    return {
        "full gate": (r, u, torch.randn(1, TOKENS, HIDDEN, device=CUDA).to(dtype)),
        "shared row gate": (r, u, torch.randn(1, 1, HIDDEN, device=CUDA).to(dtype)),
        "per-token gate": (r, u, torch.randn(1, TOKENS, 1, device=CUDA).to(dtype)),
        "row per batch (adaLN chunk)": (r2, u2, torch.randn(2, 6 * HIDDEN, device=CUDA).to(dtype)[:, None, :HIDDEN]),
        "transposed residual (Triton)": (transposed, u, torch.randn(1, 1, HIDDEN, device=CUDA).to(dtype)),
    }


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_residual_gate_add(dtype):
    kernel = _kernel("residual_gate_add")
    from sglang.kernels.kda_kernels.residual_gate_add_jit import can_use_residual_gate_add_cuda

    torch.manual_seed(2)
    for case, (residual, update, gate) in _gate_cases(dtype).items():
        assert can_use_residual_gate_add_cuda(residual, update, gate), case  # the kernel path, not eager
        want = _runs(lambda r=residual, u=update, g=gate: kernel(r, u, g))
        compare("residual_gate_add", case, native_twins.residual_gate_add(residual, update, gate), want, ulps=0)


def test_residual_gate_add_cuda_fp32():
    from sglang.kernels.kda_kernels.residual_gate_add_jit import residual_gate_add_cuda

    torch.manual_seed(3)
    for case, (residual, update, gate) in _gate_cases(torch.float32).items():
        want = _runs(lambda r=residual, u=update, g=gate: residual_gate_add_cuda(r, u, g))
        got = native_twins.residual_gate_add_cuda(residual, update, gate)
        # fp32: the kernel fuses the multiply-add (one rounding) where eager rounds the product first,
        # so the two differ by up to one rounding of the product, which near a cancelling sum is many
        # ulps of the result (H200: 9.5e-7 absolute, 23 % of elements, with products up to ~16).
        product_rounding = _ulp(update.double() * gate.double(), torch.float32)
        compare("residual_gate_add_cuda", f"{case}, fp32", got, want, ulps=1, noise=product_rounding)


@pytest.mark.parametrize(
    ("dim", "flip", "shift", "scale", "t_max"),
    [(256, True, 0.0, 1.0, 1000.0), (256, False, 1.0, 1.0, 1000.0), (1024, True, 0.0, 1000.0, 1.0)],
)
@pytest.mark.parametrize("t_dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_timestep_embedding(t_dtype, dim, flip, shift, scale, t_max):
    kernel = _kernel("timestep_embedding")
    torch.manual_seed(4)
    t = (torch.rand(64, device=CUDA) * t_max).to(t_dtype)
    args = {"flip_sin_to_cos": flip, "downscale_freq_shift": shift, "scale": scale}
    want = _runs(lambda: kernel(t, dim, **args))
    got = native_twins.timestep_embedding(t, dim, **args)
    angle = scale * t_max  # the largest angle, in radians
    case = f"dim {dim}, flip {flip}, shift {shift}, scale {scale}, t {str(t_dtype)[6:]}"
    compare("timestep_embedding", case, got, want, ulps=2, noise=4 * angle * 2**-24)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_modulate_scale_shift(dtype):
    kernel = _kernel("modulate_scale_shift")
    cuda_kernel = _kernel("modulate_scale_shift_cuda")
    can_use = _kernel("can_use_modulate_scale_shift_cuda")
    torch.manual_seed(5)
    x = torch.randn(2, SEQ, HIDDEN, device=CUDA).to(dtype)
    scale, shift = torch.randn(2, HIDDEN, device=CUDA).to(dtype), torch.randn(2, HIDDEN, device=CUDA).to(dtype)
    assert can_use(x, scale, shift)
    want = _runs(lambda: kernel(x, scale, shift))
    compare("modulate_scale_shift", "Flux adaLN", native_twins.modulate_scale_shift(x, scale, shift), want, ulps=0)
    want = _runs(lambda: cuda_kernel(x, scale, shift))
    got = native_twins.modulate_scale_shift_cuda(x, scale, shift)
    compare("modulate_scale_shift_cuda", "Flux adaLN", got, want, ulps=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=["bf16", "fp16", "fp32"])
def test_fused_inplace_helios_qk_rope(dtype):
    kernel = _kernel("fused_inplace_helios_qk_rope")
    torch.manual_seed(6)
    heads = 40
    q = torch.randn(1, TOKENS, heads, HEAD_DIM, device=CUDA).to(dtype)
    k = torch.randn(1, TOKENS, heads, HEAD_DIM, device=CUDA).to(dtype)
    freqs = torch.rand(1, TOKENS, 2 * HEAD_DIM, device=CUDA) * 2 - 1
    kq, kk = q.clone(), k.clone()
    _runs(lambda: kernel(kq, kk, freqs))
    tq, tk = q.clone(), k.clone()
    native_twins.fused_inplace_helios_qk_rope(tq, tk, freqs)
    compare("fused_inplace_helios_qk_rope", "Helios 40x128 (q)", tq, kq, ulps=0)
    compare("fused_inplace_helios_qk_rope", "Helios 40x128 (k)", tk, kk, ulps=0)


def test_head_gate_mul():
    kernel = _kernel("head_gate_mul")
    can_use = _kernel("can_use_head_gate_mul")
    torch.manual_seed(7)
    x = torch.randn(1, TOKENS, 32 * HEAD_DIM, device=CUDA).bfloat16()
    gate = torch.sigmoid(torch.randn(1, TOKENS, 32, device=CUDA)).bfloat16()
    assert can_use(x, gate)
    want = _runs(lambda: kernel(x, gate))
    compare("head_gate_mul", "LTX-2.3 32x128", native_twins.head_gate_mul(x, gate), want, ulps=0)


@pytest.mark.parametrize("table_dtype", [torch.float32, torch.bfloat16], ids=["fp32 table", "bf16 table"])
def test_ltx2_ada_values9(table_dtype):
    kernel = _kernel("ltx2_ada_values9")
    torch.manual_seed(13)
    hidden = 4096
    table = torch.randn(9, hidden, device=CUDA).to(table_dtype)
    timestep = torch.randn(2, 64, 9 * hidden, device=CUDA).bfloat16()
    want = _runs(lambda: kernel(table, timestep))
    got = native_twins.ltx2_ada_values9(table, timestep)
    assert len(got) == len(want) == 9
    case = f"LTX-2 4096, {str(table_dtype)[6:]} table"
    compare("ltx2_ada_values9", case, torch.stack(got), torch.stack(want), ulps=0)


def test_apply_ltx2_split_rotary_emb():
    kernel = _kernel("apply_ltx2_split_rotary_emb")
    torch.manual_seed(8)
    heads = 32
    x = torch.randn(1, TOKENS, heads * HEAD_DIM, device=CUDA).bfloat16()
    angles = torch.rand(1, heads, TOKENS, HEAD_DIM // 2, device=CUDA) * 100
    cos, sin = angles.cos().bfloat16(), angles.sin().bfloat16()
    want = _runs(lambda: kernel(x, cos, sin))
    got = native_twins.apply_ltx2_split_rotary_emb(x, cos, sin)
    compare("apply_ltx2_split_rotary_emb", "LTX-2 32x128", got, want, ulps=1, noise=FP32_NOISE * 8)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=["bf16", "fp16", "fp32"])
def test_conv_bias_epilogue(dtype):
    kernel = _kernel("conv_bias_epilogue")
    can_use = _kernel("can_use_conv_bias_epilogue")
    torch.manual_seed(9)
    x = torch.randn(1, 128, 5, 60, 104, device=CUDA).to(dtype).to(memory_format=torch.channels_last_3d)
    residual = torch.randn_like(x)
    for bias_dtype in {dtype, torch.float32}:
        bias = torch.randn(128, device=CUDA).to(bias_dtype)
        for res in (None, residual):
            assert can_use(x, bias, res)
            want = _runs(lambda b=bias, r=res: kernel(x, b, r))
            case = f"Wan VAE conv, bias {str(bias_dtype)[6:]}, {'+ residual' if res is not None else 'no residual'}"
            compare("conv_bias_epilogue", case, native_twins.conv_bias_epilogue(x, bias, res), want, ulps=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_fused_causal_conv3d_cat_pad(dtype):
    torch.manual_seed(10)
    x = torch.randn(1, 96, 4, 60, 104, device=CUDA).to(dtype)
    cache = torch.randn(1, 96, 2, 60, 104, device=CUDA).to(dtype)
    padding = [1, 1, 1, 1, 2, 0]
    triton_kernel = _kernel("fused_causal_conv3d_cat_pad")
    want = _runs(lambda: triton_kernel(x, cache, list(padding)))
    got = native_twins.fused_causal_conv3d_cat_pad(x, cache, padding)
    compare("fused_causal_conv3d_cat_pad", "Wan VAE causal conv (Triton)", got, want, ulps=0)
    try:
        from sglang.kernels.ops.diffusion import (
            can_use_fused_causal_conv3d_cat_pad_cuda,
            fused_causal_conv3d_cat_pad_cuda,
        )
    except Exception:
        return
    if can_use_fused_causal_conv3d_cat_pad_cuda(x, cache, list(padding)):
        want = _runs(lambda: fused_causal_conv3d_cat_pad_cuda(x, cache, list(padding)))
        compare("fused_causal_conv3d_cat_pad_cuda", "Wan VAE causal conv (JIT)", got, want, ulps=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=["bf16", "fp16", "fp32"])
def test_apply_group_norm_silu(dtype):
    kernel = _kernel("apply_group_norm_silu")
    torch.manual_seed(12)
    norm = torch.nn.GroupNorm(32, 128, eps=1e-6).to(CUDA, dtype)
    with torch.no_grad():
        norm.weight.normal_(1, 0.1)
        norm.bias.normal_(0, 0.1)
    silu = torch.nn.SiLU()
    for case, shape in {"HunyuanVideo VAE 5D": (1, 128, 5, 60, 104), "4D, one-pass groups": (2, 128, 32, 32)}.items():
        x = (torch.randn(shape, device=CUDA) + 0.5).to(dtype)
        with torch.no_grad():
            want = _runs(lambda x=x: kernel(x, norm, silu))
            got = native_twins.apply_group_norm_silu(x, norm, silu)
            raw = native_twins.triton_group_norm_silu(x, norm.weight, norm.bias, 32, 1e-6)
        # fp32 group statistics summed in another order: the normalized values (|y| <~ 6) carry fp32 noise.
        compare("apply_group_norm_silu", case, got, want, ulps=1, noise=FP32_NOISE * 16)
        compare("triton_group_norm_silu", case, raw, want, ulps=1, noise=FP32_NOISE * 16)


@pytest.mark.parametrize("is_neox", [False, True], ids=["interleaved", "neox"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_flashinfer_apply_rope_with_cos_sin_cache_inplace(dtype, is_neox):
    try:
        from flashinfer.rope import apply_rope_with_cos_sin_cache_inplace
    except Exception as exc:
        pytest.skip(f"FlashInfer's RoPE cannot be imported here: {exc}")
    torch.manual_seed(11)
    positions = torch.arange(SEQ, device=CUDA)
    query = torch.randn(SEQ, HEADS * HEAD_DIM, device=CUDA).to(dtype)
    key = torch.randn(SEQ, HEADS * HEAD_DIM, device=CUDA).to(dtype)
    cache = _rope_cache(SEQ, HEAD_DIM)
    kq, kk = query.clone(), key.clone()
    _runs(lambda: apply_rope_with_cos_sin_cache_inplace(positions, kq, kk, HEAD_DIM, cache, is_neox=is_neox))
    tq, tk = query.clone(), key.clone()
    native_twins.flashinfer_apply_rope_inplace(positions, tq, tk, HEAD_DIM, cache, is_neox)
    layout = "neox" if is_neox else "interleaved"
    compare("flashinfer rope (cos/sin cache)", f"Wan-style, {layout} (q)", tq, kq, ulps=1, noise=FP32_NOISE * 4)
    compare("flashinfer rope (cos/sin cache)", f"Wan-style, {layout} (k)", tk, kk, ulps=1, noise=FP32_NOISE * 4)
