"""Token labels (models.labels): one rule for every view, and generated text released exactly.

- fragments of one character are told apart and show the character (東₁ 東₂), never U+FFFD;
- whitespace and invisible characters are visible and distinct;
- the UTF-8 units match Python's own lossy decoding;
- TextStream, driven by a real byte-level BPE tokenizer, releases text whose concatenation is
  exactly the tokenizer's decode, with offsets and labels equal to labelling the whole sequence.
"""

from __future__ import annotations

import random

import pytest

from attnlab.models.labels import TextStream, byte_level_piece, bytes_to_unicode, show_text, token_labels, utf8_units
from attnlab.models.tokenization import CharTokenizer, train_bpe

CORPUS = ("東京 is the capital of Japan. 猫 is cat and 犬 is dog. I ❤️ 🐈 and 👨‍👩‍👧.\n"
          "x = 1\r\n\tif x:\n    return\u00a0x\n") * 20


@pytest.fixture(scope="module")
def bpe():
    return train_bpe(CORPUS, vocab_size=300)


def labels_of(pieces: list) -> list[str]:
    return token_labels(pieces, [False] * len(pieces))


def test_fragments_of_a_character_are_numbered_and_show_it():
    assert labels_of([b"\xe6\x9d", b"\xb1", b"\xe4\xba", b"\xac"]) == ["東₁", "東₂", "京₁", "京₂"]
    # a token that ends one character and starts the next names both
    assert labels_of([b"\xe6\x9d", b"\xb1\xe4", b"\xba\xac"]) == ["東₁", "東₂京₁", "京₂"]
    # a leading space and a four-byte emoji in three tokens; a variation selector is made visible
    assert labels_of([b" \xf0\x9f", b"\x90", b"\x88", "\ufe0f".encode()]) == ["·🐈₁", "🐈₂", "🐈₃", "⟨U+FE0F⟩"]
    # bytes that make no character read as hex, never as U+FFFD
    assert labels_of([b"\xff\xfe", b"\xe7\x8a"]) == ["⟨FF FE⟩", "⟨E7 8A⟩"]


def test_whitespace_is_visible_and_distinct():
    pieces = [b"x", b" =", b" ", b"1", b"\r\n", b"\t", b"if", b" x", b":", b"\n   ", b" return", b"\xc2\xa0", b"x"]
    assert labels_of(pieces) == ["x", "·=", "·", "1", "␍↵", "⇥", "if", "·x", ":", "↵···", "·return", "⍽", "x"]
    marks = [show_text(c) for c in (" ", "\u00a0", "\n", "\r", "\t", "\u200b", "\u3000")]
    assert marks == ["·", "⍽", "↵", "␍", "⇥", "⟨U+200B⟩", "⟨U+3000⟩"] and len(set(marks)) == len(marks)
    assert show_text("\u0301") == "◌\u0301"  # a combining mark alone sits on a dotted circle
    assert show_text("") == "∅"


def test_special_wordpiece_and_text_tokens():
    assert token_labels(["[CLS]", "##ing", "the", " ", "<|im_end|>"], [True, False, False, False, True]) == \
        ["[CLS]", "##ing", "the", "·", "<|im_end|>"]
    # a special token breaks a byte run: the fragments on each side are judged apart
    assert token_labels([b"\xe6\x9d", "<eos>", b"\xb1"], [False, True, False]) == ["⟨E6 9D⟩", "<eos>", "⟨B1⟩"]


def test_utf8_units_match_pythons_lossy_decoding():
    rng = random.Random(0)
    alphabet = [0x41, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xE6, 0xED, 0xEF, 0xF0, 0xF4,
                0xF5, 0xFF]
    for _ in range(5000):
        data = bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 9)))
        units = utf8_units(data)
        assert "".join(u.char or "\ufffd" for u in units) == data.decode("utf-8", "replace"), data
        assert [u.unfinished for u in units[:-1]] == [False] * (len(units) - 1)


def test_byte_level_pieces(bpe):
    assert byte_level_piece("Ġis") == b" is" and byte_level_piece("čĊ") == b"\r\n"
    ids = bpe.encode("東京")
    assert b"".join(bpe.piece(i) for i in ids) == "東京".encode()
    assert bpe.piece(bpe.special_ids["<eos>"]) == "<eos>"
    labels = bpe.labels(ids)
    assert len(set(labels)) == len(labels) and all("\ufffd" not in t for t in labels)
    assert "".join(labels).count("東") >= 1 and "".join(labels).count("京") >= 1
    char = CharTokenizer.from_corpus("ab c")
    assert char.labels(char.encode("a b<eos>")) == ["a", "·", "b", "<eos>"]


def test_unknown_tokens_show_the_text_they_replaced():
    """The unknown token is text, not a control token: its vocabulary string, then the character it stands for."""
    pieces, special = ["[CLS]", "[UNK]", "a", "[UNK]", b"\xe6\x9d", "[UNK]"], [True, False, False, False, False, False]
    unknown = [None, "😀", None, "\u200b", None, None]
    assert token_labels(pieces, special, unknown) == ["[CLS]", "[UNK]😀", "a", "[UNK]⟨U+200B⟩", "⟨E6 9D⟩", "[UNK]"]


def _stream(bpe) -> TextStream:
    return TextStream(bpe.decode, bpe.piece, set(bpe.special_ids.values()).__contains__)


@pytest.mark.parametrize("seed", range(40))
def test_text_stream_releases_exactly_the_decoded_text(bpe, seed):
    rng = random.Random(seed)
    # random ids: byte tokens mostly, so characters split, break and stop midway
    ids = [rng.randrange(bpe.vocab_size) for _ in range(rng.randint(1, 24))]
    stream = _stream(bpe)
    released, labels = [], []
    for i in ids:
        expected_next = stream.label_next(i)
        out = stream.add(i)
        assert out.label == expected_next
        released.append(out.text)
        labels.append(out.label)
        for index, label in out.relabel:
            labels[index] = label
    text = bpe.decode(ids)
    assert "".join(released) + stream.tail() == text
    assert labels == stream.labels == bpe.labels(ids)
    specials = set(bpe.special_ids.values())
    assert [o is None for o in stream.offsets] == [i in specials for i in ids]  # control tokens are no text
    for span, piece in zip(stream.offsets, (bpe.piece(i) for i in ids)):
        if span is None:
            continue
        start, end = span
        assert 0 <= start <= end <= len(text)
        if isinstance(piece, bytes) and piece:
            try:
                assert text[start:end] == piece.decode("utf-8")  # a whole token spans exactly its text
            except UnicodeDecodeError:
                pass  # a fragment spans its character(s)


def test_text_stream_holds_an_unfinished_character_back(bpe):
    cat = "🐈".encode()  # four bytes, one byte token each
    ids = [bpe.token_to_id(bytes_to_unicode()[b]) for b in cat]
    stream = _stream(bpe)
    outs = [stream.add(i) for i in ids[:3]]
    assert [o.text for o in outs] == ["", "", ""] and stream.tail() == "\ufffd"  # stopped mid-character
    assert [o.offsets for o in outs] == [(0, 1), (0, 1), (0, 1)]
    last = stream.add(ids[3])
    assert last.text == "🐈" and last.label == "🐈₄" and stream.tail() == ""
    assert last.relabel == [(0, "🐈₁"), (1, "🐈₂"), (2, "🐈₃")]


def test_text_stream_with_a_per_byte_fallback_decoder():
    """Byte-fallback decoders (SentencePiece) write one U+FFFD per byte of a broken character."""
    vocab = {0: b"a", 1: b"\xe6", 2: b"\x9d", 3: b"\xb1"}

    def decode(ids: list[int]) -> str:
        data = b"".join(vocab[i] for i in ids)
        return data.decode("utf-8", "replace") if not data.endswith((b"\xe6", b"\xe6\x9d")) else \
            data[:data.rindex(b"\xe6")].decode() + "\ufffd" * (len(data) - data.rindex(b"\xe6"))

    stream = TextStream(decode, vocab.__getitem__, lambda i: False, fffd_per_byte=True)
    assert [stream.add(i).text for i in (0, 1, 2)] == ["a", "", ""] and stream.tail() == "\ufffd\ufffd"
    assert stream.add(3).text == "東" and stream.labels == ["a", "東₁", "東₂", "東₃"]

