"""Shared fixtures: deterministic seeds and tiny real models."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread avoids OpenMP spin-waits
    (measured: 2 threads under load ran tiny models ~20x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
