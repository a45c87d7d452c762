"""`attnlab backends` and the device options of `attnlab bench attention`."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from attnlab.cli import app
from attnlab.core.settings import get_settings
from attnlab.models.attention import BACKENDS

runner = CliRunner()


def _flat(output: str) -> str:
    """The output's words, without rich's error box and its line wrapping."""
    return " ".join(output.replace("│", " ").split())


def test_backends_json_names_every_backend_and_why_not(monkeypatch):
    monkeypatch.setenv("ATTNLAB_DEVICE", "cpu")
    get_settings.cache_clear()
    try:
        result = runner.invoke(app, ["backends", "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    names = {b["name"]: b for b in report["backends"]}
    assert report["device"] == "cpu" and [n for n, b in names.items() if b["registered"]] == list(BACKENDS)
    assert not names["sdpa_cudnn"]["available"] and "CUDA" in names["sdpa_cudnn"]["reason"]


def test_bench_attention_refuses_what_this_machine_lacks():
    result = runner.invoke(app, ["bench", "attention", "--quick", "--backends", "math,warp"])
    assert result.exit_code == 2 and "['warp'] not available here" in _flat(result.output)
    if not torch.cuda.is_available():
        result = runner.invoke(app, ["bench", "attention", "--quick", "--device", "cuda"])
        assert result.exit_code == 2 and "sees no CUDA device" in _flat(result.output)


def test_bench_attention_help_names_the_device_options():
    result = runner.invoke(app, ["bench", "attention", "--help"])
    assert result.exit_code == 0 and all(opt in result.output for opt in ("--device", "--dtype", "--backends"))
