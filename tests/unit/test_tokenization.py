"""Tokenizers: exact round trips, offsets, specials, save/load identity."""

import pytest

from attnlab.models.tokenization import (
    SPECIAL_TOKENS,
    BPETokenizer,
    CharTokenizer,
    load_tokenizer,
    sentinel_tokens,
    train_bpe,
)

CORPUS = (
    "It is a truth universally acknowledged, that a single man in possession\n"
    "of a good fortune, must be in want of a wife.\n\n"
    "Naïve café owners say « bonjour » — 日本語のテキスト, emoji 🤖🚀, tabs\tand  spaces.\n"
) * 20

SAMPLES = [
    "It is a truth universally acknowledged.",
    "  leading and trailing spaces  ",
    "Naïve café — 日本語 🤖\n\ttab\r\nCRLF",
    "never seen in training: Ωμέγα ∑ ø \x00 \x7f",
    "",
]


@pytest.fixture(scope="module")
def bpe() -> BPETokenizer:
    return train_bpe(CORPUS, vocab_size=400, n_sentinels=4)


@pytest.fixture(scope="module")
def char() -> CharTokenizer:
    return CharTokenizer.from_corpus(CORPUS, n_sentinels=4)


@pytest.fixture(params=["bpe", "char"])
def tok(request, bpe, char):
    return {"bpe": bpe, "char": char}[request.param]


def test_specials_come_first(tok):
    expected = list(SPECIAL_TOKENS) + list(sentinel_tokens(4))
    assert tok.special_ids == {t: i for i, t in enumerate(expected)}
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert tok.sentinel_ids == [5, 6, 7, 8]
    assert all(tok.id_to_token(i) == t for t, i in tok.special_ids.items())


def test_bpe_round_trip_is_exact(bpe):
    for text in SAMPLES:
        assert bpe.decode(bpe.encode(text)) == text


def test_bpe_compresses(bpe):
    text = SAMPLES[0]
    assert len(bpe.encode(text)) < len(text) / 2
    assert bpe.vocab_size <= 400


def test_char_round_trip_on_seen_characters(char):
    for text in ["It is a truth universally acknowledged.", "  Naïve café — 日本語 🤖\n\ttabs  ", ""]:
        assert char.decode(char.encode(text)) == text


def test_char_unknown_becomes_unk(char):
    assert char.encode("Ω") == [char.unk_id]


def test_special_token_in_text(tok):
    ids = tok.encode("a <mask> b")
    assert ids.count(tok.mask_id) == 1
    assert tok.decode(ids) == "a <mask> b"
    assert tok.decode(ids, skip_special=True) == "a  b"


def test_offsets_point_into_the_text(tok):
    text = "a truth <mask> café"
    ids, offsets = tok.encode_with_offsets(text)
    assert ids == tok.encode(text)
    assert len(offsets) == len(ids)
    assert offsets[0][0] == 0 and offsets[-1][1] == len(text)
    assert all(a < b for a, b in offsets)
    assert all(offsets[i][1] <= offsets[i + 1][0] for i in range(len(offsets) - 1))
    masked = [text[a:b] for (a, b), i in zip(offsets, ids) if i == tok.mask_id]
    assert masked == ["<mask>"]


def test_save_load_identity(tok, tmp_path):
    tok.save(tmp_path)
    loaded = load_tokenizer(tmp_path)
    assert type(loaded) is type(tok)
    assert loaded.vocab_size == tok.vocab_size
    assert loaded.special_ids == tok.special_ids
    assert [loaded.id_to_token(i) for i in range(tok.vocab_size)] == [tok.id_to_token(i) for i in range(tok.vocab_size)]
    for text in SAMPLES[:3]:
        assert loaded.encode(text) == tok.encode(text)


def test_load_tokenizer_empty_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer(tmp_path)


def test_vocab_too_small():
    with pytest.raises(ValueError, match="256"):
        train_bpe(CORPUS, vocab_size=200)
