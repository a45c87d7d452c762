"""models.fingerprint: a content hash of a model's weights, the same across loads and processes."""

from __future__ import annotations

import torch
from safetensors.torch import load_model, save_model

from attnlab.models import TransformerConfig, build_model, default_registry
from attnlab.models.fingerprint import module_fingerprint

CONFIG = TransformerConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, family="decoder", positional="rope")


def test_same_weights_same_fingerprint_through_a_checkpoint(tmp_path):
    model = build_model(CONFIG)
    save_model(model, str(tmp_path / "m.safetensors"))
    torch.manual_seed(123)
    other = build_model(CONFIG)  # other random weights...
    assert module_fingerprint(other) != module_fingerprint(model)
    load_model(other, str(tmp_path / "m.safetensors"))  # ...until the checkpoint is loaded
    fp = module_fingerprint(other)
    assert fp == module_fingerprint(model) and len(fp) == 32 and int(fp, 16) >= 0


def test_one_ulp_or_another_dtype_changes_it():
    model = build_model(CONFIG)
    before = module_fingerprint(model)
    with torch.no_grad():
        w = next(model.parameters())
        w.view(-1)[7] = torch.nextafter(w.view(-1)[7], torch.tensor(float("inf")))
    nudged = module_fingerprint(model)
    assert nudged != before
    assert module_fingerprint(model.to(torch.bfloat16)) not in (before, nudged)


def test_zoo_checkpoints_loaded_by_two_registries_agree_and_differ_from_each_other():
    one, two = default_registry([]), default_registry([])
    induction = module_fingerprint(one.load("induction").model)
    assert module_fingerprint(two.load("induction").model) == induction
    assert module_fingerprint(one.load("lm").model) != induction
