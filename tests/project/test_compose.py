"""compose.yaml and deploy/nginx.conf cannot run here (no Docker engine): parse them and check they agree
with each other and with the Dockerfile. (tests/server/test_scale_out.py runs deploy/nginx.conf for real.)"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from attnlab.core.settings import Settings
from attnlab.services.run_store import REDIS_SCHEMES, open_run_store

ROOT = Path(__file__).resolve().parents[2]  # the checkout


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def attnlab_services(doc: dict) -> dict[str, dict]:
    return {name: s for name, s in doc["services"].items() if s.get("build") == "."}


def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def test_two_replicas_of_the_dockerfile_image_share_the_redis_service():
    doc = compose()
    replicas = attnlab_services(doc)
    assert len(replicas) >= 2 and (ROOT / "Dockerfile").exists()
    for name, service in replicas.items():
        env = service["environment"]
        url = env["ATTNLAB_RUN_STORE"]
        assert url.startswith(REDIS_SCHEMES), name
        host = re.match(r"rediss?://([^:/]+)", url).group(1)
        assert host in doc["services"] and "redis-server" in doc["services"][host]["command"]
        assert host in service["depends_on"]
        # the environment is valid settings, and the store spec is one attnlab opens
        settings = Settings(_env_file=None, **{k.removeprefix("ATTNLAB_").lower(): v for k, v in env.items()})
        assert settings.workers >= 2 and settings.run_ttl_s > 0
        assert open_run_store(settings.run_store, settings.run_ttl_s).kind == "redis"


def test_the_proxy_mounts_deploy_nginx_conf_whose_upstreams_are_the_replicas():
    doc = compose()
    proxy = next(s for s in doc["services"].values() if str(s.get("image", "")).startswith("nginx"))
    source, target, *_ = proxy["volumes"][0].split(":")
    assert (ROOT / source).resolve() == ROOT / "deploy" / "nginx.conf" and target == "/etc/nginx/nginx.conf"
    assert set(attnlab_services(doc)) <= set(proxy["depends_on"])
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    upstream = re.search(r"upstream attnlab \{(.*?)\}", conf, re.S).group(1)
    port = dockerfile_env()["ATTNLAB_PORT"]
    assert sorted(re.findall(r"server (\S+);", upstream)) == sorted(f"{n}:{port}" for n in attnlab_services(doc))
    # what keeps SSE and large answers flowing through the proxy
    for directive in ("proxy_http_version 1.1;", 'proxy_set_header Connection "";', "proxy_read_timeout",
                      "proxy_max_temp_file_size 0;"):
        assert directive in conf
