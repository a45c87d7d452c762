"""Every bad request gets a 4xx whose message names the field (and the limit); never a 5xx.

One kind of error, one status and one message shape for every model family (app.services.errors):
413 for an input larger than a limit (too many tokens, over a budget), 422 for a value that is
invalid. FAMILY_CASES check it on the from-scratch encoder, decoder and encoder-decoder and on the
Hugging Face MiniLM (encoder) and SmolLM2 (decoder).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from attnlab.main import create_app
from tests.support import make_settings, tiny_registry

RUN_ID = "0123456789abcdef0123456789abcdef"
OK = {"model": "tiny-gpt", "text": "hello"}
GEN = {"model": "tiny-gpt", "prompt": "hello"}

# (name, method, url, kwargs, allowed statuses, words the detail must contain)
CASES = [
    ("empty text", "POST", "/api/attention", {"json": {**OK, "text": ""}}, {422}, ["text", "at least 1"]),
    ("1 MB text", "POST", "/api/attention", {"json": {**OK, "text": "a" * 2**20}}, {422}, ["text", "100000"]),
    ("text past max_positions", "POST", "/api/runs", {"json": {"model": "tiny-bert", "text": "a" * 65}}, {413},
     ["text", "max_positions 64"]),
    ("text past dense budget", "POST", "/api/attention", {"json": {**OK, "text": "a" * 300}}, {413},
     ["dense_budget", "/api/runs"]),
    ("missing text", "POST", "/api/attention", {"json": {"model": "tiny-gpt"}}, {422}, ["text", "required"]),
    ("unknown field", "POST", "/api/attention", {"json": {**OK, "txt": "x"}}, {422}, ["txt"]),
    ("unknown model", "POST", "/api/attention", {"json": {**OK, "model": "nope"}}, {404}, ["model", "tiny-gpt"]),
    ("unavailable model", "POST", "/api/runs", {"json": {**OK, "model": "ghost"}}, {409},
     ["model: 'ghost' is not available: ", "ghost package"]),
    ("unknown backend", "POST", "/api/attention", {"json": {**OK, "backend": "warp"}}, {422}, ["backend", "flash"]),
    ("text and pair over max_text_chars", "POST", "/api/runs",
     {"json": {"model": "tiny-bert", "text": "a" * 60_000, "text_pair": "b" * 60_000}}, {413},
     ["text and text_pair together", "120000 characters", "100000 (max_text_chars)"]),
    ("pair on a decoder", "POST", "/api/attention", {"json": {**OK, "text_pair": "x"}}, {422}, ["text_pair"]),
    ("layer out of range", "POST", "/api/attention", {"json": {**OK, "layers": [5]}}, {422}, ["layers", "0..1"]),
    ("negative head", "POST", "/api/attention", {"json": {**OK, "heads": [-1]}}, {422}, ["heads", "greater"]),
    ("head out of range", "POST", "/api/attention", {"json": {**OK, "heads": [9]}}, {422}, ["heads", "0..3"]),
    ("bad format", "POST", "/api/attention", {"json": {**OK, "format": "xml"}}, {422}, ["format"]),
    ("malformed JSON", "POST", "/api/attention",
     {"content": b'{"model": "tiny-gpt", "text": ', "headers": {"content-type": "application/json"}}, {422},
     ["body: invalid JSON at character 30: "]),
    ("invalid UTF-8", "POST", "/api/attention",
     {"content": b'{"model": "tiny-gpt", "text": "\xff\xfe"}', "headers": {"content-type": "application/json"}},
     {422}, ["body", "could not be decoded", "utf-8"]),
    ("wrong content type", "POST", "/api/attention",
     {"content": b"model=tiny-gpt&text=hi", "headers": {"content-type": "application/x-www-form-urlencoded"}},
     {415, 422}, []),
    ("body not an object", "POST", "/api/runs", {"json": [1, 2]}, {422}, []),
    ("run id not a hash", "GET", "/api/runs/../../etc/passwd/attention", {}, {404, 422}, []),
    ("run id wrong chars", "GET", "/api/runs/XYZ/attention", {}, {422}, ["run_id"]),
    ("unknown run", "GET", f"/api/runs/{RUN_ID}/attention", {}, {404}, ["POST /api/runs"]),
    ("unknown run heads", "GET", f"/api/runs/{RUN_ID}/heads", {}, {404}, ["POST /api/runs"]),
    ("pool 0", "GET", f"/api/runs/{RUN_ID}/attention?pool=0", {}, {422}, ["pool"]),
    ("pool over max_pool", "GET", f"/api/runs/{RUN_ID}/attention?pool=2049", {}, {422},
     ["pool", "less than or equal to 2048", "max_pool"]),
    ("range in other digits", "GET", f"/api/runs/{RUN_ID}/attention?rows=\u0661:\u0662", {}, {422}, ["rows"]),
    ("rollout of cross-attention", "GET", f"/api/runs/{RUN_ID}/rollout?kind=cross", {}, {422}, ["kind", "decoder"]),
    ("head scores of an unknown kind", "GET", f"/api/figures/heads/{RUN_ID}?kind=sideways", {}, {422}, ["kind"]),
    ("bad range syntax", "GET", f"/api/runs/{RUN_ID}/attention?rows=a:b", {}, {422}, ["rows"]),
    ("bad pool mode", "GET", f"/api/runs/{RUN_ID}/attention?pool=4&pool_mode=median", {}, {422}, ["pool_mode"]),
    ("bad kind", "GET", f"/api/runs/{RUN_ID}/attention?kind=sideways", {}, {422}, ["kind"]),
    ("max_new_tokens 10^6", "POST", "/api/generate", {"json": {**GEN, "max_new_tokens": 10**6}}, {422},
     ["max_new_tokens", "64"]),
    ("max_new_tokens past the server's", "POST", "/api/generate", {"json": {**GEN, "max_new_tokens": 65}}, {422},
     ["max_new_tokens", "less than or equal to 64 (max_new_tokens)"]),
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
    ("seed past 2^53", "POST", "/api/generate", {"json": {**GEN, "seed": 2**53}}, {422}, ["seed", "9007199254740991"]),
    ("empty prompt", "POST", "/api/generate", {"json": {**GEN, "prompt": ""}}, {422}, ["prompt", "at least 1"]),
    ("prompt past positions", "POST", "/api/generate", {"json": {**GEN, "prompt": "a" * 2048}}, {413},
     ["prompt", "max_positions"]),
    ("generate on unavailable", "POST", "/api/generate", {"json": {**GEN, "model": "ghost"}}, {409, 422}, []),
    ("positional d_model 0", "GET", "/api/positional/rope?d_model=0", {}, {422}, ["d_model"]),
    ("positional unknown", "GET", "/api/positional/wavelet", {}, {422}, ["scheme"]),
    ("positional figures unknown", "GET", "/api/positional/wavelet?format=figure", {}, {422}, ["scheme", "alibi"]),
    ("profile past positions", "GET", "/api/figures/profile/tiny-bert?tokens=65", {}, {413},
     ["tokens: 65 tokens is more than model 'tiny-bert' accepts (max_positions 64: its learned position table "
      "has 64 rows)"]),
    ("benchmark empty seq_lens", "POST", "/api/benchmark", {"json": {"seq_lens": []}}, {422}, ["seq_lens"]),
    ("benchmark passes", "POST", "/api/benchmark", {"json": {"seq_lens": [8], "passes": "bwd"}}, {422}, ["passes"]),
    ("benchmark unknown backend", "POST", "/api/benchmark", {"json": {"seq_lens": [8], "backends": ["warp"]}}, {422},
     ["backends", "flash"]),
    ("benchmark maps over budget", "POST", "/api/benchmark", {"json": {"model": "tiny-gpt", "text": "a" * 800}}, {413},
     ["text", "5,120,000 weights", "benchmark_max_cells"]),
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
    if r.status_code in (409, 413, 422):  # our own answers (not the router's 404/405/415)
        assert re.match(r"^[a-z_][a-z_0-9.]*( and [a-z_]+ together)?: ", text), text  # starts with its field


def test_tile_ranges_name_bounds(client):
    run_id = client.post("/api/runs", json={"model": "tiny-gpt", "text": "abcdefghij"}).json()["run_id"]
    cases = [({"rows": "0:11"}, "rows", "0:10"), ({"cols": "5:5"}, "cols", "0:10"), ({"layer": 2}, "layer", "0..1"),
             ({"head": 4}, "head", "0..3"), ({"kind": "encoder"}, "kind", "decoder"),
             ({"pool": 100000}, "pool", "2048 (max_pool)")]
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


# -- one status, one message shape, every family -----------------------------------------------------------


@dataclass(frozen=True)
class Family:
    model: str
    family: str
    n_layers: int
    n_heads: int
    max_positions: int
    long_text: str  # more tokens than max_positions (and within max_text_chars)


def _hf_available(model_id: str) -> bool:
    try:
        from attnlab.models import hf as pretrained
    except ImportError:
        return False
    entry = {"minilm": pretrained.minilm_entry, "smollm2": pretrained.smollm2_entry}[model_id]()
    return entry.info().available


FAMILIES = [
    Family("tiny-bert", "encoder", 2, 4, 64, "a" * 65),
    Family("tiny-gpt", "decoder", 2, 4, 2048, "a" * 2049),
    Family("tiny-t5", "encoder-decoder", 2, 4, 128, "a" * 129),
    Family("minilm", "encoder", 6, 12, 512, "a " * 600),
    Family("smollm2", "decoder", 30, 9, 8192, "a " * 8300),
]
HF = {"minilm", "smollm2"}


def _too_many_tokens(field: str, f: Family, reserve: str = "") -> str:
    """The one shape of "too many tokens", whatever the family."""
    return (rf"^{field}: \d+ tokens{reserve} is more than model '{f.model}' accepts \(max_positions {f.max_positions}"
            r"(: its learned position table has \d+ rows|; trained at \d+ tokens, .*)?\)$")


def family_cases(f: Family) -> list[tuple]:
    """(name, method, url, json, status, regex the whole detail must match)."""
    m = f.model
    cases = [
        ("too many tokens, run", "POST", "/api/runs", {"model": m, "text": f.long_text}, 413,
         _too_many_tokens("text", f)),
        ("too many tokens, dense maps", "POST", "/api/attention", {"model": m, "text": f.long_text}, 413,
         _too_many_tokens("text", f)),
        ("layer out of range", "POST", "/api/attention", {"model": m, "text": "hello", "layers": [f.n_layers]}, 422,
         rf"^layers: \[{f.n_layers}\] outside 0\.\.{f.n_layers - 1} "),
        ("head out of range", "POST", "/api/attention", {"model": m, "text": "hello", "heads": [f.n_heads]}, 422,
         rf"^heads: \[{f.n_heads}\] outside 0\.\.{f.n_heads - 1} "),
        ("unknown backend", "POST", "/api/runs", {"model": m, "text": "hello", "backend": "warp"}, 422,
         r"^backend: Input should be 'math', 'sdpa', 'flash' or 'auto'"),
    ]
    article = "an" if f.family[0] in "aeiou" else "a"
    if f.family == "decoder":
        cases.append(("too many tokens, prompt", "POST", "/api/generate", {"model": m, "prompt": f.long_text}, 413,
                      _too_many_tokens("prompt", f, " plus 1 new token")))
    else:
        cases.append(("generate on a non-decoder", "POST", "/api/generate", {"model": m, "prompt": "hello"}, 422,
                      rf"^model: '{m}' is {article} {f.family}; generation needs a decoder$"))
    if f.family == "encoder":
        # each half fits alone, the pair does not: the message names both fields
        half = f.long_text[: len(f.long_text) // 2 + 2]
        cases.append(("too many tokens, a pair together", "POST", "/api/runs",
                      {"model": m, "text": half, "text_pair": half}, 413,
                      _too_many_tokens("text and text_pair together", f)))
        cases.append(("texts over max_text_chars together", "POST", "/api/runs",
                      {"model": m, "text": "a" * 60_000, "text_pair": "b" * 60_000}, 413,
                      r"^text and text_pair together: 120000 characters is over the server limit of 100000 "
                      r"\(max_text_chars\)$"))
    else:
        cases.append(("pair on a non-encoder", "POST", "/api/runs", {"model": m, "text": "a", "text_pair": "b"}, 422,
                      rf"^text_pair: model '{m}' is {article} {f.family}; only encoders take a second segment$"))
    return cases


FAMILY_CASES = [
    pytest.param(f, *case, id=f"{f.model}: {case[0]}",
                 marks=[pytest.mark.skipif(f.model in HF and not _hf_available(f.model),
                                           reason=f"{f.model} not installed")])
    for f in FAMILIES for case in family_cases(f)
]


@pytest.fixture(scope="module")
def families(one_thread):
    """The tiny from-scratch models and the bundled Hugging Face ones, in one app."""
    registry = tiny_registry()
    if any(_hf_available(m) for m in HF):
        from attnlab.models import hf as pretrained

        for model_id, entry in (("minilm", pretrained.minilm_entry), ("smollm2", pretrained.smollm2_entry)):
            if _hf_available(model_id):
                registry.register(entry())
    with TestClient(create_app(make_settings(), registry=registry)) as c:
        yield c


@pytest.mark.parametrize("f,name,method,url,body,status,detail", FAMILY_CASES)
def test_one_status_and_message_per_error_in_every_family(families, f, name, method, url, body, status, detail):
    r = families.request(method, url, json=body)
    assert r.status_code == status, (r.status_code, r.text[:500])
    assert re.search(detail, r.json()["detail"]), (detail, r.json()["detail"][:500])


def test_profile_over_its_budget_is_refused_before_it_starts(families):
    if not _hf_available("minilm"):
        pytest.skip("minilm not installed")
    r = families.get("/api/figures/profile/minilm", params={"tokens": 512})
    assert r.status_code == 413, r.text
    assert re.fullmatch(r"tokens: profiling 'minilm' \(22,713,216 parameters\) at 512 tokens is about 262 GFLOP, over "
                        r"profile_max_gflop 100; use fewer tokens or a smaller model", r.json()["detail"]), r.text
    assert families.get("/api/figures/profile/minilm", params={"tokens": 117}).status_code == 413  # 116: 99.8 GFLOP


# -- benchmark bodies: one form each, errors of that form only ----------------------------------------------


@pytest.mark.parametrize("body, detail", [
    ({"seq_lens": [16385]}, "seq_lens.0: Input should be less than or equal to 2048 (√benchmark_max_cells)"),
    ({"seq_lens": [8], "model": "tiny-gpt"}, "text: Field required; seq_lens: Extra inputs are not permitted"),
    ({"model": "tiny-gpt", "text": "ab", "n_heads": 2}, "n_heads: Extra inputs are not permitted"),
    ({}, "seq_lens: Field required"),
    ({"seq_lens": "x"}, "seq_lens: Input should be a valid list"),
])
def test_benchmark_errors_name_only_the_chosen_form(client, body, detail):
    """A body with `model` is the model form, any other the synthetic one: the detail names that form's fields,
    never the other form's, nor the class names of either."""
    r = client.post("/api/benchmark", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == detail
    assert "BenchmarkRequest" not in r.text


def test_benchmark_schema_bound_follows_the_budget(one_thread):
    """seq_lens' maximum is √benchmark_max_cells (one head of T x T): the schema admits no length the budget
    always refuses, and states the bound of the serving app's settings."""
    for cells, bound in ((4 * 2**20, 2048), (64 * 2**20, 8192)):
        app = create_app(make_settings(benchmark_max_cells=cells), registry=tiny_registry())
        items = app.openapi()["components"]["schemas"]["SyntheticBenchmarkRequest"]["properties"]["seq_lens"]["items"]
        assert items["maximum"] == bound
        with TestClient(app) as c:
            r = c.post("/api/benchmark", json={"seq_lens": [bound + 1], "n_heads": 1})
            assert r.status_code == 422 and r.json()["detail"].startswith("seq_lens.0: "), r.text
            over = c.post("/api/benchmark", json={"seq_lens": [bound], "n_heads": 2})  # the budget's own 413
            assert over.status_code == 413 and "benchmark_max_cells" in over.json()["detail"], over.text
