"""The `attnlab` command line, run in-process with typer's runner."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from attnlab.cli import app

runner = CliRunner()


def test_models_lists_the_bundled_models_as_available_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    models = {m["id"]: m for m in json.loads(result.output)}
    assert models["minilm"]["available"] and models["smollm2"]["available"]
    assert (models["minilm"]["n_layers"], models["minilm"]["n_heads"]) == (6, 12)
    assert models["gpt2"]["available"] or "Hugging Face cache" in models["gpt2"]["reason"]
    assert {"induction", "lm", "seq2seq"} <= set(models)  # the shipped zoo


def test_bench_profile_prints_every_component():
    result = runner.invoke(app, ["bench", "profile", "--model", "tiny", "--tokens", "16", "--repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["component"] for r in json.loads(result.output)["components"]}
    assert {"attention", "feed_forward", "embedding", "head"} <= rows


def test_lab_quick_writes_results(tmp_path):
    result = runner.invoke(app, ["lab", "induction", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "results.json").read_text())["lab"] == "induction"
    assert '"best_head"' in result.output
