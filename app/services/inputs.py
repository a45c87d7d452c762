"""Tokenise a request's text and check it against the model's and the server's limits."""

from __future__ import annotations

from attnlab.models import Encoded, ModelAdapter, ModelInfo

from ..core.logctx import note
from ..core.settings import Settings
from .errors import Invalid, TooLarge, with_article


def encode_checked(adapter: ModelAdapter, text: str, text_pair: str | None, settings: Settings,
                   field: str = "text", reserve: int = 0) -> Encoded:
    """Tokens of the input, refused with 413 past the model's own limit (``ModelInfo.max_positions``).

    Limits are per model: a from-scratch model without a position table declares how far it may run
    (``max_run_positions``), a pretrained one its position embeddings; the memory a run needs is bounded
    separately (``run_cache_bytes``).

    The one place token counts are checked, so "too many tokens" is the same 413, in the same words,
    for every model family (adapters do not count). ``reserve`` keeps room for tokens still to come
    (generation).
    """
    chars = len(text) + len(text_pair or "")
    if chars > settings.max_text_chars:  # each field alone is bounded by the schema (422); together, here
        what = f"{field} and text_pair together" if text_pair else field
        raise TooLarge(f"{what}: {chars} characters is over the server limit of {settings.max_text_chars} "
                       "(max_text_chars)")
    if text_pair is not None and adapter.info.family != "encoder":
        raise Invalid(f"text_pair: model {adapter.info.id!r} is {with_article(adapter.info.family)}; only encoders "
                      "take a second segment")
    try:
        enc = adapter.tokenize(text, text_pair)
    except ValueError as err:
        message = str(err).replace("text: ", "", 1)  # adapters name the field themselves
        raise Invalid(f"{field}: {message}") from None
    _check_own_tokens(adapter, enc, field, text_pair is not None)
    n = len(enc)
    note(tokens=n)
    limit = adapter.info.max_positions
    if n + reserve > limit:
        # a pair is counted together (with the tokens the tokenizer adds): the message names both fields
        raise too_many_tokens(adapter.info, f"{field} and text_pair together" if text_pair else field, n, reserve)
    return enc


def too_many_tokens(info: ModelInfo, field: str, n: int, reserve: int = 0) -> TooLarge:
    """The one 413 for more tokens than a model accepts, naming its limit and why it is that."""
    extra = f" plus {reserve} new token{'s' if reserve > 1 else ''}" if reserve else ""
    return TooLarge(f"{field}: {n} tokens{extra} is more than model {info.id!r} accepts "
                    f"(max_positions {info.max_positions}{_limit_reason(info)})")


def _limit_reason(info: ModelInfo) -> str:
    """Why a model's limit is what it is, where the model says."""
    if info.trained_positions:
        return f"; trained at {info.trained_positions} tokens, its {info.positional} positions run further"
    if info.source == "scratch" and info.positional == "learned":
        return f": its learned position table has {info.max_positions} rows"
    return ""


def _check_own_tokens(adapter: ModelAdapter, enc: Encoded, field: str, pair: bool) -> None:
    """Refuse a text that gives no token of its own: every token of it was added by the tokenizer (offsets null).

    The one rule for every model, decided by the model's own tokenizer: whitespace a byte-level BPE keeps
    (newlines, a no-break space) is text, while characters a WordPiece normaliser drops (U+200B, NUL, a lone
    combining mark) leave BERT only [CLS] [SEP], nothing of the text to attend to.
    """
    segments = enc.segments or [0] * len(enc)
    for segment, name in ((0, field), (1, "text_pair"))[:2 if pair else 1]:
        if not any(o is not None for o, s in zip(enc.offsets, segments) if s == segment):
            added = " ".join(t for t, s in zip(enc.tokens, segments) if s == segment) or "none"
            raise Invalid(f"{name}: gives no token of its own: model {adapter.info.id!r}'s tokenizer drops every "
                          f"character of it (such as whitespace or invisible characters); it would see only the "
                          f"tokens it adds ({added})")


def attention_cells(info: ModelInfo, n_tokens: int) -> int:
    """Weights in every attention map of an input of ``n_tokens`` (layers x heads x Tq x Tk, every kind).

    An encoder-decoder decodes at most 2n + 2 tokens after its start token (ScratchAdapter), so its
    decoder and cross maps are counted for that many.
    """
    n = n_tokens
    if info.family != "encoder-decoder":
        return info.n_layers * info.n_heads * n * n
    t = min(2 * n + 3, info.max_positions)
    return info.n_layers * info.n_heads * (n * n + t * t + t * n)
