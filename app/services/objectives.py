"""Fill-mask on a masked LM, and the causal and masked objectives side by side on one text
(``attnlab.models.objectives`` does the model work; here: models, limits and errors)."""

from __future__ import annotations

from attnlab.models import ModelAdapter
from attnlab.models.objectives import clm_side, fill_mask, mask_token, mlm_side, normalize_masks

from ..core.settings import Settings
from .errors import Invalid, TooLarge, with_article
from .hub import ModelHub
from .inputs import encode_checked
from .runs import RunService


def _needs(hub: ModelHub, model: str, field: str, family: str, what: str) -> None:
    info = hub.info(model)  # NotFound (404) for an unknown id
    if info.family != family:
        raise Invalid(f"{field}: model {model!r} is {with_article(info.family)}; {what} needs {with_article(family)}")


async def fill_mask_answer(hub: ModelHub, runs: RunService, settings: Settings, model: str, text: str,
                           k: int) -> dict:
    """Top-k guesses at each mask token, the tokens, and the ``run_id`` of the same text's capture (its maps)."""
    _needs(hub, model, "model", "encoder", "fill-mask")
    adapter = await hub.adapter(model)
    if mask_token(adapter) is None or adapter.info.family != "encoder":
        raise Invalid(f"model: {model!r} has no mask token: fill-mask needs a masked LM such as 'mlm'")
    used = normalize_masks(adapter, text)
    backend = hub.check_backend(model, None)

    def work(a: ModelAdapter) -> list[dict]:
        enc = encode_checked(a, used, None, settings)
        try:
            return fill_mask(a, enc, k)
        except ValueError as err:
            raise Invalid(f"text: {err}") from None

    masks = await hub.call(model, backend, work)
    run, _ = await runs.create(model, used, None, backend)
    return {"model": model, "text": used, "run_id": run.run_id, "backend": backend, **run.input.fields(),
            "masks": masks}


async def objectives_answer(hub: ModelHub, settings: Settings, text: str, clm_model: str, mlm_model: str,
                            position: int | None, k: int) -> dict:
    """What the causal and the masked model predict at every token of ``text``, and at ``position`` (default the
    middle token) from which context, with each one's attention row there."""
    _needs(hub, clm_model, "clm_model", "decoder", "the causal objective")
    _needs(hub, mlm_model, "mlm_model", "encoder", "the masked objective")
    clm, mlm = await hub.adapter(clm_model), await hub.adapter(mlm_model)
    if mask_token(mlm) is None:
        raise Invalid(f"mlm_model: {mlm_model!r} has no mask token: it is not a masked LM")
    enc = encode_checked(clm, text, None, settings)
    enc_mlm = encode_checked(mlm, text, None, settings)
    if enc.ids.tolist() != enc_mlm.ids.tolist():
        raise Invalid(f"mlm_model: {mlm_model!r} tokenizes the text differently from {clm_model!r}; the comparison "
                      "needs one vocabulary (the zoo's lm and mlm share theirs)")
    n = len(enc)
    limit = settings.objectives_max_tokens
    if n > limit:  # the masked side runs the text once per token: n x n tokens
        raise TooLarge(f"text: {n} tokens is over the objectives view's limit of {limit} tokens "
                       "(objectives_max_tokens; the masked side runs the text once per token)")
    if n < 2:
        raise Invalid("text: gives 1 token; the causal model needs at least 2 (one to predict the next from)")
    position = max(1, n // 2) if position is None else position
    if not 1 <= position < n:
        raise Invalid(f"position: {position} is outside 1..{n - 1} (the text has {n} tokens, and the causal "
                      "model predicts token 0 from nothing)")

    def run_side(side, adapter_enc):
        def work(a: ModelAdapter) -> dict:
            try:
                return side(a, adapter_enc, position, k)
            except ValueError as err:
                raise Invalid(f"position: {err}") from None
        return work

    clm_out = await hub.call(clm_model, hub.check_backend(clm_model, None), run_side(clm_side, enc))
    mlm_out = await hub.call(mlm_model, hub.check_backend(mlm_model, None), run_side(mlm_side, enc_mlm))
    return {"text": text, "clm_model": clm_model, "mlm_model": mlm_model, "position": position,
            **enc.seq().fields(segments=False), "clm": clm_out, "mlm": mlm_out}
