"""Privacy-gated synthetic data from diffusion models."""

__version__ = "0.1.0"
