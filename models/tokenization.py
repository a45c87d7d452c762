"""Tokenizers for the from-scratch models, behind one small interface.

- `CharTokenizer`: one id per character seen in a corpus; saved as `char_tokenizer.json`.
- `BPETokenizer`: byte-level BPE (the GPT-2 scheme) trained with Hugging Face
  `tokenizers`; saved as a standard `tokenizer.json`, so `transformers` can load it too.

Both start the vocabulary with the same special tokens, so `<pad>` is id 0 and so on
whichever tokenizer a model was trained with, and both recognise a special token
typed inside the text (`"Paris is the <mask> of France"`). Neither adds `<bos>` or
`<eos>` on its own: the caller decides, so `decode(encode(text)) == text`.
"""

from __future__ import annotations

import json
import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path

from .labels import Piece, byte_level_piece, token_labels

logger = logging.getLogger(__name__)

SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<unk>", "<bos>", "<eos>", "<mask>")

Offsets = list[tuple[int, int]]


def sentinel_tokens(n: int) -> tuple[str, ...]:
    """T5's span-corruption sentinels `<extra_id_0>`, `<extra_id_1>`, ..."""
    return tuple(f"<extra_id_{i}>" for i in range(n))


class Tokenizer(ABC):
    """What the models, data helpers and the app need from any tokenizer."""

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @property
    @abstractmethod
    def special_ids(self) -> dict[str, int]:
        """Special token string -> id, sentinels included."""

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def encode_with_offsets(self, text: str) -> tuple[list[int], Offsets]:
        """Ids and, per id, the (start, end) character span of `text` it came from."""

    @abstractmethod
    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str: ...

    @abstractmethod
    def id_to_token(self, token_id: int) -> str: ...

    @abstractmethod
    def piece(self, token_id: int) -> Piece:
        """What the token contributes to the text: bytes for a byte-level token, else its string."""

    def labels(self, ids: Iterable[int]) -> list[str]:
        """Display labels of a token sequence (models.labels.token_labels)."""
        ids = list(ids)
        specials = set(self.special_ids.values())
        return token_labels([self.piece(i) for i in ids], [i in specials for i in ids])

    @abstractmethod
    def token_to_id(self, token: str) -> int | None: ...

    @abstractmethod
    def save(self, directory: str | Path) -> Path:
        """Write the tokenizer into `directory` (created if needed); return the file."""

    @classmethod
    @abstractmethod
    def load(cls, directory: str | Path) -> Tokenizer: ...

    def _special(self, token: str) -> int | None:
        return self.special_ids.get(token)

    @property
    def pad_id(self) -> int | None:
        return self._special("<pad>")

    @property
    def unk_id(self) -> int | None:
        return self._special("<unk>")

    @property
    def bos_id(self) -> int | None:
        return self._special("<bos>")

    @property
    def eos_id(self) -> int | None:
        return self._special("<eos>")

    @property
    def mask_id(self) -> int | None:
        return self._special("<mask>")

    @property
    def sentinel_ids(self) -> list[int]:
        """Ids of `<extra_id_0>`, `<extra_id_1>`, ... in that order, as `span_corrupt` wants."""
        ids = []
        for token in sentinel_tokens(len(self.special_ids)):
            if token not in self.special_ids:
                break
            ids.append(self.special_ids[token])
        return ids


class CharTokenizer(Tokenizer):
    """One token per character; characters not seen when building map to `<unk>`."""

    FILENAME = "char_tokenizer.json"

    def __init__(self, tokens: Sequence[str], specials: Sequence[str]):
        if len(set(tokens)) != len(tokens):
            raise ValueError("CharTokenizer tokens must be unique")
        missing = [s for s in specials if s not in tokens]
        if missing:
            raise ValueError(f"special tokens {missing} are not in the vocabulary")
        self._tokens = list(tokens)
        self._ids = {t: i for i, t in enumerate(self._tokens)}
        self._specials = {s: self._ids[s] for s in specials}
        self._unk = self._specials.get("<unk>")
        # Longest first, so a special that is a prefix of another never wins early.
        alternatives = sorted(specials, key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, alternatives))) if alternatives else None

    @classmethod
    def from_corpus(
        cls, text: str, n_sentinels: int = 0, specials: Sequence[str] = SPECIAL_TOKENS
    ) -> CharTokenizer:
        """Specials, then sentinels, then every distinct character of `text` in sorted order."""
        all_specials = list(specials) + list(sentinel_tokens(n_sentinels))
        chars = sorted(set(text))
        return cls(all_specials + chars, all_specials)

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def special_ids(self) -> dict[str, int]:
        return dict(self._specials)

    def _pieces(self, text: str) -> Iterable[tuple[str, int, int]]:
        """Split into (piece, start, end): a whole special token or a single character."""
        pos = 0
        matches = self._special_re.finditer(text) if self._special_re else ()
        for m in matches:
            for i in range(pos, m.start()):
                yield text[i], i, i + 1
            yield m.group(), m.start(), m.end()
            pos = m.end()
        for i in range(pos, len(text)):
            yield text[i], i, i + 1

    def _lookup(self, piece: str) -> int:
        token_id = self._ids.get(piece, self._unk)
        if token_id is None:
            raise KeyError(f"character {piece!r} is not in the vocabulary and there is no <unk>")
        return token_id

    def encode_with_offsets(self, text: str) -> tuple[list[int], Offsets]:
        ids, offsets = [], []
        for piece, start, end in self._pieces(text):
            ids.append(self._lookup(piece))
            offsets.append((start, end))
        return ids, offsets

    def encode(self, text: str) -> list[int]:
        return [self._lookup(piece) for piece, _, _ in self._pieces(text)]

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        special = set(self._specials.values()) if skip_special else set()
        return "".join(self._tokens[i] for i in ids if i not in special)

    def id_to_token(self, token_id: int) -> str:
        return self._tokens[token_id]

    def piece(self, token_id: int) -> Piece:
        return self._tokens[token_id]

    def token_to_id(self, token: str) -> int | None:
        return self._ids.get(token)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / self.FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"type": "char", "tokens": self._tokens, "specials": list(self._specials)}
        path.write_text(json.dumps(payload, ensure_ascii=False, indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> CharTokenizer:
        payload = json.loads((Path(directory) / cls.FILENAME).read_text(encoding="utf-8"))
        if payload.get("type") != "char":
            raise ValueError(f"{directory}/{cls.FILENAME} is not a char tokenizer")
        return cls(payload["tokens"], payload["specials"])


class BPETokenizer(Tokenizer):
    """Byte-level BPE: every byte is in the base alphabet, so no text is ever `<unk>`."""

    FILENAME = "tokenizer.json"

    def __init__(self, tokenizer: tokenizers.Tokenizer):  # noqa: F821  (lazy import)
        self._tk = tokenizer
        self._added = {token_id: added.content for token_id, added in tokenizer.get_added_tokens_decoder().items()}
        self._specials = {
            added.content: token_id
            for token_id, added in sorted(tokenizer.get_added_tokens_decoder().items())
            if added.special
        }

    @property
    def backend(self) -> tokenizers.Tokenizer:  # noqa: F821
        """The wrapped Hugging Face tokenizer, for anything this interface leaves out."""
        return self._tk

    @property
    def vocab_size(self) -> int:
        return self._tk.get_vocab_size(with_added_tokens=True)

    @property
    def special_ids(self) -> dict[str, int]:
        return dict(self._specials)

    def encode(self, text: str) -> list[int]:
        return self._tk.encode(text, add_special_tokens=False).ids

    def encode_with_offsets(self, text: str) -> tuple[list[int], Offsets]:
        enc = self._tk.encode(text, add_special_tokens=False)
        return enc.ids, [tuple(o) for o in enc.offsets]

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        return self._tk.decode(list(ids), skip_special_tokens=skip_special)

    def id_to_token(self, token_id: int) -> str:
        token = self._tk.id_to_token(token_id)
        if token is None:
            raise IndexError(f"token id {token_id} out of range (vocab size {self.vocab_size})")
        return token

    def token_to_id(self, token: str) -> int | None:
        return self._tk.token_to_id(token)

    def piece(self, token_id: int) -> Piece:
        added = self._added.get(token_id)
        if added is not None:  # added tokens decode as their own string, not through the byte table
            return added
        token = self.id_to_token(token_id)
        data = byte_level_piece(token)
        return data if data is not None else token

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / self.FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        self._tk.save(str(path))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer

        return cls(HFTokenizer.from_file(str(Path(directory) / cls.FILENAME)))


def _chunks(texts: str | Iterable[str]) -> Iterable[str]:
    # One huge string would be handed to the trainer as a single item; lines (with
    # their newlines kept, so "\n" merges are learnt too) spread the work.
    if isinstance(texts, str):
        return texts.splitlines(keepends=True)
    return texts


def train_bpe(
    texts: str | Iterable[str],
    vocab_size: int,
    specials: Sequence[str] = SPECIAL_TOKENS,
    n_sentinels: int = 0,
    min_frequency: int = 2,
) -> BPETokenizer:
    """Train a byte-level BPE tokenizer; specials (then sentinels) get ids 0, 1, ..."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    all_specials = list(specials) + list(sentinel_tokens(n_sentinels))
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    smallest = len(alphabet) + len(all_specials)
    if vocab_size < smallest:
        raise ValueError(f"vocab_size {vocab_size} is below the 256 bytes + {len(all_specials)} specials = {smallest}")

    tk = HFTokenizer(models.BPE())
    # add_prefix_space=False keeps the round trip exact: nothing is added to the text.
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=all_specials,
        # All 256 bytes up front, even ones the corpus lacks, so any text encodes.
        initial_alphabet=alphabet,
        show_progress=False,
    )
    start = time.perf_counter()
    tk.train_from_iterator(_chunks(texts), trainer=trainer)
    logger.info("trained byte-level BPE: %d tokens in %.1f s", tk.get_vocab_size(), time.perf_counter() - start)
    return BPETokenizer(tk)


# Which file in a saved tokenizer directory names which class.
TOKENIZER_FILES: dict[str, type[Tokenizer]] = {
    BPETokenizer.FILENAME: BPETokenizer,
    CharTokenizer.FILENAME: CharTokenizer,
}


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load whichever tokenizer `directory` holds, judged by the file present."""
    directory = Path(directory)
    for filename, cls in TOKENIZER_FILES.items():
        if (directory / filename).is_file():
            return cls.load(directory)
    raise FileNotFoundError(f"no tokenizer in {directory}: expected one of {', '.join(TOKENIZER_FILES)}")
