"""How a token is shown: one function, :func:`token_labels`, for every view and export.

A label tells tokens apart and shows what each one is:

- a special token (flagged by its id) reads as its vocabulary string: ``[CLS]``, ``<|im_end|>``;
- the unknown token stands for text, so it is not special and reads as its vocabulary string followed
  by the text it replaced, made visible: ``[UNK]😀``, ``<unk>東`` (just ``[UNK]`` where no text is known,
  as for a generated one);
- a WordPiece continuation keeps its marker: ``##ing``;
- any other token reads as the text it contributes, with whitespace made visible
  (:data:`WHITESPACE_MARKS`: ``·the`` for " the", ``↵`` for a newline, ``⍽`` for a no-break
  space) and other invisible characters (controls, format characters, other spaces) written
  as ``⟨U+200B⟩``;
- a byte-level token that holds only part of a character (byte-level BPE splits CJK and
  emoji into several tokens) shows that character with a subscript saying which of its
  tokens this is: 東京 in SmolLM2 is ``東₁ 東₂ 京₁ 京₂``; a token that ends one character and
  starts the next reads ``東₂京₁``. Bytes that are not (yet) a character, because they are
  invalid UTF-8 or a generation stopped inside a character, read as hex: ``⟨E7 8A⟩``.

Labels are display text. The raw text of a token is the slice of the text its offsets name;
the tokens themselves are their ids.

A token's *piece* is what it contributes to the text: ``bytes`` for byte-level tokens
(GPT-2, SmolLM2, attnlab's own BPE), ``str`` for everything else (WordPiece, characters,
special and added tokens, whose string is shown as it is).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

Piece = bytes | str

WHITESPACE_MARKS = {" ": "·", "\u00a0": "⍽", "\n": "↵", "\r": "␍", "\t": "⇥"}
EMPTY_MARK = "∅"  # a token that contributes no text at all
_SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
# categories with no visible glyph of their own: controls, format characters (ZWJ, ZWSP,
# BOM), separators, private use, unassigned
_INVISIBLE = {"Cc", "Cf", "Co", "Cn", "Zs", "Zl", "Zp"}


def _invisible(ch: str) -> bool:
    return unicodedata.category(ch) in _INVISIBLE or "\ufe00" <= ch <= "\ufe0f" or "\U000e0100" <= ch <= "\U000e01ef"


def show_text(text: str) -> str:
    """Text with every whitespace and invisible character replaced by a visible mark."""
    if not text:
        return EMPTY_MARK
    out = []
    for ch in text:
        if ch in WHITESPACE_MARKS:
            out.append(WHITESPACE_MARKS[ch])
        elif _invisible(ch):
            out.append(f"⟨U+{ord(ch):04X}⟩")
        else:
            out.append(ch)
    if unicodedata.combining(text[0]):
        out.insert(0, "◌")  # a combining mark with nothing to sit on: the typographic dotted circle
    return "".join(out)


# ----------------------------------------------------------------------------- byte-level pieces


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, which byte-level BPE vocabularies are written in."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


BYTE_DECODER: dict[str, int] = {c: b for b, c in bytes_to_unicode().items()}


def byte_level_piece(token: str) -> bytes | None:
    """The bytes a byte-level BPE vocabulary entry stands for (``"Ġis"`` -> ``b" is"``), or None
    if the string is not written in the byte alphabet."""
    try:
        return bytes(BYTE_DECODER[c] for c in token)
    except KeyError:
        return None


# ----------------------------------------------------------------------------- UTF-8 units


@dataclass(frozen=True)
class Unit:
    """A stretch of bytes that a lossy UTF-8 decoder turns into one character.

    ``char`` is None for an invalid sequence (one U+FFFD) or, with ``unfinished``, for the
    valid start of a character whose remaining bytes have not arrived.
    """

    start: int
    end: int
    char: str | None
    unfinished: bool = False


def _second_byte_range(lead: int) -> tuple[int, range] | None:
    """(length, allowed second bytes) of a UTF-8 lead byte (Unicode Table 3-7), None if invalid."""
    if 0xC2 <= lead <= 0xDF:
        return 2, range(0x80, 0xC0)
    if lead == 0xE0:
        return 3, range(0xA0, 0xC0)
    if lead == 0xED:
        return 3, range(0x80, 0xA0)
    if 0xE1 <= lead <= 0xEF:
        return 3, range(0x80, 0xC0)
    if lead == 0xF0:
        return 4, range(0x90, 0xC0)
    if 0xF1 <= lead <= 0xF3:
        return 4, range(0x80, 0xC0)
    if lead == 0xF4:
        return 4, range(0x80, 0x90)
    return None


def utf8_units(data: bytes) -> list[Unit]:
    """Split bytes as a lossy decoder does (maximal subparts, as Python's ``errors="replace"``
    and Rust's ``from_utf8_lossy``): each unit becomes one character of the decoded text."""
    units, i, n = [], 0, len(data)
    while i < n:
        lead = data[i]
        if lead < 0x80:
            units.append(Unit(i, i + 1, chr(lead)))
            i += 1
            continue
        shape = _second_byte_range(lead)
        if shape is None:
            units.append(Unit(i, i + 1, None))
            i += 1
            continue
        length, second = shape
        j = i + 1
        while j < i + length and j < n and (data[j] in second if j == i + 1 else 0x80 <= data[j] < 0xC0):
            j += 1
        if j == i + length:
            units.append(Unit(i, j, data[i:j].decode("utf-8")))
        else:
            units.append(Unit(i, j, None, unfinished=j == n))
        i = j
    return units


def _hex(data: bytes) -> str:
    return " ".join(f"{b:02X}" for b in data)


def _byte_run_labels(pieces: Sequence[bytes]) -> list[str]:
    """Labels of consecutive byte-level tokens, from the characters their bytes make together."""
    bounds, pos = [], 0
    for p in pieces:
        bounds.append((pos, pos + len(p)))
        pos += len(p)
    data = b"".join(pieces)
    units = utf8_units(data)
    labels = []
    u0 = 0  # first unit that may overlap the current token
    for k, (start, end) in enumerate(bounds):
        if start == end:
            labels.append(EMPTY_MARK)
            continue
        while units[u0].end <= start:
            u0 += 1
        parts: list[str] = []
        hex_bytes = b""
        u = u0
        while u < len(units) and units[u].start < end:
            unit = units[u]
            if unit.char is None:
                hex_bytes += data[max(unit.start, start):min(unit.end, end)]
            else:
                if hex_bytes:
                    parts.append(f"⟨{_hex(hex_bytes)}⟩")
                    hex_bytes = b""
                shown = show_text(unit.char)
                if unit.start < start or unit.end > end:  # a fragment: which of the character's tokens
                    nth, j = 1, k - 1
                    while j >= 0 and bounds[j][1] > unit.start:  # earlier tokens holding its bytes
                        nth += bounds[j][1] > bounds[j][0]
                        j -= 1
                    shown += str(nth).translate(_SUBSCRIPT)
                parts.append(shown)
            u += 1
        if hex_bytes:
            parts.append(f"⟨{_hex(hex_bytes)}⟩")
        labels.append("".join(parts))
    return labels


def _scan(pieces: Sequence[Piece], special: Sequence[bool]) -> tuple[list[bool], int]:
    """Whether each token starts on a character boundary, and the bytes of an unfinished
    character at the end of the sequence (0 if none)."""
    clean: list[bool] = []
    pending, i, n = 0, 0, len(pieces)
    while i < n:
        if not isinstance(pieces[i], bytes) or special[i]:
            clean.append(True)
            pending = 0
            i += 1
            continue
        j = i
        while j < n and isinstance(pieces[j], bytes) and not special[j]:
            j += 1
        data = b"".join(pieces[i:j])
        units = utf8_units(data)
        starts = {u.start for u in units} | {len(data)}
        pos = 0
        for p in pieces[i:j]:
            clean.append(pos in starts)
            pos += len(p)
        pending = units[-1].end - units[-1].start if units and units[-1].unfinished else 0
        i = j
    return clean, pending


def token_labels(pieces: Sequence[Piece], special: Sequence[bool],
                 unknown: Sequence[str | None] | None = None) -> list[str]:
    """The display label of every token of a sequence (see the module docstring).

    ``pieces[i]`` is what token i contributes (bytes for byte-level tokens, else str; for a
    special token its vocabulary string); ``special[i]`` says whether its id is a control id;
    ``unknown[i]``, for an unknown token (the tokenizer's unk id), is the text it replaced.
    Byte-level neighbours are labelled together, so fragments of one character are numbered.
    """
    def is_unknown(k: int) -> bool:
        return unknown is not None and unknown[k] is not None

    def in_byte_run(k: int) -> bool:  # a byte-level token that is neither a control nor an unknown token
        return isinstance(pieces[k], bytes) and not special[k] and not is_unknown(k)

    labels: list[str] = []
    i, n = 0, len(pieces)
    while i < n:
        if is_unknown(i):
            piece = pieces[i]
            vocab = piece.decode("utf-8", "replace") if isinstance(piece, bytes) else piece
            labels.append(vocab + show_text(unknown[i]))
            i += 1
            continue
        if in_byte_run(i):
            j = i
            while j < n and in_byte_run(j):
                j += 1
            labels += _byte_run_labels(pieces[i:j])
            i = j
            continue
        piece = pieces[i]
        text = piece.decode("utf-8", "replace") if isinstance(piece, bytes) else piece
        # special tokens and WordPiece continuations read as their vocabulary string
        labels.append(text if special[i] or text.startswith("##") else show_text(text))
        i += 1
    return labels


# ----------------------------------------------------------------------------- generated text


@dataclass
class Released:
    """What one generated token adds: its label, the text it completes, where it sits."""

    label: str
    text: str  # text this token completes ("" while a character is unfinished)
    offsets: tuple[int, int] | None  # [start, end) in the generated text; None for a control token (no text)
    relabel: list[tuple[int, str]]  # earlier tokens whose labels this token completed: (index, label)


@dataclass
class TextStream:
    """The text of tokens generated one at a time, released as characters complete.

    The tokenizer's own ``decode`` is the reference: after every token the generated text
    is ``decode(ids)``, minus the U+FFFD of a character whose bytes have not all arrived
    (held back until they do). So the pieces of text released, followed by :meth:`tail`,
    concatenate to exactly ``decode(ids)``. Offsets index that text; a fragment of a
    character gets the character's span, a control token (``is_special``) none: it is not text,
    and the adapters' ``decode`` leaves it out, as it leaves out [CLS] and [SEP].
    """

    decode: Callable[[list[int]], str]
    piece: Callable[[int], Piece]
    is_special: Callable[[int], bool]
    fffd_per_byte: bool = False  # the decoder writes U+FFFD per byte of a broken character (byte fallback)
    ids: list[int] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    offsets: list[tuple[int, int] | None] = field(default_factory=list)
    released: str = ""
    _decoded: int = 0  # length of decode(ids) before the latest token
    _pieces: list[Piece] = field(default_factory=list)
    _special: list[bool] = field(default_factory=list)
    _anchor: int = 0  # tokens before this one have final labels (it starts at a character boundary)

    def label_next(self, token_id: int) -> str:
        """How ``token_id`` would read if it came next (for the top-k candidates of a step)."""
        return token_labels(self._pieces[self._anchor:] + [self.piece(token_id)],
                            self._special[self._anchor:] + [self.is_special(token_id)])[-1]

    def add(self, token_id: int) -> Released:
        self.ids.append(token_id)
        self._pieces.append(self.piece(token_id))
        self._special.append(self.is_special(token_id))
        window_pieces, window_special = self._pieces[self._anchor:], self._special[self._anchor:]
        window = token_labels(window_pieces, window_special)
        relabel = [(self._anchor + k, label) for k, label in enumerate(window[:-1])
                   if self.labels[self._anchor + k] != label]
        for index, label in relabel:
            self.labels[index] = label
        self.labels.append(window[-1])
        clean, pending = _scan(window_pieces, window_special)
        full = self.decode(self.ids)  # the whole sequence each step: exact, and microseconds per id
        # a token that continues an unfinished character starts where that character does
        start = self._decoded if clean[-1] else len(self.released)
        self._decoded = len(full)
        # an unfinished character decodes as U+FFFD (one, or one per byte): hold it back
        hold = min(pending if self.fffd_per_byte else 1 if pending else 0, len(full))
        stable = full[:len(full) - hold]
        if not stable.startswith(self.released):
            log.warning("the tokenizer's decode rewrote text already released; the stream may differ from decode(ids)")
        text = stable[len(self.released):]
        self.released = stable
        span = None if self._special[-1] else (start, len(full))
        self.offsets.append(span)
        # tokens before the last one that starts on a character boundary keep their labels from now on
        self._anchor += max((k for k in range(1, len(clean)) if clean[k]), default=0)
        return Released(window[-1], text, span, relabel)

    def tail(self) -> str:
        """Text still held back (an unfinished character, as the decoder renders it: U+FFFD)."""
        return self.decode(self.ids)[len(self.released):]
