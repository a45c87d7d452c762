"""Every bad request gets a 4xx whose message names the field (and the limit); never a 5xx."""

from __future__ import annotations

import pytest

from tests.test_api_support import client, one_thread  # noqa: F401  (fixtures)

RUN_ID = "0123456789abcdef0123456789abcdef"
OK = {"model": "tiny-gpt", "text": "hello"}
GEN = {"model": "tiny-gpt", "prompt": "hello"}

# (name, method, url, kwargs, allowed statuses, words the detail must contain)
CASES = [
    ("empty text", "POST", "/api/attention", {"json": {**OK, "text": ""}}, {422}, ["text", "at least 1"]),
    ("whitespace text", "POST", "/api/attention", {"json": {**OK, "text": " \n\t "}}, {422}, ["text", "whitespace"]),
    ("1 MB text", "POST", "/api/attention", {"json": {**OK, "text": "a" * 2**20}}, {422}, ["text", "100000"]),
    ("text past max_positions", "POST", "/api/runs", {"json": {"model": "tiny-bert", "text": "a" * 65}}, {413},
     ["text", "max_positions 64"]),
    ("text past dense budget", "POST", "/api/attention", {"json": {**OK, "text": "a" * 300}}, {413},
     ["dense_budget", "/api/runs"]),
    ("missing text", "POST", "/api/attention", {"json": {"model": "tiny-gpt"}}, {422}, ["text", "required"]),
    ("unknown field", "POST", "/api/attention", {"json": {**OK, "txt": "x"}}, {422}, ["txt"]),
    ("unknown model", "POST", "/api/attention", {"json": {**OK, "model": "nope"}}, {404}, ["model", "tiny-gpt"]),
    ("unavailable model", "POST", "/api/runs", {"json": {**OK, "model": "ghost"}}, {409}, ["ghost package"]),
    ("unknown backend", "POST", "/api/attention", {"json": {**OK, "backend": "warp"}}, {422}, ["backend", "flash"]),
    ("pair on a decoder", "POST", "/api/attention", {"json": {**OK, "text_pair": "x"}}, {422}, ["text_pair"]),
    ("layer out of range", "POST", "/api/attention", {"json": {**OK, "layers": [5]}}, {422}, ["layers", "0..1"]),
    ("negative head", "POST", "/api/attention", {"json": {**OK, "heads": [-1]}}, {422}, ["heads", "greater"]),
    ("head out of range", "POST", "/api/attention", {"json": {**OK, "heads": [9]}}, {422}, ["heads", "0..3"]),
    ("bad format", "POST", "/api/attention", {"json": {**OK, "format": "xml"}}, {422}, ["format"]),
    ("malformed JSON", "POST", "/api/attention",
     {"content": b'{"model": "tiny-gpt", "text": ', "headers": {"content-type": "application/json"}}, {422},
     ["JSON"]),
    ("invalid UTF-8", "POST", "/api/attention",
     {"content": b'{"model": "tiny-gpt", "text": "\xff\xfe"}', "headers": {"content-type": "application/json"}},
     {400, 422}, []),
    ("wrong content type", "POST", "/api/attention",
     {"content": b"model=tiny-gpt&text=hi", "headers": {"content-type": "application/x-www-form-urlencoded"}},
     {415, 422}, []),
    ("body not an object", "POST", "/api/runs", {"json": [1, 2]}, {422}, []),
    ("run id not a hash", "GET", "/api/runs/../../etc/passwd/attention", {}, {404, 422}, []),
    ("run id wrong chars", "GET", "/api/runs/XYZ/attention", {}, {422}, ["run_id"]),
    ("unknown run", "GET", f"/api/runs/{RUN_ID}/attention", {}, {404}, ["POST /api/runs"]),
    ("unknown run heads", "GET", f"/api/runs/{RUN_ID}/heads", {}, {404}, ["POST /api/runs"]),
    ("pool 0", "GET", f"/api/runs/{RUN_ID}/attention?pool=0", {}, {422}, ["pool"]),
    ("bad range syntax", "GET", f"/api/runs/{RUN_ID}/attention?rows=a:b", {}, {422}, ["rows"]),
    ("bad pool mode", "GET", f"/api/runs/{RUN_ID}/attention?pool=4&pool_mode=median", {}, {422}, ["pool_mode"]),
    ("bad kind", "GET", f"/api/runs/{RUN_ID}/attention?kind=sideways", {}, {422}, ["kind"]),
    ("max_new_tokens 10^6", "POST", "/api/generate", {"json": {**GEN, "max_new_tokens": 10**6}}, {422},
     ["max_new_tokens", "4096"]),
    ("negative temperature", "POST", "/api/generate", {"json": {**GEN, "temperature": -0.5}}, {422},
     ["temperature", "greater than or equal to 0"]),
    ("huge temperature", "POST", "/api/generate", {"json": {**GEN, "temperature": 1e9}}, {422}, ["temperature"]),
    ("infinite temperature", "POST", "/api/generate",
     {"content": b'{"model": "tiny-gpt", "prompt": "hi", "temperature": Infinity}',
      "headers": {"content-type": "application/json"}}, {422}, ["temperature"]),
    ("NaN temperature", "POST", "/api/generate",
     {"content": b'{"model": "tiny-gpt", "prompt": "hi", "temperature": NaN}',
      "headers": {"content-type": "application/json"}}, {422}, ["temperature"]),
    ("top_p 0", "POST", "/api/generate", {"json": {**GEN, "top_p": 0}}, {422}, ["top_p", "greater than 0"]),
    ("top_p above 1", "POST", "/api/generate", {"json": {**GEN, "top_p": 1.01}}, {422}, ["top_p"]),
    ("negative seed", "POST", "/api/generate", {"json": {**GEN, "seed": -1}}, {422}, ["seed"]),
    ("empty prompt", "POST", "/api/generate", {"json": {**GEN, "prompt": "  "}}, {422}, ["prompt"]),
    ("prompt past positions", "POST", "/api/generate", {"json": {**GEN, "prompt": "a" * 2048}}, {413},
     ["prompt", "max_positions"]),
    ("generate on unavailable", "POST", "/api/generate", {"json": {**GEN, "model": "ghost"}}, {409, 422}, []),
    ("positional d_model 0", "GET", "/api/positional/rope?d_model=0", {}, {422}, ["d_model"]),
    ("positional unknown", "GET", "/api/positional/wavelet", {}, {422}, ["scheme"]),
    ("benchmark empty seq_lens", "POST", "/api/benchmark", {"json": {"seq_lens": []}}, {422}, ["seq_lens"]),
    ("benchmark passes", "POST", "/api/benchmark", {"json": {"seq_lens": [8], "passes": "bwd"}}, {422}, ["passes"]),
    ("model detail unknown", "GET", "/api/models/../../etc", {}, {404}, []),
]


@pytest.mark.parametrize("name,method,url,kwargs,statuses,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(client, name, method, url, kwargs, statuses, words):
    r = client.request(method, url, **kwargs)
    assert r.status_code in statuses, (r.status_code, r.text[:500])
    detail = r.json().get("detail", "")
    text = detail if isinstance(detail, str) else str(detail)
    for word in words:
        assert word in text, (word, text[:500])
    assert len(r.content) < 20_000  # the input is never echoed back


def test_tile_ranges_name_bounds(client):
    run_id = client.post("/api/runs", json={"model": "tiny-gpt", "text": "abcdefghij"}).json()["run_id"]
    cases = [({"rows": "0:11"}, "rows", "0:10"), ({"cols": "5:5"}, "cols", "0:10"), ({"layer": 2}, "layer", "0..1"),
             ({"head": 4}, "head", "0..3"), ({"kind": "encoder"}, "kind", "decoder"),
             ({"pool": 100000}, "pool", "8192")]
    for params, field, bound in cases:
        r = client.get(f"/api/runs/{run_id}/attention", params=params)
        assert r.status_code == 422, (params, r.text)
        assert field in r.json()["detail"] and bound in r.json()["detail"], r.json()["detail"]


def test_tile_parameters_fuzzed(client):
    """Any combination of tile parameters on a real run: 200 or 4xx, never 5xx."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    run_id = client.post("/api/runs", json={"model": "tiny-t5", "text": "fuzz me"}).json()["run_id"]
    bound = st.one_of(st.none(), st.integers(-2, 20))
    ranges = st.one_of(st.none(), st.builds(lambda a, b: f"{'' if a is None else a}:{'' if b is None else b}",
                                            bound, bound), st.text(max_size=6))

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from([None, "encoder", "decoder", "cross", "x"]), layer=st.integers(-1, 3),
           head=st.integers(-1, 5), rows=ranges, cols=ranges, pool=st.one_of(st.none(), st.integers(-1, 3000)),
           mode=st.sampled_from(["max", "mean", "min"]), fmt=st.sampled_from(["json", "f16", "u8", "png"]))
    def check(kind, layer, head, rows, cols, pool, mode, fmt):
        params = {"layer": layer, "head": head, "pool_mode": mode, "format": fmt}
        params.update({k: v for k, v in {"kind": kind, "rows": rows, "cols": cols, "pool": pool}.items()
                       if v is not None})
        r = client.get(f"/api/runs/{run_id}/attention", params=params)
        assert r.status_code < 500, (params, r.text[:300])

    check()
