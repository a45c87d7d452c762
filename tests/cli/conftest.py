"""The command-line layer: ``attnlab`` run in process with typer's runner.

Commands such as ``serve`` hand their options to worker processes through the environment; in process
that would leak into every later test's settings, so each test here gets the environment back as it was."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def restore_environment():
    from attnlab.core.settings import get_settings

    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)
    get_settings.cache_clear()
