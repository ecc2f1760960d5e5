"""parity: numerical parity between a Diffusers pipeline and its SGLang port."""

__version__ = "0.1.0"
