"""Shared fixtures."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")    # before torch: see theory/__init__.py

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def one_torch_thread():
    """Run the test on one torch thread (as CI's small machine would), then restore the count."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
