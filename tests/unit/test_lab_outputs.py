"""Lab runs go to the user's data directory (ATTNLAB_DATA_DIR here), never into the installed package; the
registry lists them as my-<name> beside the bundled zoo."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnlab.models.labs import run_lab
from attnlab.models.paths import ZOO, data_dir, labs_dir
from attnlab.models.registry import default_registry


def files_under(root: Path) -> dict[str, float]:
    """Every file under root with its modification time (bytecode caches left out: importing writes them)."""
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_data_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path / "data"))
    assert data_dir() == tmp_path / "data" and labs_dir() == tmp_path / "data" / "labs"
    monkeypatch.delenv("ATTNLAB_DATA_DIR")
    from platformdirs import user_data_dir

    assert data_dir() == Path(user_data_dir("attnlab", appauthor=False))


@pytest.mark.slow
def test_a_lab_run_writes_under_the_data_dir_never_the_package(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_DATA_DIR", str(tmp_path))
    import attnlab
    import attnlab.models

    # in a checkout attnlab (app/) and attnlab.models (models/) are two folders; installed, one inside the other
    packages = {Path(attnlab.__file__).parent, Path(attnlab.models.__file__).parent}
    before_zoo, before_package = files_under(ZOO), {p: files_under(p) for p in packages}
    run_lab("induction", quick=True, steps=2, threads=1)  # no out_dir: the default
    out = tmp_path / "labs" / "induction"
    assert (out / "results.json").is_file() and (out / "model.safetensors").is_file()
    assert files_under(ZOO) == before_zoo
    assert {p: files_under(p) for p in packages} == before_package
    # the registry lists the user's run beside the shipped one, under its own id
    registry = default_registry([], None)
    assert "my-induction" in registry.ids()
    assert registry.info("my-induction").description.endswith(str(out))
    if (ZOO / "induction" / "model.safetensors").exists():
        assert "induction" in registry.ids()
        assert registry.entries["induction"] is not registry.entries["my-induction"]
    adapter = registry.load("my-induction")
    assert adapter.forward("abcabc").recorder.records

