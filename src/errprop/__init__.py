"""errprop: measure and reduce error propagation in diffusion models."""

__version__ = "0.1.0"

#: Top-level shortcuts, imported on first use (``import errprop`` stays light).
_API = {"load_run": "builders", "load_diffusers": "builders", "export_diffusers": "builders"}


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module 'errprop' has no attribute {name!r}")
