"""attnlab.attach on in-memory transformers models: maps equal HF eager, refusals by name, detach restores.

Every model is a tiny random config built in memory (no files, no hub); the reference is the same
model object under ``attn_implementation="eager"`` with ``output_attentions=True``.
"""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")

import attnlab  # noqa: E402
from attnlab.models.hf import UnsupportedModel, attach  # noqa: E402
from tests.hf.tiny_hf import VOCAB, assert_maps_equal, word_tokenizer  # noqa: E402

TEXT = "the cat sat on a mat and the dog ran far away in the rain"  # 14 words
PAIR = "the sun was warm"
ATOL = 1e-5


def _perturbed(model):
    torch.manual_seed(3)
    with torch.no_grad():  # random init leaves norms at 1/0: perturb so a missing weight shows
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def _decoder_cfg(**extra) -> dict:
    return dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=64, **extra)


def build(arch: str):
    """(model with eager attention, its tokenizer, family) for a tiny random config of ``arch``."""
    t = transformers
    torch.manual_seed(0)
    enc = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
               max_position_embeddings=64)
    makers = {
        "bert": lambda: t.BertForMaskedLM(t.BertConfig(**enc)),
        "roberta": lambda: t.RobertaForMaskedLM(t.RobertaConfig(**{**enc, "max_position_embeddings": 80},
                                                                pad_token_id=0)),
        "distilbert": lambda: t.DistilBertForMaskedLM(t.DistilBertConfig(vocab_size=VOCAB, dim=32, n_layers=2,
                                                                         n_heads=4, hidden_dim=64,
                                                                         max_position_embeddings=64)),
        "gpt2": lambda: t.GPT2LMHeadModel(t.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2,
                                                       n_head=4)),
        "llama": lambda: t.LlamaForCausalLM(t.LlamaConfig(**_decoder_cfg())),
        "qwen2": lambda: t.Qwen2ForCausalLM(t.Qwen2Config(**_decoder_cfg())),
        # a window of 5 over 14+ tokens: the band bites in every layer
        "mistral": lambda: t.MistralForCausalLM(t.MistralConfig(**_decoder_cfg(sliding_window=5))),
        "gemma": lambda: t.GemmaForCausalLM(t.GemmaConfig(**_decoder_cfg(head_dim=8))),
    }
    model = makers[arch]()
    model.set_attn_implementation("eager")
    family = "encoder" if arch in ("bert", "roberta", "distilbert") else "decoder"
    return _perturbed(model), word_tokenizer(bert_style=family == "encoder"), family


ARCHS = ["bert", "roberta", "distilbert", "gpt2", "llama", "qwen2", "mistral", "gemma"]


@pytest.mark.parametrize("arch", ARCHS)
def test_attached_maps_equal_eager_and_detach_restores(arch):
    model, tokenizer, family = build(arch)
    pair = PAIR if family == "encoder" else None
    segments = bool(getattr(model.config, "type_vocab_size", 0))  # BERT's segment embedding reads the pair's ids
    enc = tokenizer(TEXT, pair, return_tensors="pt", return_token_type_ids=segments)
    kwargs = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        ref = model(**kwargs, output_attentions=True)
    assert ref.attentions[0] is not None

    with attnlab.attach(model, tokenizer, name=f"tiny-{arch}") as attached:
        assert model.config._attn_implementation == "attnlab"
        for backend in ("math", "sdpa", "flash"):
            run = attached.forward(TEXT, pair, backend=backend)
            assert run.input.ids == kwargs["input_ids"][0].tolist()
            assert_maps_equal(run.recorder, family, ref.attentions, atol=ATOL)
            torch.testing.assert_close(run.logits, ref.logits, atol=1e-4, rtol=0)
        maps = run.maps()
        assert maps.shape == (2, 4, len(run.tokens), len(run.tokens))
        assert abs(maps.sum(-1) - 1).max() < 1e-5  # every row a distribution
    assert model.config._attn_implementation == "eager"
    with torch.no_grad():
        after = model(**kwargs, output_attentions=True)
    torch.testing.assert_close(after.logits, ref.logits, atol=0, rtol=0)
    torch.testing.assert_close(after.attentions[-1], ref.attentions[-1], atol=0, rtol=0)
    with pytest.raises(RuntimeError, match="detached"):
        attached.forward(TEXT)


def test_sliding_window_is_a_lazy_pattern_not_a_dense_mask():
    """Mistral's window is recognised as causal + SlidingWindow (the flash backend skips tiles left of it)."""
    from attnlab.models.attention.window import SlidingWindow

    model, tokenizer, _ = build("mistral")
    with attach(model, tokenizer) as attached:
        rec = attached.forward(TEXT).recorder
    spec = rec.get("decoder", 0).spec
    assert spec.causal and spec.pattern == SlidingWindow(5) and spec.bias is None
    weights = rec.dense("decoder", 1)  # (H, T, T)
    t = weights.shape[-1]
    i, j = torch.meshgrid(torch.arange(t), torch.arange(t), indexing="ij")
    assert weights[:, (j > i) | (j <= i - 5)].abs().max() == 0  # nothing outside the band
    assert (weights[:, (j <= i) & (j > i - 5)] > 0).all()


def test_generate_traces_equal_eager_steps():
    model, tokenizer, _ = build("llama")
    with attach(model, tokenizer) as attached:
        steps = list(attached.generate("the cat sat", max_new_tokens=4, temperature=0, stop_at_eos=False))
    ids = tokenizer("the cat sat", return_tensors="pt")["input_ids"]
    for step in steps:
        with torch.no_grad():
            ref = model(input_ids=ids, output_attentions=True)
        assert step.token_id == int(ref.logits[0, -1].argmax())
        for layer, att in enumerate(ref.attentions):  # the new token's row of each layer
            torch.testing.assert_close(step.recorder.dense("decoder", layer)[:, -1], att[0, :, -1], atol=ATOL, rtol=0)
        ids = torch.cat([ids, torch.tensor([[step.token_id]])], dim=1)


def _tiny_t5():
    return transformers.T5ForConditionalGeneration(transformers.T5Config(
        vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4))


def _tiny_gemma2():
    return transformers.Gemma2ForCausalLM(transformers.Gemma2Config(**_decoder_cfg(head_dim=8)))


def _tiny_bart():
    return transformers.BartForConditionalGeneration(transformers.BartConfig(
        vocab_size=VOCAB, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64))


def _tiny_bloom():
    return transformers.BloomForCausalLM(transformers.BloomConfig(vocab_size=VOCAB, hidden_size=32, n_layer=1,
                                                                  n_head=4))


@pytest.mark.parametrize(("make", "message"), [
    (_tiny_t5, r"T5ForConditionalGeneration \(t5\) adds a learned relative position bias"),
    (_tiny_gemma2, r"Gemma2ForCausalLM \(gemma2\) soft-caps attention logits \(attn_logit_softcapping=50.0"),
    (_tiny_bart, r"BartForConditionalGeneration \(bart\) is an encoder-decoder"),
    (_tiny_bloom, r"BloomForCausalLM does not route its attention through transformers.AttentionInterface"),
])
def test_refused_by_name_and_left_untouched(make, message):
    model = make().eval()
    own = model.config._attn_implementation
    with pytest.raises(UnsupportedModel, match=message):
        attnlab.attach(model, word_tokenizer(bert_style=False))
    assert model.config._attn_implementation == own


def test_not_a_transformers_model():
    with pytest.raises(UnsupportedModel, match="Linear is not a transformers PreTrainedModel"):
        attach(torch.nn.Linear(2, 2), word_tokenizer(bert_style=False))


def test_soft_capping_refused_at_run_time_too():
    """A model that slips past attach's config check still never draws a soft-capped map as a plain one."""
    from attnlab.models.hf import register_attention

    model = _tiny_gemma2().eval()
    register_attention()
    model.set_attn_implementation("attnlab")
    with pytest.raises(NotImplementedError, match=r"logit soft-capping \(softcap\)"):
        model(input_ids=torch.tensor([[5, 6, 7]]))


def test_maps_selects_layers_and_heads():
    model, tokenizer, _ = build("gpt2")
    with attach(model, tokenizer) as attached:
        run = attached.forward(TEXT)
    full = run.maps()
    part = run.maps("decoder", layers=[1], heads=[3, 0])
    assert part.shape == (1, 2) + full.shape[2:]
    assert (part[0, 0] == full[1, 3]).all() and (part[0, 1] == full[1, 0]).all()
    with pytest.raises(IndexError, match="heads 0:4"):
        run.maps(heads=[4])
    with pytest.raises(KeyError, match="no 'encoder' attention"):
        run.maps("encoder")
