"""Response models of the explain views: /api/runs/{run_id}/computation and /qk, trained positional tables
(app.api.routes.explain over app.services.explain)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from .schemas import Floats1, Floats2, Kind

Weighting = Literal["raw", "value_norm"]
QKMethod = Literal["pca", "tsne", "umap"]


class ComputationResponse(BaseModel):
    """One query's attention in one head, step by step. T keys, d = head_dim, float32."""

    run_id: str
    kind: Kind
    layer: int
    head: int
    query: int = Field(description="the query token's index")
    query_token: str
    key_tokens: list[str]
    head_dim: int
    kv_head: int = Field(description="the key/value head this query head reads (grouped-query attention)")
    scale: float = Field(description="the factor of q.k: 1/sqrt(d) in most models")
    values: bool = Field(description="whether the run kept V: the value fields are null without it")
    q: Floats1 = Field(description="[d] the query, after rotary where the model uses it (as used)")
    k: Floats2 = Field(description="[T, d] the keys, after rotary")
    q_pre_rotary: Floats1 | None = Field(description="[d] before rotary (RoPE models); null otherwise")
    k_pre_rotary: Floats2 | None = Field(description="[T, d] before rotary (RoPE models); null otherwise")
    products: Floats2 = Field(description="[T, d] q * k_j elementwise (BertViz's neuron view); rows sum to dot")
    dot: Floats1 = Field(description="[T] q . k_j")
    bias: Floats1 | None = Field(description="[T] additive bias (ALiBi, T5 relative); null without one")
    mask: list[bool] = Field(description="[T] true = the query may attend this key")
    scores: list[float | None] = Field(description="[T] dot * scale + bias; null where masked (-inf)")
    weights: Floats1 = Field(description="[T] softmax(scores): the map's row")
    v: Floats2 | None = Field(description="[T, d] the values (with values)")
    weighted_v: Floats2 | None = Field(description="[T, d] weights_j * v_j")
    output: Floats1 | None = Field(description="[d] sum_j weights_j v_j: the head's output")
    output_projected: Floats1 | None = Field(description="[d_model] the head's output through its slice of W_O")
    output_bias: Floats1 | None = Field(description="[d_model] W_O's bias, added once to the sum over heads")
    value_norms: Floats1 | None = Field(description="[T] ||v_j W_O^h||, Kobayashi et al. 2020 (arXiv 2004.10102)")
    server_ms: float


class QKResponse(BaseModel):
    """The joint 2-D embedding of one head's queries and keys (AttentionViz, arXiv 2305.03210): one point
    per query, then one per key."""

    run_id: str
    kind: Kind
    layer: int
    head: int
    method: QKMethod
    seed: int
    runs: list[str] = Field(description="the runs pooled: this one, then the `also` runs")
    run: list[int] = Field(description="per point, the index in `runs` it came from")
    role: list[Literal["query", "key"]]
    position: list[int]
    token: list[str]
    x: Floats1
    y: Floats1
    server_ms: float


TrainedSource = Literal["minilm", "seq2seq", "extrapolation-learned"]


class LearnedTableOut(BaseModel):
    name: str = Field(description="the module holding the table")
    n_positions: int
    d_model: int
    shown: int = Field(description="positions shown: the first min(max_len, n_positions)")
    similarity: Floats2 = Field(description="[shown][shown] cosine similarity of the position vectors")
    norms: Floats1 = Field(description="[shown] norm of each position vector")
    by_offset: Floats1 = Field(description="[shown] mean similarity of positions that far apart")


class T5BiasOut(BaseModel):
    name: str
    bidirectional: bool
    num_buckets: int
    max_distance: int
    n_heads: int
    buckets: Floats2 = Field(description="[num_buckets][n_heads] the learned bias of each bucket and head")
    offsets: list[int] = Field(description="key - query, from -(max_len-1) to max_len-1")
    bucket_of_offset: list[int]
    by_offset: Floats2 = Field(description="[n_heads][offsets] the bias each head adds at each offset")


class TrainedPositionalResponse(BaseModel):
    """The positional tables a trained model learned (not a scheme at its initialisation)."""

    source: TrainedSource
    description: str
    max_len: int
    tables: list[LearnedTableOut]
    t5_biases: list[T5BiasOut]
