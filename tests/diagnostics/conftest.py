"""One intra-op thread for the diagnostics tests: their tensors are tiny (mixtures, n ≤ 1000), so
a second thread only adds synchronisation, which costs ~10× on a loaded two-core machine."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
