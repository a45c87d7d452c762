"""The notebook layer: attnlab.notebook's inline views, and examples/quickstart.ipynb executed by nbclient.

Models are tiny random transformers configs built in memory and attached (attnlab.attach), plus the
zoo's from-scratch ``lm``; seeds and threads come from tests/conftest.py.
"""

from __future__ import annotations

import pytest
import torch

from tests.hf.tiny_hf import VOCAB, word_tokenizer


@pytest.fixture(scope="module")
def tiny_gpt2(one_thread):
    """An attached tiny random GPT-2 (2 layers x 4 heads) with the word-level tokenizer."""
    transformers = pytest.importorskip("transformers")
    import attnlab

    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=VOCAB, n_positions=512, n_embd=32,
                                                                 n_layer=2, n_head=4, bos_token_id=3,
                                                                 eos_token_id=3))
    with attnlab.attach(model.eval(), word_tokenizer(bert_style=False), name="tiny-gpt2") as attached:
        yield attached
