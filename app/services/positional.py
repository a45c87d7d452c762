"""Positional-scheme data for plots, and the extrapolation lab's stored results."""

from __future__ import annotations

from pathlib import Path

import orjson
import torch

from attnlab.models import make_positional
from attnlab.models.positional import POSITIONAL

from ..core.settings import Settings
from .errors import Invalid, NotFound, TooLarge

SEED = 0  # learned tables and T5 biases are drawn at their random initialisation: the same one on every call


def describe_scheme(scheme: str, d_model: int, max_len: int, n_heads: int, settings: Settings) -> dict:
    """models.positional describe() of ``scheme`` at these sizes: Invalid (422) for sizes the scheme cannot take,
    TooLarge (413) for more than ``dense_budget`` values (max_len x d_model, or n_heads x max_len^2 biases).
    Sizes the scheme does not use (its ``parameters``) are not checked. Random initialisations are seeded."""
    uses = POSITIONAL[scheme].parameters if scheme in POSITIONAL else ()
    if "n_heads" in uses and "d_model" in uses:
        if d_model % n_heads:
            raise Invalid(f"d_model: {d_model} must be divisible by n_heads {n_heads}")
        if (d_model // n_heads) % 2:
            raise Invalid(f"d_model: {scheme} needs an even head dimension, d_model/n_heads = {d_model // n_heads}")
    # what describe() holds: a max_len x d_model matrix (vectors, rotations), n_heads x max_len^2 biases
    cells = max(max_len * d_model if "d_model" in uses else 0, n_heads * max_len * max_len if "n_heads" in uses else 0)
    if cells > settings.dense_budget:
        raise TooLarge(f"max_len: {max_len} positions give {cells:,} values (max_len x d_model, or n_heads x "
                       f"max_len^2 for biases), over dense_budget {settings.dense_budget:,}")
    causal = {"causal": True} if scheme == "alibi" else {}
    module = make_positional(scheme, d_model=d_model, n_heads=n_heads, max_positions=max_len, **causal)
    # seeded with a generator of its own: the global random state is shared with every other thread (a model
    # loading beside this request draws from it), so seeding it would not make two Shows alike. Every parameter
    # of a scheme is an embedding table, initialised N(0, 1) as nn.Embedding does
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for parameter in torch.nn.Module.parameters(module):  # (schemes shadow .parameters with their size names)
            parameter.normal_(generator=generator)
    return module.describe(max_len)


def schemes() -> list[dict]:
    """Every positional scheme with its label, one-line summary and paper (the classes in models.positional)."""
    return [{"name": name, "label": cls.label, "summary": cls.summary, "paper": cls.paper,
             "in_similarity": cls.in_similarity, "parameters": list(cls.parameters)}
            for name, cls in POSITIONAL.items()]


def describe_similarity(d_model: int, max_len: int, n_heads: int, settings: Settings
                        ) -> tuple[dict[str, dict], dict[str, str]]:
    """describe_scheme of every scheme drawn in the similarity-vs-offset comparison, and why any of them
    cannot be drawn at these sizes (its Invalid message, by scheme)."""
    descs, skipped = {}, {}
    for name, cls in POSITIONAL.items():
        if not cls.in_similarity:
            continue
        try:
            descs[name] = describe_scheme(name, d_model, max_len, n_heads, settings)
        except Invalid as err:
            skipped[name] = err.detail
    return descs, skipped


def extrapolation_results(settings: Settings) -> dict:
    """The extrapolation lab's stored results; NotFound (404) until `attnlab lab extrapolation` has run."""
    path = Path(settings.zoo_dir) / "extrapolation" / "results.json"
    if not path.is_file():
        raise NotFound("no extrapolation results on this server: run `attnlab lab extrapolation` to train the "
                       f"models and write {path.name} under models/zoo/extrapolation/")
    return orjson.loads(path.read_bytes())
