"""A lab run made while the server runs is served without a restart: the registry watches the user's lab
folder (``my-<name>``) and registers what it gains when the models are listed or an unknown id is asked."""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from attnlab.main import create_app
from attnlab.models.paths import ZOO
from attnlab.models.registry import UnknownModel, default_registry
from tests.support import make_settings


def test_a_lab_run_made_after_start_is_listed_and_loads(tmp_path):
    labs = tmp_path / "labs"
    labs.mkdir()
    registry = default_registry(zoo=tmp_path / "no-zoo", user_labs=labs)
    assert not [i for i in registry.list() if i.id.startswith("my-")]
    with pytest.raises(UnknownModel):
        registry.info("my-alibi")
    shutil.copytree(ZOO / "extrapolation" / "alibi", labs / "alibi")  # what `attnlab lab` writes
    assert registry.info("my-alibi").positional == "alibi"  # an unknown id looks again first
    assert "my-alibi" in {i.id for i in registry.list()}
    assert registry.load("my-alibi").info.n_layers == 2
    # a second folder is picked up by listing; one already registered is kept as it was
    shutil.copytree(ZOO / "extrapolation" / "rope", labs / "rope")
    before = registry.entries["my-alibi"]
    assert {"my-alibi", "my-rope"} <= {i.id for i in registry.list()}
    assert registry.entries["my-alibi"] is before


def test_the_server_lists_a_lab_run_made_while_it_runs(tmp_path):
    settings = make_settings(data_dir=tmp_path, zoo_dir=tmp_path / "no-zoo")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/api/models/my-alibi").status_code == 404
        shutil.copytree(ZOO / "extrapolation" / "alibi", settings.labs_dir / "alibi")
        assert "my-alibi" in {m["id"] for m in client.get("/api/models").json()}
        run = client.post("/api/runs", json={"model": "my-alibi", "text": "It is a truth universally acknowledged"})
        assert run.status_code == 200, run.text
