"""The Positional page's data: every scheme in the similarity chart (or the reason it is missing), random
initialisations seeded (the same on every Show), sizes a scheme does not use never refuse it, one colour per
scheme across charts."""

from __future__ import annotations


def test_learned_and_t5_are_the_same_on_every_show(client):
    for scheme, field in (("learned", "matrix"), ("t5_relative", "bias")):
        first = client.get(f"/api/positional/{scheme}?d_model=16&max_len=16&n_heads=2").json()
        again = client.get(f"/api/positional/{scheme}?d_model=16&max_len=16&n_heads=2").json()
        assert first[field] == again[field], scheme
        assert any(v != 0 for row in first[field][0] for v in (row if isinstance(row, list) else [row]))


def test_similarity_draws_all_six_schemes_and_defines_similarity(client):
    body = client.get("/api/figures/similarity?d_model=64&max_len=32&n_heads=8").json()
    names = [t["name"] for t in body["figure"]["data"]]
    assert sorted(names) == sorted(s["name"] for s in client.get("/api/positional").json())
    assert len(names) == 6 and body["skipped"] == {}
    assert body["definition"].startswith("Similarity of position 0") and "exp(bias)" in body["definition"]
    colours = {t["name"]: t["line"]["color"] for t in body["figure"]["data"]}
    assert len(set(colours.values())) == 6
    # the same scheme keeps its colour in the extrapolation chart
    from attnlab.web.figures import extrapolation_curve

    lab = {"train_len": 8, "table": {s: {"perplexity": {"8": 1.0}} for s in ("alibi", "rope", "none")}}
    assert {t.name: t.line.color for t in extrapolation_curve(lab).data} == {s: colours[s] for s in lab["table"]}


def test_a_scheme_that_cannot_take_the_sizes_is_named_with_the_reason(client):
    # 48 / 8 = 6 is even, 40 / 8 = 5 is odd: RoPE cannot rotate an odd head dimension
    body = client.get("/api/figures/similarity?d_model=40&max_len=16&n_heads=8").json()
    assert set(body["skipped"]) == {"rope"} and "even head dimension" in body["skipped"]["rope"]
    assert "rope" not in [t["name"] for t in body["figure"]["data"]]
    notes = [a["text"] for a in body["figure"]["layout"]["annotations"]]
    assert any(n.startswith("rope not shown") for n in notes)


def test_sizes_a_scheme_does_not_use_never_refuse_it(client):
    schemes = {s["name"]: s["parameters"] for s in client.get("/api/positional").json()}
    assert schemes["sinusoidal"] == ["d_model", "max_len"] and "d_model" not in schemes["alibi"]
    # n_heads does not divide d_model: only RoPE (whose head dimension is d_model / n_heads) refuses
    assert client.get("/api/positional/sinusoidal?d_model=10&n_heads=3&max_len=8").status_code == 200
    assert client.get("/api/positional/alibi?d_model=10&n_heads=3&max_len=8").status_code == 200
    refused = client.get("/api/positional/rope?d_model=10&n_heads=3&max_len=8")
    assert refused.status_code == 422 and "n_heads" in refused.json()["detail"]
