"""Every attention backend against a float64 reference, over a FlashAttention-style matrix.

The axes follow the parametrizations of flash-attn's own tests: query and key lengths
that differ, in both causal alignments, and are not multiples of the tile; MHA, GQA and
MQA; head dims from 40 to 256; local windows; key padding; ALiBi. To these we add what
this project's kernels also take: Longformer/BigBird patterns, T5 buckets, a query
offset with Tq == Tk (a KV cache) and rows where no key is allowed.

Each (backend, case) checks, against an explicit float64 softmax written here:
the output, the Q/K/V gradients, the inference (no-grad) path, the row LSE the capture
records (the backend's own, or ``row_lse`` for a backend that has none) and the maps the
capture rebuilds from (Q, K, LSE). The reference uses the spec's *ingredients* (the bias
function, the pattern's ``allowed``, the padding tensor) but none of its mask logic, so a
fault in the shared spec code shows up here too.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from attnlab.models.attention import (
    BACKENDS,
    AttentionResult,
    AttentionSpec,
    BigBirdPattern,
    LongformerPattern,
    get_backend,
)
from attnlab.models.attention.triton_flash import TRITON, unavailable_reason
from attnlab.models.capture import Recorder
from attnlab.models.positional import ALiBiBias, T5Bias

H = 4  # query heads
KV_HEADS = {"mha": 4, "gqa": 2, "mqa": 1}
# flash-attn tests head dims like these: odd ones (59, 111) catch layout assumptions.
HEAD_DIMS = [40, 59, 64, 80, 96, 111, 128, 160, 192, 224, 256]
# flash runs on tiles this small so that every default case has partial tiles,
# skipped tiles and tiles crossing the causal diagonal (its default is 256 x 256).
SMALL_TILES = (16, 32)
# flash-attn's criterion: a kernel's error from the float64 reference may be at most
# twice that of the plain softmax run in the kernel's precision (float32), plus a floor
# for values the plain run happens to get exactly (one key: p = 1, so its dS is exactly
# 0 while a kernel's is the rounding noise of two D-term dot products, dO.v - dO.O,
# summed over every query). The floor grows like float32 rounding in a sum, sqrt(n):
# n is the head dim times the longest reduction, Tk for out and dQ, Tq * (H / Hkv) for
# dK and dV. At most 7e-4 by default and 1e-3 in the slow cases; a masking or offset
# fault is off by O(0.1).
ERROR_FACTOR, ERROR_FLOOR = 2.0, 1e-6


@dataclass(frozen=True)
class Case:
    """One attention call: shapes (B, H, Tq, D) for Q, (B, Hkv, Tk, D) for K and V."""

    t_q: int
    t_k: int
    causal: bool
    align: str  # "top_left": q_offset 0; "bottom_right": queries are the last Tq positions; "shifted": past a cache
    heads: str  # a key of KV_HEADS
    head_dim: int
    mask: str = "none"  # a key of FEATURES
    batch: int = 2
    tiles: tuple[int | None, int | None] = SMALL_TILES

    @property
    def q_offset(self) -> int:
        if self.align == "bottom_right":
            return self.t_k - self.t_q  # negative when there are more queries than keys
        if self.align == "shifted":
            return self.t_q // 2 + 1
        return 0

    @property
    def id(self) -> str:
        tiles = "" if self.tiles == SMALL_TILES else f"-tiles{self.tiles[0]}x{self.tiles[1]}"
        return (f"{self.t_q}x{self.t_k}-{self.align}-{'causal' if self.causal else 'full'}-{self.heads}"
                f"-d{self.head_dim}-{self.mask}-b{self.batch}{tiles}")


# --- what a case puts in the spec besides causality: padding, bias, pattern ------------

def _padding(case: Case, left: int = 0, right: int = 0) -> Tensor:
    """Key padding (B, Tk): the last batch drops `left`/`right` keys; any other keeps every key."""
    pad = torch.ones(case.batch, case.t_k, dtype=torch.bool)
    pad[-1, :left] = False
    pad[-1, case.t_k - right:] = False
    return pad


def _t5(case: Case) -> T5Bias:
    bias = T5Bias(H, bidirectional=not case.causal, num_buckets=32, max_distance=64)
    # T5 initialises near 0; a bias of order 1 is what makes a wrong bucket visible
    torch.nn.init.normal_(bias.relative_attention_bias.weight, std=1.0)
    return bias


def _longformer(case: Case) -> LongformerPattern:
    return LongformerPattern(window=8, global_tokens=(0, 13))


def _local(case: Case) -> LongformerPattern:
    # flash-attn's window_size=(3, 3): no global token, so a far-off query sees no key
    return LongformerPattern(window=6)


def _bigbird(case: Case) -> BigBirdPattern:
    return BigBirdPattern(block=8, window_blocks=3, global_blocks=1, random_blocks=2, seed=7)


FEATURES = {
    "none": lambda c: {},
    "pad_right": lambda c: {"key_padding": _padding(c, right=c.t_k // 3)},
    "pad_left": lambda c: {"key_padding": _padding(c, left=c.t_k // 3)},
    "all_masked": lambda c: {"key_padding": _padding(c, left=c.t_k)},  # the last batch has no key at all
    "alibi": lambda c: {"bias": ALiBiBias(H, causal=c.causal)},
    "t5": lambda c: {"bias": _t5(c)},
    "local": lambda c: {"pattern": _local(c)},
    "longformer": lambda c: {"pattern": _longformer(c)},
    "bigbird": lambda c: {"pattern": _bigbird(c)},
    "pad_left+alibi+bigbird": lambda c: {"key_padding": _padding(c, left=c.t_k // 4), "bias": ALiBiBias(H, c.causal),
                                         "pattern": _bigbird(c)},
    "pad_right+t5+local": lambda c: {"key_padding": _padding(c, right=c.t_k // 4), "bias": _t5(c),
                                     "pattern": _local(c)},
}


# --- the matrix ---------------------------------------------------------------------------

def _aligns(t_q: int, t_k: int, causal: bool, position_free: bool) -> list[str]:
    """Alignments that change the result: none matters for a position-free non-causal call."""
    if position_free and not causal:
        return ["top_left"]
    return ["top_left", "shifted"] if t_q == t_k else ["top_left", "bottom_right"]


def _core_cases() -> list[Case]:
    """Shapes x causal x alignment x MHA/GQA/MQA, no padding or bias; head dims cycle.

    A single query or key against 2049 (a decoding step, a one-token memory) stays in the
    default run at batch 1 and head dim 64: its cost is in the K/V or Q of 2049 rows.
    """
    shapes = [(1, 1), (1, 37), (37, 1), (8, 8), (17, 17), (40, 67), (67, 40), (113, 203), (203, 113)]
    cases = []
    for (t_q, t_k), causal in itertools.product(shapes, [False, True]):
        for align, heads in itertools.product(_aligns(t_q, t_k, causal, True), KV_HEADS):
            cases.append(Case(t_q, t_k, causal, align, heads, HEAD_DIMS[len(cases) % len(HEAD_DIMS)]))
    for (t_q, t_k), causal in itertools.product([(1, 2049), (2049, 1)], [False, True]):
        for align, heads in itertools.product(_aligns(t_q, t_k, causal, True), KV_HEADS):
            cases.append(Case(t_q, t_k, causal, align, heads, 64, batch=1))
    return cases


def _feature_cases() -> list[Case]:
    """Every padding / bias / pattern feature x causal x both alignments on a few shapes."""
    cases = []
    heads = list(KV_HEADS)
    for mask, (t_q, t_k), causal in itertools.product([m for m in FEATURES if m != "none"],
                                                      [(33, 33), (29, 45), (45, 29)], [False, True]):
        for align in _aligns(t_q, t_k, causal, False):
            n = len(cases)
            cases.append(Case(t_q, t_k, causal, align, heads[n % 3], HEAD_DIMS[(5 * n) % len(HEAD_DIMS)], mask))
    return cases


# The largest lengths and head dims, at batch 1 (padding then drops keys of the one sequence).
SLOW_CASES = [
    Case(2049, 2049, True, "top_left", "mha", 64, batch=1),
    Case(2049, 2049, True, "top_left", "gqa", 128, "pad_left+alibi+bigbird", batch=1, tiles=(None, None)),
    Case(1023, 2049, True, "bottom_right", "mqa", 256, "alibi", batch=1, tiles=(64, 128)),
    Case(2049, 1023, True, "bottom_right", "gqa", 256, "local", batch=1, tiles=(64, 128)),
    Case(2049, 777, False, "top_left", "mha", 256, "pad_right+t5+local", batch=1, tiles=(128, 64)),
]
CASES = _core_cases() + _feature_cases()
PARAMS = ([pytest.param(c, id=c.id) for c in CASES]
          + [pytest.param(c, id=c.id, marks=pytest.mark.slow) for c in SLOW_CASES])
assert len({p.id for p in PARAMS}) == len(PARAMS), "case ids must be unique"


# --- the reference (float64; float32 for the error bound) ---------------------------------

def reference(q: Tensor, k: Tensor, v: Tensor, case: Case, parts: dict) -> tuple[Tensor, Tensor, Tensor]:
    """Explicit softmax attention in q's dtype, -inf where masked and 0 on rows with no key.

    q (B, H, Tq, D), k and v (B, Hkv, Tk, D) with Hkv dividing H; query head h reads
    K/V head h // (H // Hkv). Returns out (B, H, Tq, D), lse (B, H, Tq) (-inf on empty
    rows) and weights (B, H, Tq, Tk).
    """
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    q_pos = torch.arange(case.t_q) + case.q_offset  # absolute positions
    k_pos = torch.arange(case.t_k)
    scores = q @ k.transpose(-2, -1) * case.head_dim**-0.5  # (B, H, Tq, Tk)
    if "bias" in parts:
        scores = scores + parts["bias"](q_pos, k_pos).to(q.dtype)  # (H, Tq, Tk) broadcast over B
    allowed = torch.ones(case.batch, 1, case.t_q, case.t_k, dtype=torch.bool)
    if case.causal:
        allowed &= k_pos[None, :] <= q_pos[:, None]
    if "pattern" in parts:
        allowed &= parts["pattern"].allowed(q_pos, k_pos)
    if "key_padding" in parts:
        allowed &= parts["key_padding"][:, None, None, :]
    scores = scores.masked_fill(~allowed, float("-inf"))
    empty = ~allowed.any(-1, keepdim=True)  # (B, 1, Tq, 1)
    row_max = scores.amax(-1, keepdim=True).masked_fill(empty, 0.0).detach()
    p = (scores - row_max).exp()  # exactly 0 where masked
    total = p.sum(-1, keepdim=True)
    weights = p / total.masked_fill(empty, 1.0)
    lse = (row_max + total.log()).squeeze(-1).detach()  # log 0 = -inf on empty rows
    return weights @ v, lse, weights.detach()


# --- running a backend ----------------------------------------------------------------------

def call(name: str, q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, case: Case):
    """The backend on this case: flash and triton with the case's (small) tiles, others through the registry."""
    if name == "triton":  # registered only on CUDA; here it may run under Triton's interpreter
        return TRITON.fn(q, k, v, spec, block_m=case.tiles[0], block_n=case.tiles[1])
    backend = get_backend(name)
    if name == "flash":
        return backend.fn(q, k, v, spec, block_q=case.tiles[0], block_k=case.tiles[1])
    return backend(q, k, v, spec)


def call_on(device: str, name: str, q: Tensor, k: Tensor, v: Tensor, spec: AttentionSpec, case: Case):
    """``call`` with the inputs and the spec's tensors on ``device``; out and LSE come back to the CPU,
    still differentiable with respect to the CPU inputs."""
    if device == "cpu":
        return call(name, q, k, v, spec, case)
    pad, bias = spec.key_padding, spec.bias
    moved = dataclasses.replace(spec, key_padding=None if pad is None else pad.to(device),
                                bias=copy.deepcopy(bias).to(device) if isinstance(bias, torch.nn.Module) else bias)
    res = call(name, q.to(device), k.to(device), v.to(device), moved, case)
    return AttentionResult(res.out.cpu(), None, None if res.lse is None else res.lse.cpu())


def assert_close(got: Tensor, want: Tensor, plain: Tensor, what: str, terms: int, head_dim: int) -> None:
    """got (the kernel) and plain (the float32 reference) against want (the float64 reference).

    Infinite entries (-inf LSE of a row with no key) must be equal; the finite ones
    must be within ERROR_FACTOR times plain's error plus ERROR_FLOOR * sqrt(terms * head_dim).
    """
    got, plain = got.detach().double(), plain.detach().double()
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)}, want {tuple(want.shape)}"
    assert not got.isnan().any(), f"{what}: NaN"
    inf = want.isinf()
    assert torch.equal(got.isinf(), inf) and torch.equal(got[inf], want[inf]), f"{what}: infinities differ"
    error = (got - want).masked_fill_(inf, 0.0).abs().max().item() if got.numel() else 0.0
    bound = ERROR_FACTOR * ((plain - want).masked_fill_(inf, 0.0).abs().max().item() if got.numel() else 0.0)
    floor = ERROR_FLOOR * (terms * head_dim) ** 0.5
    assert error <= bound + floor, f"{what}: error {error:.3g} > {ERROR_FACTOR} x float32 reference's + {floor:.3g}"


@pytest.mark.parametrize("case", PARAMS)
# backends that take CPU tensors (on a GPU machine the CUDA-only ones, triton and SDPA's forced
# kernels, are registered too; triton is run below, the SDPA kernels are SDPA's own)
@pytest.mark.parametrize("backend", sorted(n for n, b in BACKENDS.items() if "cpu" in b.devices))
def test_backend_matches_float64_reference(backend: str, case: Case):
    check_case(backend, case)


def check_case(backend: str, case: Case, device: str = "cpu") -> None:
    """One backend on one case, against the float64 reference (see the module's docstring); the kernel
    runs on ``device``, the reference and the capture on the CPU."""
    parts = FEATURES[case.mask](case)
    spec = AttentionSpec(scale=case.head_dim**-0.5, causal=case.causal, q_offset=case.q_offset, **parts)
    b, d, h_kv = case.batch, case.head_dim, KV_HEADS[case.heads]
    q = torch.randn(b, H, case.t_q, d, requires_grad=True)
    k = torch.randn(b, h_kv, case.t_k, d, requires_grad=True)
    v = torch.randn(b, h_kv, case.t_k, d, requires_grad=True)
    d_out = torch.randn(b, H, case.t_q, d)

    refs = {}
    for dtype in (torch.float64, torch.float32):
        inputs = [x.detach().to(dtype).requires_grad_() for x in (q, k, v)]
        out, lse, weights = reference(*inputs, case, parts)
        refs[dtype] = (out, lse, weights, torch.autograd.grad(out, inputs, d_out.to(dtype)))
    (ref_out, ref_lse, ref_weights, ref_grads), (plain_out, plain_lse, plain_weights, plain_grads) = refs.values()

    res = call_on(device, backend, q, k, v, spec, case)
    assert res.out.dtype == q.dtype
    assert_close(res.out, ref_out, plain_out, "out", case.t_k, d)
    grads = torch.autograd.grad(res.out, [q, k, v], d_out)
    terms = [case.t_k, case.t_q * H // h_kv, case.t_q * H // h_kv]
    for name, got, want, plain, n in zip("qkv", grads, ref_grads, plain_grads, terms):
        assert_close(got, want, plain, f"d{name}", n, d)

    with torch.no_grad():  # the inference path differs (math works in place, flash skips autograd)
        inference = call_on(device, backend, q, k, v, spec, case)
    assert_close(inference.out, ref_out, plain_out, "out without grad", case.t_k, d)

    # What the capture keeps and draws: this backend's LSE (row_lse when it has none), and
    # the maps exp(q.k * scale + bias - lse) rebuilt from it, 0 on rows with no key.
    rec = Recorder()
    rec.add("matrix", 0, q, k, spec, res.lse)
    record = rec.records[0]
    assert_close(record.lse, ref_lse, plain_lse, "lse", case.t_k, d)
    if inference.lse is not None:
        assert_close(inference.lse, ref_lse, plain_lse, "lse without grad", case.t_k, d)
    maps = torch.stack([record.block(slice(None), slice(0, case.t_q), slice(0, case.t_k), batch=i) for i in range(b)])
    assert_close(maps, ref_weights, plain_weights, "capture maps", case.t_k, d)  # (B, H, Tq, Tk)


# --- the input contract ---------------------------------------------------------------------

# triton keeps the contract too, wherever it is installed (it checks shapes before it launches)
CONTRACT_BACKENDS = sorted({n for n, b in BACKENDS.items() if "cpu" in b.devices}
                           | ({"triton"} if unavailable_reason("cpu") is None else set()))


def _backend(name: str):
    return TRITON if name == "triton" else get_backend(name)


@pytest.mark.parametrize("backend", CONTRACT_BACKENDS)
def test_kv_heads_must_divide_query_heads(backend: str):
    q, k = torch.randn(1, 4, 5, 8), torch.randn(1, 3, 6, 8)
    with pytest.raises(ValueError, match=r"K/V heads \(3\) must divide .* query heads \(4\)"):
        _backend(backend)(q, k, k, AttentionSpec(scale=1.0))


@pytest.mark.parametrize("backend", CONTRACT_BACKENDS)
@pytest.mark.parametrize("shapes", [
    ((1, 4, 5, 8), (1, 4, 6, 8), (1, 4, 7, 8)),  # K and V lengths differ
    ((1, 4, 5, 8), (1, 4, 6, 16), (1, 4, 6, 16)),  # Q and K head dims differ
    ((2, 4, 5, 8), (1, 4, 6, 8), (1, 4, 6, 8)),  # batch sizes differ
    ((4, 5, 8), (4, 6, 8), (4, 6, 8)),  # no batch axis
], ids=["kv-lengths", "head-dims", "batch", "3d"])
def test_mismatched_shapes_are_refused_with_the_shapes(backend: str, shapes):
    q, k, v = (torch.randn(*s) for s in shapes)
    with pytest.raises(ValueError, match=r"q \(.*\), k \(.*\), v \(.*\)"):
        _backend(backend)(q, k, v, AttentionSpec(scale=1.0))


# --- the Triton kernels: compiled on CUDA, under Triton's interpreter on CPU (slow) ----------

# The interpreter runs each program in Python: a fast subset, one case per feature plus the
# core shapes that stress alignment and GQA/MQA, runs by default (~30 s); the rest of the
# matrix (lengths up to 203, every feature x alignment) is marked slow, the 2049-long cases
# and SLOW_CASES are left to a GPU (tests/unit/test_triton_flash.py runs them on CUDA).
TRITON_FAST_IDS = {
    "1x37-bottom_right-causal-gqa-d111-none-b2", "37x1-bottom_right-causal-mqa-d96-none-b2",
    "17x17-shifted-causal-gqa-d256-none-b2", "40x67-top_left-causal-gqa-d111-none-b2",
    "67x40-bottom_right-causal-gqa-d128-none-b2",
}


def _triton_params() -> list:
    """Every case up to 256 long; fast: the ids above and, per feature, one case (its causal,
    alignment and heads vary from feature to feature)."""
    params, per_mask = [], {}
    for c in CASES:
        if max(c.t_q, c.t_k) > 256:
            continue
        n = per_mask[c.mask] = per_mask.get(c.mask, -1) + 1
        pick = (5 * list(FEATURES).index(c.mask) + 3) % 12
        fast = c.id in TRITON_FAST_IDS or (c.mask != "none" and n == pick)
        params.append(pytest.param(c, id=c.id, marks=() if fast else pytest.mark.slow))
    return params


TRITON_PARAMS = _triton_params()


@pytest.mark.skipif(unavailable_reason("cpu") is not None, reason=f"triton on CPU: {unavailable_reason('cpu')}")
@pytest.mark.parametrize("case", TRITON_PARAMS)
def test_triton_matches_float64_reference(case: Case):
    check_case("triton", case)


# On a GPU: the fast subset and the long cases, compiled (bench/gpu_check.sh runs these)
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available() or unavailable_reason("cuda") is not None,
                    reason="needs a CUDA GPU and triton")
@pytest.mark.parametrize("case", [p for p in TRITON_PARAMS if not p.marks] + [pytest.param(c, id=c.id)
                                                                             for c in SLOW_CASES])
def test_triton_compiled_matches_float64_reference(case: Case):
    check_case("triton", case, device="cuda")
