"""flash gathers every head's whole-map max-pooled overview from its own tiles (capture_pools).

Each cell must equal what ``pooled_overview`` computes afterwards from the capture's (Q, K, LSE): on the fast
path (causal, grouped-query), with a bias (ALiBi), with padding, without a mask, at sizes that do not divide
the length, on one thread and on the worker pool; the record's size counts the maps; backends that cannot
pool ignore the request.
"""

from __future__ import annotations

import pytest
import torch

from attnlab.models.attention import AttentionSpec
from attnlab.models.capture import capture, capture_pools, pooled_overview
from attnlab.models.dispatch import attend
from attnlab.models.positional import ALiBiBias


def _specs(t: int) -> dict[str, AttentionSpec]:
    padding = torch.ones(1, t, dtype=torch.bool)
    padding[0, -37:] = False
    return {
        "causal": AttentionSpec(scale=0.25, causal=True),
        "full": AttentionSpec(scale=0.25),
        "alibi": AttentionSpec(scale=0.25, causal=True, bias=ALiBiBias(4, causal=True)),
        "padding": AttentionSpec(scale=0.25, key_padding=padding),
    }


@pytest.fixture(params=[1, 2], ids=["one-thread", "worker-pool"])
def threads(request):
    """One intra-op thread (tiles on the caller) or two (flash's worker pool, items in parallel)."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("which", ["causal", "full", "alibi", "padding"])
def test_pooled_while_running_equals_pooled_from_the_capture(which, threads):
    g = torch.Generator().manual_seed(3)
    t, sizes = 1100, (48, 500, 2000)  # factors 23, 3 and 1 (a size past the length: the map itself)
    q = torch.randn(1, 4, t, 16, generator=g) * 2
    k = torch.randn(1, 2, t, 16, generator=g) * 2  # grouped-query: 2 KV heads for 4 query heads
    v = torch.randn(1, 2, t, 16, generator=g)
    with capture_pools(sizes), capture() as rec:
        attend(q, k, v, _specs(t)[which], "decoder", 0, "flash")
    record = rec.get("decoder", 0)
    gathered = record.pooled
    assert set(gathered) == set(sizes)
    record.pooled = None  # pooled_overview below recomputes from (Q, K, LSE)
    for size in sizes:
        for head in range(4):
            expect, factor = pooled_overview(record, head, size, "max", (0, t), (0, t))
            assert gathered[size][0, head].shape == expect.shape
            torch.testing.assert_close(gathered[size][0, head], expect, atol=5e-5, rtol=0)
    record.pooled = gathered
    # pooled_overview hands the gathered map back for a whole-map max overview, and computes the rest
    assert torch.equal(pooled_overview(record, 1, 48, "max", (0, t), (0, t))[0], gathered[48][0, 1])
    part, _ = pooled_overview(record, 1, 48, "max", (0, 600), (0, 600))
    assert part.shape == (47, 47)
    assert record.nbytes() == (sum(m.numel() for m in gathered.values()) * 4 + q.numel() * 4 + k.numel() * 4
                               + 4 * t * 4)


def test_backends_that_cannot_pool_ignore_the_request_and_autograd_skips_it():
    q, k, v = (torch.randn(1, 2, 64, 8) for _ in range(3))
    with capture_pools((16,)), capture() as rec:
        attend(q, k, v, AttentionSpec(scale=8 ** -0.5, causal=True), "decoder", 0, "sdpa")
    assert rec.get("decoder", 0).pooled is None
    q.requires_grad_(True)
    with capture_pools((16,)), capture(detach=True) as rec:
        attend(q, k, v, AttentionSpec(scale=8 ** -0.5, causal=True), "decoder", 0, "flash").sum().backward()
    assert rec.get("decoder", 0).pooled is None and q.grad is not None


def test_pool_sizes_must_be_positive():
    with pytest.raises(ValueError, match="positive"), capture_pools((48, 0)):
        pass
