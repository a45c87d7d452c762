"""The browser layer: the pages in Debian's chromium through playwright (marker ``browser``).

Shared here, once: the skip when /usr/bin/chromium or playwright is missing (the tests never download a
browser), the chromium launch (one browser for the session), the uvicorn server in a thread (``serve``),
the page context, the screenshot folder and the watched page that collects console errors, page errors,
CSP violations and dialogs. Each module keeps what is its own: the registry and settings of its ``server``
fixture (the base URL), its viewport where it differs, its helpers. Seeds and threads come from
tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
CSP_REPORTER = ("document.addEventListener('securitypolicyviolation', e => "
                "console.error('CSP violation', e.violatedDirective, e.sourceFile, e.lineNumber));")


@pytest.fixture(scope="session", autouse=True)
def _needs_chromium() -> None:
    """Skips every browser test (before any server starts) where chromium or playwright is missing."""
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed at /usr/bin/chromium (apt-get install chromium); "
                    "the browser tests never download a browser")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serve(app) -> Iterator[str]:
    """uvicorn serving ``app`` (lifespan on) in a daemon thread on a free local port; yields the base URL."""
    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def serve():
    """``with serve(app) as base_url:`` the app under uvicorn in a thread, stopped on leaving the block."""
    return _serve


@pytest.fixture(scope="module")  # the sync API runs an event loop on this thread while it is open: closed per
def browser():  # module, so later tests may still call asyncio.run
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def viewport() -> dict[str, int]:
    """The module context's viewport; a module overrides this fixture to change it."""
    return {"width": 1400, "height": 1000}


@pytest.fixture(scope="module")
def context(browser, viewport):
    # one context for the module: the browser cache keeps plotly.min.js (4.6 MB) between tests
    ctx = browser.new_context(viewport=viewport, accept_downloads=True)
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Screenshots go to a pytest temp dir, never to static/screenshots/."""
    return tmp_path_factory.mktemp("screenshots")


def watch(page, base: str | None = None, shots: Path | None = None):
    """``page`` with ``page.errors`` collecting console errors, page errors, CSP violations and dialogs
    (dismissed), and ``page.base`` / ``page.shots`` set."""
    page.errors = []
    page.base = base
    page.shots = shots
    page.add_init_script(CSP_REPORTER)
    page.on("console", lambda m: m.type == "error" and page.errors.append(m.text))
    page.on("pageerror", lambda e: page.errors.append(f"page error: {e}"))

    def on_dialog(dialog):
        page.errors.append(f"a dialog fired: {dialog.message}")
        dialog.dismiss()

    page.on("dialog", on_dialog)
    return page


class Watched:
    """A watched page (see ``watch``) with the helpers the view tests share."""

    def __init__(self, context, base: str, shots: Path):
        self.base = base
        self.shots = shots
        self.page = watch(context.new_page(), base, shots)
        self.errors: list[str] = self.page.errors

    def goto(self, path: str, **params: object):
        url = f"{self.base}{path}" + (f"?{urlencode(params)}" if params else "")
        self.page.goto(url)
        return self.page

    def traces(self, selector: str) -> int:
        return self.page.eval_on_selector(selector, "el => (el.data || []).length")

    def wait_plot(self, selector: str, timeout: float = 60_000):
        self.page.wait_for_function(
            "(sel) => { const el = document.querySelector(sel); return el && el.data && el.data.length > 0 "
            "&& el.querySelector('.main-svg'); }", arg=selector, timeout=timeout)

    def state(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlparse(self.page.url).query).items()}

    def shot(self, name: str) -> None:
        self.page.wait_for_timeout(300)
        self.page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)

    def check_clean(self) -> None:
        assert self.page.locator("#error").is_hidden(), self.page.locator("#error").text_content()
        assert not self.errors, self.errors
        assert self.page.locator("img[src='x']").count() == 0, "an injected <img> element was created"

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def watched(context, server, shots):
    """A fresh watched page in the module's context, on the module's ``server`` (its base URL)."""
    w = Watched(context, server, shots)
    yield w
    w.close()


@pytest.fixture(scope="module")
def page(context, server, shots):
    """One watched playwright page for the module, on the module's ``server``."""
    pg = watch(context.new_page(), server, shots)
    yield pg
    pg.close()


@pytest.fixture
def open_watched(browser, shots):
    """``open_watched(base, width, height, **context_options) -> Watched`` in a fresh context of its own,
    closed after the test."""
    contexts = []

    def open_(base: str | None, width: int, height: int, **options) -> Watched:
        ctx = browser.new_context(viewport={"width": width, "height": height}, **options)
        contexts.append(ctx)
        return Watched(ctx, base, shots)

    yield open_
    for ctx in contexts:
        ctx.close()
