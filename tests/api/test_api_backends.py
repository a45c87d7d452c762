"""GET /api/backends and the device in GET /api/health."""

from __future__ import annotations

import torch

from attnlab.models.attention import BACKENDS
from attnlab.models.attention.sdpa_kernels import which_kernel


def test_backends_lists_every_backend_with_why_not(client):
    r = client.get("/api/backends")
    assert r.status_code == 200
    body = r.json()
    assert (body["device"], body["dtype"], body["torch"]) == ("cpu", "float32", torch.__version__)
    backends = {b["name"]: b for b in body["backends"]}
    # the toggle's backends first, in the registry's (the API enum's) order, each runnable here
    assert [b["name"] for b in body["backends"] if b["registered"]] == list(BACKENDS)
    assert all(backends[name]["available"] and backends[name]["reason"] is None for name in BACKENDS)
    assert backends["flash"]["returns_lse"] and backends["math"]["returns_weights"]
    # and those this machine does not offer, with the reason
    assert set(backends) >= {"sdpa_flash", "sdpa_efficient", "sdpa_cudnn", "sdpa_math", "triton"}
    if not torch.cuda.is_available():
        triton = backends["triton"]
        assert not triton["registered"]  # never offered without a GPU
        # runnable on CPU only under the interpreter (the test suite sets TRITON_INTERPRET=1 where triton is)
        assert triton["available"] == (body["triton_interpreter"] and body["triton"] is not None)
        assert triton["available"] or "CUDA" in triton["reason"] or "not installed" in triton["reason"]
        assert backends["sdpa_efficient"]["reason"].startswith("offered on CUDA only")
        kernels = {k["kernel"]: k for k in body["sdpa_kernels"]}
        assert kernels["efficient"]["reason"] == "SDPA's efficient kernel is CUDA-only"
        assert kernels["math"]["available"] and kernels["math"]["reason"] is None
    q = torch.zeros(1, 8, 1024, 64)
    assert body["sdpa_choice"] == which_kernel(q, q, q, is_causal=True)


def test_backends_is_in_the_openapi_document(client):
    doc = client.get("/openapi.json").json()
    op = doc["paths"]["/api/backends"]["get"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/BackendsReport")
    kernel = doc["components"]["schemas"]["SdpaKernelOut"]["properties"]["kernel"]
    assert kernel["enum"] == ["flash", "efficient", "cudnn", "math"]


def test_health_reports_the_device(client):
    body = client.get("/api/health").json()
    assert (body["device"], body["dtype"]) == ("cpu", "float32")
