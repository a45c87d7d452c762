"""``python -m app.cli``: the `attnlab` command."""

from .commands import app

app()
