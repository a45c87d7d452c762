"""Real outside servers the tests start on free loopback ports: Debian's ``redis-server`` and ``nginx``.

``.ci/run`` installs both with apt-get; where a binary is missing the fixtures that use these skip with
the reason. Nothing here is mocked: the tests talk to the real programs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NGINX_TEMPLATE = ROOT / "deploy" / "nginx.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary(name: str, package: str, *extra_dirs: str) -> str:
    """The path of a program, or skip naming the Debian package that brings it."""
    found = shutil.which(name) or next((f"{d}/{name}" for d in extra_dirs if Path(f"{d}/{name}").exists()), None)
    if found is None:
        pytest.skip(f"{name} is not installed (apt-get install {package}; .ci/run does)")
    return found


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 20.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:g} s")


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    """redis-server on a free loopback port, no persistence: (process, redis:// URL)."""
    exe = binary("redis-server", "redis-server")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir), "--daemonize", "no", "--loglevel", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_port(port, proc, "redis-server")
    return proc, f"redis://127.0.0.1:{port}/0"


def nginx_config(listen: int, upstreams: list[str], workdir: Path) -> str:
    """deploy/nginx.conf with its upstream servers and port replaced, and its paths inside ``workdir`` (an
    unprivileged nginx in the foreground). The proxy settings are the file's own, as deployed."""
    text = NGINX_TEMPLATE.read_text()
    servers = "\n".join(f"        server {u};" for u in upstreams)
    start, end = text.index("    upstream attnlab {"), text.index("    }", text.index("    upstream attnlab {"))
    text = text[:start] + "    upstream attnlab {\n" + servers + "\n" + text[end:]
    text = text.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    head = f"daemon off;\npid {workdir}/nginx.pid;\nerror_log {workdir}/error.log warn;\n"
    if os.geteuid() == 0:  # workers as root too: they read and write inside ``workdir`` (a 0700 folder)
        head += "user root;\n"
    temp = "".join(f"    {name}_temp_path {workdir}/{name};\n" for name in
                   ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = text.replace("http {\n", "http {\n" + temp + f"    access_log {workdir}/access.log;\n", 1)
    return head + text


def start_nginx(upstreams: list[str], workdir: Path) -> tuple[subprocess.Popen, str]:
    """nginx from deploy/nginx.conf in front of ``upstreams`` (host:port): (process, base URL)."""
    exe = binary("nginx", "nginx", "/usr/sbin")
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(nginx_config(port, upstreams, workdir))
    proc = subprocess.Popen([exe, "-c", str(conf), "-p", str(workdir)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    wait_for_port(port, proc, "nginx")
    return proc, f"http://127.0.0.1:{port}"


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
