"""``python -m attnlab.cli``: the `attnlab` command."""

from .commands import app

app()
