"""examples/quickstart.ipynb, executed offline by nbclient in a fresh kernel; its outputs hold the figures."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from attnlab.notebook.display import PLOTLY_MIME  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"


def _shape(z) -> tuple[int, ...]:
    """A heatmap's z as plotly's JSON holds it: a typed array ({"bdata", "shape"}) or nested lists."""
    if isinstance(z, dict):
        return tuple(int(n) for n in str(z["shape"]).split(","))
    return (len(z), len(z[0]))


@pytest.mark.slow
def test_quickstart_runs_offline_and_shows_the_figures(tmp_path, monkeypatch):
    # the kernel inherits this environment: no hub, one thread, and a working directory holding a
    # `models/` package of its own, which must not shadow attnlab's (one import name: attnlab)
    for key, value in {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                       "PYTHONPATH": ""}.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("raise ImportError('the user folder models/ was imported')\n")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on any error

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    figures = [o.data for o in outputs if o.output_type == "execute_result" and PLOTLY_MIME in o.get("data", {})]
    assert len(figures) == 3  # model view, head view, generation trace
    grid, head, generation = (f[PLOTLY_MIME] for f in figures)
    assert len([t for t in grid["data"] if t["type"] == "heatmap"]) == 4 * 4  # lm: 4 layers x 4 heads
    assert _shape(head["data"][0]["z"]) == (6, 6)  # "the cat sat on a mat": 6 tokens
    assert _shape(generation["data"][0]["z"]) == (6, 2 + 6)  # 6 generated steps over 2 + 6 keys
    for f in figures:
        assert "window.Plotly.newPlot" in f["text/html"] and "plotly.js" in f["text/html"]
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "(4, 4, 8, 8) float32" in printed  # "The cat sat on the mat.": 8 tokens
    last = nb.cells[-1].outputs[0].data["text/plain"]
    assert last.strip("'\"") != "attnlab"  # detached: GPT-2's own implementation is back
