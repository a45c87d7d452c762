"""attnlab installs under one import name: the package list, one name per module, a complete wheel."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]  # the checkout
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _import_name(folder: Path) -> str:
    """The import name of a checkout folder under pyproject's package-dir mapping."""
    rel = folder.relative_to(ROOT)
    best = max((src for src in PYPROJECT["package-dir"].values() if rel.parts[:1] == Path(src).parts),
               key=len, default=None)
    assert best is not None, f"{rel} is under no mapped folder"
    name = next(pkg for pkg, src in PYPROJECT["package-dir"].items() if src == best)
    return ".".join([name, *rel.parts[1:]])


def test_every_python_package_is_listed_and_nothing_else():
    """A package folder missing from pyproject's `packages` would be left out of the wheel."""
    folders = {p.parent for top in ("app", "models") for p in (ROOT / top).rglob("__init__.py")
               if "__pycache__" not in p.parts}
    found = {_import_name(f) for f in folders} | {"attnlab.static", "attnlab.templates"}
    assert found == set(PYPROJECT["packages"]), \
        f"add to / remove from [tool.setuptools] packages: {sorted(found ^ set(PYPROJECT['packages']))}"


def test_every_module_has_one_import_name(tmp_path):
    """Importing every attnlab module never loads anything as `app.*` or `models.*` (which would load a
    module twice and split the registries and context variables). Run where the checkout is not the cwd."""
    script = textwrap.dedent("""
        import importlib, pkgutil, sys
        import attnlab
        names = [m.name for m in pkgutil.walk_packages(attnlab.__path__, "attnlab.")]
        names += [m.name for m in pkgutil.walk_packages(importlib.import_module("attnlab.models").__path__,
                                                        "attnlab.models.")]
        for name in names:
            if not name.endswith("__main__"):
                importlib.import_module(name)
        bad = sorted(k for k in sys.modules if k.split(".")[0] in ("app", "models", "static", "templates"))
        print(len(names), bad)
        sys.exit(1 if bad or len(names) < 50 else 0)
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                        "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    (path,) = out.glob("attnlab-*.whl")
    return path


@pytest.mark.slow
def test_wheel_holds_the_package_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in ("attnlab/__init__.py", "attnlab/py.typed", "attnlab/main.py", "attnlab/models/__init__.py",
                     "attnlab/models/hf/adapter.py", "attnlab/models/hf/attach.py", "attnlab/notebook/views.py",
                     "attnlab/templates/base.html", "attnlab/templates/explorer.html",
                     "attnlab/static/js/api.js", "attnlab/static/js/explorer/grid.js", "attnlab/static/css/app.css",
                     "attnlab/models/zoo/lm/model.safetensors", "attnlab/models/zoo/lm/config.json",
                     "attnlab/models/zoo/extrapolation/results.json", "attnlab/models/zoo/seq2seq/card.json",
                     "attnlab/services/benchmark_shipped.json", "attnlab/static/js/examples.js"):
        assert expected in names, f"{expected} missing from {wheel.name}"
    assert not any(n.startswith(("app/", "models/", "static/", "templates/")) for n in names)
    assert not any("__pycache__" in n or n.startswith("attnlab/static/screenshots") for n in names)


@pytest.mark.slow
def test_installed_wheel_wins_over_a_users_own_models_folder(wheel, tmp_path):
    """Installed (no deps) into a fresh target, imported from a folder with its own `models/` package."""
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
                        str(wheel)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    work = tmp_path / "notebook"
    (work / "models").mkdir(parents=True)
    (work / "models" / "__init__.py").write_text("USERS_OWN = True\n")
    (work / "app").mkdir()
    (work / "app" / "__init__.py").write_text("USERS_OWN = True\n")
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(target)!r})  # as PYTHONPATH would, ahead of the checkout's editable install
        sys.path.insert(0, "")                # the notebook's folder first, as Jupyter and `python -c` do
        import models
        assert models.USERS_OWN, "the user's models/ package"
        import attnlab
        assert attnlab.__file__.startswith({str(target)!r}), attnlab.__file__
        from fastapi.testclient import TestClient
        from attnlab.main import create_app
        from attnlab.core.settings import Settings
        ids = [m.id for m in attnlab.default_registry([], None).list()]
        assert "lm" in ids and "induction" in ids, ids
        with TestClient(create_app(Settings(preload=False))) as client:
            page = client.get("/")
            assert page.status_code == 200 and "plotly.min.js" in page.text, page.status_code
            for url in ("/static/js/api.js", "/static/vendor/plotly.min.js", "/api/models"):
                assert client.get(url).status_code == 200, url
            listed = [m["id"] for m in client.get("/api/models").json()]
            assert "lm" in listed, listed
        # attach from the installed wheel: a tiny in-memory GPT-2, its maps equal transformers' eager ones
        import torch
        from tokenizers import Tokenizer, models as tok_models, pre_tokenizers
        from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast
        words = "<eos> the cat sat on a mat".split()
        core = Tokenizer(tok_models.WordLevel({{w: i for i, w in enumerate(words)}}, unk_token="<eos>"))
        core.pre_tokenizer = pre_tokenizers.Whitespace()
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", unk_token="<eos>")
        torch.manual_seed(0)
        gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                          bos_token_id=0, eos_token_id=0)).eval()
        gpt2.set_attn_implementation("eager")
        with attnlab.attach(gpt2, tokenizer) as mine:
            assert sys.modules["attnlab.models.hf.attach"].__file__.startswith({str(target)!r})
            run = mine.forward("the cat sat on a mat")
        with torch.no_grad():  # eager again after detach
            eager = gpt2(input_ids=torch.tensor([run.input.ids]), output_attentions=True).attentions
        assert abs(run.maps() - torch.stack(eager)[:, 0].numpy()).max() < 1e-5
        assert "window.Plotly.newPlot" in run.show("model")._repr_mimebundle_()["text/html"]
        assert models.USERS_OWN and "attnlab.models" in sys.modules
        print("ok", attnlab.__file__)
    """)
    r = subprocess.run([sys.executable, "-c", script], cwd=work, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr
