"""Request and response models of /api/interventions/* and /api/lens (the bounds from the settings: Limit)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from .limits import Limit
from .schemas import JSON_INT, BackendName, HeadIndex, LayerIndex, ModelId, Offsets, RunId, Strict, Text, Timings

Mode = Literal["zero", "mean"]
HeadPair = Annotated[list[HeadIndex], Field(min_length=2, max_length=2, description="[layer, head]")]
MODE_DOC = ("`zero` removes the head's output before W_O; `mean` replaces it by its mean over positions <= i in a "
            "decoder (a running mean: no later token leaks into an earlier position) and over the whole sequence "
            "in an encoder")
INPUT_DOC = ("Give `model` and `text`, or in their place the `run_id` of a run (POST /api/runs): its model, "
             "backend and tokens. Encoder-decoder models are refused (422, `model: ...`). At most "
             "`intervention_max_tokens` tokens (413).")


class RunOrText(Strict):
    model: ModelId | None = Field(None, description="a model id from GET /api/models (with text)")
    run_id: RunId | None = Field(None, description="in place of model and text: a run's model, backend and tokens")
    backend: BackendName | None = None


class AblateRequest(RunOrText):
    text: Text | None = None
    heads: list[HeadPair] = Field(max_length=4096, description="[layer, head] pairs to ablate (query heads under "
                                                               "grouped-query attention); [] ablates nothing")
    mode: Mode = Field("zero", description=MODE_DOC)


class ImportanceRequest(RunOrText):
    text: Text | None = None
    probes: Annotated[int, Field(ge=1), Limit("importance_max_probes"), JSON_INT] = Field(
        4, description="encoders without an LM head: random projections of the hidden-state change (batch rows)")


class PatchRequest(RunOrText):
    clean: Text | None = Field(None, description="the clean text (or run_id)")
    corrupted: Text = Field(description="the corrupted text: as many tokens as the clean one")
    target: Annotated[int, Field(ge=0, lt=2**31), JSON_INT] | None = Field(
        None, description="token id whose logit is restored; default the clean run's top-1 at the read-out position")


class LensRequest(RunOrText):
    text: Text | None = None
    k: Annotated[int, Field(ge=1), Limit("lens_max_k"), JSON_INT] = Field(5, description="top tokens per cell")
    layers: list[LayerIndex] | None = Field(None, min_length=1, max_length=1024,
                                            description="layers to decode (default all)")


class TokenOut(BaseModel):
    token: str
    token_id: int
    prob: float


class ChangedOut(BaseModel):
    position: int
    before: TokenOut
    after: TokenOut


class HiddenChangeOut(BaseModel):
    cosine: float
    relative_norm: float = Field(description="||h' - h|| / ||h|| of the final hidden state")


class _Answer(BaseModel):
    model: str
    backend: str
    tokens: list[str]
    token_ids: list[int]
    offsets: Offsets
    special: list[bool]
    timings: Timings


class AblateResponse(_Answer):
    heads: list[list[int]]
    mode: Mode
    loss_before: list[float | None] | None = Field(description=(
        "nats per position: a decoder's loss of the next token (null at the last position); an encoder with an MLM "
        "head: the loss of each token's own id, unmasked (null for control tokens); null without an LM head"))
    loss_after: list[float | None] | None
    loss_change: float | None = Field(description="mean of loss_after - mean of loss_before (0 exactly for no heads)")
    changed_predictions: list[ChangedOut] = Field(description="positions whose top-1 token changed")
    hidden_change: list[HiddenChangeOut] | None = Field(description="encoders without an LM head: per token")


class ImportanceResponse(_Answer):
    importance: list[list[float]] = Field(description=(
        "[layer][head]: |dL/dξ| for a gate ξ = 1 on the head's output (Michel et al. 2019, arXiv 1905.10650); "
        "without an LM head, ||dH/dξ|| / ||H|| of the final hidden states (estimated with `probes` projections)"))
    objective: Literal["loss", "hidden"]
    loss: float | None = Field(description="the unablated mean loss in nats")
    ablation_loss_change: list[list[float]] | None = Field(description=(
        "[layer][head]: the exact change of ablating each head alone (zero), when the model has at most "
        "ablation_grid_max_heads heads; relative hidden change without an LM head"))
    n_layers: int
    n_heads: int


class PatchResponse(_Answer):
    corrupted_tokens: list[str]
    corrupted_token_ids: list[int]
    target: dict[str, str | int]
    position: int = Field(description="the read-out position: the last one that is not a control token")
    clean_logit: float
    corrupted_logit: float
    layers: list[float | None] = Field(description="[layer]: the fraction restored by patching every head of the "
                                                   "layer; null where patch_budget_s ran out")
    heads: list[list[float | None]] = Field(description=(
        "[layer][head]: (patched - corrupted) / (clean - corrupted) of the target's logit; null where "
        "patch_budget_s ran out (layers are visited in order of their own restored fraction)"))
    complete: bool
    budget_s: float


class LensResponse(_Answer):
    layers: list[int]
    k: int
    top: list[list[list[TokenOut]]] | None = Field(description=(
        "[layer][position][k]: the residual stream after the block, through the final norm and the unembedding "
        "(nostalgebraist 2020); null without an LM head"))
    final_prob: list[list[float]] | None = Field(description="[layer][position]: probability of final_tokens")
    final_tokens: list[str] | None = Field(description="the model's own top-1 per position")
    residual_norm: list[list[float]] = Field(description="[layer + 1][position]: the stream entering block 0, then "
                                                         "after each block")
    attention_norm: list[list[float]] = Field(description="[layer][position]: norm of the attention's contribution")
    ffn_norm: list[list[float]] | None = Field(description="[layer][position]: the feed-forward's; null without one")


class HeadsLabResponse(BaseModel):
    lab: str
    induction: dict[str, object]
    lm: dict[str, object]
    pruning: dict[str, object] | None = None
    seconds: float | None = None
