"""The HTTP API layer: the real app over a registry of tiny real models (tests/support.py)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from attnlab.main import create_app
from tests.support import make_settings, tiny_registry


@pytest.fixture(scope="module")
def client(one_thread):
    """The app over tiny_registry(), one per test module (a module's requests never show in another's
    metrics, run cache or limits). A module may override it with its own registry."""
    app = create_app(make_settings(), registry=tiny_registry())
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
