"""Shared fixtures: deterministic seeds and tiny real models."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
