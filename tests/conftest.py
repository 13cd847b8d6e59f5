"""Shared test settings: small thread count, and the size of slow end-to-end runs.

Slow tests (``@pytest.mark.slow``) run in the default suite at a reduced size; set
``ERRPROP_FULL=1`` to run them at the size quoted in the docs.
"""

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
import torch

torch.set_num_threads(2)

FULL = os.environ.get("ERRPROP_FULL") == "1"
ROOT = Path(__file__).parents[1]


@pytest.fixture
def full_size() -> bool:
    """True when slow tests should run at full size."""
    return FULL


@pytest.fixture
def one_thread():
    """One intra-op thread for a test module of tiny tensors (``pytestmark =
    pytest.mark.usefixtures("one_thread")``): a second thread only adds synchronisation, which
    costs ~10× on a loaded two-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def script():
    """Load a script of the repository (``script("experiments/e2_fashion_mnist.py")``) as a module:
    experiments and benchmarks are files, not a package, and their tests call their functions."""

    def load(path: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(Path(path).stem, ROOT / path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod

    return load
