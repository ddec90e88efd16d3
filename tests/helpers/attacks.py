"""Shared pieces of the attack tests: the small attack options and one torch thread per test module."""

from __future__ import annotations

import pytest
import torch

RAB = ["--population", "6", "--generations", "3", "--tokens", "3"]  # Ring-A-Bell, tiny
UDA = ["--tokens", "2", "--iterations", "2", "--timesteps", "2", "--target-steps", "2"]  # UnlearnDiffAtk, tiny


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run faster on one thread than on a shared, busy CPU's several (and Ray's workers use one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
