"""The positional tables a trained model learned: absolute position embeddings and T5 relative biases.

``models.positional`` describes each scheme at its initialisation; this reads what training made of it, from
any model's modules (ours or Hugging Face's):

- a learned absolute table (our ``Learned``; BERT's ``position_embeddings``, GPT-2's ``wpe``): the cosine
  similarity of every pair of positions and the norm of each (Devlin et al. 2018, arXiv 1810.04805; Wang &
  Chen 2020, "What do position embeddings learn?", arXiv 2010.04903, found BERT's nearly shift-invariant);
- a T5 relative bias (our ``T5Bias``, Raffel et al. 2020, arXiv 1910.10683): the learned scalar per bucket
  and head, and the bias each head adds as a function of the offset ``key - query``.
"""

from __future__ import annotations

from torch import Tensor, nn

from .positional import Learned, T5Bias, t5_bucket

# names under which transformers keeps a learned absolute table
HF_TABLE_NAMES = ("position_embeddings", "wpe")


def learned_tables(model: nn.Module) -> list[tuple[str, Tensor]]:
    """(module name, weight (n_positions, d_model)) of every learned absolute table in ``model``."""
    out = []
    for name, module in model.named_modules():
        if isinstance(module, Learned):
            out.append((name, module.table.weight))
        elif isinstance(module, nn.Embedding) and name.rsplit(".", 1)[-1] in HF_TABLE_NAMES:
            out.append((name, module.weight))
    return out


def describe_table(name: str, weight: Tensor, max_len: int) -> dict:
    """A learned table's first ``max_len`` positions: cosine ``similarity`` [T][T], ``norms`` [T], and
    ``by_offset``: the similarity averaged over pairs at each offset 0..T-1."""
    w = weight[:max_len].detach().float()
    unit = w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    sim = unit @ unit.T  # (T, T)
    t = sim.shape[0]
    by_offset = [float(sim.diagonal(d).mean()) for d in range(t)]
    return {"name": name, "n_positions": int(weight.shape[0]), "d_model": int(weight.shape[1]), "shown": t,
            "similarity": sim.numpy(), "norms": w.norm(dim=-1).numpy(), "by_offset": by_offset}


def t5_biases(model: nn.Module) -> list[tuple[str, T5Bias]]:
    """(module name, module) of every T5 relative bias in ``model``."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, T5Bias)]


def describe_t5_bias(name: str, bias: T5Bias, max_len: int) -> dict:
    """One T5 bias: ``buckets`` [n_buckets][H] (the learned table), and ``by_offset`` [H][offsets]: the bias
    a query adds to a key ``offset = key - query`` away, for offsets -(max_len-1)..max_len-1 (a causal bias
    puts every offset > 0 in offset 0's bucket: those keys are masked anyway)."""
    import torch

    offsets = torch.arange(-(max_len - 1), max_len)
    buckets = t5_bucket(offsets, bias.bidirectional, bias.num_buckets, bias.max_distance)
    table = bias.relative_attention_bias.weight.detach().float()  # (n_buckets, H)
    return {"name": name, "bidirectional": bias.bidirectional, "num_buckets": bias.num_buckets,
            "max_distance": bias.max_distance, "n_heads": bias.n_heads, "buckets": table.numpy(),
            "offsets": offsets.tolist(), "bucket_of_offset": buckets.tolist(),
            "by_offset": table[buckets].T.contiguous().numpy()}


def positional_tables(model: nn.Module, max_len: int = 128) -> dict:
    """Every learned table and T5 bias of ``model`` (see ``describe_table``, ``describe_t5_bias``)."""
    return {"tables": [describe_table(n, w, max_len) for n, w in learned_tables(model)],
            "t5_biases": [describe_t5_bias(n, b, max_len) for n, b in t5_biases(model)]}
