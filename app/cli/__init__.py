"""The `attnlab` command line (app.cli.commands) and the API benchmark it runs (app.cli.api_bench)."""

from .commands import app

__all__ = ["app"]
