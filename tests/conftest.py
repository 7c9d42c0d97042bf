"""Shared test hygiene: a test that changes torch's thread count gets it back afterwards, so
float rounding (which depends on the thread count) never leaks from one test into the next."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
