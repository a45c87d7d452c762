"""GET /api/training/runs, /runs/{id} and /checkpointing over the shipped zoo and a user data dir holding a real
(quick) schedules lab run and a tiny checkpoint: the series served are the files' own, user runs are `my-` ids."""

from __future__ import annotations

import json

import pytest
import torch
from fastapi.testclient import TestClient

from attnlab.core.settings import Settings
from attnlab.main import create_app
from attnlab.models.paths import ZOO
from attnlab.models.registry import Registry
from attnlab.models.schedules import SCHEDULES
from tests.support import make_settings

TEXT = "the cat sat on the mat. the dog sat on the log. "


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, one_thread):
    from attnlab.models.architectures import build_model
    from attnlab.models.config import preset
    from attnlab.models.labs import run_lab
    from attnlab.models.tokenization import CharTokenizer
    from attnlab.models.training import TrainConfig, Trainer, lm_batches

    root = tmp_path_factory.mktemp("data")
    labs = root / "labs"
    run_lab("schedules", labs / "schedules", quick=True, steps=3, warmup=1, n_layers=1, d_model=16,
            max_chars=20_000, threads=1)
    tok = CharTokenizer.from_corpus(TEXT)
    cfg = preset("tiny", family="decoder", vocab_size=tok.vocab_size, d_model=16, n_layers=1, n_heads=2,
                 max_positions=64)
    torch.manual_seed(0)
    Trainer(build_model(cfg), TrainConfig(steps=3, warmup=1, log_every=1, progress=False),
            lm_batches(torch.tensor(tok.encode(TEXT * 4)), 16, 2, "clm"), out_dir=labs / "tiny",
            tokenizer=tok).train()
    return root


@pytest.fixture(scope="module")
def client(data_dir):
    app = create_app(make_settings(zoo_dir=ZOO, data_dir=data_dir), registry=Registry([]))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_index_lists_shipped_and_user_runs(client, data_dir):
    r = client.get("/api/training/runs")
    assert r.status_code == 200, r.text
    body = r.json()
    runs = {run["id"]: run for run in body["runs"]}
    assert {f"my-schedules.{n}" for n in SCHEDULES if n != "inverse_sqrt"} <= set(runs)
    assert runs["my-tiny"]["source"] == "user" and runs["my-tiny"]["steps"] == 3
    if (ZOO / "lm" / "log.jsonl").exists():
        assert runs["lm"]["source"] == "zoo" and "warmup_cosine schedule" in runs["lm"]["caption"]
    assert runs["my-tiny"]["caption"].startswith("Your checkpoint, trained with the warmup_cosine schedule")
    stored = json.loads((data_dir / "labs" / "schedules" / "results.json").read_text())
    assert body["groups"]["my-schedules"]["claims"] == stored["claims"]
    assert body["groups"]["my-schedules"]["holds"] == stored["holds"]
    constant = runs["my-schedules.constant"]
    assert constant["caption"].startswith("constant (no warmup):") and constant["has_layer_grad_norms"]
    if (ZOO / "stability" / "results.json").exists():
        assert runs["stability.post_nowarmup_high"]["source"] == "zoo"
        # the shipped post-norm run without warmup sits on the unigram plateau; with warmup it learns
        assert "a plateau, it stopped learning" in runs["stability.post_nowarmup_high"]["caption"]
        assert "plateau" not in runs["stability.post_warmup_high"]["caption"]
        assert body["groups"]["stability"]["claims"].keys() == {"post_norm_needs_warmup",
                                                               "pre_norm_needs_no_warmup", "normal_lr_trains"}


def test_a_lab_run_is_its_results_series(client, data_dir):
    stored = json.loads((data_dir / "labs" / "schedules" / "results.json").read_text())
    expected = {r["name"]: r for r in stored["runs"]}["warmup_linear"]
    body = client.get("/api/training/runs/my-schedules.warmup_linear").json()
    for key in ("step", "loss", "lr", "grad_norm", "layer_grad_norms", "final_loss", "val_loss", "spikes"):
        assert body[key] == expected[key], key
    lr = stored["setup"]["train"]["lr"]
    assert body["lr"] == pytest.approx([lr * SCHEDULES["warmup_linear"].fn(s - 1, warmup=1, total=3, min_ratio=0.1)
                                        for s in body["step"]], rel=1e-4, abs=1e-9)


def test_a_checkpoint_run_is_its_log(client, data_dir):
    records = [json.loads(line) for line in (data_dir / "labs" / "tiny" / "log.jsonl").read_text().splitlines()]
    body = client.get("/api/training/runs/my-tiny").json()
    assert body["step"] == [r["step"] for r in records] == [1, 2, 3]
    assert body["loss"] == [r["loss"] for r in records] and body["lr"] == [r["lr"] for r in records]
    assert body["layer_grad_norms"] is None
    # the checkpoint list and its page data read the user's run too
    assert {"name": "my-tiny", "snapshots": False} in client.get("/api/training").json()
    assert client.get("/api/training/my-tiny").json()["log"] == records


@pytest.mark.parametrize(("path", "status", "start"), [
    ("/api/training/runs/nope", 404, "run_id: no training run 'nope'"),
    ("/api/training/runs/-bad", 422, "run_id:"),
    ("/api/training/my-nope", 404, "model: no training log"),
])
def test_unknown_and_bad_ids(client, path, status, start):
    r = client.get(path)
    assert r.status_code == status, r.text
    assert r.json()["detail"].startswith(start), r.json()["detail"]


def test_checkpointing_prefers_the_users_rerun(client, data_dir):
    shipped = ZOO / "checkpointing" / "results.json"
    if shipped.exists():
        body = client.get("/api/training/checkpointing").json()
        assert body["source"] == "zoo"
        assert body["rows"] == json.loads(shipped.read_text())["rows"]
    from attnlab.models.config import TransformerConfig
    from attnlab.models.training.checkpointing import checkpointing_table, write_table

    config = TransformerConfig(family="decoder", vocab_size=32, d_model=16, n_layers=2, n_heads=2, max_positions=16)
    write_table(checkpointing_table({"mine": config}, batch_size=1, seq_len=16, repeats=1),
                data_dir / "labs" / "checkpointing")
    body = client.get("/api/training/checkpointing").json()
    assert body["source"] == "user" and [r["model"] for r in body["rows"]] == ["mine"]
    assert client.get("/api/training/runs").json()["checkpointing"] == "user"
    assert len(body["figure"]["data"]) == 4  # memory and time, without and with


def test_checkpointing_404_names_the_command(tmp_path):
    app = create_app(make_settings(zoo_dir=tmp_path / "zoo", data_dir=tmp_path), registry=Registry([]))
    with TestClient(app) as c:
        r = c.get("/api/training/checkpointing")
    assert r.status_code == 404 and "attnlab bench checkpointing" in r.json()["detail"]


def test_settings_read_the_data_dir_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path))
    assert Settings(_env_file=None).labs_dir == tmp_path / "labs"
