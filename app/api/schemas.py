"""Request and response models of the REST API (pydantic v2), with explicit bounds.

Requests say exactly what the server accepts, so the OpenAPI document is the contract: every closed
set is a Literal taken from its registry (backends, positional schemes), every fixed bound a Field
bound, and every bound the server's settings set a ``Limit`` (app.api.limits), validated against the
serving app's settings and written into its document. What JSON Schema cannot say (a layer the
model does not have, text longer than the model's positions, a budget of layers x heads x T^2) is
checked in the services, with 422 or 413 (app.services.errors).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Query
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
)

from attnlab.models.attention import BACKENDS
from attnlab.models.positional import POSITIONAL

from .limits import Limit, setting_value

MAX_LAYERS = 1024
MAX_HEADS = 1024
DEFAULT_NEW_TOKENS = 32


ModelId = Annotated[str, StringConstraints(min_length=1, max_length=200), Field(
    description="a model id from GET /api/models", examples=["minilm"])]
# each text field at most max_text_chars; the text fields of one request together too (a 413: app.services.inputs).
# Whitespace is text like any other: a text is refused only when the model's tokenizer finds no token in it
# (app.services.inputs.encode_checked), the one rule for every model
Text = Annotated[str, StringConstraints(min_length=1), Limit("max_text_chars")]
BackendName = Annotated[Literal[tuple(BACKENDS)], Field(
    description="attention backend (one of the model's `backends`); default: math where the model has it")]
# a backend, or `auto`: chosen by the input's length (flash for long inputs), one Literal so that a wrong name
# gets one message listing every choice
BackendChoice = Annotated[Literal[(*BACKENDS, "auto")], Field(
    description="attention backend, or `auto` (flash from auto_flash_min_tokens tokens on, where the model has it; "
                "else the model's default)")]
Kind = Literal["encoder", "decoder", "cross"]
SelfKind = Literal["encoder", "decoder"]  # kinds that compare a sequence with itself (head scores, rollout)
Scheme = Literal[tuple(POSITIONAL)]


def _json_integer(value: object) -> object:
    """5.0 is an integer in JSON Schema (and in JavaScript); Strict bodies take it as 5, and no other float."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


# last in an int's Annotated[...] of a request body, so it runs first and the bounds stay JSON Schema keywords
JSON_INT = BeforeValidator(_json_integer)
LayerIndex = Annotated[int, Field(ge=0, lt=MAX_LAYERS), JSON_INT]
HeadIndex = Annotated[int, Field(ge=0, lt=MAX_HEADS), JSON_INT]
Floats1 = list[float]
Floats2 = list[list[float]]
Floats3 = list[list[list[float]]]
Floats4 = list[list[list[list[float]]]]
Timings = dict[str, float | None]
Offsets = list[Annotated[list[int], Field(min_length=2, max_length=2)] | None]
Segments = list[Literal[0, 1]] | None

OFFSETS_DOC = ("[start, end) characters of the text each token came from; null for a token the tokenizer added "
               "itself ([CLS], [SEP], <bos>)")
SPECIAL_DOC = "whether each token's id is a control id (typed in the text or added by the tokenizer)"
SEGMENTS_DOC = ("sentence pairs: 0 for text, 1 for text_pair (offsets then index the segment's own text); "
                "null without a pair")
TOKENS_DOC = """**Tokens.** An answer that carries tokens carries, per token: `tokens` (display labels),
`token_ids` (the ids the model sees), `offsets` (`[start, end)` characters of the text the token came from; `null`
for a token the tokenizer added itself, such as BERT's `[CLS]`), `special` (the id is a control id) and, for
sentence pairs, `segments` (0 for `text`, 1 for `text_pair`; offsets index the segment's own text). The raw text
of a token is `text[start:end]`.

Labels are display text, one rule for every view and export: a special token reads as its vocabulary string
(`[CLS]`, `<|im_end|>`), a WordPiece continuation keeps `##`; whitespace is visible (`·the` for " the", `↵` for
`\n`, `␍` for `\r`, `⇥` for a tab, `⍽` for a no-break space, `⟨U+200B⟩` for other invisible characters); a
token that holds part of a character (byte-level BPE: SmolLM2, GPT-2) shows the character and which of its tokens
it is, 東京 → `東₁ 東₂ 京₁ 京₂`; bytes that make no character read as hex, `⟨E7 8A⟩`. The unknown token stands for
text the vocabulary lacks: it is not `special`, and reads as its vocabulary string followed by the text it replaced,
`[UNK]😀`, `<unk>東`.

**Which texts are accepted.** Whitespace is text: a text is refused (422, `text: gives no token of its own`) only
when the model's tokenizer keeps nothing of it, so that every token would be one the tokenizer adds (BERT's WordPiece
drops whitespace, U+200B and NUL; a byte-level BPE keeps every character).

**Typed control strings.** A control string typed in the text (`[SEP]`, `[MASK]`, `<|im_end|>`, `<mask>`) is
tokenized as the model's own tokenizer does: it becomes the control token, the model sees the control id, and it
is flagged `special` (head scores such as `special_sink` count it). Unlike a token the tokenizer added, it keeps its
span in `offsets`. A control token the model generates (`<eos>`) is no part of the decoded text: offsets null."""


class Strict(BaseModel):
    """A request body: no unknown fields, and JSON types as the schema says (no 0 for false, no "3" for 3)."""

    model_config = ConfigDict(extra="forbid", strict=True)


# -- models and health --------------------------------------------------------------------------------
class ExampleOut(BaseModel):
    label: str = Field(description="what the example shows")
    text: str
    pages: list[str] = Field(description="pages the example is meant for (explorer, heads, generate, seq2seq, "
                                         "backends); empty: every page")


class FocusOut(BaseModel):
    kind: Kind
    layer: int
    head: int
    why: str


class ModelCardOut(BaseModel):
    expects: str = Field(description="one line: what the model was trained on and the input it reads")
    examples: list[ExampleOut]
    focus: FocusOut | None = Field(None, description="the model's most telling head (pages open it first)")


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
    trained_positions: int | None = Field(None, description="the length a from-scratch model was trained at, where it "
                                          "may run past it (up to max_positions); null otherwise")
    card: ModelCardOut | None = Field(None, description="trained on / expects, example inputs (attnlab.models.cards)")


class ModelDetail(ModelInfoOut):
    loaded: bool
    config: dict[str, object] | None = Field(None, description="the model's full config (for the architecture page)")


class Health(BaseModel):
    status: Literal["ok", "preparing"] = Field(description="`preparing` while models load in the background at "
                                                            "start-up (prepare_on_start); the server answers meanwhile")
    version: str
    loaded_models: list[str]
    preparing: dict[str, str] = Field(default_factory=dict, description="model id -> what its preparation is doing")
    n_models: int
    uptime_s: float
    device: Literal["cpu", "cuda"] = Field(description="where the models run (ATTNLAB_DEVICE)")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(description="the models' dtype (ATTNLAB_DTYPE)")


# -- attention backends on this machine (GET /api/backends) -----------------------------------------
class SdpaKernelOut(BaseModel):
    kernel: Literal["flash", "efficient", "cudnn", "math"]
    available: bool
    reason: str | None = Field(description="why the kernel cannot run on the models' device, when it cannot")
    paper: str


class BackendStatusOut(BaseModel):
    name: str
    description: str
    returns_lse: bool
    returns_weights: bool
    devices: list[Literal["cpu", "cuda"]]
    registered: bool = Field(description="offered by the backend toggle (the `backend` enum) on this server")
    available: bool = Field(description="can run on the models' device")
    reason: str | None = Field(description="why not, when it cannot")


class BackendsReport(BaseModel):
    device: Literal["cpu", "cuda"]
    dtype: Literal["float32", "bfloat16", "float16"]
    name: str = Field(description="the GPU's name, or cpu")
    memory_total_bytes: int | None = None
    memory_free_bytes: int | None = None
    memory_allocated_bytes: int | None = None
    torch: str
    cuda_available: bool
    cuda_version: str | None
    triton: str | None = Field(description="the installed Triton's version, or null")
    triton_interpreter: bool = Field(description="TRITON_INTERPRET=1: Triton kernels run on CPU (tests only)")
    sdpa_choice: Literal["flash", "efficient", "cudnn", "math", "overrideable"] | None = Field(
        description="the kernel SDPA takes here for a causal 8 x 1024 x 64 call in the models' dtype")
    sdpa_kernels: list[SdpaKernelOut]
    backends: list[BackendStatusOut]


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
    tokens: list[str] = Field(description="labels of the query tokens (rows); see the tokens note of the endpoint")
    token_ids: list[int] = Field(description="ids of the query tokens")
    offsets: Offsets = Field(description=OFFSETS_DOC)
    special: list[bool] = Field(description=SPECIAL_DOC)
    segments: Segments = Field(None, description=SEGMENTS_DOC)
    key_tokens: list[str] = Field(description="labels of the key tokens (columns); equal to tokens for self-attention")
    key_token_ids: list[int]
    key_offsets: Offsets
    key_special: list[bool]
    key_segments: Segments = None
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
    target_text: str | None = Field(None, description="the decoded target (the decoder's generated tokens, control "
                                                      "tokens left out), which decoder token offsets index")
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
    backend: BackendChoice | None = Field(
        None, description="none or `auto`: flash from auto_flash_min_tokens tokens on (exact, O(T) memory; where "
                          "the model has it), else the model's default (math); the answer's `backend` says which ran")
    values: bool = Field(False, description="also keep V per KV head (as many bytes again as K), for "
                                            "/computation and weighting=value_norm; part of the run_id")


class RunResponse(BaseModel):
    run_id: str = Field(description="content hash of (model, text, text_pair, backend): the same on every worker")
    model: str
    backend: str
    tokens: list[str] = Field(description="labels of the input tokens; see the tokens note of the endpoint")
    token_ids: list[int]
    offsets: Offsets = Field(description=OFFSETS_DOC)
    special: list[bool] = Field(description=SPECIAL_DOC)
    segments: Segments = Field(None, description=SEGMENTS_DOC)
    target_tokens: list[str] | None = Field(None, description="encoder-decoder: labels of the decoder's tokens")
    target_token_ids: list[int] | None = None
    target_offsets: Offsets | None = Field(None, description="into target_text; null for the decoder's start token "
                                                             "and other control tokens (`<eos>`)")
    target_special: list[bool] | None = None
    target_text: str | None = Field(None, description="encoder-decoder: the decoded target, control tokens left out")
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
    values: bool = Field(False, description="whether the capture keeps V (requested with values: true)")

    @classmethod
    def of(cls, run, cached: bool) -> RunResponse:
        """The answer of an ``attnlab.services.runs.Run``: the same for POST /api/runs and the `done` event of
        POST /api/runs/stream."""
        rec = run.recorder
        first = run.kinds[0]
        return cls(
            run_id=run.run_id, model=run.model, backend=run.backend, **run.token_fields(), kinds=run.kinds,
            n_layers=rec.layers(first), n_heads=rec.get(first, 0).n_heads,
            layers_by_kind={k: rec.layers(k) for k in run.kinds}, n_tokens=len(run.tokens), timings=run.timings,
            head_stats=run.head_stats, cached=cached, nbytes=run.nbytes(), values=run.values)


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
    weighting: Literal["raw", "value_norm"] = Field(
        "raw", description="raw: the softmax weights; value_norm: alpha_ij ||v_j W_O^h|| normalised per row "
                           "(Kobayashi et al. 2020, arXiv 2004.10102)")


class HeadsResponse(BaseModel):
    run_id: str
    model: str
    scores: HeadStats = Field(description="kind -> score name -> [layer][head]")


class RolloutResponse(BaseModel):
    run_id: str
    kind: Kind
    tokens: list[str]
    token_ids: list[int]
    offsets: Offsets = Field(description=OFFSETS_DOC)
    special: list[bool] = Field(description=SPECIAL_DOC)
    segments: Segments = Field(None, description=SEGMENTS_DOC)
    shape: list[int] = Field(description="[L, T, T]")
    add_residual: bool
    rollout: Floats3 = Field(description="Abnar & Zuidema 2020 rollout after each layer")
    flow: Floats3 = Field(description="widest-path (max-min) flow approximation after each layer")


# -- generation -----------------------------------------------------------------------------------------
class GenerateRequest(Strict):
    model: ModelId
    prompt: Text
    max_new_tokens: Annotated[int, Field(ge=1), Limit("max_new_tokens"), JSON_INT] = Field(
        default_factory=lambda: min(DEFAULT_NEW_TOKENS, setting_value("max_new_tokens")),
        description=f"default {DEFAULT_NEW_TOKENS}, or the server's max_new_tokens when that is lower")
    temperature: float = Field(1.0, ge=0.0, le=10.0, allow_inf_nan=False, description="0 = greedy")
    top_k: Annotated[int, Field(ge=1, le=100_000), JSON_INT] | None = None
    top_p: float | None = Field(None, gt=0.0, le=1.0, allow_inf_nan=False)
    seed: Annotated[int, Field(ge=0, le=2**53 - 1), JSON_INT] = Field(
        0, description="at most 2^53 - 1, the largest integer a JSON number holds exactly everywhere")
    backend: BackendChoice | None = Field(
        None, description="none or `auto`: flash for prompts from auto_flash_min_tokens tokens on (where the model "
                          "has it), else the model's default; the answer's `backend` says which ran")
    n_top: Annotated[int, Field(ge=1, le=50), JSON_INT] = Field(
        5, description="how many most likely tokens each step reports")
    stream: bool = Field(False, description="true: text/event-stream, one `token` event per step, then `summary`")


class TopToken(BaseModel):
    token: str = Field(description="label, as the token would read after the tokens so far")
    token_id: int
    prob: float


class Relabel(BaseModel):
    step: int
    token: str


class GenerateStepOut(BaseModel):
    step: int
    token: str = Field(description="label of the new token as known at this step: the bytes of a character not yet "
                                   "complete read as hex (⟨E7 8A⟩) until a later step's `relabel` names it")
    token_id: int
    text: str = Field(description="the text this step completes; bytes of an unfinished character are held back "
                                  "until the step that completes it")
    offsets: Annotated[list[int], Field(min_length=2, max_length=2)] | None = Field(
        description="[start, end) of the token in the generated text (a fragment of a character has the character's "
                    "span); null for a control token (`<eos>`, `<|im_end|>`), which adds no text")
    relabel: list[Relabel] = Field(default_factory=list, description="earlier steps whose labels this step "
                                                                     "completed (their character is now whole)")
    top: list[TopToken]
    context_len: int
    attention: Floats3 = Field(description="[layer][head][key]: the attention row that produced this token")


class GenerateSummary(BaseModel):
    model: str
    backend: str
    seed: int
    prompt_tokens: list[str]
    prompt_token_ids: list[int]
    prompt_offsets: Offsets = Field(description="into the prompt; " + OFFSETS_DOC)
    prompt_special: list[bool]
    tokens: list[str] = Field(description="labels of the generated tokens (every character complete)")
    token_ids: list[int]
    offsets: Offsets = Field(description="into generated_text; null for a control token, which adds no text")
    special: list[bool] = Field(description=SPECIAL_DOC)
    text: str = Field(description="prompt + generated_text, exactly")
    generated_text: str = Field(description="the tokenizer's decode of token_ids, control tokens (special) left out")
    tail_text: str = Field(description="text held back at the end (a character the last step left unfinished, as "
                                       "the decoder writes it: U+FFFD); prompt + the steps' text + tail_text == text")
    stopped: Literal["max_new_tokens", "eos", "max_positions", "timeout", "disconnect"]
    timings: Timings


class GenerateResponse(BaseModel):
    steps: list[GenerateStepOut]
    summary: GenerateSummary


# -- positional and benchmark --------------------------------------------------------------------------


# GET /api/positional/{scheme} and /api/figures/similarity: one set of bounds, from the settings
PositionalDModel = Annotated[int, Query(ge=2), Limit("positional_max_d_model")]
PositionalLen = Annotated[int, Query(ge=1), Limit("positional_max_len")]
PositionalHeads = Annotated[int, Query(ge=1, le=64)]


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
    figures: dict[str, dict[str, object]] | None = Field(None, description=(
        "with `format=figure`: Plotly figure JSON by name (matrix, rotations, slopes, buckets: those the scheme "
        "has), drawn by app.web.figures from the fields above"))


class SchemeOut(BaseModel):
    """A positional scheme as the pages show it (models.positional holds these, once)."""

    name: str
    label: str
    summary: str
    paper: str | None
    in_similarity: bool
    parameters: list[Literal["d_model", "n_heads", "max_len"]] = Field(
        description="the sizes this scheme's figures depend on (the page disables the others)")


def _distinct(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError(f"each backend at most once (got {values})")
    return values


# each backend once: a benchmark measures each backend, and the same one twice would only cost time
Backends = Annotated[list[BackendName], Field(min_length=1, max_length=len(BACKENDS),
                                              json_schema_extra={"uniqueItems": True}), AfterValidator(_distinct)]


SeqLen = Annotated[int, Field(ge=1), Limit("benchmark_max_seq_len", "√benchmark_max_cells"), JSON_INT]


class SyntheticBenchmarkRequest(Strict):
    # at most √benchmark_max_cells: a longer sequence is over the budget (n_heads·T²) even with one head
    seq_lens: list[SeqLen] = Field(min_length=1, max_length=12, description=(
        "sequence lengths; each at most √benchmark_max_cells, and n_heads·T² at most benchmark_max_cells"))
    backends: Backends = Field(default_factory=lambda: ["math", "sdpa", "flash"])
    causal: bool = True
    n_heads: Annotated[int, Field(ge=1, le=64), JSON_INT] = 4
    head_dim: Annotated[int, Field(ge=8, le=256), JSON_INT] = 64
    passes: Literal["fwd", "fwd_bwd"] = "fwd"


class ModelBenchmarkRequest(Strict):
    model: ModelId
    text: Text
    backends: Backends = Field(default_factory=lambda: ["math", "sdpa", "flash"])


def _benchmark_form(body: object) -> str:
    """The form a benchmark body asks for: a body naming a model is the model form, any other the synthetic one."""
    named = "model" in body if isinstance(body, dict) else isinstance(body, ModelBenchmarkRequest)
    return "ModelBenchmarkRequest" if named else "SyntheticBenchmarkRequest"


# discriminated, so an error names only the fields of the form the body chose (`seq_lens.0: ...`), not both forms'.
# The tags (class names) appear in pydantic's error locations; app.main leaves them out of the field it names
BenchmarkRequest = Annotated[
    Annotated[SyntheticBenchmarkRequest, Tag("SyntheticBenchmarkRequest")]
    | Annotated[ModelBenchmarkRequest, Tag("ModelBenchmarkRequest")],
    Discriminator(_benchmark_form),
]
UNION_TAGS = frozenset({"SyntheticBenchmarkRequest", "ModelBenchmarkRequest"})

BenchmarkValue = float | int | str | bool | None


class BenchmarkResponse(BaseModel):
    form: Literal["synthetic", "model"]
    budget_s: float
    results: list[dict[str, BenchmarkValue | list[BenchmarkValue]]] = Field(description=(
        "One row per backend (and shape). Memory is what torch allocates, never process RSS: synthetic rows' "
        "`peak_memory_bytes` is the most extra memory torch held during one attention call; model rows' "
        "`attention_peak_memory_bytes` is the same for the forward's largest attention kernel call (projections "
        "and capture outside it) and `forward_peak_memory_bytes` for the whole forward. `memory_method` says how "
        "(CPU: torch.profiler allocation events; CUDA: max_memory_allocated). See models.benchmark for every field."))
    figure: dict[str, object] | None = Field(None, description=(
        "with `format=figure`: Plotly figure JSON of the results (time and memory vs T, log-log; app.web.figures)"))


class BenchmarkLatest(BenchmarkResponse):
    source: Literal["shipped", "this server"] = Field(description=(
        "`this server`: the last benchmark this process ran; `shipped`: measured when attnlab was packaged "
        "(bench/ship_benchmark.py), on `machine`"))
    request: dict[str, BenchmarkValue | list[BenchmarkValue]] = Field(description="the request it answered")
    machine: str = Field(description="where it was measured: CPU or GPU, torch threads, torch version")
    measured_at: str = Field(description="UTC time of the measurement, ISO 8601")


class ErrorOut(BaseModel):
    detail: str
    errors: list[dict[str, object]] | None = None


# -- long inputs: the demo passage, streamed runs, batched overviews (app.api.routes.longrun) -----------------
class LongTextResponse(BaseModel):
    model: str
    text: str = Field(description="the bundled passage, numbered copies cut at a sentence end to fit `limit`")
    n_tokens: int = Field(description="tokens of `text` for this model (special tokens included)")
    limit: int = Field(description="the fewest of the model's max_positions, the tokens "
                                   "whose capture fits run_cache_bytes, long_text_tokens and `tokens`")
    limit_reason: Literal["max_positions", "run_cache_bytes", "long_text_tokens", "tokens"]
    backend: str = Field(description="what backend `auto` picks for this text")
    backend_reason: str
    estimate_s: float = Field(description="estimated seconds of its run on this server (from its recent runs)")
    dropped: list[str] = Field(description="characters the model's vocabulary lacks, left out of the passage")
    lowercased: bool = Field(description="upper-case letters the vocabulary lacks were lower-cased")


class StreamRunRequest(Strict):
    model: ModelId
    text: Text
    text_pair: Text | None = None
    backend: BackendChoice = Field(
        "auto", description="`auto`: flash from auto_flash_min_tokens tokens on (where the model has it), else math")
    values: bool = Field(False, description="also keep V (the computation view, value weighting): a run of its own id")


class OverviewsResponse(BaseModel):
    run_id: str
    kind: Kind
    layers: list[int] = Field(description="[a, b): the layers covered")
    pool: int
    pool_mode: Literal["max", "mean"]
    factor: int = Field(description="each cell pools factor x factor weights (1: exact)")
    shape: list[int] = Field(description="[layers, heads, rows, cols]")
    attention: list[list[Floats2]]
