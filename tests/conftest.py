"""Fixtures for every layer: deterministic seeds and one intra-op thread.

Layers (each folder has its own conftest.py for its own fixtures):
unit/ the models package, api/ the HTTP API over tiny models, hf/ the bundled Hugging Face models
and comparisons with transformers, browser/ the pages in chromium, cli/ the command line,
server/ a served process, project/ the repository's own files (lint, contracts, Dockerfile).
Helpers that are not fixtures (tiny models, test settings, response readers) are in tests/support.py.
"""

import os

import pytest
import torch

# Triton's interpreter runs our Triton kernels on CPU tensors (tests/unit/test_kernel_matrix.py); it is
# chosen when a kernel is defined, so it must be set before attnlab's Triton module is first imported.
# With a GPU the kernels compile and run on it instead (the cuda-marked tests).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread avoids OpenMP spin-waits
    (measured: 2 threads under load ran tiny models ~20x slower). Autouse; fixtures that build
    models also name it, to say they rely on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
