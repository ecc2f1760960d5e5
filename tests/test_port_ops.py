"""Native-ops mode on real SGLang ops (no pipeline): the routing, its report lines, and the restore."""

import torch

from parity.runners import port_ops


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
    with port_ops.native_kernel_functions() as lines:
        swapped = kernel_module.fuse_scale_shift_kernel
    assert swapped is not original and swapped.__name__ == "fuse_scale_shift_kernel_native"
    assert "fuse_scale_shift_kernel -> fallback_torch.fuse_scale_shift_kernel_native" in lines
    assert kernel_module.fuse_scale_shift_kernel is original


def test_default_mode_is_native_off_the_gpu_and_kernels_mode_needs_a_real_sgl_kernel():
    assert port_ops.default_mode("cpu") == "native"
    if not torch.cuda.is_available():
        port_ops.check_mode_runs("kernels")  # on a CPU, kernels mode is SGLang's own CPU dispatch: allowed
