"""What every lab shares: timing, results.json, Plotly figure dicts, tidy output dirs."""

from __future__ import annotations

import json
import logging
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
# files a lab run owns in its directory; stale ones from an earlier run are removed first
OWNED = ("config.json", "model.safetensors", "tokenizer.json", "char_tokenizer.json", "log.jsonl",
         "snapshots.safetensors", "snapshots.json", "trainer_state.json", "trainer_state.pt", RESULTS_FILE)


def prepare_dir(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in OWNED:
        (out / name).unlink(missing_ok=True)
    return out


def set_threads(threads: int | None) -> int:
    """Intra-op threads for the run. On a CPU shared with other jobs, 1 is often fastest:
    OpenMP workers spin-wait for each other when the cores are oversubscribed."""
    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def finite(x: float | None) -> float | None:
    """JSON has no NaN/inf: non-finite numbers become null."""
    return None if x is None or not math.isfinite(x) else float(x)


def heatmap(z, x=None, y=None, title: str = "", xaxis: str = "", yaxis: str = "", colorscale: str = "Viridis") -> dict:
    """A Plotly figure (as its JSON dict) of one heatmap."""
    trace = {"type": "heatmap", "z": z, "colorscale": colorscale}
    if x is not None:
        trace["x"] = x
    if y is not None:
        trace["y"] = y
    return {"data": [trace], "layout": {"title": {"text": title}, "xaxis": {"title": {"text": xaxis}},
                                        "yaxis": {"title": {"text": yaxis}, "autorange": "reversed"}}}


def lines(series: dict[str, tuple[list, list]], title: str = "", xaxis: str = "", yaxis: str = "",
          log_y: bool = False, log_x: bool = False) -> dict:
    """A Plotly figure (as its JSON dict) of named x/y line series."""
    data = [{"type": "scatter", "mode": "lines+markers", "name": name, "x": list(x), "y": list(y)}
            for name, (x, y) in series.items()]
    layout = {"title": {"text": title}, "xaxis": {"title": {"text": xaxis}}, "yaxis": {"title": {"text": yaxis}}}
    if log_y:
        layout["yaxis"]["type"] = "log"
    if log_x:
        layout["xaxis"]["type"] = "log"
    return {"data": data, "layout": layout}


def loss_curve(history: list[dict]) -> dict:
    steps = [h["step"] for h in history if "loss" in h]
    losses = [finite(h["loss"]) for h in history if "loss" in h]
    return lines({"train loss": (steps, losses)}, "training loss", "step", "loss")


def write_results(out_dir: Path, lab: str, quick: bool, started: float, body: dict) -> dict:
    """results.json: the lab's numbers, its figures as data, and how long it took."""
    results = {
        "lab": lab,
        "quick": quick,
        "seconds": round(time.perf_counter() - started, 1),
        # CPU time of this process (all threads): the wall time above grows when the CPU is shared
        "cpu_seconds": round(time.process_time(), 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        **body,
    }
    (out_dir / RESULTS_FILE).write_text(json.dumps(results, indent=1, ensure_ascii=False, allow_nan=False))
    log.info("lab %s done in %.1f s; results in %s", lab, results["seconds"], out_dir / RESULTS_FILE)
    return results


def checkpoint_bytes(out_dir: Path) -> int:
    return sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())


@dataclass
class BPECorpus:
    """A corpus tokenised with a byte-level BPE trained on it, split 95/5 for validation."""

    name: str
    tokenizer: object
    ids: torch.Tensor
    train_ids: torch.Tensor
    val_ids: torch.Tensor
    tokenizer_seconds: float


def bpe_corpus(name: str, vocab_size: int, quick: bool, max_chars: int | None = None) -> BPECorpus:
    """``name`` (``load_corpus``) with a byte-level BPE of ``vocab_size`` trained on it; ``quick`` keeps the first
    100,000 characters, ``max_chars`` the first ``max_chars``."""
    from ..data import load_corpus, train_val_split
    from ..tokenization import train_bpe

    text = load_corpus(name)
    if quick:
        text = text[:100_000]
    if max_chars is not None:
        text = text[:max_chars]
    t0 = time.perf_counter()
    tok = train_bpe(text, vocab_size)
    seconds = time.perf_counter() - t0
    ids = torch.tensor(tok.encode(text), dtype=torch.long)
    train_ids, val_ids = train_val_split(ids, 0.05)
    return BPECorpus(name, tok, ids, train_ids, val_ids, seconds)


def training_summary(result, data: BPECorpus) -> dict:
    """The results.json fields every language-model lab reports the same way."""
    val_loss = result.eval_loss if result.eval_loss is not None else float("nan")
    return {
        "train_seconds": round(result.seconds, 1),
        "tokenizer_seconds": round(data.tokenizer_seconds, 1),
        "steps": result.steps,
        "final_loss": finite(result.final_loss),
        "val_loss": finite(val_loss),
        "val_perplexity": finite(math.exp(min(val_loss, 50))),
        "corpus": data.name,
        "corpus_tokens": len(data.ids),
        "tokenizer": f"byte-level BPE, {data.tokenizer.vocab_size} tokens",
        "tokens_per_s": round(result.tokens_per_s),
        "figures": {"train_loss": loss_curve(result.history)},
        "eval": [h for h in result.history if "eval_loss" in h],
    }
