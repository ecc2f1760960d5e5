"""A Flux family adapter that does not tell SGLang the model id: SGLang then resolves a local
directory to its Diffusers backend, and the harness must refuse to call that a port."""

import dataclasses

from parity import families
from parity.families.flux import FLUX

families.register(
    dataclasses.replace(FLUX, name="flux-no-model-id", port=dataclasses.replace(FLUX.port, model_id=None))
)
