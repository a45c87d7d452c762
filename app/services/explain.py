"""Explaining a head of a run: one query's computation, value-weighted maps, the Q/K geometry.

The work is ``attnlab.models.explain`` on the run's capture; this layer adds what only the server knows:
the model (its W_O, read from the weights through the hub, never copied into runs; its rotary, to show
q and k before rotation), the limits, and the 2-D projections of the Q/K geometry (scikit-learn's PCA and
t-SNE, umap-learn's UMAP when the optional extra ``umap`` is installed).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import Literal

import numpy as np
import torch

from attnlab.models import ModelAdapter
from attnlab.models.attention import AttentionSpec, get_backend, make_pattern
from attnlab.models.explain import ValueWeighted, apply_pattern, qk_joint, query_computation, value_norms

from ..core.settings import Settings
from .errors import Invalid, TooLarge, Unavailable
from .hub import ModelHub, in_thread
from .runs import Run

log = logging.getLogger(__name__)

QKMethod = Literal["pca", "tsne", "umap"]
QK_METHODS: tuple[str, ...] = ("pca", "tsne", "umap")


def _floats(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else np.ascontiguousarray(t.float().cpu().numpy())


def _need_values(run: Run, what: str) -> None:
    if not run.values:
        raise Invalid(f"values: run {run.run_id} did not keep V, which {what} needs; POST /api/runs again with "
                      '"values": true (a run of its own id)')


class ExplainService:
    """The computation, value weighting and Q/K geometry of one head of a cached run."""

    def __init__(self, hub: ModelHub, settings: Settings, cache_size: int = 32):
        self.hub = hub
        self.settings = settings
        # value norms and row normalisers (O(T^2) to compute) per head: small tensors, never the capture itself, so
        # an evicted run is not kept alive here
        self._weighted: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._cache_size = cache_size

    # -- one query, step by step --------------------------------------------------------------
    def _computation(self, adapter: ModelAdapter, run: Run, kind: str, layer: int, head: int, query: int) -> dict:
        t0 = time.perf_counter()
        rec = run.recorder.get(kind, layer)
        t_q, t_k = rec.shape
        if not 0 <= query < t_q:
            raise Invalid(f"query: {query} is outside 0..{t_q - 1} ({t_q} query tokens in {kind})")
        w_o, b_o = adapter.output_projection(kind, layer) if run.values else (None, None)
        step = query_computation(rec, head, query, w_o)
        q_pre = k_pre = None
        if kind != "cross":
            q_pos = torch.tensor([query + rec.spec.q_offset])
            unrotated = adapter.unrotate(step.q[None, None, None], q_pos)
            if unrotated is not None:
                q_pre = unrotated[0, 0, 0]
                k_pre = adapter.unrotate(step.k[None, None], torch.arange(t_k))[0, 0]
        q_tokens, k_tokens = run.axis_tokens(kind)
        scores = step.scores.float().cpu().numpy()
        return {
            "run_id": run.run_id, "kind": kind, "layer": layer, "head": head, "query": query,
            "query_token": q_tokens[query], "key_tokens": k_tokens, "head_dim": int(step.q.shape[0]),
            "kv_head": rec.kv_head(head), "scale": step.scale, "values": run.values,
            "q": _floats(step.q), "k": _floats(step.k), "q_pre_rotary": _floats(q_pre),
            "k_pre_rotary": _floats(k_pre), "products": _floats(step.products), "dot": _floats(step.dot),
            "bias": _floats(step.bias), "mask": step.mask.tolist(),
            "scores": [float(s) if m else None for s, m in zip(scores, step.mask.tolist())],
            "weights": _floats(step.weights), "v": _floats(step.v), "weighted_v": _floats(step.weighted_v),
            "output": _floats(step.output), "output_projected": _floats(step.output_projected),
            "output_bias": _floats(b_o) if b_o is not None else None,
            "value_norms": _floats(step.value_norms),
            "server_ms": (time.perf_counter() - t0) * 1e3,
        }

    async def computation(self, run: Run, kind: str | None, layer: int, head: int, query: int) -> dict:
        kind = run.check(kind, layer, head)
        return await self.hub.call(run.model, run.backend,
                                   lambda a: self._computation(a, run, kind, layer, head, query))

    # -- value-weighted attention -------------------------------------------------------------
    def _value_weighted(self, adapter: ModelAdapter, run: Run, kind: str, layer: int, head: int) -> ValueWeighted:
        key = (run.run_id, kind, layer, head)
        rec = run.recorder.get(kind, layer)
        kept = self._weighted.get(key)
        if kept is not None:
            self._weighted.move_to_end(key)
            return ValueWeighted(rec, head, kept[0], log_z=kept[1])
        w_o, _ = adapter.output_projection(kind, layer)
        view = ValueWeighted(rec, head, value_norms(rec, head, w_o))
        self._weighted[key] = (view.norms, view.log_z())
        while len(self._weighted) > self._cache_size:
            self._weighted.popitem(last=False)
        return view

    async def value_weighted(self, run: Run, kind: str | None, layer: int, head: int) -> tuple[str, ValueWeighted]:
        """(kind, the head read as value-weighted attention, Kobayashi et al. 2020); 422 without values."""
        kind = run.check(kind, layer, head)
        _need_values(run, "weighting=value_norm")
        view = await self.hub.call(run.model, run.backend, lambda a: self._value_weighted(a, run, kind, layer, head))
        return kind, view

    # -- sparse patterns on a real head ---------------------------------------------------------
    async def sparse(self, run: Run, kind: str | None, layer: int, head: int, name: str, params: dict) -> dict:
        kind = run.check(kind, layer, head)
        return await in_thread(sparse_view, run, kind, layer, head, name, params, self.settings.sparse_max_tokens)

    async def sparse_cost(self, name: str, params: dict, seq_lens: list[int], n_heads: int, head_dim: int) -> dict:
        limit = self.settings.sparse_cost_max_len
        if max(seq_lens) > limit:
            raise TooLarge(f"seq_lens: {max(seq_lens)} is over sparse_cost_max_len {limit}")
        cells = n_heads * max(seq_lens) ** 2
        if cells > self.settings.benchmark_max_cells:
            raise TooLarge(f"seq_lens: n_heads x T^2 = {cells:,} is over benchmark_max_cells "
                           f"{self.settings.benchmark_max_cells:,}")
        return await in_thread(sparse_cost, name, params, seq_lens, n_heads, head_dim, 3,
                               self.settings.benchmark_budget_s)

    # -- query/key geometry ---------------------------------------------------------------------
    def _qk(self, runs: list[Run], kind: str, layer: int, head: int, method: str, seed: int) -> dict:
        t0 = time.perf_counter()
        qs, ks, role, position, token, source = [], [], [], [], [], []
        for run in runs:  # several texts pooled: the queries of all of them, then their keys
            rec = run.recorder.get(kind, layer)
            qs.append(rec.q[0, head])
            ks.append(rec.k[0, rec.kv_head(head)])
        for r_role, tensors, tokens_of in (("query", qs, 0), ("key", ks, 1)):
            for i, (run, t) in enumerate(zip(runs, tensors)):
                labels = run.axis_tokens(kind)[tokens_of]
                role += [r_role] * t.shape[0]
                position += list(range(t.shape[0]))
                token += list(labels)
                source += [i] * t.shape[0]
        q, k = qk_joint(torch.cat(qs), torch.cat(ks))
        coords = project_2d(torch.cat([q, k]).cpu().numpy(), method, seed)
        return {
            "run_id": runs[0].run_id, "runs": [r.run_id for r in runs], "kind": kind, "layer": layer, "head": head,
            "method": method, "seed": seed, "role": role, "position": position, "token": token, "run": source,
            "x": np.ascontiguousarray(coords[:, 0]), "y": np.ascontiguousarray(coords[:, 1]),
            "server_ms": (time.perf_counter() - t0) * 1e3,
        }

    async def qk(self, run: Run, kind: str | None, layer: int, head: int, method: str, seed: int,
                 others: list[Run] = ()) -> dict:
        """The joint Q/K map of one head; ``others``: runs of the same model whose points are pooled in."""
        kind = run.check(kind, layer, head)
        for other in others:
            if other.model != run.model:
                raise Invalid(f"also: run {other.run_id} is of model {other.model!r}, not {run.model!r}; pooled "
                              "texts must come from one model")
            other.check(kind, layer, head)
        runs = [run, *others]
        n_points = sum(sum(r.recorder.get(kind, layer).shape) for r in runs)
        limit = self.settings.qk_max_points
        if method != "pca" and n_points > limit:
            raise TooLarge(f"method: {method} of {n_points} queries + keys is over qk_max_points {limit}; use "
                           "method=pca or shorter texts")
        if method == "umap" and not umap_available():
            raise Unavailable("method: 'umap' needs umap-learn, the optional extra: pip install 'attnlab[umap]'")
        if method == "umap" and not self.settings.qk_umap:
            raise Unavailable("method: 'umap' is turned off on this server (qk_umap); use pca or tsne")
        return await in_thread(self._qk, runs, kind, layer, head, method, seed)


# the trained positional tables the Positional page shows: a registered model, or a zoo checkpoint not served
# as a model (the extrapolation lab's learned-table decoder)
TRAINED_SOURCES: dict[str, str] = {
    "minilm": "MiniLM-L6 (BERT): learned absolute positions, 512 x 384",
    "seq2seq": "the zoo's T5-style encoder-decoder: learned relative biases per bucket and head",
    "extrapolation-learned": "the extrapolation lab's decoder with a learned table (models/zoo/extrapolation/learned)",
}


class TrainedPositional:
    """GET /api/positional/trained/{source}: ``attnlab.models.positional_tables`` of a trained model."""

    def __init__(self, hub: ModelHub, settings: Settings):
        self.hub = hub
        self.settings = settings
        self._zoo: dict[str, torch.nn.Module] = {}

    def _zoo_model(self, source: str) -> torch.nn.Module:
        from attnlab.models import load_model

        if source not in self._zoo:
            directory = self.settings.zoo_dir / "extrapolation" / "learned"
            if not (directory / "model.safetensors").exists():
                raise Unavailable(f"source: {source!r} needs {directory} (run `attnlab lab extrapolation`)")
            self._zoo[source] = load_model(directory).eval()
        return self._zoo[source]

    async def describe(self, source: str, max_len: int) -> dict:
        from attnlab.models.positional_tables import positional_tables

        if source == "extrapolation-learned":
            model = await in_thread(self._zoo_model, source)
        else:
            model = (await self.hub.adapter(source)).model
        out = await in_thread(positional_tables, model, max_len)
        if not out["tables"] and not out["t5_biases"]:
            raise Invalid(f"source: {source!r} has no learned positional table or T5 bias")
        return {"source": source, "description": TRAINED_SOURCES[source], "max_len": max_len, **out}


def build_pattern(name: str, params: dict):
    """A Longformer or BigBird pattern from the request's parameters; 422 naming the field when invalid."""
    try:
        return make_pattern(name, **params)
    except ValueError as err:
        field = next((k for k in params if k in str(err)), "pattern")
        raise Invalid(f"{field}: {err}") from None


def sparse_view(run: Run, kind: str, layer: int, head: int, name: str, params: dict, limit: int) -> dict:
    """A pattern applied to one head of a run (attnlab.models.explain.apply_pattern), as the API answers it."""
    rec = run.recorder.get(kind, layer)
    t_q, t_k = rec.shape
    if max(t_q, t_k) > limit:
        raise TooLarge(f"text: the sparse view answers three {t_q}x{t_k} maps; at most sparse_max_tokens {limit} "
                       "tokens")
    pattern = build_pattern(name, params)
    out = apply_pattern(rec, head, pattern)
    q_tokens, k_tokens = run.axis_tokens(kind)
    return {"run_id": run.run_id, "kind": kind, "layer": layer, "head": head, "pattern": name,
            "params": pattern.describe(1)["params"], "row_tokens": q_tokens, "col_tokens": k_tokens,
            "dense": out.dense.cpu().numpy(), "allowed": out.allowed.to(torch.uint8).cpu().numpy(),
            "sparse": out.sparse.cpu().numpy(),
            "kept": out.kept.cpu().numpy(), "kept_mean": float(out.kept.mean()), "kept_min": float(out.kept.min()),
            "density": out.density, "max_abs_diff": out.max_abs_diff}


def sparse_cost(name: str, params: dict, seq_lens: list[int], n_heads: int, head_dim: int, runs: int = 3,
                budget_s: float | None = None) -> dict:
    """Our flash backend's forward, dense vs with the pattern (it skips the blocks the pattern empties), on
    random Q, K, V of (1, n_heads, T, head_dim) float32 at each T: median ms of ``runs`` calls after one warm-up,
    and the pattern's density at T. Rows that start after ``budget_s`` come back with ``skipped``."""
    pattern = build_pattern(name, params)
    flash = get_backend("flash")
    gen = torch.Generator().manual_seed(0)
    rows = []
    start = time.perf_counter()
    for t in seq_lens:
        row = {"seq_len": t, "density": pattern.density(t)}
        if budget_s is not None and time.perf_counter() - start > budget_s:
            rows.append({**row, "skipped": "time budget (benchmark_budget_s)"})
            continue
        q, k, v = (torch.randn(1, n_heads, t, head_dim, generator=gen) for _ in range(3))
        for label, spec in (("dense", AttentionSpec(head_dim**-0.5)),
                            ("sparse", AttentionSpec(head_dim**-0.5, pattern=pattern))):
            flash(q, k, v, spec)
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                flash(q, k, v, spec)
                times.append((time.perf_counter() - t0) * 1e3)
            row[f"{label}_ms"] = float(np.median(times))
        row["speedup"] = row["dense_ms"] / max(row["sparse_ms"], 1e-9)
        rows.append(row)
    return {"pattern": name, "params": pattern.describe(1)["params"], "backend": "flash", "n_heads": n_heads,
            "head_dim": head_dim, "runs": runs, "rows": rows}


def umap_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("umap") is not None


def project_2d(points: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """(n, d) -> (n, 2) float32 by PCA (scikit-learn, deterministic: signs fixed by ``svd_flip``), t-SNE
    (van der Maaten & Hinton 2008; scikit-learn, PCA-initialised, seeded) or UMAP (McInnes et al. 2018,
    arXiv 1802.03426; umap-learn, seeded). Fewer than 3 points or dimensions are padded with zeros."""
    n, d = points.shape
    if n < 3 or d < 2:
        out = np.zeros((n, 2), dtype=np.float32)
        out[:, : min(d, 2)] = points[:, : min(d, 2)]
        return out
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, svd_solver="full").fit_transform(points).astype(np.float32)
    if method == "tsne":
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (n - 1) / 3))
        return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(
            points).astype(np.float32)
    if method == "umap":
        import umap

        return umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed).fit_transform(
            points).astype(np.float32)
    raise ValueError(f"unknown projection {method!r}; known: {QK_METHODS}")
