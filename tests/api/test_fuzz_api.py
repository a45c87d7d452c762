"""The OpenAPI document is the contract, exactly: schemathesis against our own app, every phase and every check.

The engine runs in process over the ASGI app (examples, coverage, fuzzing and stateful phases; all
checks, including ``positive_data_acceptance`` and ``negative_data_rejection``, which hold the schema
to the validation in both directions, and a response-time limit). The app is built with non-default
settings (``max_pool``, ``max_new_tokens``), so the document must state this app's bounds, not the
defaults. Model ids and run ids are seeded from real ones (dictionaries), so positive cases reach the
models, the runs and the training logs instead of stopping at 404.

``EXPECTED`` lists the only schema-valid requests the app may refuse, each with its reason: rules
that JSON Schema cannot express (one field against another, against a model or against a run), and
per-model or per-server limits on the size of the work (413, app.services.errors). A refusal that
is not in the list fails the test, as does any other check. Deterministic (fixed seed).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from schemathesis.engine import StopReason, events, from_schema
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.python import asgi

from attnlab.main import create_app
from attnlab.models import hf as pretrained
from tests.support import make_settings, tiny_registry

pytestmark = pytest.mark.slow  # ~1-2 minutes on 2 cores

EXAMPLES = int(os.environ.get("ATTNLAB_FUZZ_EXAMPLES", "15"))  # per operation and phase; raise it for a deeper run
SEED = int(os.environ.get("ATTNLAB_FUZZ_SEED", "7"))  # another seed explores other cases
MAX_RESPONSE_S = 10.0
SETTINGS = dict(benchmark_budget_s=1.0, generate_timeout_s=5.0, max_new_tokens=16, max_pool=512, patch_budget_s=2.0,
                qk_umap=False)  # UMAP's first call compiles for ~90 s: past the response-time limit

TINY = ["tiny-gpt", "tiny-bert", "tiny-t5"]
HF = [m for m, entry in (("minilm", pretrained.minilm_entry), ("smollm2", pretrained.smollm2_entry))
      if entry().info().available]


@dataclass(frozen=True)
class Expected:
    """A schema-valid request the app refuses by design: ``status`` and a ``detail`` starting as the regex says."""

    status: int
    detail: str
    operations: frozenset[str]
    reason: str


def ops(*labels: str) -> frozenset[str]:
    return frozenset(labels)


POSITIONAL = ops("GET /api/positional/{scheme}", "GET /api/figures/similarity")
TEXT_IN = ops("POST /api/attention", "POST /api/runs", "POST /api/benchmark", "POST /api/runs/stream",
              "POST /api/fill-mask", "POST /api/objectives")
OBJECTIVES = ops("POST /api/fill-mask", "POST /api/objectives")
PROMPT_IN = ops("POST /api/generate")
ON_A_RUN = ops("GET /api/runs/{run_id}/attention", "GET /api/runs/{run_id}/rollout", "GET /api/runs/{run_id}/heads",
               "GET /api/figures/heads/{run_id}", "GET /api/runs/{run_id}/overviews")
EXPLAIN = ops("GET /api/runs/{run_id}/computation", "GET /api/runs/{run_id}/qk", "GET /api/runs/{run_id}/sparse")
ON_A_RUN |= EXPLAIN
BENCHMARKS = ops("POST /api/benchmark")
SNAPSHOTS = ops("GET /api/training/{name}/snapshots")
INTERVENE = ops("POST /api/interventions/ablate", "POST /api/interventions/importance", "POST /api/interventions/patch",
                "POST /api/lens")

EXPECTED = [
    # -- 422: one field against another, or against the model, the run or the checkpoint it names
    Expected(422, r"d_model: \d+ must be divisible by n_heads \d+$", POSITIONAL,
             "cross-field: d_model must be divisible by n_heads"),
    Expected(422, r"d_model: rope needs an even head dimension", POSITIONAL,
             "cross-field: rope rotates pairs, so d_model / n_heads must be even"),
    Expected(422, r"(layers|heads): \[.*\] outside 0\.\.\d+ \(the model has \d+ (layers|heads)\)$",
             ops("POST /api/attention"), "per model: the schema bounds layers and heads by 1024; the model has fewer"),
    Expected(422, r"kind: model '.*' records \[.*\], not '\w+'$", ops("POST /api/attention"),
             "per model: a kind this model does not record (cross-attention of a decoder)"),
    Expected(422, r"kind: encoder-decoder answers in NPY need kind=", ops("POST /api/attention"),
             "per model: format=npy carries one array, so an encoder-decoder model needs kind"),
    Expected(422, r"text_pair: model '.*' is an? [\w-]+; only encoders take a second segment$", TEXT_IN,
             "per model: only encoders take a second segment"),
    Expected(422, r"model: '.*' is an? [\w-]+; generation needs a decoder$", PROMPT_IN,
             "per model: only decoders generate"),
    Expected(422, r"(text|text_pair|prompt): (no tokens after tokenisation$|gives no token of its own: )",
             TEXT_IN | PROMPT_IN,
             "per model: text the model's tokenizer drops entirely"),
    Expected(422, r"run_id: run [0-9a-f]{32} (is of model '.*', which does not predict the next token; |has one token)",
             ops("GET /api/runs/{run_id}/loss"), "per run: per-position loss needs a decoder and 2 tokens"),
    Expected(422, r"kind: run [0-9a-f]{32} (recorded|has head scores for) \[.*\], not '\w+'$", ON_A_RUN,
             "per run: a kind this run did not record"),
    Expected(422, r"(layer|head): \d+ is outside 0\.\.\d+ ", ON_A_RUN,
             "per run: the schema bounds layer and head by 1024; the run's model has fewer"),
    Expected(422, r"(rows|cols): \d+:\d+ is outside 0:\d+ ", ON_A_RUN, "per run: a tile range past the run's tokens"),
    Expected(422, r"(rows|cols|layers): \d+:\d+ is empty: a range a:b is half-open and needs a < b ",
             ON_A_RUN | ops("GET /api/runs/{run_id}/overviews"), "per run: an empty range (a >= b)"),
    Expected(422, r"probe: '.*' unknown; probes: ", SNAPSHOTS, "per checkpoint: a probe it was not trained with"),
    Expected(422, r"kind: probe '.*' recorded \[.*\], not '\w+'$", SNAPSHOTS,
             "per checkpoint: a kind the probe did not record"),
    Expected(422, r"layer/head: \d+/\d+ outside \d+ layers x \d+ heads$", SNAPSHOTS,
             "per checkpoint: more layers or heads than the checkpoint has"),
    Expected(422, r"(model|text|clean): required \(give model and (text|clean), or a run_id\)$", INTERVENE,
             "cross-field: model and text, or a run_id in their place"),
    Expected(422, r"run_id: give either run_id or model and (text|clean), not both$", INTERVENE,
             "cross-field: a run_id stands in for model and text"),
    Expected(422, r"backend: run [0-9a-f]{32} ran on ", INTERVENE, "per run: the run's backend"),
    Expected(422, r"model: '.*' is an encoder-decoder; interventions take encoders and decoders$", INTERVENE,
             "per model: interventions take encoders and decoders"),
    Expected(422, r"heads: (layer|head) \d+ is outside 0\.\.\d+ \(the model has \d+ ", INTERVENE,
             "per model: the schema bounds layer and head by 1024; the model has fewer"),
    Expected(422, r"layers: \[.*\] outside 0\.\.\d+ \(the model has \d+ layers\)$", INTERVENE,
             "per model: the lens's layers"),
    Expected(422, r"(text|clean|corrupted): (no tokens after tokenisation$|gives no token of its own: )", INTERVENE,
             "per model: text the model's tokenizer drops entirely"),
    Expected(422, r"text: no position has a target ", INTERVENE, "per model: one token has no next token"),
    Expected(422, r"corrupted: (\d+ tokens, but clean has \d+|the clean and corrupted runs give the target the same)",
             INTERVENE, "cross-field: patching needs texts of one token length that differ at the read-out"),
    Expected(422, r"target: token id \d+ is outside 0\.\.\d+$", INTERVENE, "per model: the vocabulary size"),
    Expected(422, r"model: '.*' has no LM head", INTERVENE, "per model: patching reads a logit"),
    Expected(422, r"text: has no mask token", ops("POST /api/fill-mask"), "per text: fill-mask needs a [MASK] in it"),
    Expected(422, r"(model|clm_model|mlm_model): model '.*' is an? [\w-]+; .* needs an? [\w-]+$", OBJECTIVES,
             "per model: fill-mask and the masked side need an encoder, the causal side a decoder"),
    Expected(422, r"(model|mlm_model): '.*' has no mask token", OBJECTIVES, "per model: a masked LM has a mask token"),
    Expected(422, r"mlm_model: '.*' tokenizes the text differently", ops("POST /api/objectives"),
             "cross-field: both models must share one vocabulary"),
    Expected(422, r"(position: \d+ is outside 1\.\.\d+|text: gives 1 token)", ops("POST /api/objectives"),
             "per text: the position must be a token of the text, after the first"),
    # -- 413: larger than a limit of the model or of the server (app.services.errors)
    Expected(413, r"(text|prompt|tokens): \d+ tokens( plus \d+ new tokens?)? is more than model '.*' accepts "
                  r"\(max_positions \d+(: its learned position table has \d+ rows|; trained at \d+ tokens, .*)?\)$",
             TEXT_IN | PROMPT_IN | ops("GET /api/figures/profile/{model_id}"),
             "per model: more tokens than the model's positions"),
    Expected(413, r"backend: math holds 3 T x T float32 maps of every head at once .* over math_max_bytes",
             ops("POST /api/runs", "POST /api/runs/stream"), "budget: math's T x T weights, T known after tokenizing"),
    Expected(413, r"text and text_pair together: \d+ characters is over .*\(max_text_chars\)$", TEXT_IN,
             "cross-field: each text is bounded in the schema; their sum is not expressible"),
    Expected(413, r"text: \d+ tokens is over the objectives view's limit", ops("POST /api/objectives"),
             "budget: the masked side runs the text once per token"),
    Expected(413, r"text: the maps asked for hold .* over dense_budget", ops("POST /api/attention"),
             "budget: layers x heads x T^2 of the answer, T known only after tokenizing"),
    Expected(413, r"text: .* over the run cache budget .*\(run_cache_bytes\)",
             ops("POST /api/runs", "POST /api/runs/stream"),
             "budget: bytes of the capture, from the model's shape and the token count"),
    Expected(413, r"(seq_lens: n_heads x T\^2|text: the maps of \d+ tokens) .* over benchmark_max_cells", BENCHMARKS,
             "budget: n_heads x T^2 across two fields, or layers x heads x T^2 of the model's maps"),
    Expected(413, r"max_len: \d+ positions give .* over dense_budget", POSITIONAL,
             "budget: max_len x d_model or n_heads x max_len^2 across fields"),
    Expected(413, r"rows/cols: a \d+x\d+ tile is over max_tile_cells", ON_A_RUN, "budget: cells of an exact tile"),
    Expected(422, r"layers: \d+:\d+ is outside 0:\d+ ", ops("GET /api/runs/{run_id}/overviews"),
             "per run: a layer range past the run's layers"),
    Expected(413, r"layers: \d+ layers x \d+ heads x \d+x\d+ cells is over max_tile_cells",
             ops("GET /api/runs/{run_id}/overviews"), "budget: cells of every thumbnail of the layers asked"),
    Expected(413, r"text: rollout of .* over dense_budget", ON_A_RUN, "budget: layers x T^2 of the rollout"),
    Expected(413, r"run_id: head scores of this run visit .* over head_stats_max_cells", ON_A_RUN,
             "budget: weights visited by the head detectors"),
    Expected(413, r"(text|clean|corrupted|run_id: the run's input): \d+ tokens is over the limit of \d+ tokens for "
                  r"interventions \(intervention_max_tokens\)$", INTERVENE, "per server: intervention_max_tokens"),
    Expected(413, r"(text|clean|corrupted): \d+ tokens is more than model '.*' accepts \(max_positions \d+\)$",
             INTERVENE, "per model: more tokens than the model's positions"),
    Expected(413, r"(text|clean|corrupted): \d+ characters is over the server limit", INTERVENE,
             "per server: max_text_chars"),
    Expected(413, r"tokens: profiling '.*' \(.* parameters\) at \d+ tokens is about .* over profile_max_gflop",
             ops("GET /api/figures/profile/{model_id}"), "budget: the profile's work, from the model's size"),
    # -- explaining a head (app.services.explain)
    Expected(422, r"query: \d+ is outside 0\.\.\d+ ", ops("GET /api/runs/{run_id}/computation"),
             "per run: the schema bounds query by 2^20; the run has fewer tokens"),
    Expected(422, r"values: run [0-9a-f]{32} did not keep V", ops("GET /api/runs/{run_id}/attention"),
             "per run: weighting=value_norm needs a run created with values: true"),
    Expected(422, r"also: run [0-9a-f]{32} is of model", ops("GET /api/runs/{run_id}/qk"),
             "per run: texts pooled into one Q/K map must come from one model"),
    Expected(409, r"method: 'umap' (needs umap-learn|is turned off)", ops("GET /api/runs/{run_id}/qk"),
             "per server: UMAP is an optional extra, and a setting (qk_umap) may turn it off"),
    Expected(413, r"method: \w+ of \d+ queries \+ keys is over qk_max_points", ops("GET /api/runs/{run_id}/qk"),
             "budget: points of a t-SNE or UMAP embedding, known from the runs"),
    Expected(413, r"text: the sparse view answers three \d+x\d+ maps", ops("GET /api/runs/{run_id}/sparse"),
             "budget: three T x T maps, T known from the run"),
    Expected(413, r"seq_lens: n_heads x T\^2 = .* over benchmark_max_cells", ops("GET /api/sparse/cost"),
             "budget: n_heads x T^2 across two fields"),
]


def expected(label: str, status: int, detail: str) -> Expected | None:
    return next((e for e in EXPECTED if e.status == status and label in e.operations and re.match(e.detail, detail)),
                None)


def _zoo_probes(zoo: Path) -> tuple[list[str], list[str]]:
    """Checkpoints with a training log, and the probes of their snapshots."""
    names = sorted(p.parent.name for p in zoo.glob("*/log.jsonl"))
    probes = sorted({probe["name"] for name in names if (zoo / name / "snapshots.json").is_file()
                     for probe in json.loads((zoo / name / "snapshots.json").read_text())["probes"]})
    return names, probes


@pytest.fixture(scope="module")
def contract(one_thread):
    """The app (tiny models and the bundled Hugging Face ones), a run per model, and the schema loaded from it."""
    settings = make_settings(**SETTINGS)
    registry = tiny_registry()
    for model_id in HF:
        registry.register({"minilm": pretrained.minilm_entry, "smollm2": pretrained.smollm2_entry}[model_id]())
    app = create_app(settings, registry=registry)
    models = TINY + HF
    with asgi.get_client(app) as client:  # starts the lifespan schemathesis then shares
        runs = [client.post("/api/runs", json={"model": m, "text": "fuzz me"}).json()["run_id"] for m in models]
    names, probes = _zoo_probes(Path(settings.zoo_dir))
    config = schemathesis.Config.from_dict({
        "seed": SEED,
        "dictionaries": {"models": {"values": models + ["ghost"]}, "runs": {"values": runs},
                         "names": {"values": names}, "probes": {"values": probes}},
        "parameters": {"body.model": {"dictionary": "models", "probability": 0.8},
                       "path.model_id": {"dictionary": "models", "probability": 0.8},
                       "path.run_id": {"dictionary": "runs", "probability": 0.8},
                       "body.run_id": {"dictionary": "runs", "probability": 0.5},
                       "path.name": {"dictionary": "names", "probability": 0.8},
                       "query.probe": {"dictionary": "probes", "probability": 0.8}},
        "generation": {"max-examples": EXAMPLES},
        "workers": 1,
    })
    config.projects.override.checks.update(included_check_names=["all"], max_response_time=MAX_RESPONSE_S)
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


def test_the_contract_operations_are_all_in_the_schema(contract):
    labels = {result.ok().label for result in contract.get_all_operations()}
    assert {
        "GET /api/health", "GET /api/metrics", "GET /api/models", "POST /api/attention", "POST /api/runs",
        "GET /api/runs/{run_id}/attention", "GET /api/runs/{run_id}/heads", "GET /api/runs/{run_id}/rollout",
        "POST /api/generate", "GET /api/positional/{scheme}", "GET /api/positional/extrapolation",
        "POST /api/benchmark",
    } <= labels
    assert {label for e in EXPECTED for label in e.operations} <= labels  # no exception for a missing operation


def test_schemathesis_finds_nothing_unexpected(contract):
    """Every phase, every check, every operation: no failure but the refusals EXPECTED lists."""
    excused: dict[str, int] = {}

    @contract.hook
    def filter_failure(context, failure, case, response):
        if isinstance(failure, RejectedPositiveData):
            try:
                detail = response.json().get("detail", "")
            except ValueError:
                detail = ""
            rule = expected(case.operation.label, response.status_code, detail)
            if rule is not None:
                excused[rule.reason] = excused.get(rule.reason, 0) + 1
                return False
        return True

    failures, errors, stop = [], [], None
    for event in from_schema(contract).execute():
        if isinstance(event, events.ScenarioFinished):
            for case_id, checks in event.recorder.checks.items():
                interaction = event.recorder.interactions.get(case_id)
                response = interaction.response if interaction is not None else None
                for check in checks:
                    if check.failure_info is None:
                        continue
                    failure = check.failure_info.failure
                    body = response.content[:300].decode(errors="replace") if response is not None else ""
                    status = response.status_code if response is not None else None
                    failures.append(f"{event.recorder.label}: {failure.title} [{status}] {body}\n"
                                    f"{check.failure_info.code_sample}")
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            stop = event.stop_reason
    print("refused by design:", json.dumps(excused, indent=1))
    assert stop == StopReason.COMPLETED
    assert not errors, "\n".join(errors)
    assert not failures, f"{len(failures)} unexpected:\n\n" + "\n\n".join(failures)
