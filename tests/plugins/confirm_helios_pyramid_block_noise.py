"""Confirm (throwaway): the pyramid's re-noise between stages draws different noise in the two libraries.

Before each stage after the first, both pipelines upsample the latents and mix in block-correlated noise
(covariance (1 + gamma) I - gamma 11^T over each 2x2 patch) drawn from torch's global RNG, which the seed does
not control. Diffusers' HeliosPyramidPipeline.sample_block_noise (pipelines/helios/pipeline_helios_pyramid.py:441)
samples torch.distributions.MultivariateNormal with 1e-6 jitter (Cholesky, float32, on the device); SGLang's
sample_block_noise (model_specific_stages/helios_denoising.py:60) uses the covariance's eigen-decomposition over
float64 randn on the CPU: the same distribution, other values (and neither reproducible from the seed). This makes
both draw SGLang's sampler from one generator seeded by the stage's size, the same on both sides; nothing else
changes."""

import torch
from diffusers import HeliosPyramidPipeline
from sglang.multimodal_gen.runtime.pipelines_core.stages.model_specific_stages import helios_denoising

_sglang_sampler = helios_denoising.sample_block_noise


def _shared(batch_size, channel, num_frames, height, width, gamma, patch_size=(1, 2, 2)):
    # SGLang's sampler, on a CPU generator seeded by the stage's size instead of the global RNG.
    state = torch.random.get_rng_state()
    torch.manual_seed(1000 * height + width)
    try:
        return _sglang_sampler(batch_size, channel, num_frames, height, width, gamma, patch_size)
    finally:
        torch.random.set_rng_state(state)


def _diffusers(self, batch_size, channel, num_frames, height, width, patch_size=(1, 2, 2), device=None):
    noise = _shared(batch_size, channel, num_frames, height, width, self.scheduler.config.gamma, patch_size)
    return noise.to(device)


helios_denoising.sample_block_noise = _shared
HeliosPyramidPipeline.sample_block_noise = _diffusers
