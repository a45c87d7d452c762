"""``python -m attnlab.cli``: the `attnlab` command (user mistakes as one line: app.cli.errors)."""

from .errors import main

main()
