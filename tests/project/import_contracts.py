"""Check the import contracts ([tool.importlinter] in pyproject.toml) on `attnlab` laid out as installed.

import-linter (grimp) finds a package's modules by walking its folder. In a checkout the folders are
mapped onto the import names (pyproject.toml: ``app/`` is ``attnlab``, ``models/`` is ``attnlab.models``),
so ``attnlab.models`` does not lie inside ``attnlab``'s folder and would go unseen. This copies both
folders into one tree in a temporary directory, the way the wheel lays them out, and runs
``lint-imports`` there. Used by ``make lint`` and tests/project/test_lint.py.

    python tests/project/import_contracts.py      # exit status 0 when every contract holds
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout


def lint_imports_exe() -> str:
    entry = Path(sys.executable).parent / "lint-imports"
    exe = str(entry) if entry.exists() else shutil.which("lint-imports")
    if not exe:
        raise SystemExit("lint-imports not found: install the test extras (pip install -e '.[test]')")
    return exe


def check_contracts() -> subprocess.CompletedProcess:
    """Run lint-imports over a copy of app/ (as attnlab/) and models/ (as attnlab/models/)."""
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "zoo")
    with tempfile.TemporaryDirectory(prefix="attnlab-contracts-") as tmp:
        shutil.copytree(ROOT / "app", Path(tmp) / "attnlab", ignore=skip)
        shutil.copytree(ROOT / "models", Path(tmp) / "attnlab" / "models", ignore=skip)
        # first on sys.path, so the copy is found before the installed (editable) attnlab
        env = {**os.environ, "PYTHONPATH": tmp}
        return subprocess.run([lint_imports_exe(), "--no-cache", str(ROOT / "pyproject.toml")],
                              cwd=tmp, env=env, capture_output=True, text=True, timeout=300)


if __name__ == "__main__":
    result = check_contracts()
    sys.stdout.write(result.stdout + result.stderr)
    sys.exit(result.returncode)
