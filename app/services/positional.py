"""Positional-scheme data for plots, and the extrapolation lab's stored results."""

from __future__ import annotations

from pathlib import Path

import orjson

from attnlab.models import make_positional
from attnlab.models.positional import POSITIONAL

from ..core.settings import Settings
from .errors import Invalid, NotFound, TooLarge


def describe_scheme(scheme: str, d_model: int, max_len: int, n_heads: int, settings: Settings) -> dict:
    """models.positional describe() of ``scheme`` at these sizes: Invalid (422) for sizes the scheme cannot take,
    TooLarge (413) for more than ``dense_budget`` values (max_len x d_model, or n_heads x max_len^2 biases)."""
    if d_model % n_heads:
        raise Invalid(f"d_model: {d_model} must be divisible by n_heads {n_heads}")
    if scheme == "rope" and (d_model // n_heads) % 2:
        raise Invalid(f"d_model: rope needs an even head dimension, d_model/n_heads = {d_model // n_heads}")
    cells = max(max_len * d_model, n_heads * max_len * max_len)
    if cells > settings.dense_budget:
        raise TooLarge(f"max_len: {max_len} positions give {cells:,} values (max_len x d_model, or n_heads x "
                       f"max_len^2 for biases), over dense_budget {settings.dense_budget:,}")
    causal = {"causal": True} if scheme == "alibi" else {}
    module = make_positional(scheme, d_model=d_model, n_heads=n_heads, max_positions=max_len, **causal)
    return module.describe(max_len)


def schemes() -> list[dict]:
    """Every positional scheme with its label, one-line summary and paper (the classes in models.positional)."""
    return [{"name": name, "label": cls.label, "summary": cls.summary, "paper": cls.paper,
             "in_similarity": cls.in_similarity} for name, cls in POSITIONAL.items()]


def describe_similarity(d_model: int, max_len: int, n_heads: int, settings: Settings) -> dict[str, dict]:
    """describe_scheme of every scheme drawn in the similarity-vs-offset comparison."""
    return {name: describe_scheme(name, d_model, max_len, n_heads, settings)
            for name, cls in POSITIONAL.items() if cls.in_similarity}


def extrapolation_results(settings: Settings) -> dict:
    """The extrapolation lab's stored results; NotFound (404) until `attnlab lab extrapolation` has run."""
    path = Path(settings.zoo_dir) / "extrapolation" / "results.json"
    if not path.is_file():
        raise NotFound("no extrapolation results on this server: run `attnlab lab extrapolation` to train the "
                       f"models and write {path.name} under models/zoo/extrapolation/")
    return orjson.loads(path.read_bytes())
