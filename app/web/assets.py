"""Copy plotly.min.js from the installed `plotly` package into static/vendor (no CDN)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import plotly

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parents[2] / "static"
VENDOR = STATIC / "vendor"


def plotly_js_source() -> Path:
    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def ensure_assets() -> Path:
    """Idempotent: copy plotly.min.js if missing or from another plotly version."""
    VENDOR.mkdir(parents=True, exist_ok=True)
    target = VENDOR / "plotly.min.js"
    source = plotly_js_source()
    if not target.exists() or target.stat().st_size != source.stat().st_size:
        shutil.copyfile(source, target)
        log.info("copied %s -> %s", source, target)
    return target


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    ensure_assets()
