"""One intra-op thread for the diagnostics tests: their tensors are tiny (mixtures, n ≤ 1000), so
a second thread only adds synchronisation, which costs ~10× on a loaded two-core machine."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):  # the shared fixture of tests/conftest.py, for every test here
    yield
