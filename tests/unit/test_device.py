"""Device and dtype placement (attnlab.models.device) and the settings that size things by GPU memory."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from attnlab.core.settings import Settings
from attnlab.models import Registry
from attnlab.models.device import CPU, Placement, module_placement, resolve
from tests.support import adapter_entry, tiny_adapter

GPU_BF16 = Placement(torch.device("cuda"), torch.bfloat16)  # a value only: nothing is allocated


def test_auto_is_cuda_in_bfloat16_where_there_is_a_gpu_else_cpu_in_float32():
    auto = resolve("auto", "auto")
    if torch.cuda.is_available():
        assert auto.device.type == "cuda" and auto.dtype in (torch.bfloat16, torch.float16)
    else:
        assert auto == CPU
    assert resolve("cpu", "bfloat16") == Placement(torch.device("cpu"), torch.bfloat16)
    assert resolve("cpu", "auto").dtype == torch.float32


@pytest.mark.parametrize(("device", "dtype", "message"), [
    ("tpu", "auto", r"device: 'tpu' is not one of \['auto', 'cpu', 'cuda'\]"),
    ("cpu", "int8", r"dtype: 'int8' is not one of \['auto', 'float32', 'bfloat16', 'float16'\]"),
])
def test_unknown_values_name_the_setting(device, dtype, message):
    with pytest.raises(ValueError, match=message):
        resolve(device, dtype)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(ValueError, match="device: 'cuda' asked for, but torch .* sees no CUDA device"):
        resolve("cuda")
    with pytest.raises(ValidationError, match="device"):
        Settings(_env_file=None, device="gpu")


def test_settings_read_the_environment(monkeypatch):
    monkeypatch.setenv("ATTNLAB_DEVICE", "cpu")
    monkeypatch.setenv("ATTNLAB_DTYPE", "bfloat16")
    assert Settings(_env_file=None).placement() == Placement(torch.device("cpu"), torch.bfloat16)


def test_gpu_memory_bounds_the_run_cache_and_the_concurrency():
    s = Settings(_env_file=None, run_cache_bytes=8 * 2**30, gpu_cache_fraction=0.25, gpu_request_bytes=2**30,
                 per_model_concurrency=4)
    # on CPU the settings stand as they are
    assert s.run_cache_limit(CPU) == 8 * 2**30 and s.concurrency(CPU) == 4
    # a 16 GiB GPU: the cache takes a quarter; 2.5 GiB free fits two requests of 1 GiB, 0.5 GiB still one
    assert s.run_cache_limit(GPU_BF16, total_gpu_bytes=16 * 2**30) == 4 * 2**30
    assert s.run_cache_limit(GPU_BF16, total_gpu_bytes=80 * 2**30) == 8 * 2**30  # run_cache_bytes is the cap
    assert s.concurrency(GPU_BF16, free_gpu_bytes=int(2.5 * 2**30)) == 2
    assert s.concurrency(GPU_BF16, free_gpu_bytes=2**29) == 1
    assert s.concurrency(GPU_BF16, free_gpu_bytes=64 * 2**30) == 4


@pytest.fixture(scope="module")
def bf16_gpt():
    registry = Registry([adapter_entry(tiny_adapter("tiny-gpt", family="decoder", positional="alibi"))],
                        placement=Placement(torch.device("cpu"), torch.bfloat16))
    return registry.load("tiny-gpt")


@pytest.mark.parametrize("backend", ["math", "sdpa", "flash"])
def test_a_bfloat16_model_captures_tiles_exact_to_its_precision(bf16_gpt, backend):
    assert module_placement(bf16_gpt.model) == Placement(torch.device("cpu"), torch.bfloat16)
    run = bf16_gpt.forward("the cat sat on the mat", backend=backend)
    assert run.logits.dtype == torch.bfloat16
    for layer in range(2):
        record = run.recorder.get("decoder", layer)
        assert record.q.dtype == torch.bfloat16 and record.lse.dtype == torch.float32
        tiles = run.recorder.dense("decoder", layer)  # (H, T, T) float32, rebuilt from (Q, K, LSE)
        # the float64 softmax of the very Q and K the bf16 model produced: the tiles match it to float32
        # rounding; the LSE (float32, from bf16 scores) is the only other source of error
        q, k = record.q[0].double(), record.k[0].double()
        t = q.shape[1]
        q_pos, k_pos = torch.arange(t), torch.arange(t)
        scores = q @ k.transpose(-2, -1) * record.spec.scale + record.spec.bias(q_pos, k_pos).double()
        scores = scores.masked_fill(k_pos[None, :] > q_pos[:, None], float("-inf"))
        want = scores.softmax(-1)
        assert torch.allclose(tiles.double(), want, atol=1e-5)
        assert torch.allclose(tiles.sum(-1).double(), torch.ones(4, t, dtype=torch.float64), atol=1e-5)


def test_a_bfloat16_model_generates_the_same_tokens_for_a_seed(bf16_gpt):
    runs = [[s.token_id for s in bf16_gpt.generate("abc", 5, temperature=1.0, seed=3)] for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 5
