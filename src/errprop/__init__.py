"""errprop: measure and reduce error propagation in diffusion models."""

__version__ = "0.1.0"
