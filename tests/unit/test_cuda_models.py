"""A model placed on the GPU in bfloat16 (ATTNLAB_DEVICE=cuda, ATTNLAB_DTYPE=bfloat16): every backend the
toggle offers there gives the maps math gives, the capture's tiles are exact to bf16, generation runs.

cuda-marked: skipped without a GPU (bench/gpu_check.sh runs it); imports nothing of the server.
"""

from __future__ import annotations

import pytest
import torch

from attnlab.models import BACKENDS, ScratchAdapter, TransformerConfig, build_model
from attnlab.models.device import resolve
from attnlab.models.tokenization import CharTokenizer

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
TEXT = "the quick brown fox jumps over the lazy dog " * 40  # 1,760 characters: tokens


@pytest.fixture(scope="module", params=["rope", "alibi"])
def gpu_model(request):
    torch.manual_seed(0)
    tokenizer = CharTokenizer.from_corpus(TEXT)
    config = TransformerConfig(vocab_size=tokenizer.vocab_size, d_model=256, n_layers=2, n_heads=8, n_kv_heads=2,
                               family="decoder", positional=request.param, max_positions=4096)
    adapter = ScratchAdapter("gpu-tiny", build_model(config), tokenizer)
    adapter.place(resolve("cuda", "bfloat16"))
    return adapter


def test_every_offered_backend_gives_maths_maps_on_the_gpu(gpu_model):
    want = gpu_model.forward(TEXT, backend="math")
    assert want.logits.device.type == "cuda" and want.logits.dtype == torch.bfloat16
    ref = want.recorder.dense("decoder", 1, head=3)  # (T, T) float32, from bf16 Q, K and a float32 LSE
    assert torch.allclose(ref.sum(-1), torch.ones_like(ref[:, 0]), atol=1e-4)
    for backend in BACKENDS:
        if backend in ("math",) or not backend.startswith(("sdpa", "flash", "triton")):
            continue
        try:
            got = gpu_model.forward(TEXT, backend=backend)
        except ValueError as err:  # a forced SDPA kernel that cannot take a masked call says so
            assert backend.startswith("sdpa_") and "cannot take this call" in str(err)
            continue
        # bf16 activations differ by rounding between kernels; the maps stay within bf16's precision
        assert (got.recorder.dense("decoder", 1, head=3) - ref).abs().max().item() < 2e-2, backend


def test_generation_on_the_gpu_is_seeded(gpu_model):
    runs = [[s.token_id for s in gpu_model.generate("the quick", 8, temperature=1.0, seed=5, backend="sdpa")]
            for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 8
