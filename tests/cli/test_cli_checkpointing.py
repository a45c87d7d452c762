"""`attnlab bench checkpointing`: a table measured here, written where asked (default: the user data dir)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from attnlab.cli import app

runner = CliRunner()


def test_bench_checkpointing_writes_the_table(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path))
    result = runner.invoke(app, ["bench", "checkpointing", "--model", "induction", "--batch-size", "1",
                                 "--seq-len", "16", "--repeats", "1", "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)["rows"]
    assert row["model"] == "induction" and row["tokens"] == 16 and row["peak_with_mib"] > 0
    written = json.loads((tmp_path / "labs" / "checkpointing" / "results.json").read_text())
    assert written["bench"] == "checkpointing" and written["rows"] == [row]


def test_bench_checkpointing_refuses_an_unknown_model(tmp_path):
    result = runner.invoke(app, ["bench", "checkpointing", "--model", "nope", "--out", str(tmp_path)])
    # the message reaches the user (as the exception, or as the CLI's one error line where errors are wrapped)
    assert result.exit_code != 0 and "unknown model" in result.output + str(result.exception)


def test_help_names_every_option():
    result = runner.invoke(app, ["bench", "checkpointing", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--batch-size", "--seq-len", "--repeats", "--device", "--out", "--json"):
        assert option in result.output
