"""Tiny random Hugging Face models for the hf layer (a helper module, not a test module).

Written with ``save_pretrained`` and read back with ``from_pretrained`` (the real loading path);
used by test_hf_import.py and test_pretrained.py, and by the ``tiny_dir`` fixture in conftest.py.
transformers is imported inside the functions: importing this module does not need it.
"""

from __future__ import annotations

from pathlib import Path

import torch

ATOL = 1e-4
WORDS = "the cat sat on a mat dog ran far away in rain and sun was warm cold".split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# -- tiny real models, saved and loaded like any checkpoint --------------------------

def word_tokenizer(bert_style: bool):
    """A word-level fast tokenizer (offsets, special tokens, segments) over WORDS."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bert_style:
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
        )
        return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                       cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[SEP]")


VOCAB = len(SPECIALS) + len(WORDS)


def save_tiny(kind: str, directory: Path) -> Path:
    """A randomly initialised tiny GPT-2 / BERT / Llama + tokenizer written to ``directory``."""
    from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    if kind == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=32, n_layer=2, n_head=4))
    elif kind == "bert":
        model = BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=4, intermediate_size=64, max_position_embeddings=64))
    elif kind == "llama":
        config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                             rope_parameters={"rope_type": "default", "rope_theta": 500.0}, tie_word_embeddings=False)
        model = LlamaForCausalLM(config)
    else:
        raise ValueError(kind)
    # Random init leaves LayerNorm at exactly 1/0; perturb every tensor so a swapped or
    # missing weight cannot hide behind an identity.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    word_tokenizer(bert_style=kind == "bert").save_pretrained(directory)
    return directory


def load_eager(directory: Path):
    """The saved model in transformers with eager attention, float32, in eval mode."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    family = AutoConfig.from_pretrained(directory, local_files_only=True).model_type
    auto = AutoModelForMaskedLM if family == "bert" else AutoModelForCausalLM
    return auto.from_pretrained(directory, attn_implementation="eager", local_files_only=True,
                                dtype=torch.float32).eval()


def assert_maps_equal(rec, kind: str, attentions, real: torch.Tensor | None = None, atol: float = ATOL) -> None:
    """Every layer's captured map equals HF's eager attentions (rows/cols of real tokens)."""
    assert rec.layers(kind) == len(attentions)
    for layer, ref in enumerate(attentions):
        for b in range(ref.shape[0]):
            ours = rec.dense(kind, layer, batch=b)  # (H, Tq, Tk)
            theirs = ref[b]
            if real is not None:
                keep = real[b].bool()
                ours, theirs = ours[:, keep][:, :, keep], theirs[:, keep][:, :, keep]
            torch.testing.assert_close(ours, theirs.float(), atol=atol, rtol=0,
                                       msg=lambda m, layer=layer, b=b: f"{kind} layer {layer} batch {b}: {m}")
