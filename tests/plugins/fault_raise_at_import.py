"""Fault: a plugin that fails while it is imported (a typo in a user's patch)."""

raise ImportError("cannot import name 'FluxTransformer3DModel' [injected fault]")
