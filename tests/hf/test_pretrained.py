"""Pretrained Hugging Face models behind the adapter: capture, backends, offline registry.

- our attention function, registered with transformers, records tiles equal to the
  model's own eager attentions under every backend (padding, segments, GQA, KV cache);
- the HF mask becomes an exact lazy spec (causal, key padding, offsets, or a dense
  fallback);
- the bundled MiniLM and SmolLM2 load with no network; hub ids not in the local cache
  are listed unavailable with the reason; local paths cannot leave the model root.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from attnlab.models import Registry, UnavailableModel, capture, default_registry, get_backend  # noqa: E402
from attnlab.models.attention import AttentionSpec, use_backend  # noqa: E402
from attnlab.models.hf import (  # noqa: E402
    SMOLLM2_CONFIG,
    HFAdapter,
    UnsafeModelPath,
    info_from_config,
    load_hf,
    pretrained_entries,
    resolve_model_dir,
    spec_from_hf,
)
from tests.hf.tiny_hf import assert_maps_equal, load_eager  # noqa: E402

BACKENDS = ["math", "sdpa", "flash"]


@pytest.fixture
def no_network(monkeypatch):
    """Offline for real: HF offline mode, and any socket connection is an error."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise OSError("network access in a test that must work offline")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    """A Hugging Face cache with nothing in it."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def minilm():
    registry = default_registry()
    if not registry.info("minilm").available:
        pytest.skip(registry.info("minilm").reason)
    return registry.load("minilm")


@pytest.fixture(scope="module")
def smollm2():
    registry = default_registry()
    if not registry.info("smollm2").available:
        pytest.skip(registry.info("smollm2").reason)
    return registry.load("smollm2")  # converts the GGUF once per machine, then reads the cache


def run_hf(adapter: HFAdapter, backend: str, **inputs):
    with torch.no_grad(), use_backend(backend), capture() as rec:
        out = adapter.model(**inputs)
    return out, rec


# -- the HF mask as a lazy spec ---------------------------------------------------------------

def _qk(batch: int, t_q: int, t_k: int, heads: int = 2, d: int = 4):
    return torch.randn(batch, heads, t_q, d), torch.randn(batch, heads, t_k, d)


def test_spec_without_mask_is_causal_or_full_with_cache_offset():
    q, k = _qk(1, 1, 6)
    spec = spec_from_hf(q, k, None, 0.5, is_causal=True)
    assert spec.causal and spec.q_offset == 5 and spec.key_padding is None
    q, k = _qk(1, 6, 6)
    spec = spec_from_hf(q, k, None, 0.5, is_causal=False)
    assert not spec.causal and spec.q_offset == 0


@pytest.mark.parametrize("causal", [True, False])
def test_spec_recognises_padding_and_causality(causal):
    from transformers.masking_utils import bidirectional_mask_function, causal_mask_function, sdpa_mask

    padding = torch.tensor([[1, 1, 1, 1, 1], [0, 1, 1, 1, 1]]).bool()  # the second row left-padded
    fn = causal_mask_function if causal else bidirectional_mask_function
    mask = sdpa_mask(batch_size=2, q_length=5, kv_length=5, mask_function=fn, attention_mask=padding,
                     allow_is_causal_skip=False)
    q, k = _qk(2, 5, 5)
    spec = spec_from_hf(q, k, mask, 0.5, is_causal=causal)
    assert spec.causal == causal and spec.bias is None
    assert torch.equal(spec.key_padding, padding)


def test_spec_reads_an_additive_float_mask():
    padding = torch.tensor([[True, True, False]])
    mask = torch.zeros(1, 1, 3, 3).masked_fill(~padding[:, None, None, :], torch.finfo(torch.float32).min)
    q, k = _qk(1, 3, 3)
    spec = spec_from_hf(q, k, mask, 0.5, is_causal=False)
    assert torch.equal(spec.key_padding, padding) and spec.bias is None


def test_other_masks_fall_back_to_an_exact_dense_bias():
    # a sliding window of 2 is neither causal nor padding
    t = 5
    i = torch.arange(t)
    window = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < 2)
    mask = window[None, None]
    q, k = _qk(1, t, t)
    spec = spec_from_hf(q, k, mask, 0.5, is_causal=True)
    assert spec.bias is not None and spec.extras["hf_mask"] == "dense"
    weights = get_backend("math")(q, k, k, spec, need_weights=True).weights[0]
    scores = (q @ k.transpose(-1, -2))[0] * 0.5
    expected = scores.masked_fill(~window, float("-inf")).softmax(-1)
    torch.testing.assert_close(weights, expected)
    # the same mask varying across a batch cannot be one bias: refused, not approximated
    mask2 = torch.stack([window, torch.ones(t, t, dtype=torch.bool).tril()])[:, None]
    q2, k2 = _qk(2, t, t)
    with pytest.raises(NotImplementedError, match="differs across the batch"):
        spec_from_hf(q2, k2, mask2, 0.5, is_causal=True)


# -- capture tiles equal eager attentions, every backend ----------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_tiny_bert_capture_equals_eager_with_padding_and_pairs(tiny_dir, backend):
    adapter = load_hf("tiny-bert", tiny_dir["bert"])
    eager = load_eager(tiny_dir["bert"])
    enc = adapter.tokenizer(["the cat sat on a mat", "dog ran"], ["a dog ran far", "sun"], padding=True,
                            return_token_type_ids=True, return_tensors="pt")
    assert enc["attention_mask"][1].eq(0).any() and enc["token_type_ids"].eq(1).any()
    out, rec = run_hf(adapter, backend, **enc)
    with torch.no_grad():
        ref = eager(**enc, output_attentions=True)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-5, rtol=0)
    assert rec.kinds == ["encoder"]
    assert_maps_equal(rec, "encoder", ref.attentions, enc["attention_mask"], atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["gpt2", "llama"])
def test_tiny_decoder_capture_equals_eager_with_padding(tiny_dir, kind, backend):
    adapter = load_hf(f"tiny-{kind}", tiny_dir[kind])
    eager = load_eager(tiny_dir[kind])
    ids = torch.randint(5, 20, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 5:] = 0  # right padding on the second row
    out, rec = run_hf(adapter, backend, input_ids=ids, attention_mask=mask)
    with torch.no_grad():
        ref = eager(input_ids=ids, attention_mask=mask, output_attentions=True)
    real = mask.bool()
    for b in range(2):
        torch.testing.assert_close(out.logits[b, real[b]], ref.logits[b, real[b]], atol=1e-5, rtol=0)
    assert rec.kinds == ["decoder"]
    assert_maps_equal(rec, "decoder", ref.attentions, mask, atol=1e-5)
    if kind == "llama":
        assert rec.get("decoder", 0).k.shape[1] == 2  # GQA: keys kept per KV head


@pytest.mark.parametrize("backend", BACKENDS)
def test_minilm_capture_equals_eager(minilm, backend):
    eager = load_eager_bert_model(minilm)
    enc = minilm.tokenizer(["Attention is all you need.", "The cat sat."], ["It really is.", "On the mat"],
                           padding=True, return_tensors="pt")
    out, rec = run_hf(minilm, backend, **enc)
    with torch.no_grad():
        ref = eager(**enc, output_attentions=True)
    real = enc["attention_mask"].bool()
    for b in range(2):
        torch.testing.assert_close(out.last_hidden_state[b, real[b]], ref.last_hidden_state[b, real[b]],
                                   atol=1e-4, rtol=0)
    assert_maps_equal(rec, "encoder", ref.attentions, enc["attention_mask"], atol=1e-5)


def load_eager_bert_model(adapter: HFAdapter):
    from transformers import AutoModel

    return AutoModel.from_pretrained(adapter.path, attn_implementation="eager", local_files_only=True).eval()


@pytest.fixture(scope="module")
def smollm2_reference(smollm2):
    """Eager logits and attentions of the same SmolLM2 weights on a short prompt."""
    from transformers import AutoModelForCausalLM

    eager = AutoModelForCausalLM.from_pretrained(smollm2.path, attn_implementation="eager", local_files_only=True,
                                                 dtype=torch.float32).eval()
    prompt = "The capital of France is"
    with torch.no_grad():
        return prompt, eager(input_ids=smollm2.tokenize(prompt).ids, output_attentions=True)


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_smollm2_capture_equals_eager_with_gqa(smollm2, smollm2_reference, backend):
    prompt, ref = smollm2_reference
    result = smollm2.forward(prompt, backend=backend)
    torch.testing.assert_close(result.logits, ref.logits, atol=1e-4, rtol=0)
    record = result.recorder.get("decoder", 0)
    assert record.q.shape[1] == 9 and record.k.shape[1] == 3
    assert_maps_equal(result.recorder, "decoder", ref.attentions, atol=1e-5)


def test_outputs_agree_across_backends(minilm, tiny_dir):
    text = "Transformers attend to every token in the sentence at once."
    results = {b: minilm.forward(text, "and here is a second segment", backend=b) for b in BACKENDS}
    maps = {b: r.recorder.all_dense("encoder") for b, r in results.items()}
    for b in ("sdpa", "flash"):
        torch.testing.assert_close(maps[b], maps["math"], atol=1e-5, rtol=0)
    gpt = load_hf("tiny-gpt2", tiny_dir["gpt2"])
    logits = {b: gpt.forward("the cat sat on a mat", backend=b).logits for b in BACKENDS}
    for b in ("sdpa", "flash"):
        torch.testing.assert_close(logits[b], logits["math"], atol=1e-5, rtol=0)


# -- the adapter ------------------------------------------------------------------------------------

def test_tokenize_offsets_specials_and_segments(tiny_dir):
    adapter = load_hf("tiny-bert", tiny_dir["bert"])
    enc = adapter.tokenize("the cat sat", "a dog")
    assert enc.tokens == ["[CLS]", "the", "cat", "sat", "[SEP]", "a", "dog", "[SEP]"]
    assert enc.special == [True, False, False, False, True, False, False, True]
    assert enc.offsets[1:4] == [(0, 3), (4, 7), (8, 11)] and enc.offsets[5:7] == [(0, 1), (2, 5)]
    assert enc.offsets[0] is None and enc.offsets[4] is None and enc.offsets[7] is None  # added by the tokenizer
    assert enc.segments == [0, 0, 0, 0, 0, 1, 1, 1]
    assert enc.token_type_ids.tolist() == [[0, 0, 0, 0, 0, 1, 1, 1]]
    assert enc.attention_mask.tolist() == [[1] * 8]
    # tokenize does not count: the server refuses too many tokens once, for every family (413, test_api_bad_input)
    assert len(adapter.tokenize(" ".join(["cat"] * 100))) > adapter.info.max_positions


def test_describe_is_json_and_info_comes_from_the_config(tiny_dir):
    adapter = load_hf("tiny-llama", tiny_dir["llama"])
    described = adapter.describe()
    json.dumps(described)
    info = adapter.info
    assert (info.family, info.n_layers, info.n_heads, info.n_kv_heads, info.d_model, info.positional) == \
        ("decoder", 2, 4, 2, 32, "rope")
    assert described["config"]["num_key_value_heads"] == 2
    assert info.source == "pretrained" and info.n_params == adapter.model.num_parameters()


def test_kv_cached_step_matches_uncached_forward_tiny(tiny_dir):
    adapter = load_hf("tiny-gpt2", tiny_dir["gpt2"])
    ids = adapter.tokenize("the cat sat on").ids
    logits, cache = adapter._step(ids, None)
    next_id = logits.argmax(-1, keepdim=True)
    with capture() as rec:
        step_logits, cache = adapter._step(next_id, cache)
    full = adapter.model(torch.cat([ids, next_id], 1), use_cache=False).logits[:, -1]
    torch.testing.assert_close(step_logits, full, atol=1e-5, rtol=0)
    record = rec.get("decoder", 1)
    assert record.shape == (1, ids.shape[1] + 1) and record.spec.q_offset == ids.shape[1]
    assert torch.allclose(rec.dense("decoder", 1).sum(-1), torch.ones(4, 1))


def test_generate_yields_steps_with_capture(tiny_dir):
    adapter = load_hf("tiny-llama", tiny_dir["llama"])
    steps = list(adapter.generate("the cat", 3, temperature=0, backend="flash", stop_at_eos=False))
    assert len(steps) == 3
    assert [s.context_len for s in steps] == [2, 3, 4]
    assert steps[-1].recorder.get("decoder", 0).shape == (1, 4)


@pytest.mark.slow
def test_smollm2_kv_cached_step_matches_uncached_forward(smollm2):
    assert smollm2.info.n_kv_heads == 3
    ids = smollm2.tokenize("The quick brown fox").ids
    logits, cache = smollm2._step(ids, None)
    next_id = logits.argmax(-1, keepdim=True)
    step_logits, cache = smollm2._step(next_id, cache)
    with torch.no_grad():
        full = smollm2.model(torch.cat([ids, next_id], 1), use_cache=False).logits[:, -1]
    torch.testing.assert_close(step_logits, full, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_smollm2_listed_shapes_match_the_loaded_config(smollm2):
    loaded = info_from_config("smollm2", smollm2.model.config.to_dict())
    listed = info_from_config("smollm2", SMOLLM2_CONFIG)
    for field in ("family", "n_layers", "n_heads", "n_kv_heads", "d_model", "max_positions", "vocab_size",
                  "positional"):
        assert getattr(listed, field) == getattr(loaded, field), field


# -- the registry, offline ---------------------------------------------------------------------------

def test_bundled_models_available_offline_and_gpt2_unavailable_with_reason(no_network, empty_hf_cache,
                                                                            monkeypatch):
    monkeypatch.delenv("ATTNLAB_MODEL_DIR", raising=False)
    registry = Registry(pretrained_entries([]))
    infos = {info.id: info for info in registry.list()}
    assert infos["minilm"].available, infos["minilm"].reason
    assert infos["smollm2"].available, infos["smollm2"].reason
    assert (infos["minilm"].n_layers, infos["minilm"].n_heads) == (6, 12)
    assert infos["smollm2"].n_kv_heads == 3
    for hub_id in ("gpt2", "distilgpt2", "bert-base-uncased"):
        assert not infos[hub_id].available
        assert infos[hub_id].reason == (f"{hub_id}: weights not in the local Hugging Face cache; run with network "
                                        "once or set ATTNLAB_MODEL_DIR")
    assert infos["gpt2"].n_layers == 12 and infos["bert-base-uncased"].family == "encoder"
    with pytest.raises(UnavailableModel, match="not in the local Hugging Face cache"):
        registry.load("gpt2")


def test_load_minilm_from_the_notebook_entry_point(no_network):
    from attnlab.models import load

    m = load("minilm")
    result = m.forward("hello world")
    rec = result.recorder
    assert rec.layers("encoder") == 6
    maps = rec.all_dense("encoder")  # (L, H, T, T)
    assert maps.shape[:2] == (6, 12) and maps.shape[-1] == len(result.tokens)
    torch.testing.assert_close(maps.sum(-1), torch.ones(maps.shape[:-1]), atol=1e-5, rtol=0)
    assert result.tokens[0] == "[CLS]" and result.special[0] and result.logits is None


def test_listing_is_fast_and_loads_no_weights(monkeypatch):
    import attnlab.models.hf.sources as pretrained

    def refuse(*args, **kwargs):
        raise AssertionError("listing models must not load weights")

    monkeypatch.setattr(pretrained, "load_hf", refuse)
    monkeypatch.setattr(pretrained, "convert_gguf", refuse)
    t0 = time.perf_counter()
    infos = default_registry().list()
    assert time.perf_counter() - t0 < 5.0  # generous: CI machines are shared; a weight load takes longer
    assert {"minilm", "smollm2", "gpt2"} <= {i.id for i in infos}


def test_hub_id_in_the_local_cache_is_available(tiny_dir, empty_hf_cache, no_network):
    # lay the tiny GPT-2 out exactly as huggingface_hub caches a download
    repo = empty_hf_cache / "models--gpt2"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for f in Path(tiny_dir["gpt2"]).iterdir():
        (snapshot / f.name).write_bytes(f.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    registry = Registry(pretrained_entries([]))
    assert registry.info("gpt2").available
    adapter = registry.load("gpt2")
    assert adapter.info.n_layers == 2
    assert adapter.forward("the cat sat").recorder.layers("decoder") == 2


# -- local directories and path security ---------------------------------------------------------

@pytest.fixture
def model_root(tmp_path, tiny_dir):
    root = tmp_path / "models"
    root.mkdir()
    (root / "my-bert").symlink_to(tiny_dir["bert"], target_is_directory=True)  # points outside: must be refused
    target = root / "inside-bert"
    target.mkdir()
    for f in Path(tiny_dir["bert"]).iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    (root / "alias").symlink_to(target, target_is_directory=True)  # a symlink that stays inside is fine
    return root


def test_local_directory_in_the_allowlist_loads(model_root, no_network):
    registry = Registry(pretrained_entries(["inside-bert", "alias"], model_root))
    assert registry.info("inside-bert").available and registry.info("alias").family == "encoder"
    result = registry.load("inside-bert").forward("the cat sat", "on a mat")
    assert result.recorder.layers("encoder") == 2


@pytest.mark.parametrize("name", ["../escape", "inside-bert/../../escape", "sub/../../x"])
def test_dotdot_is_refused(model_root, name):
    with pytest.raises(UnsafeModelPath, match=r"'\.\.'"):
        pretrained_entries([name], model_root)


def test_absolute_path_outside_the_root_is_refused(model_root, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(UnsafeModelPath, match="outside the model root"):
        pretrained_entries([str(outside)], model_root)
    with pytest.raises(UnsafeModelPath, match="outside the model root"):
        pretrained_entries(["/etc"], model_root)
    # an absolute path inside the root is just a local directory
    assert resolve_model_dir(str(model_root / "inside-bert"), model_root) == (model_root / "inside-bert").resolve()


def test_symlink_out_of_the_root_is_refused(model_root):
    with pytest.raises(UnsafeModelPath, match="outside the model root"):
        pretrained_entries(["my-bert"], model_root)


def test_default_hub_id_whose_directory_leaves_the_root_is_unavailable(model_root, tmp_path, empty_hf_cache):
    (model_root / "gpt2").symlink_to(tmp_path, target_is_directory=True)
    infos = {e.id: e.info() for e in pretrained_entries([], model_root)}
    assert not infos["gpt2"].available and "outside the model root" in infos["gpt2"].reason


def test_local_path_without_a_root_is_refused(monkeypatch):
    monkeypatch.delenv("ATTNLAB_MODEL_DIR", raising=False)
    with pytest.raises(UnsafeModelPath, match="model root"):
        pretrained_entries(["./my-model"], None)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    from attnlab.models.paths import cache_dir

    monkeypatch.setenv("ATTNLAB_CACHE_DIR", str(tmp_path / "a"))
    assert cache_dir() == tmp_path / "a"
    monkeypatch.delenv("ATTNLAB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "attnlab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "attnlab"


def test_spec_is_shared_by_the_recorder_tiles(tiny_dir):
    # rec.tile (an exact block) equals the same rows/cols of rec.dense
    adapter = load_hf("tiny-bert", tiny_dir["bert"])
    result = adapter.forward("the cat sat on a mat and the dog ran far away", backend="flash")
    rec = result.recorder
    full = rec.dense("encoder", 1, head=2)
    torch.testing.assert_close(rec.tile("encoder", 1, 2, rows=(3, 7), cols=(2, 9)), full[3:7, 2:9])
    assert isinstance(rec.get("encoder", 1).spec, AttentionSpec)
