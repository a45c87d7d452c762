"""Data: corpora, synthetic tasks, MLM masking and T5 span corruption."""

import shutil
from pathlib import Path

import pytest
import torch

from attnlab.models.data import (
    AUSTEN_BOOKS,
    IGNORE_INDEX,
    CorpusUnavailable,
    austen_books,
    copy_pairs,
    download_austen_deb,
    fill_spans,
    load_corpus,
    mask_tokens,
    repeated_segments,
    reversal_pairs,
    span_corrupt,
    train_val_split,
)

# ---------------------------------------------------------------- austen (real .deb)


@pytest.fixture(scope="module")
def austen_deb(pytestconfig, tmp_path_factory) -> Path:
    """The real r-cran-janeaustenr .deb, kept in pytest's cache between runs."""
    cache = getattr(pytestconfig, "cache", None)  # None under -p no:cacheprovider
    folder = cache.mkdir("attnlab-austen-deb") if cache is not None else tmp_path_factory.mktemp("deb")
    debs = sorted(folder.glob("r-cran-janeaustenr_*.deb"))
    if debs:
        return debs[-1]
    if shutil.which("apt-get") is None:
        pytest.skip("apt-get is not available to download r-cran-janeaustenr")
    try:
        deb = download_austen_deb(tmp_path_factory.mktemp("apt"))
    except CorpusUnavailable as e:
        pytest.skip(f"could not download r-cran-janeaustenr: {e}")
    # Copy then rename: a parallel test worker never sees a half-written .deb.
    part = folder / (deb.name + ".part")
    shutil.copyfile(deb, part)
    return part.replace(folder / deb.name)


@pytest.fixture(scope="module")
def austen_cache(austen_deb, tmp_path_factory) -> Path:
    """An attnlab cache root whose austen folder was filled from the real .deb."""
    root = tmp_path_factory.mktemp("attnlab-cache")
    austen_books(root / "corpora" / "austen", deb=austen_deb)
    return root


def test_austen_books(austen_cache):
    # A deb path that does not exist proves this call reads only the cached texts.
    books = austen_books(austen_cache / "corpora" / "austen", deb="/nonexistent.deb")
    assert list(books) == list(AUSTEN_BOOKS)
    assert "PRIDE AND PREJUDICE" in books["prideprejudice"][:100]
    assert "It is a truth universally acknowledged" in books["prideprejudice"][:300]
    assert books["emma"].startswith("EMMA")
    # Measured: 4,025,028 characters over the six books.
    assert 3_900_000 < sum(map(len, books.values())) < 4_200_000


def test_load_corpus_austen_uses_cache_dir(austen_cache, monkeypatch):
    monkeypatch.setenv("ATTNLAB_CACHE_DIR", str(austen_cache))
    text = load_corpus("austen")
    assert text.startswith("SENSE AND SENSIBILITY")
    assert "PRIDE AND PREJUDICE" in text and "Persuasion" in text
    assert len(text) > 3_900_000


# ---------------------------------------------------------------- load_corpus


def test_load_corpus_file_and_folder(tmp_path):
    (tmp_path / "b.txt").write_text("second\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first café\n", encoding="utf-8")
    (tmp_path / "skip.md").write_text("not text\n", encoding="utf-8")
    assert load_corpus(tmp_path / "a.txt") == "first café\n"
    assert load_corpus(str(tmp_path)) == "first café\n\nsecond\n"


def test_load_corpus_unknown_lists_names():
    with pytest.raises(ValueError, match="austen.*wikitext-2"):
        load_corpus("no-such-corpus")


def test_synthetic_text_corpora():
    text = load_corpus("reversal")
    src, tgt = text.splitlines()[0].split("=")
    assert tgt == src[::-1]
    assert load_corpus("reversal") == text


# ---------------------------------------------------------------- synthetic tasks


def test_repeated_segments():
    x = repeated_segments(8, 16, vocab_size=50, seed=3, low=5)
    assert x.shape == (8, 32) and x.dtype == torch.long
    assert torch.equal(x[:, :16], x[:, 16:])
    assert x.min() >= 5 and x.max() < 50
    assert torch.equal(x, repeated_segments(8, 16, vocab_size=50, seed=3, low=5))
    assert not torch.equal(x, repeated_segments(8, 16, vocab_size=50, seed=4, low=5))


def test_pairs():
    rev = reversal_pairs(200, min_len=2, max_len=6, alphabet="abc", seed=1)
    assert len(rev) == 200
    assert all(t == s[::-1] and 2 <= len(s) <= 6 and set(s) <= set("abc") for s, t in rev)
    assert {len(s) for s, _ in rev} == {2, 3, 4, 5, 6}
    assert rev == reversal_pairs(200, min_len=2, max_len=6, alphabet="abc", seed=1)
    assert all(s == t for s, t in copy_pairs(50, seed=1))


# ---------------------------------------------------------------- LM batches


def test_train_val_split():
    ids = torch.arange(100)
    train, val = train_val_split(ids, 0.1)
    assert torch.equal(train, torch.arange(90)) and torch.equal(val, torch.arange(90, 100))
    with pytest.raises(ValueError):
        train_val_split(ids, 1.0)


# ---------------------------------------------------------------- MLM


def test_mask_tokens_proportions():
    vocab, mask_id = 1000, 4
    specials = [0, 1, 2, 3, 4]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (400, 512), generator=g)
    ids[:, 0] = 2  # <bos>
    ids[:, -64:] = 0  # padding
    inputs, labels = mask_tokens(ids, mask_id, vocab, specials, prob=0.15, generator=g)

    selected = labels != IGNORE_INDEX
    special = torch.isin(ids, torch.tensor(specials))
    assert not (selected & special).any()
    assert torch.equal(inputs[special], ids[special])
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(inputs[~selected], ids[~selected])

    n_sel = selected.sum().item()
    assert n_sel / (~special).sum().item() == pytest.approx(0.15, abs=0.005)
    masked = (inputs == mask_id) & selected
    unchanged = (inputs == ids) & selected
    replaced = selected & ~masked & ~unchanged
    assert masked.sum().item() / n_sel == pytest.approx(0.8, abs=0.01)
    # A random draw can land on the original token (1 in 995), counted as unchanged.
    assert replaced.sum().item() / n_sel == pytest.approx(0.1, abs=0.01)
    assert unchanged.sum().item() / n_sel == pytest.approx(0.1, abs=0.01)
    assert not torch.isin(inputs[replaced], torch.tensor(specials)).any()


def test_mask_tokens_deterministic():
    ids = torch.randint(5, 100, (4, 64), generator=torch.Generator().manual_seed(1))
    a = mask_tokens(ids, 4, 100, range(5), generator=torch.Generator().manual_seed(2))
    b = mask_tokens(ids, 4, 100, range(5), generator=torch.Generator().manual_seed(2))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


# ---------------------------------------------------------------- T5 spans


@pytest.mark.parametrize("length", [2, 3, 10, 57, 512])
def test_span_corrupt_round_trip(length):
    sentinels = list(range(1000, 1100))
    g = torch.Generator().manual_seed(length)
    ids = torch.randint(0, 900, (length,), generator=g)
    inputs, targets = span_corrupt(ids, sentinels, noise_density=0.15, mean_span=3, generator=g)
    assert torch.equal(fill_spans(inputs, targets, sentinels), ids)
    n_spans = torch.isin(inputs, torch.tensor(sentinels)).sum().item()
    assert n_spans >= 1
    assert inputs[-1].item() == sentinels[n_spans - 1]  # T5 ends on a noise span
    assert targets[0].item() == sentinels[0]
    # Each sentinel stands in both sequences; the rest are the original tokens.
    assert len(inputs) + len(targets) == length + 2 * n_spans
    if length == 512:
        noise = len(targets) - n_spans
        assert noise == round(512 * 0.15)
        assert n_spans == round(noise / 3)


def test_span_corrupt_needs_sentinels():
    with pytest.raises(ValueError, match="sentinel"):
        span_corrupt(torch.arange(512), [1000, 1001])
