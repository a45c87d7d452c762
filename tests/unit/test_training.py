"""Training: objectives learn, resume is exact, checkpointing is exact, guards fire."""

import json
import math

import pytest
import torch

from attnlab.models import build_model, preset
from attnlab.models.tokenization import CharTokenizer
from attnlab.models.training import (
    OBJECTIVE_FAMILY,
    Probe,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    checkpointing_memory_report,
    lm_batches,
    load_snapshots,
    lr_curve,
    param_groups,
    train_main,
)

TEXT = "the cat sat on the mat. the dog sat on the log. a bird sang in the tree. " * 60


def setup(objective: str, d_model: int = 32, **overrides):
    tok = CharTokenizer.from_corpus(TEXT, n_sentinels=16 if objective == "span" else 0)
    ids = torch.tensor(tok.encode(TEXT))
    cfg = preset("tiny", family=OBJECTIVE_FAMILY[objective], vocab_size=tok.vocab_size, d_model=d_model,
                 n_layers=2, n_heads=4, max_positions=64, **overrides)
    return tok, build_model(cfg), lm_batches(ids, 32, 8, objective, tokenizer=tok, seed=0)


def quiet(**kw) -> TrainConfig:
    return TrainConfig(**{"steps": 40, "lr": 3e-3, "warmup": 4, "progress": False, "log_every": 1, **kw})


@pytest.mark.parametrize("objective", ["clm", "mlm", "span"])
def test_loss_goes_down(objective):
    tok, model, batches = setup(objective)
    result = Trainer(model, quiet(steps=40), batches).train()
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert sum(losses[-5:]) / 5 < 0.9 * sum(losses[:5]) / 5, losses


def test_resume_gives_identical_next_step_loss(tmp_path):
    tok, model, batches = setup("clm")
    cfg = quiet(steps=12)
    trainer = Trainer(model, cfg, batches, out_dir=tmp_path, tokenizer=tok)
    trainer.train(steps=6)
    trainer.save()
    expected = trainer.train_step()["loss"]

    torch.manual_seed(123)  # a different init: everything must come from the checkpoint
    _, fresh, _ = setup("clm")
    resumed = Trainer(fresh, cfg, batches, tokenizer=tok)
    resumed.load_state(tmp_path)
    assert resumed.step == 6
    assert resumed.train_step()["loss"] == expected
    assert json.loads((tmp_path / "trainer_state.json").read_text())["step"] == 6


@pytest.mark.parametrize("objective", ["clm", "mlm", "span"])
def test_gradient_checkpointing_gives_identical_gradients(objective):
    tok, model, batches = setup(objective)
    batch = batches(0)
    grads = {}
    for ckpt in (False, True):
        model.zero_grad(set_to_none=True)
        model.train()
        model.set_gradient_checkpointing(ckpt)
        model(**batch).loss.backward()
        grads[ckpt] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads[False].keys() == grads[True].keys()
    for name in grads[False]:
        torch.testing.assert_close(grads[True][name], grads[False][name], rtol=1e-5, atol=1e-7, msg=name)


def test_weight_decay_groups_skip_norms_biases_embeddings():
    _, model, _ = setup("clm")
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert decayed and all(n.endswith("weight") and "norm" not in n and "embed" not in n for n in decayed)
    assert any("embed.tokens" in names[id(p)] for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_nan_guard_skips_then_aborts():
    tok, model, batches = setup("clm")
    trainer = Trainer(model, quiet(steps=10, max_bad_steps=3), batches)
    trainer.train_step()
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    record = trainer.train_step()
    assert record["skipped"] and trainer.skipped == 1
    with pytest.raises(TrainingDiverged):
        for _ in range(3):
            trainer.train_step()


def test_loss_spike_is_flagged():
    tok, model, batches = setup("clm")
    trainer = Trainer(model, quiet(steps=30), batches)
    trainer.step, trainer.loss_ema = 20, 0.01  # a loss far above its running average
    assert trainer.train_step().get("spike") and trainer.spikes == 1


def test_bf16_autocast_trains():
    tok, model, batches = setup("clm")
    result = Trainer(model, quiet(steps=5, precision="bf16"), batches).train()
    assert math.isfinite(result.final_loss)


def test_snapshots_and_log_are_saved(tmp_path):
    tok, model, batches = setup("clm")
    probe = Probe.from_text("p", "the cat sat", tok)
    Trainer(model, quiet(steps=6, snapshot_every=3, log_every=2), batches, out_dir=tmp_path, tokenizer=tok,
            probes=[probe]).train()
    meta, tensors = load_snapshots(tmp_path)
    assert meta["steps"] == [0, 3, 6]
    assert tensors["step3/p/decoder"].shape == (2, 4, 11, 11) and tensors["step3/p/decoder"].dtype == torch.float16
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert {"step", "loss", "lr", "grad_norm", "tokens_per_s"} <= set(log[0])
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "char_tokenizer.json").exists()


def test_lr_curve_values():
    curve = lr_curve("warmup_cosine", steps=100, lr=1e-3, warmup=10, min_lr_ratio=0.1)
    assert curve["lr"][0] == 0.0
    assert curve["lr"][10] == pytest.approx(1e-3)
    assert curve["lr"][5] == pytest.approx(5e-4)
    assert curve["lr"][-1] == pytest.approx(1e-4, rel=0.02)
    inv = lr_curve("inverse_sqrt", steps=50, lr=1.0, warmup=10, d_model=64)
    assert max(inv["lr"]) == pytest.approx((64 * 10) ** -0.5)


def test_checkpointing_memory_report_measures_a_saving():
    cfg = preset("tiny", n_layers=4, vocab_size=64)
    ids = torch.randint(0, 64, (8, 256))
    report = checkpointing_memory_report(cfg, {"ids": ids, "labels": ids}, "cpu", threads=1)
    assert report["peak_without_mib"] > 0
    assert report["peak_with_mib"] < report["peak_without_mib"]


def test_train_main_runs_and_plots_lr(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    curve = train_main(plot_lr=True, steps=20, warmup=5)
    assert len(curve["lr"]) == 20
    summary = train_main(out_dir=tmp_path / "run", corpus=str(corpus), tokenizer="char", steps=4, warmup=1,
                         block_size=16, batch_size=4, snapshot_every=2, progress=False, d_model=32)
    assert summary["steps"] == 4 and math.isfinite(summary["final_loss"])
    assert (tmp_path / "run" / "trainer_state.pt").exists()
    resumed = train_main(out_dir=tmp_path / "run", corpus=str(corpus), tokenizer="char", steps=6, warmup=1,
                         block_size=16, batch_size=4, progress=False, resume=tmp_path / "run")
    assert resumed["steps"] == 6
