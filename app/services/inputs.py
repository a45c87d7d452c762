"""Tokenise a request's text and check it against the model's and the server's limits."""

from __future__ import annotations

from models import Encoded, ModelAdapter

from ..settings import Settings
from .errors import Invalid, TooLarge
from .logctx import note


def encode_checked(adapter: ModelAdapter, text: str, text_pair: str | None, settings: Settings,
                   field: str = "text", reserve: int = 0) -> Encoded:
    """Tokens of the input, refused with 413 past max_positions or the server's max_tokens.

    ``reserve`` keeps room for tokens still to come (generation).
    """
    if len(text) + len(text_pair or "") > settings.max_text_chars:
        raise TooLarge(f"{field}: {len(text) + len(text_pair or '')} characters is over the server limit of "
                       f"{settings.max_text_chars} (max_text_chars)")
    if text_pair is not None and adapter.info.family != "encoder":
        raise Invalid(f"text_pair: model {adapter.info.id!r} is a {adapter.info.family}; only encoders take a "
                      "second segment")
    try:
        enc = adapter.tokenize(text, text_pair)
    except ValueError as err:
        message = str(err).replace("text: ", "", 1)  # adapters name the field themselves
        raise Invalid(f"{field}: {message}") from None
    n = len(enc)
    note(tokens=n)
    limit = adapter.info.max_positions
    if n + reserve > limit:
        extra = f" plus {reserve} new tokens" if reserve else ""
        raise TooLarge(f"{field}: {n} tokens{extra} is more than model {adapter.info.id!r} accepts "
                       f"(max_positions {limit})")
    if n > settings.max_tokens:
        raise TooLarge(f"{field}: {n} tokens is over the server limit of {settings.max_tokens} tokens (max_tokens)")
    return enc
