"""Fault: the port hands its DiT the timestep in 0..1 where the DiT expects 0..1000 (a /1000
too many on the way in): the schedule itself is right, the DiT's timestep input is not."""

from sglang.multimodal_gen.runtime.models.dits.flux import FluxTransformer2DModel


def __call__(self, *args, **kwargs):  # noqa: N807 - runs before the module's forward hooks
    kwargs["timestep"] = kwargs["timestep"] / 1000
    return super(FluxTransformer2DModel, self).__call__(*args, **kwargs)


FluxTransformer2DModel.__call__ = __call__
