"""Request and response models of the REST API (pydantic v2), with explicit bounds.

The static bounds here are the hard ceiling of the contract; the server's settings
may set lower limits (tokens, new tokens, budgets), checked in the services with
messages that name the setting.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

MAX_TEXT_CHARS = 100_000
MAX_LAYERS = 1024
MAX_HEADS = 1024


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain non-whitespace characters (got only whitespace)")
    return value


ModelId = Annotated[str, StringConstraints(min_length=1, max_length=200), Field(
    description="a model id from GET /api/models", examples=["minilm"])]
Text = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS), AfterValidator(_not_blank)]
BackendName = Annotated[str, StringConstraints(min_length=1, max_length=32), Field(
    description="attention backend (one of the model's `backends`); default: math where the model has it")]
Kind = Literal["encoder", "decoder", "cross"]
LayerIndex = Annotated[int, Field(ge=0, lt=MAX_LAYERS)]
HeadIndex = Annotated[int, Field(ge=0, lt=MAX_HEADS)]
Floats1 = list[float]
Floats2 = list[list[float]]
Floats3 = list[list[list[float]]]
Floats4 = list[list[list[list[float]]]]
Timings = dict[str, float | None]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- models and health --------------------------------------------------------------------------------
class ModelInfoOut(BaseModel):
    id: str
    family: Literal["encoder", "decoder", "encoder-decoder"]
    source: Literal["scratch", "pretrained"]
    n_layers: int
    n_heads: int
    d_model: int
    max_positions: int
    positional: str
    backends: list[str]
    available: bool
    reason: str | None = None
    n_kv_heads: int | None = None
    vocab_size: int | None = None
    n_params: int | None = None
    description: str = ""


class ModelDetail(ModelInfoOut):
    loaded: bool
    config: dict[str, object] | None = Field(None, description="the model's full config (for the architecture page)")


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    loaded_models: list[str]
    n_models: int
    uptime_s: float


# -- dense attention ----------------------------------------------------------------------------------
class AttentionRequest(Strict):
    model: ModelId
    text: Text
    text_pair: Text | None = Field(None, description="second segment (encoders such as BERT)")
    backend: BackendName | None = None
    layers: list[LayerIndex] | None = Field(None, min_length=1, max_length=MAX_LAYERS,
                                            description="layers to return (default all)")
    heads: list[HeadIndex] | None = Field(None, min_length=1, max_length=MAX_HEADS,
                                          description="heads to return (default all)")
    kind: Kind | None = Field(None, description="encoder-decoder models: one of encoder/decoder/cross (required "
                                                "with format=npy)")
    format: Literal["json", "npy"] = "json"


class AttentionMaps(BaseModel):
    kind: Kind
    tokens: list[str] = Field(description="query tokens (rows)")
    key_tokens: list[str] = Field(description="key tokens (columns); equal to tokens for self-attention")
    shape: list[int] = Field(description="[L, H, Tq, Tk]")
    layers: list[int]
    heads: list[int]
    attention: Floats4 = Field(description="weights [layer][head][query][key]; each row sums to 1")


class AttentionResponse(AttentionMaps):
    """Encoder or decoder models: one set of self-attention maps."""

    model: str
    backend: str
    timings: Timings


class Seq2SeqAttentionResponse(BaseModel):
    """Encoder-decoder models: encoder self-, decoder self- and cross-attention."""

    model: str
    backend: str
    timings: Timings
    encoder: AttentionMaps | None = None
    decoder: AttentionMaps | None = None
    cross: AttentionMaps | None = None


# -- runs ---------------------------------------------------------------------------------------------
RunId = Annotated[str, Field(pattern=r"^[0-9a-f]{32}$", description="32 hex digits, from POST /api/runs")]
HeadStats = dict[str, dict[str, Floats2]]


class RunRequest(Strict):
    model: ModelId
    text: Text
    text_pair: Text | None = None
    backend: BackendName | None = None


class RunResponse(BaseModel):
    run_id: str = Field(description="content hash of (model, text, text_pair, backend): the same on every worker")
    model: str
    backend: str
    tokens: list[str]
    target_tokens: list[str] | None = Field(None, description="encoder-decoder: the decoder's tokens")
    kinds: list[Kind]
    n_layers: int
    n_heads: int
    layers_by_kind: dict[str, int]
    n_tokens: int
    timings: Timings
    head_stats: HeadStats | None = Field(
        None, description="head-type scores per kind, [layer][head] each (see /heads); null past "
                          "head_stats_max_tokens, fetch them from GET /api/runs/{run_id}/heads")
    cached: bool
    nbytes: int = Field(description="bytes of the capture kept for this run")


class TileResponse(BaseModel):
    run_id: str
    kind: Kind
    layer: int
    head: int
    rows: list[int] = Field(description="[a, b): the query range covered")
    cols: list[int] = Field(description="[c, d): the key range covered")
    pool: int | None
    pool_mode: Literal["max", "mean"]
    factor: int = Field(description="each cell pools factor x factor weights (1: exact)")
    shape: list[int]
    row_tokens: list[str] | None = Field(description="labels of the rows (exact tiles only)")
    col_tokens: list[str] | None
    attention: Floats2


class HeadsResponse(BaseModel):
    run_id: str
    model: str
    scores: HeadStats = Field(description="kind -> score name -> [layer][head]")


class RolloutResponse(BaseModel):
    run_id: str
    kind: Kind
    tokens: list[str]
    shape: list[int] = Field(description="[L, T, T]")
    add_residual: bool
    rollout: Floats3 = Field(description="Abnar & Zuidema 2020 rollout after each layer")
    flow: Floats3 = Field(description="widest-path (max-min) flow approximation after each layer")


# -- generation -----------------------------------------------------------------------------------------
class GenerateRequest(Strict):
    model: ModelId
    prompt: Text
    max_new_tokens: int = Field(32, ge=1, le=4096, description="server limit: settings.max_new_tokens")
    temperature: float = Field(1.0, ge=0.0, le=10.0, allow_inf_nan=False, description="0 = greedy")
    top_k: int | None = Field(None, ge=1, le=100_000)
    top_p: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False)
    seed: int = Field(0, ge=0, le=2**63 - 1)
    backend: BackendName | None = None
    n_top: int = Field(5, ge=1, le=50, description="how many most likely tokens each step reports")
    stream: bool = Field(False, description="true: text/event-stream, one `token` event per step, then `summary`")


class TopToken(BaseModel):
    token: str
    prob: float


class GenerateStepOut(BaseModel):
    step: int
    token: str
    token_id: int
    top: list[TopToken]
    context_len: int
    attention: Floats3 = Field(description="[layer][head][key]: the attention row that produced this token")


class GenerateSummary(BaseModel):
    model: str
    backend: str
    seed: int
    prompt_tokens: list[str]
    tokens: list[str]
    token_ids: list[int]
    text: str
    stopped: Literal["max_new_tokens", "eos", "max_positions", "timeout", "disconnect"]
    timings: Timings


class GenerateResponse(BaseModel):
    steps: list[GenerateStepOut]
    summary: GenerateSummary


# -- positional and benchmark --------------------------------------------------------------------------
Scheme = Literal["none", "sinusoidal", "learned", "t5_relative", "rope", "alibi"]


class PositionalResponse(BaseModel):
    scheme: str
    d_model: int
    n_heads: int
    max_len: int
    matrix: Floats2 | None = None
    similarity: dict[str, Floats1] | None = None
    bias: Floats3 | None = None
    frequencies: Floats1 | None = None
    rotations: Floats2 | None = None
    slopes: Floats1 | None = None
    buckets: dict[str, list[int]] | None = None


class SyntheticBenchmarkRequest(Strict):
    seq_lens: list[Annotated[int, Field(ge=1, le=16384)]] = Field(min_length=1, max_length=12)
    backends: list[BackendName] = Field(default_factory=lambda: ["math", "sdpa", "flash"], min_length=1, max_length=8)
    causal: bool = True
    n_heads: int = Field(4, ge=1, le=64)
    head_dim: int = Field(64, ge=8, le=256)
    passes: Literal["fwd", "fwd_bwd"] = "fwd"


class ModelBenchmarkRequest(Strict):
    model: ModelId
    text: Text
    backends: list[BackendName] = Field(default_factory=lambda: ["math", "sdpa", "flash"], min_length=1, max_length=8)


BenchmarkValue = float | int | str | bool | None


class BenchmarkResponse(BaseModel):
    form: Literal["synthetic", "model"]
    budget_s: float
    results: list[dict[str, BenchmarkValue | list[BenchmarkValue]]]


class ErrorOut(BaseModel):
    detail: str
    errors: list[dict[str, object]] | None = None
