"""Request and response schemas of the training views: fill-mask, the two objectives, training runs, checkpointing."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from .schemas import JSON_INT, OFFSETS_DOC, SEGMENTS_DOC, SPECIAL_DOC, ModelId, Offsets, Segments, Strict, Text

TopK = Annotated[int, Field(ge=1, le=50, description="guesses per position (1..50)"), JSON_INT]


class FillMaskRequest(Strict):
    model: ModelId = Field(description="a masked LM (an encoder with a mask token), such as the zoo's `mlm`",
                           examples=["mlm"])
    text: Text = Field(description="a text with one or more mask tokens, typed as `[MASK]` (or the model's own, "
                                   "`<mask>`)", examples=["She was [MASK] to see him."])
    k: TopK = 5


class Guess(BaseModel):
    token: str = Field(description="display label of the guessed token")
    token_id: int
    prob: float = Field(description="softmax probability over the non-special tokens, 0..1")


class MaskGuesses(BaseModel):
    position: int = Field(description="index of the mask token in `tokens`")
    top: list[Guess] = Field(description="the k most probable tokens, most probable first")


class FillMaskResponse(BaseModel):
    model: str
    text: str = Field(description="the text the model read: typed `[MASK]` replaced by the model's mask token (a "
                                  "byte-level BPE's space before it dropped: the slot holds the word's space)")
    run_id: str = Field(description="the capture of the same text (POST /api/runs): its attention maps")
    backend: str
    tokens: list[str]
    token_ids: list[int]
    offsets: Offsets = Field(description=OFFSETS_DOC + "; into `text` as the model read it")
    special: list[bool] = Field(description=SPECIAL_DOC)
    segments: Segments = Field(None, description=SEGMENTS_DOC)
    masks: list[MaskGuesses] = Field(description="one entry per mask token, in order")


class ObjectivesRequest(Strict):
    text: Text = Field(examples=["It is a truth universally acknowledged, that a single man must be in want of a "
                                 "wife."])
    position: Annotated[int, Field(ge=1, lt=4096), JSON_INT] | None = Field(
        None, description="the token both models predict (1..n-1; default: the middle token)")
    k: TopK = 5
    clm_model: ModelId = Field("lm", description="a causal LM (decoder)")
    mlm_model: ModelId = Field("mlm", description="a masked LM (encoder) with the same vocabulary as clm_model")


class TokenPrediction(BaseModel):
    prob: float = Field(description="probability the model gives the actual token here, 0..1")
    top: str = Field(description="the model's most probable token here")


class ObjectiveSide(BaseModel):
    predicts_from: list[int] = Field(description="positions whose tokens the model sees when predicting `position`")
    query: int = Field(description="the query position whose output predicts it (causal: position - 1; masked: "
                                   "position itself, holding the mask token)")
    top: list[Guess]
    prob: float = Field(description="probability of the actual token at `position`")
    attention: list[list[float]] = Field(description="[layer][key]: the query's attention, mean over heads (sums "
                                                     "to 1; 0 for keys a causal model cannot see)")
    per_token: list[TokenPrediction | None] = Field(description="per position: the actual token's probability and "
                                                                "the top guess (null where there is none)")
    loss: float | None = Field(description="mean -log p of the actual tokens, nats (masked: one token masked at a "
                                           "time, the pseudo-log-likelihood)")


class ObjectivesResponse(BaseModel):
    text: str
    clm_model: str
    mlm_model: str
    position: int
    tokens: list[str]
    token_ids: list[int]
    offsets: Offsets = Field(description=OFFSETS_DOC)
    special: list[bool] = Field(description=SPECIAL_DOC)
    clm: ObjectiveSide = Field(description="causal LM: token `position` from the tokens before it")
    mlm: ObjectiveSide = Field(description="masked LM: token `position`, masked, from every other token")


class RunSummary(BaseModel):
    id: str = Field(description="`<checkpoint>` or `<lab>.<variant>`; `my-` prefix: the user's own run")
    group: str
    source: Literal["zoo", "user"]
    label: str
    caption: str = Field(description="what to look for in this run's curves")
    steps: int
    n_spikes: int
    final_loss: float | None
    val_loss: float | None
    diverged_at: int | None
    has_layer_grad_norms: bool


class RunsIndex(BaseModel):
    runs: list[RunSummary]
    groups: dict[str, dict] = Field(description="per comparison lab: its claims, `holds`, setup")
    checkpointing: Literal["zoo", "user"] | None = Field(
        description="where GET /api/training/checkpointing reads its table (null: no table, a 404)")


class RunSeries(BaseModel):
    id: str
    group: str
    source: Literal["zoo", "user"]
    label: str
    caption: str
    step: list[int]
    loss: list[float | None]
    lr: list[float | None]
    grad_norm: list[float | None]
    spikes: list[int] = Field(description="steps the loss-spike guard flagged")
    skipped: list[int] = Field(description="steps skipped for a non-finite loss or gradient")
    diverged_at: int | None
    final_loss: float | None
    val_loss: float | None
    layer_grad_norms: list[list[float | None]] | None = Field(None, description="[layer][i], before clipping")
    lab: str | None = None
    variant: str | None = None


class CheckpointingRowOut(BaseModel):
    model: str
    family: str
    n_layers: int
    d_model: int
    n_params: int
    batch: str
    tokens: int
    peak_without_mib: float
    peak_with_mib: float
    saving_ratio: float
    step_ms_without: float
    step_ms_with: float
    slowdown: float
    step_cpu_ms_without: float | None = None
    step_cpu_ms_with: float | None = None
    cpu_slowdown: float | None = None
    method: str


class CheckpointingResponse(BaseModel):
    source: Literal["zoo", "user"]
    rows: list[CheckpointingRowOut]
    batch_size: int
    seq_len: int
    repeats: int
    device: str
    threads: int | None
    torch: str
    figure: dict = Field(description="Plotly figure JSON: peak MiB and step time, with and without")
