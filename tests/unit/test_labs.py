"""Labs: quick runs write results.json with their fields; shipped zoo checkpoints work."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from attnlab.models.architectures import load_model
from attnlab.models.labs import LABS, run_lab
from attnlab.models.paths import ZOO
from attnlab.models.registry import scratch_entry
from attnlab.models.tokenization import load_tokenizer

TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, "
        "must be in want of a wife. However little known the feelings or views of such a man may be. ") * 40


@pytest.fixture
def corpus(tmp_path) -> str:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT)
    return str(path)


def read(returned: dict, out: Path) -> dict:
    results = json.loads((out / "results.json").read_text())
    assert results["lab"] == returned["lab"]
    assert (out / "config.json").exists() and (out / "model.safetensors").exists()
    assert results["seconds"] >= 0 and "figures" in results
    return results


def test_registry_lists_every_lab():
    assert set(LABS) == {"induction", "extrapolation", "seq2seq", "lm", "mlm", "heads", "stability", "schedules"}
    with pytest.raises(ValueError, match="known"):
        run_lab("nope", "/tmp/nope")


def test_induction_quick(tmp_path):
    r = read(run_lab("induction", tmp_path, quick=True, steps=3, threads=1), tmp_path)
    assert len(r["induction_scores"]) == 2 and len(r["induction_scores"][0]) == 4
    assert {"first_half_loss", "repeated_half_loss", "best_head", "median_induction_score", "generalization"} <= set(r)
    assert (tmp_path / "snapshots.json").exists()


def test_extrapolation_quick(tmp_path, corpus):
    r = read(run_lab("extrapolation", tmp_path, quick=True, steps=2, schemes="learned,alibi", corpus=corpus,
                     train_len=16, threads=1), tmp_path)
    assert r["eval_lengths"] == [16, 32, 64, 128]
    learned = r["table"]["learned"]
    assert learned["perplexity"]["16"] is not None and learned["perplexity"]["32"] is None
    assert "cannot extrapolate" in learned["not_applicable"]["32"]
    assert all(v is not None for v in r["table"]["alibi"]["perplexity"].values())
    assert r["shipped_scheme"] == "alibi" and (tmp_path / "learned" / "model.safetensors").exists()


def test_seq2seq_quick(tmp_path):
    r = read(run_lab("seq2seq", tmp_path, quick=True, steps=3, d_model=32, n_eval=10, threads=1), tmp_path)
    assert set(r["exact_match"]) == {"reverse", "copy"}
    assert 0 <= r["anti_diagonal_best"]["score"] <= 1 and r["examples"]


@pytest.mark.parametrize("lab", ["lm", "mlm"])
def test_text_labs_quick(tmp_path, corpus, lab):
    options = {"steps": 2, "corpus": corpus, "d_model": 32, "n_layers": 1, "vocab_size": 300, "block_size": 32,
               "threads": 1}
    if lab == "lm":
        options["sample_tokens"] = 4
    r = read(run_lab(lab, tmp_path, quick=True, **options), tmp_path)
    assert r["val_perplexity"] is not None
    assert ("samples" if lab == "lm" else "fill_mask") in r
    load_tokenizer(tmp_path)


# the labs that ship a checkpoint (heads, stability, schedules and checkpointing ship results only)
SHIPPED = sorted(p.parent.name for p in ZOO.glob("*/results.json") if (p.parent / "model.safetensors").exists())


@pytest.mark.skipif(not SHIPPED, reason="no trained checkpoints under models/zoo yet (bench/make_zoo.py makes them)")
@pytest.mark.parametrize("name", SHIPPED or ["none"])
def test_shipped_checkpoint_loads_and_runs(name):
    directory = ZOO / name
    results = json.loads((directory / "results.json").read_text())
    assert not results["quick"]
    adapter = scratch_entry(name, directory).load()
    text = {"seq2seq": "rev:hello"}.get(name, "abcabc" if name == "induction" else "It is a truth")
    result = adapter.forward(text)
    assert result.recorder.records and len(result.tokens) > 0
    stored = load_file(str(directory / "model.safetensors"))  # shipped as float16, loaded as float32
    assert all(t.dtype == torch.float16 for t in stored.values() if t.is_floating_point())
    if name == "seq2seq":
        assert {"<bos>", "<eos>"} <= set(adapter.tokenizer.special_ids)


@pytest.mark.skipif(not (ZOO / "induction" / "results.json").exists(), reason="no shipped induction checkpoint")
def test_shipped_induction_head_stands_out():
    from attnlab.models.labs.induction import evaluate, tokenizer

    model = load_model(ZOO / "induction").float().eval()
    tok = tokenizer()
    ev = evaluate(model, tok.vocab_size, len(tok.special_ids), seg_len=32, n_seqs=8)
    scores = ev["scores"]["induction"].flatten()
    assert scores.max() > 5 * scores.median()
    assert scores.max() > 0.3
    assert ev["repeated_half_loss"] < 0.5 * ev["first_half_loss"]


# the end of Persuasion: inside the last 5% of the austen corpus, the MLM lab's validation split
HELD_OUT = (
    "\"I can listen no longer in silence.  I must speak to you by such means as are within my reach.  You "
    "pierce my soul.  I am half agony, half hope.  Tell me not that I am too late, that such precious feelings "
    "are gone for ever.  I offer myself to you again with a heart even more your own than when you almost "
    "broke it, eight years and a half ago.  Dare not say that man forgets sooner than  woman, that his love has "
    "an earlier death.  I have loved none but you.  Unjust I may have been, weak and resentful I have been, but "
    "never inconstant.  You alone have brought me to Bath.  For you alone, I think and plan.  Have you not seen "
    "this?  Can you fail to have understood my wishes?"
)


@pytest.mark.skipif(not (ZOO / "mlm" / "results.json").exists(), reason="no shipped mlm checkpoint")
def test_shipped_mlm_beats_unigram_on_held_out_text():
    from attnlab.models.data import mask_tokens
    from attnlab.models.labs.mlm import fill_mask

    model = load_model(ZOO / "mlm").float().eval()
    tok = load_tokenizer(ZOO / "mlm")
    ids = torch.tensor([tok.encode(HELD_OUT)])
    hits = best_constant = total = 0
    with torch.no_grad():
        for seed in range(8):
            inputs, labels = mask_tokens(ids, tok.mask_id, tok.vocab_size, tok.special_ids.values(), 0.15,
                                         torch.Generator().manual_seed(seed))
            selected = labels != -100
            predicted = model(inputs).logits[selected].argmax(-1)
            hits += int((predicted == labels[selected]).sum())
            best_constant += int(torch.bincount(labels[selected]).max())  # the best single guess, per draw
            total += int(selected.sum())
    assert total > 100
    assert hits / total > 2 * best_constant / total, (hits, best_constant, total)
    results = json.loads((ZOO / "mlm" / "results.json").read_text())
    assert results["val_accuracy"] > 2 * results["val_unigram_accuracy"]
    guesses = fill_mask(model, tok, "I do not <mask> what you mean.")["guesses"][0]
    assert not any(g["token"].startswith("<") for g in guesses)
