"""Shared test settings: small thread count, and the size of slow end-to-end runs.

Slow tests (``@pytest.mark.slow``) run in the default suite at a reduced size; set
``ERRPROP_FULL=1`` to run them at the size quoted in the docs.
"""

import os

import pytest
import torch

torch.set_num_threads(2)

FULL = os.environ.get("ERRPROP_FULL") == "1"


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
