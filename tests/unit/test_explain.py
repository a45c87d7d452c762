"""attnlab.models.explain on from-scratch models: every positional scheme, every family (cross-attention
included), GQA; each step checked against the model's own tensors (hooks on the projections) or eager math."""

from __future__ import annotations

import pytest
import torch

from attnlab.models.explain import ValueWeighted, qk_joint, query_computation, value_norms
from attnlab.models.layers import MultiHeadAttention
from attnlab.models.positional import POSITIONAL
from attnlab.models.registry import zoo_entries
from tests.support import tiny_adapter

TEXT = "the cat sat on the mat, again"


def _hooks(model):
    """Capture, per (kind, layer): o_proj's input (B, T, H*hd) and output, and q_proj's output (pre-rotary)."""
    seen: dict[tuple[str, int, str], torch.Tensor] = {}
    handles = []
    for m in model.modules():
        if isinstance(m, MultiHeadAttention):
            key = ("cross" if m.cross else m.kind, m.layer)
            handles.append(m.o_proj.register_forward_hook(
                lambda mod, args, out, key=key: seen.update({(*key, "o_in"): args[0], (*key, "o_out"): out})))
            handles.append(m.q_proj.register_forward_hook(
                lambda mod, args, out, key=key: seen.update({(*key, "q_pre"): out})))
    return seen, handles


CASES = [("decoder", p, {}) for p in POSITIONAL] + [
    ("encoder", "learned", {"type_vocab_size": 0}),
    ("encoder", "alibi", {}),
    ("decoder", "rope", {"n_kv_heads": 2}),
    ("encoder-decoder", "t5_relative", {}),
]


@pytest.mark.parametrize("family,positional,extra", CASES, ids=[f"{f}-{p}-{len(e)}" for f, p, e in CASES])
def test_query_computation_matches_the_model(family, positional, extra, one_thread):
    adapter = tiny_adapter("m", family=family, positional=positional, max_positions=64, **extra)
    check_invariants(adapter, TEXT)


@pytest.mark.parametrize("model_id", [e.id for e in zoo_entries()])
def test_query_computation_on_the_zoo(model_id, one_thread):
    """The trained checkpoints shipped in models/zoo (seq2seq: encoder, decoder and cross-attention)."""
    adapter = next(e for e in zoo_entries() if e.id == model_id).load()
    check_invariants(adapter, "the cat sat on the mat")


def check_invariants(adapter, text):
    """Every invariant of the computation view, every kind, layer and head, three queries each."""
    positional = adapter.model.config.positional
    seen, handles = _hooks(adapter.model)
    try:
        result = adapter.forward(text, keep_values=True)
    finally:
        for h in handles:
            h.remove()
    rec = result.recorder
    hd = adapter.model.config.head_dim
    for kind in rec.kinds:
        for layer in range(rec.layers(kind)):
            record = rec.get(kind, layer)
            w_o, b_o = adapter.output_projection(kind, layer)
            t_q, _ = record.shape
            for query in (0, t_q // 2, t_q - 1):
                projected = []
                for head in range(record.n_heads):
                    step = query_computation(record, head, query, w_o)
                    row = rec.tile(kind, layer, head, rows=(query, query + 1))[0]
                    torch.testing.assert_close(step.weights, row, atol=1e-6, rtol=1e-5)  # float32 LSE
                    allowed = step.mask
                    torch.testing.assert_close(torch.softmax(step.scores, -1), step.weights, atol=1e-6, rtol=0)
                    expected = step.dot * step.scale + (step.bias if step.bias is not None else 0)
                    torch.testing.assert_close(step.scores[allowed], expected[allowed])
                    assert torch.isinf(step.scores[~allowed]).all()
                    torch.testing.assert_close(step.products.sum(-1), step.dot)
                    own = seen[(kind, layer, "o_in")][0, query, head * hd:(head + 1) * hd]
                    torch.testing.assert_close(step.output, own, atol=1e-5, rtol=0)
                    projected.append(step.output_projected)
                    assert step.value_norms.shape == (record.shape[1],)
                block_out = torch.stack(projected).sum(0) + (b_o if b_o is not None else 0)
                torch.testing.assert_close(block_out, seen[(kind, layer, "o_out")][0, query], atol=1e-5, rtol=1e-5)
            if positional == "rope" and kind != "cross":
                q_pre = seen[(kind, layer, "q_pre")][0].view(t_q, -1, hd).transpose(0, 1)  # (H, T, hd)
                back = adapter.unrotate(record.q[0], torch.arange(t_q) + record.spec.q_offset)
                torch.testing.assert_close(back, q_pre, atol=1e-5, rtol=1e-5)
            elif positional != "rope":
                assert adapter.unrotate(record.q[0], torch.arange(t_q)) is None


def test_values_are_opt_in_and_counted(one_thread):
    adapter = tiny_adapter("m", family="decoder", positional="rope", n_kv_heads=2)
    plain = adapter.forward(TEXT).recorder
    kept = adapter.forward(TEXT, keep_values=True).recorder
    assert all(r.v is None for r in plain.records)
    v = kept.records[0].v
    assert v.shape == kept.records[0].k.shape  # (B, Hkv, T, hd): one per KV head, not repeated
    assert kept.nbytes() - plain.nbytes() == sum(r.v.numel() * 4 for r in kept.records)
    with pytest.raises(ValueError, match="keep_values"):
        value_norms(plain.records[0], 0, adapter.output_projection("decoder", 0)[0])


def test_value_weighted_is_alpha_times_norm_normalised(one_thread):
    adapter = tiny_adapter("m", family="decoder", positional="alibi")
    rec = adapter.forward(TEXT, keep_values=True).recorder
    record = rec.get("decoder", 1)
    w_o, _ = adapter.output_projection("decoder", 1)
    for head in range(record.n_heads):
        norms = value_norms(record, head, w_o)
        v = record.v[0, record.kv_head(head)].double()
        w_h = w_o[:, head * 8:(head + 1) * 8].double()
        ref_norms = (v @ w_h.T).norm(dim=-1)
        torch.testing.assert_close(norms.double(), ref_norms, atol=1e-5, rtol=1e-5)
        alpha = rec.dense("decoder", 1, head).double()
        ref = alpha * ref_norms[None]
        ref = ref / ref.sum(-1, keepdim=True)
        view = ValueWeighted(record, head, norms, band=3)  # bands smaller than T: the normalisers in parts
        t = record.shape[0]
        got = view.block(slice(0, t), slice(0, t)).double()
        torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(view.block(slice(2, 5), slice(1, 4)).double(), ref[2:5, 1:4], atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="head"):
        view.log_block(torch.tensor([0, 1]), slice(0, 2), slice(0, 2))


def test_qk_joint_keeps_every_softmax_and_meets_centroids():
    torch.manual_seed(0)
    q = torch.randn(7, 5) * 3 + 1
    k = torch.randn(9, 5) * 0.5 - 2
    q2, k2 = qk_joint(q, k)
    before = q.double() @ k.double().T
    after = q2 @ k2.T
    shift = after - before  # one constant per query: the softmax of every row is unchanged
    torch.testing.assert_close(shift - shift[:, :1], torch.zeros_like(shift), atol=1e-9, rtol=0)
    torch.testing.assert_close(torch.softmax(after, -1), torch.softmax(before, -1))
    torch.testing.assert_close(q2.mean(0), k2.mean(0))


def test_query_out_of_range():
    adapter = tiny_adapter("m", family="decoder", positional="none")
    record = adapter.forward("abc").recorder.get("decoder", 0)
    with pytest.raises(IndexError, match="query 3"):
        query_computation(record, 0, 3)
    with pytest.raises(IndexError, match="head 9"):
        query_computation(record, 9, 0)
