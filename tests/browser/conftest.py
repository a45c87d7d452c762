"""The browser layer: the pages in Debian's chromium through playwright (marker ``browser``).
The served app, its registry and the page fixtures are in test_browser.py; seeds and threads
come from tests/conftest.py."""
