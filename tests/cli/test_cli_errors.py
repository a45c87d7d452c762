"""User mistakes print one line that says what to do next (app.cli.errors), and every command's --help is real."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from attnlab.cli import app
from attnlab.cli.errors import main, one_line
from attnlab.models.labs import LABS
from attnlab.models.schedules import SCHEDULES

runner = CliRunner()


def run_main(capsys, *argv: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize(("argv", "says"), [
    (["train", "--steps", "20", "--out-dir", "{tmp}"],
     "warmup_cosine needs steps (20) > warmup (50); pass a --warmup below --steps (e.g. --warmup 10) or more --steps"),
    (["train", "--steps", "20", "--warmup", "2", "--schedule", "nope", "--out-dir", "{tmp}"],
     f"unknown schedule 'nope'; known: {', '.join(sorted(SCHEDULES))}; "),
    (["lab", "nope"], f"unknown lab 'nope'; known: {', '.join(sorted(LABS))}"),
    (["bench", "profile", "--model", "nope"], "`attnlab models` lists the models available here"),
])
def test_a_user_mistake_is_one_line_with_what_to_do(capsys, monkeypatch, tmp_path, argv, says):
    """Before any work: `train` checks its schedule before reading the corpus and training a tokenizer."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("ATTNLAB_DEBUG", raising=False)
    code, err = run_main(capsys, *(a.format(tmp=tmp_path / "run") for a in argv))
    lines = [line for line in err.splitlines() if line.startswith("attnlab: error:")]
    assert code == 2 and len(lines) == 1, err
    assert says in lines[0]
    assert "Traceback" not in err and "╭" not in err
    assert not (tmp_path / "run").exists()  # nothing was trained or written


def test_debug_keeps_the_traceback(monkeypatch):
    monkeypatch.setenv("ATTNLAB_DEBUG", "1")
    with pytest.raises(ValueError, match="unknown lab 'nope'"):
        main(["lab", "nope"])


def test_one_line_names_a_missing_package_and_unwraps_key_errors():
    assert one_line(ModuleNotFoundError("No module named 'datasets'")) == (
        "No module named 'datasets'; install it: pip install datasets")
    assert one_line(KeyError("layer 9 is not\n   recorded")) == (
        "layer 9 is not recorded; `attnlab COMMAND --help` lists the options")


@pytest.mark.parametrize(("argv", "option"), [
    (["train", "--help"], "--warmup"), (["serve", "--help"], "--prepare"), (["lab", "--help"], "--quick"),
    (["models", "--help"], "--json"), (["bench", "attention", "--help"], "--quick"),
    (["bench", "profile", "--help"], "--tokens"), (["bench", "api", "--help"], "Usage"),
])
def test_every_command_has_a_real_help(argv, option):
    result = runner.invoke(app, argv, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert option in result.output
