"""Tokens in every answer: labels that tell tokens apart, ids, offsets, segments, special by id,
and generated text that is exactly the tokenizer's decoding.

Tiny real scratch models (a byte-level BPE decoder, char-level encoder and encoder-decoder),
the bundled MiniLM, and (slow) the bundled SmolLM2.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from attnlab.main import create_app
from attnlab.models import Registry, ScratchAdapter, TransformerConfig, build_model
from attnlab.models.labels import show_text
from attnlab.models.registry import ZOO, scratch_entry
from attnlab.models.tokenization import CharTokenizer, train_bpe
from tests.support import CORPUS as CHARS
from tests.support import adapter_entry, make_settings, parse_sse, tiny_adapter

CORPUS = ("東京 is the capital of Japan. 猫 is cat and 犬 is dog. I ❤️ 🐈 and 👨‍👩‍👧.\n"
          "x = 1\r\n\tif x:\n    return\u00a0x\n") * 20


@pytest.fixture(scope="module")
def bpe_adapter():
    torch.manual_seed(0)
    tokenizer = train_bpe(CORPUS, vocab_size=300)
    config = TransformerConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4, family="decoder",
                               positional="rope", max_positions=512)
    return ScratchAdapter("tiny-bpe", build_model(config), tokenizer)


class ScriptedDecoder(ScratchAdapter):
    """A tiny decoder whose greedy choice follows a script (after id x comes script[x]): generation that reaches
    control tokens on cue, through the real generation path."""

    script: dict[int, int] = {}

    def _step(self, ids, cache):
        logits, cache = super()._step(ids, cache)
        nxt = self.script.get(int(ids[0, -1]))
        if nxt is not None:
            logits = logits.clone()
            logits[0, nxt] += 1e4
        return logits, cache


@pytest.fixture(scope="module")
def scripted():
    torch.manual_seed(0)
    tokenizer = CharTokenizer.from_corpus(CHARS)
    config = TransformerConfig(vocab_size=tokenizer.vocab_size, d_model=32, n_layers=2, n_heads=4, family="decoder",
                               positional="rope", max_positions=64)
    adapter = ScriptedDecoder("scripted", build_model(config), tokenizer)
    a, b, x = (tokenizer.encode(c)[0] for c in "abx")
    adapter.script = {x: a, a: tokenizer.mask_id, tokenizer.mask_id: b, b: tokenizer.eos_id}  # x -> a <mask> b <eos>
    return adapter


@pytest.fixture(scope="module")
def client(one_thread, bpe_adapter, scripted):
    adapters = [bpe_adapter, scripted,
                tiny_adapter("tiny-bert", family="encoder", positional="learned", max_positions=64, type_vocab_size=0),
                tiny_adapter("tiny-t5", family="encoder-decoder", positional="t5_relative", max_positions=128)]
    zoo = [scratch_entry(name, ZOO / name, f"zoo {name}") for name in ("seq2seq", "induction")]
    app = create_app(make_settings(), registry=Registry([adapter_entry(a) for a in adapters] + zoo))
    with TestClient(app) as c:
        yield c


NO_FRAGMENT_MARKS = str.maketrans("", "", "₀₁₂₃₄₅₆₇₈₉")


def assert_label_shows_its_text(label: str, raw: str) -> None:
    """A label is its text made visible; a fragment adds which of the character's tokens it is."""
    assert "\ufffd" not in label
    assert label.translate(NO_FRAGMENT_MARKS) == show_text(raw), (label, raw)


def assert_tokens_true(body: dict, text: str, token_ids: list[int], prefix: str = "") -> None:
    """Labels show the character even for fragments, never U+FFFD; offsets slice the text to it."""
    labels, offsets = body[f"{prefix}tokens"], body[f"{prefix}offsets"]
    assert body[f"{prefix}token_ids"] == token_ids and len(labels) == len(offsets) == len(token_ids)
    for label, (start, end) in zip(labels, offsets):
        assert_label_shows_its_text(label, text[start:end])


# ----------------------------------------------------------------------------- inputs, tiny models


@pytest.mark.parametrize("text", ["東京", "I ❤️ 🐈", "x = 1\r\n\tif x:\n    return\u00a0x"])
def test_runs_and_attention_carry_labels_ids_and_offsets(client, bpe_adapter, text):
    ids = bpe_adapter.tokenizer.encode(text)
    run = client.post("/api/runs", json={"model": "tiny-bpe", "text": text}).json()
    assert_tokens_true(run, text, ids)
    assert run["special"] == [False] * len(ids) and run["segments"] is None
    dense = client.post("/api/attention", json={"model": "tiny-bpe", "text": text}).json()
    assert_tokens_true(dense, text, ids)
    assert_tokens_true(dense, text, ids, prefix="key_")
    assert dense["tokens"] == run["tokens"]
    roll = client.get(f"/api/runs/{run['run_id']}/rollout").json()
    assert roll["tokens"] == run["tokens"] and roll["token_ids"] == ids and roll["offsets"] == run["offsets"]


def test_fragments_of_one_character_are_distinct_and_show_it(client):
    run = client.post("/api/runs", json={"model": "tiny-bpe", "text": "猫犬"}).json()
    fragments = [t for t in run["tokens"] if t[-1] in "₁₂₃₄"]
    assert fragments and len(set(run["tokens"])) == len(run["tokens"])
    assert all(t[0] in "猫犬" for t in fragments)
    for label, (start, end) in zip(run["tokens"], run["offsets"]):
        assert "猫犬"[start:end] in label


def test_whitespace_labels_are_visible_and_distinct(client):
    text = "a  b\tc\r\nd\ne\u00a0f \u200bg"
    body = client.post("/api/attention", json={"model": "tiny-bpe", "text": text}).json()
    labels = body["tokens"]
    assert not any(ch.isspace() or ch == "\u200b" for label in labels for ch in label)
    assert all(mark in "".join(labels) for mark in ("·", "⇥", "␍", "↵", "⍽", "⟨U+200B⟩"))
    for label, (start, end) in zip(labels, body["offsets"]):
        assert_label_shows_its_text(label, text[start:end])


def test_sentence_pairs_carry_segments_and_offsets_into_each_text(client):
    body = client.post("/api/runs", json={"model": "tiny-bert", "text": "ab c", "text_pair": "de"}).json()
    assert body["segments"] == [0, 0, 0, 0, 1, 1]
    texts = ["ab c", "de"]
    assert [texts[seg][s:e] for seg, (s, e) in zip(body["segments"], body["offsets"])] == list("ab cde")


def test_typed_control_strings_are_special_by_id(client):
    text = "ab<eos>c<mask>"
    body = client.post("/api/runs", json={"model": "tiny-bert", "text": text}).json()
    assert body["tokens"] == ["a", "b", "<eos>", "c", "<mask>"]
    assert body["special"] == [False, False, True, False, True]
    assert [text[s:e] for s, e in body["offsets"]] == ["a", "b", "<eos>", "c", "<mask>"]  # typed: they keep a span


def test_seq2seq_target_tokens_carry_ids_and_offsets_into_the_target_text(client):
    adapter_text = "the cat"
    run = client.post("/api/runs", json={"model": "tiny-t5", "text": adapter_text}).json()
    dense = client.post("/api/attention", json={"model": "tiny-t5", "text": adapter_text}).json()
    ids = run["target_token_ids"]
    assert run["target_offsets"][0] is None and run["target_special"][0]  # the decoder's start token
    assert run["target_tokens"] == dense["decoder"]["tokens"] == dense["cross"]["tokens"]
    assert dense["cross"]["key_tokens"] == run["tokens"] and dense["target_text"] == run["target_text"]
    assert len(ids) == len(run["target_tokens"]) == len(run["target_offsets"])
    pieces = [run["target_text"][s:e] for s, e in run["target_offsets"][1:]]
    assert "".join(pieces) == run["target_text"]  # char tokens: the slices tile the decoded target
    assert [show_text(p) if not sp else p for p, sp in zip(pieces, run["target_special"][1:])] == \
        run["target_tokens"][1:]


def test_seq2seq_control_tokens_are_no_part_of_the_target_text(client):
    """The trained reverser: "rev:abc" -> "cba", then <eos>. Like [CLS]/[SEP], the start token and the generated
    <eos> are control tokens: offsets null, and no part of target_text."""
    run = client.post("/api/runs", json={"model": "seq2seq", "text": "rev:abc"}).json()
    assert run["target_text"] == "cba"
    assert run["target_tokens"] == ["<bos>", "c", "b", "a", "<eos>"]
    assert run["target_offsets"] == [None, [0, 1], [1, 2], [2, 3], None]
    assert run["target_special"] == [True, False, False, False, True]
    dense = client.post("/api/attention", json={"model": "seq2seq", "text": "rev:abc"}).json()
    assert dense["target_text"] == "cba" and dense["decoder"]["offsets"] == run["target_offsets"]


def test_unknown_characters_show_what_they_replaced(client):
    """An unknown token stands for text: not special, and its label shows the character it replaced."""
    run = client.post("/api/runs", json={"model": "induction", "text": "東京 ab"}).json()
    assert run["tokens"][:2] == ["<unk>東", "<unk>京"] and run["tokens"][-2:] == ["a", "b"]
    assert run["special"] == [False] * len(run["tokens"])
    assert run["offsets"][:2] == [[0, 1], [1, 2]]
    pair = client.post("/api/runs", json={"model": "tiny-bert", "text": "a東", "text_pair": "😀b"}).json()
    assert pair["tokens"] == ["a", "<unk>東", "<unk>😀", "b"] and pair["special"] == [False] * 4


@pytest.mark.parametrize("model, text", [("tiny-bpe", " \n\t "), ("tiny-bpe", "\u00a0"), ("tiny-bert", "\n\n\n"),
                                         ("tiny-bert", "\u200b")])
def test_whitespace_the_tokenizer_keeps_is_text(client, model, text):
    """One rule for every model: a text is refused only when it gives no token of its own."""
    r = client.post("/api/runs", json={"model": model, "text": text})
    assert r.status_code == 200, r.text
    assert all(o is not None for o in r.json()["offsets"])


def test_training_snapshots_default_to_the_probe_s_recorded_kind(client):
    """mlm recorded its probe on the encoder: no kind asked means that one, not the decoder."""
    from attnlab.models.training import load_snapshots

    probe = load_snapshots("models/zoo/mlm")[0]["probes"][0]
    r = client.get("/api/training/mlm/snapshots", params={"probe": probe["name"]})
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == probe["kinds"][0] == "encoder"
    bad = client.get("/api/training/mlm/snapshots", params={"probe": probe["name"], "kind": "decoder"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("kind: ")


# ----------------------------------------------------------------------------- generation, tiny model


def _trace(client, **req) -> tuple[list[dict], dict]:
    events = parse_sse(client.post("/api/generate", json={**req, "stream": True}).text)
    steps = [d for n, d in events if n == "token"]
    return steps, next(d for n, d in events if n == "summary")


def _check_generation(steps: list[dict], summary: dict, prompt: str, decode) -> None:
    """``decode``: the tokenizer's own decoding with special tokens skipped (control tokens are not text)."""
    ids = summary["token_ids"]
    assert ids == [s["token_id"] for s in steps]
    assert summary["generated_text"] == decode(ids) and summary["text"] == prompt + decode(ids)
    assert "".join(s["text"] for s in steps) + summary["tail_text"] == summary["generated_text"]
    labels = []
    for s in steps:
        for r in s["relabel"]:
            labels[r["step"]] = r["token"]
        labels.append(s["token"])
        assert len({t["token_id"] for t in s["top"]}) == len(s["top"])  # top-k entries carry distinct ids
    assert labels == summary["tokens"]
    assert summary["offsets"] == [s["offsets"] for s in steps]
    assert [o is None for o in summary["offsets"]] == summary["special"]
    for (start, end) in filter(None, summary["offsets"]):
        assert 0 <= start <= end <= len(summary["generated_text"])


def test_generated_text_is_the_decoding_and_the_stream_concatenates_to_it(client, bpe_adapter):
    held = relabelled = tails = 0
    for seed in range(12):
        req = {"model": "tiny-bpe", "prompt": "東京 is", "max_new_tokens": 12, "temperature": 1.0, "seed": seed}
        steps, summary = _trace(client, **req)
        decode = bpe_adapter.tokenizer.decode
        _check_generation(steps, summary, req["prompt"], lambda ids, decode=decode: decode(ids, skip_special=True))
        as_json = client.post("/api/generate", json=req).json()
        assert {k: v for k, v in as_json["summary"].items() if k != "timings"} == \
            {k: v for k, v in summary.items() if k != "timings"}
        assert summary["tokens"] == bpe_adapter.labels(summary["token_ids"])
        held += sum(1 for s in steps if s["text"] == "" and "₁" not in s["token"] and s["token"] != "∅")
        relabelled += sum(len(s["relabel"]) for s in steps)
        tails += summary["tail_text"] != ""
    # random bytes from a random model: steps stop inside characters, later steps complete them,
    # and some traces end inside one
    assert held and relabelled and tails


def test_generated_control_tokens_add_no_text(client, scripted):
    """Generated control tokens (<mask> midway, <eos> at the end) are no part of the text, as with skip-special
    decoding: their step's text is empty, offsets null, flagged special; text == prompt + generated_text."""
    req = {"model": "scripted", "prompt": "x", "max_new_tokens": 8, "temperature": 0}
    steps, summary = _trace(client, **req)
    tok = scripted.tokenizer
    assert summary["token_ids"] == [tok.encode("a")[0], tok.mask_id, tok.encode("b")[0], tok.eos_id]
    assert summary["tokens"] == ["a", "<mask>", "b", "<eos>"] and summary["stopped"] == "eos"
    assert summary["special"] == [False, True, False, True]
    assert summary["offsets"] == [[0, 1], None, [1, 2], None] == [s["offsets"] for s in steps]
    assert [s["text"] for s in steps] == ["a", "", "b", ""]
    assert summary["generated_text"] == "ab" and summary["text"] == "xab" and summary["tail_text"] == ""
    assert client.post("/api/generate", json=req).json()["summary"]["text"] == "xab"


def test_top_k_carries_token_ids_and_labels_in_context(client):
    steps, summary = _trace(client, model="tiny-bpe", prompt="猫", max_new_tokens=4, temperature=0, n_top=8)
    for s in steps:
        assert [t["prob"] for t in s["top"]] == sorted((t["prob"] for t in s["top"]), reverse=True)
        assert s["token_id"] == s["top"][0]["token_id"]  # greedy: the chosen one is the most likely, by id
        assert s["token"] == s["top"][0]["token"]


# ----------------------------------------------------------------------------- MiniLM


@pytest.fixture(scope="module")
def minilm(one_thread):
    pretrained = pytest.importorskip("attnlab.models.hf")
    if pretrained.minilm_dir() is None:
        pytest.skip("MiniLM package not installed")
    app = create_app(make_settings(dense_budget=4_000_000), registry=Registry([pretrained.minilm_entry()]))
    with TestClient(app) as c:
        yield c


def test_minilm_typed_sep_is_special_and_counted_by_special_sink(minilm):
    text = "before [SEP] after"
    run = minilm.post("/api/runs", json={"model": "minilm", "text": text}).json()
    assert run["token_ids"] == [101, 2077, 102, 2044, 102]
    assert run["tokens"] == ["[CLS]", "before", "[SEP]", "after", "[SEP]"]
    assert run["special"] == [True, False, True, False, True]
    assert run["offsets"] == [None, [0, 6], [7, 12], [13, 18], None]  # added tokens: null; typed: their span
    dense = np.asarray(minilm.post("/api/attention", json={"model": "minilm", "text": text}).json()["attention"])
    by_id = dense[..., np.asarray(run["special"])].sum(-1).mean(-1)  # (L, H)
    np.testing.assert_allclose(np.asarray(run["head_stats"]["encoder"]["special_sink"]), by_id, atol=1e-4)


def test_minilm_unk_shows_its_character_and_is_not_special(minilm):
    """[UNK] stands for text (😀 is not in BERT's vocabulary): not special, so special_sink does not count it."""
    text = "a 😀 b"
    run = minilm.post("/api/runs", json={"model": "minilm", "text": text}).json()
    assert run["tokens"] == ["[CLS]", "a", "[UNK]😀", "b", "[SEP]"]
    assert run["token_ids"][2] == 100 and run["special"] == [True, False, False, False, True]
    assert run["offsets"][2] == [2, 3]
    dense = np.asarray(minilm.post("/api/attention", json={"model": "minilm", "text": text}).json()["attention"])
    by_id = dense[..., np.asarray(run["special"])].sum(-1).mean(-1)  # (L, H): [CLS] and [SEP] only
    np.testing.assert_allclose(np.asarray(run["head_stats"]["encoder"]["special_sink"]), by_id, atol=1e-4)


@pytest.mark.parametrize("text", ["\u200b", "\x00", "\ufeff", "\u0301", " \n\t "])
def test_minilm_refuses_text_with_no_token_of_its_own(minilm, text):
    """WordPiece drops these characters: BERT would see only [CLS] [SEP]. Refused as every model refuses it."""
    for path in ("/api/runs", "/api/attention"):
        r = minilm.post(path, json={"model": "minilm", "text": text})
        assert r.status_code == 422, r.text
        assert r.json()["detail"].startswith("text: gives no token of its own: model 'minilm'"), r.text
    r = minilm.post("/api/runs", json={"model": "minilm", "text": "fine", "text_pair": text})
    assert r.status_code == 422 and r.json()["detail"].startswith("text_pair: gives no token of its own"), r.text
    assert minilm.post("/api/runs", json={"model": "minilm", "text": f"a{text}b"}).status_code == 200


def test_minilm_pairs_carry_segments_and_offsets_into_each_text(minilm):
    text, pair = "The cat sat.", "東京 naïve"
    body = minilm.post("/api/attention", json={"model": "minilm", "text": text, "text_pair": pair}).json()
    assert body["tokens"] == ["[CLS]", "the", "cat", "sat", ".", "[SEP]", "東", "京", "naive", "[SEP]"]
    assert body["segments"] == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1] == body["key_segments"]
    texts = [text, pair]
    raw = [texts[seg][o[0]:o[1]] if o else None for seg, o in zip(body["segments"], body["offsets"])]
    assert raw == [None, "The", "cat", "sat", ".", None, "東", "京", "naïve", None]


# ----------------------------------------------------------------------------- SmolLM2 (byte-level BPE)


@pytest.fixture(scope="module")
def smollm2(one_thread):
    """(client, tokenizer): the app over SmolLM2, and the model's own tokenizer as the reference."""
    pretrained = pytest.importorskip("attnlab.models.hf")
    entry = pretrained.smollm2_entry()
    if not entry.info().available:
        pytest.skip(entry.info().reason)
    from transformers import AutoTokenizer

    app = create_app(make_settings(max_new_tokens=16), registry=Registry([entry]))
    with TestClient(app) as c:
        c.post("/api/runs", json={"model": "smollm2", "text": "warm up"})  # loads (converts once per machine)
        tokenizer = AutoTokenizer.from_pretrained(str(pretrained.converted_dir(pretrained.smollm2_gguf())))
        yield c, tokenizer


@pytest.mark.slow
def test_smollm2_cjk_fragments(smollm2):
    client, tokenizer = smollm2
    run = client.post("/api/runs", json={"model": "smollm2", "text": "東京"}).json()
    assert run["tokens"] == ["東₁", "東₂", "京₁", "京₂"]
    assert run["token_ids"] == tokenizer("東京")["input_ids"]
    assert run["offsets"] == [[0, 1], [0, 1], [1, 2], [1, 2]]


@pytest.mark.slow
def test_smollm2_whitespace_labels(smollm2):
    client, _ = smollm2
    text = "x = 1\r\n\tif x:\n    return\u00a0x"
    body = client.post("/api/attention", json={"model": "smollm2", "text": text, "layers": [0], "heads": [0]}).json()
    assert body["tokens"] == ["x", "·=", "·", "1", "␍↵", "⇥", "if", "·x", ":", "↵···", "·return", "⍽", "x"]
    assert [text[s:e] for s, e in body["offsets"]] == \
        ["x", " =", " ", "1", "\r\n", "\t", "if", " x", ":", "\n   ", " return", "\u00a0", "x"]


@pytest.mark.slow
@pytest.mark.parametrize("text, tokens", [("\n\n\n", ["↵↵↵"]), ("\u00a0", ["⍽"]), ("  ", ["··"])])
def test_smollm2_whitespace_is_text(smollm2, text, tokens):
    """A byte-level BPE keeps every character: whitespace-only text is accepted, as real tokens."""
    client, tokenizer = smollm2
    r = client.post("/api/runs", json={"model": "smollm2", "text": text})
    assert r.status_code == 200, r.text
    assert r.json()["tokens"] == tokens and r.json()["token_ids"] == tokenizer(text)["input_ids"]


@pytest.mark.slow
def test_smollm2_typed_im_end_is_special(smollm2):
    client, _ = smollm2
    run = client.post("/api/runs", json={"model": "smollm2", "text": "before <|im_end|> after"}).json()
    assert run["tokens"] == ["before", "·", "<|im_end|>", "·after"]
    assert run["token_ids"][2] == 2 and run["special"] == [False, False, True, False]
    assert run["offsets"][2] == [7, 17]


@pytest.mark.slow
@pytest.mark.parametrize("prompt, n", [
    ("The Japanese word for cat is 猫. The Japanese word for dog is", 4),
    ("My favourite emoji is", 8),  # greedy: stops inside an emoji
    ("東京の天気は", 8),  # greedy: stops inside a katakana character
])
def test_smollm2_generated_text_is_the_decoding(smollm2, prompt, n):
    client, tokenizer = smollm2
    req = {"model": "smollm2", "prompt": prompt, "max_new_tokens": n, "temperature": 0}
    steps, summary = _trace(client, **req)
    _check_generation(steps, summary, prompt, lambda ids: tokenizer.decode(ids, skip_special_tokens=True))
    ids = summary["token_ids"]
    assert summary["text"] == prompt + tokenizer.decode(ids, skip_special_tokens=True)
    assert summary["prompt_token_ids"] == tokenizer(prompt)["input_ids"]
    for label, (start, end) in zip(summary["prompt_tokens"], summary["prompt_offsets"]):
        assert_label_shows_its_text(label, prompt[start:end])
    text = summary["generated_text"]
    for label, (start, end) in zip(summary["tokens"], summary["offsets"]):
        if "⟨" not in label:  # hex: a character the last step left unfinished (decoded as U+FFFD)
            assert_label_shows_its_text(label, text[start:end])
    if summary["tail_text"]:
        assert summary["tail_text"] == "\ufffd" and steps[-1]["text"] == "" and "⟨" in summary["tokens"][-1]
    else:
        assert "\ufffd" not in summary["text"]


# ----------------------------------------------------------------------------- training snapshots


def test_training_snapshots_use_the_same_labels(client):
    """The zoo's lm checkpoint (byte-level BPE) was saved with vocabulary strings ("Ġis"): the
    page gets labels from the checkpoint's tokenizer, by id, like every other view."""
    from attnlab.models.tokenization import load_tokenizer
    from attnlab.models.training import load_snapshots

    meta, _ = load_snapshots("models/zoo/lm")
    probe = meta["probes"][0]
    body = client.get("/api/training/lm/snapshots", params={"probe": probe["name"], "kind": "decoder"}).json()
    tokenizer = load_tokenizer("models/zoo/lm")
    assert body["row_token_ids"] == body["col_token_ids"] == probe["ids"]
    assert body["row_tokens"] == tokenizer.labels(probe["ids"]) == probe["tokens"]
    assert body["row_tokens"][:3] == ["It", "·is", "·a"] and not any("Ġ" in t for t in body["row_tokens"])
