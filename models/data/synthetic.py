"""Synthetic tasks for the labs, deterministic for a seed.

- `repeated_segments`: token ids, a random segment then the same segment again (induction heads);
- `reversal_pairs`, `copy_pairs`: (source, target) string pairs for seq2seq (anti-diagonal and
  diagonal cross-attention); `pairs_text` writes them one `source=target` line each.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)



def repeated_segments(n_seqs: int, seg_len: int, vocab_size: int, seed: int = 0, low: int = 0) -> Tensor:
    """(n_seqs, 2 * seg_len): a random segment of ids in [low, vocab_size), then the same segment again.

    In the second half the next token is predictable only by finding the previous
    occurrence of the current token and copying what followed it: the task induction
    heads solve (Olsson et al. 2022). ``low`` keeps special ids out; ValueError unless
    0 <= low < vocab_size.
    """
    if not 0 <= low < vocab_size:
        raise ValueError(f"need 0 <= low < vocab_size, got low={low}, vocab_size={vocab_size}")
    segment = torch.randint(low, vocab_size, (n_seqs, seg_len), generator=_generator(seed))
    return torch.cat([segment, segment], dim=1)


def _random_strings(n: int, min_len: int, max_len: int, alphabet: str, seed: int) -> list[str]:
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    if not alphabet:
        raise ValueError("alphabet must not be empty")
    g = _generator(seed)
    lengths = torch.randint(min_len, max_len + 1, (n,), generator=g).tolist()
    letters = torch.randint(len(alphabet), (sum(lengths),), generator=g).tolist()
    out, pos = [], 0
    for length in lengths:
        out.append("".join(alphabet[i] for i in letters[pos : pos + length]))
        pos += length
    return out


LOWERCASE = "abcdefghijklmnopqrstuvwxyz"


def reversal_pairs(
    n: int, min_len: int = 3, max_len: int = 12, alphabet: str = LOWERCASE, seed: int = 0
) -> list[tuple[str, str]]:
    """(source, reversed source) pairs: cross-attention learns an anti-diagonal."""
    return [(s, s[::-1]) for s in _random_strings(n, min_len, max_len, alphabet, seed)]


def copy_pairs(
    n: int, min_len: int = 3, max_len: int = 12, alphabet: str = LOWERCASE, seed: int = 0
) -> list[tuple[str, str]]:
    """(source, source) pairs: cross-attention learns a diagonal."""
    return [(s, s) for s in _random_strings(n, min_len, max_len, alphabet, seed)]


def pairs_text(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"{src}={tgt}\n" for src, tgt in pairs)


