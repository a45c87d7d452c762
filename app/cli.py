"""The `attnlab` command line: serve, list models, benchmarks, training and labs."""

from __future__ import annotations

import logging

import typer

app = typer.Typer(help="attnlab: see what Transformer attention does.", no_args_is_help=True)
bench = typer.Typer(help="Benchmarks that print ratios measured side by side in one run.", no_args_is_help=True)
app.add_typer(bench, name="bench")


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1, reload: bool = False) -> None:
    """Start the web server (pages at /, API at /api, OpenAPI at /docs)."""
    import uvicorn

    _logging()
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, workers=workers, reload=reload)


@bench.command("attention")
def bench_attention(quick: bool = typer.Option(False, help="only T=4096 causal forward"),
                    json: bool = typer.Option(False, "--json", help="machine-readable results")) -> None:
    """math vs sdpa vs our flash: time, GFLOP/s, memory, error."""
    from models.benchmark import run_attention_bench

    _logging("WARNING")
    run_attention_bench(quick=quick, as_json=json)


if __name__ == "__main__":
    app()
