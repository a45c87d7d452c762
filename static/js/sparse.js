// Sparse attention on a real input: a Longformer or BigBird pattern applied to one head's own queries and
// keys (GET /api/runs/{id}/sparse): the head's weights, the pairs the pattern keeps, the softmax over them,
// and the share of each row kept; then the measured cost of the pattern vs dense at growing lengths
// (GET /api/sparse/cost). A run and a (kind, layer, head, pattern) are one selection.
import { api } from "./api.js";
import { initChrome, onArrowKeys } from "./chrome.js";
import { downloadJSON, fileName } from "./export.js";
import { fillSelect, setupModelSelect } from "./forms.js";
import { Latest } from "./latest.js";
import { baseLayout, heatmapTrace, plot } from "./plots.js";
import { createRun, withRun } from "./runs.js";
import { bindState } from "./state.js";
import { withLoading } from "./status.js";

const $ = (id) => document.getElementById(id);
const PATTERN_KEYS = ["pattern", "window", "global_tokens", "block", "random_blocks"];
const view = bindState({
  model: "minilm", text: "", backend: "", kind: "", layer: 0, head: 0, pattern: "longformer", window: 8,
  global_tokens: 1, block: 4, random_blocks: 1,
});
const { state } = view;
let run = null;
let shown = null;
let cost = null;
const selection = new Latest();

function patternParams() {
  const p = new URLSearchParams({ pattern: $("pattern").value });
  const keys = $("pattern").value === "longformer" ? ["window", "global_tokens"] : ["block", "random_blocks"];
  for (const k of keys) p.set(k, $(k).value);
  return p;
}

function showPatternFields() {
  const longformer = $("pattern").value === "longformer";
  for (const el of document.querySelectorAll("label.longformer")) el.hidden = !longformer;
  for (const el of document.querySelectorAll("label.bigbird")) el.hidden = longformer;
}

async function showSparse() {
  view.save();
  const p = patternParams();
  for (const k of ["kind", "layer", "head"]) p.set(k, $(k).value);
  await selection.run(async (signal) => {
    shown = await withRun(run, (id) => api(`/api/runs/${id}/sparse?${p}`, { signal }), signal);
    signal.throwIfAborted();
    const s = shown;
    $("pattern-title").textContent = `${s.pattern} on ${s.kind} layer ${s.layer}, head ${s.head}`;
    $("sparse-stats").textContent = `density ${(100 * s.density).toFixed(1)}% of the pairs the head may attend; ` +
      `weight kept: mean ${(100 * s.kept_mean).toFixed(1)}%, worst row ${(100 * s.kept_min).toFixed(1)}%; ` +
      `largest change of a weight ${s.max_abs_diff.toFixed(3)}`;
    const tokens = { xaxis: { tokens: s.col_tokens }, yaxis: { tokens: s.row_tokens } };
    const layout = (title) => baseLayout({ title: { text: title }, height: 460,
                                           yaxis: { autorange: "reversed" } });
    const opts = { rowTokens: s.row_tokens, colTokens: s.col_tokens };
    await plot($("dense"), [heatmapTrace(s.dense, opts)], layout("the head's weights"), "dense", { tokenAxes: tokens });
    const kept = [[0, "#ffffff"], [1, "#303030"]]; // dark: a pair the pattern keeps
    await plot($("allowed"), [heatmapTrace(s.allowed, { ...opts, what: "kept", colorscale: kept, zmax: 1 })],
               layout(`${s.pattern}: pairs kept`), "pattern", { tokenAxes: tokens });
    await plot($("sparse"), [heatmapTrace(s.sparse, opts)], layout("softmax over the kept pairs"), "sparse",
               { tokenAxes: tokens });
    await plot($("kept"), [{ type: "bar", x: s.kept.map((_, i) => i), y: s.kept,
                             hovertemplate: "query %{x}: %{y:.3f} of its weight inside the pattern<extra></extra>" }],
               baseLayout({ title: { text: "share of each row's weight inside the pattern" }, height: 300,
                            yaxis: { range: [0, 1] } }), "kept", { tokenAxes: { xaxis: { tokens: s.row_tokens } } });
  });
  view.save();
}

async function measure() {
  const p = patternParams();
  for (const t of [256, 512, 1024, 2048]) p.append("seq_lens", String(t));
  cost = await api(`/api/sparse/cost?${p}`);
  const x = cost.rows.map((r) => r.seq_len);
  await plot($("cost"), [
    { type: "scatter", mode: "lines+markers", name: "dense", x, y: cost.rows.map((r) => r.dense_ms) },
    { type: "scatter", mode: "lines+markers", name: cost.pattern, x, y: cost.rows.map((r) => r.sparse_ms) },
    { type: "scatter", mode: "lines+markers", name: "density", x, y: cost.rows.map((r) => r.density), yaxis: "y2",
      line: { dash: "dot" } },
  ], baseLayout({ height: 400, xaxis: { title: { text: "sequence length" }, type: "log", tickvals: x },
                  yaxis: { title: { text: "median ms (forward)" }, type: "log" },
                  yaxis2: { title: { text: "density" }, overlaying: "y", side: "right", range: [0, 1] },
                  legend: { orientation: "h", y: -0.25 } }), "sparse-cost");
}

function configure() {
  const kind = $("kind").value;
  const clamp = (el, max, wanted) => {
    el.max = String(max);
    el.value = String(Math.max(0, Math.min(max, wanted)));
  };
  clamp($("layer"), run.layers_by_kind[kind] - 1, Number(state.layer));
  clamp($("head"), run.n_heads - 1, Number(state.head));
}

async function go() {
  view.save();
  run = await createRun({ model: $("model").value, text: $("text").value, backend: $("backend").value });
  fillSelect($("kind"), run.kinds, null, run.kinds.includes(state.kind) ? state.kind : run.kinds[0]);
  configure();
  $("pattern-panel").hidden = false;
  $("cost-panel").hidden = false;
  await showSparse();
}

async function main() {
  initChrome();
  view.restore();
  showPatternFields();
  const info = await withLoading("Loading models",
                                 () => setupModelSelect($("model"), $("backend"), state.model, state.backend));
  if (!info) return;
  $("controls").addEventListener("submit", (ev) => { ev.preventDefault(); withLoading("Running the model", go); });
  $("kind").addEventListener("change", () => { configure(); withLoading("Applying the pattern", showSparse); });
  for (const id of ["layer", "head", ...PATTERN_KEYS]) {
    $(id).addEventListener("change", () => {
      showPatternFields();
      state.layer = Number($("layer").value);
      state.head = Number($("head").value);
      if (run) withLoading("Applying the pattern", showSparse);
    });
  }
  $("measure").addEventListener("click", () => withLoading("Timing dense and sparse attention", measure));
  $("export-sparse-json").addEventListener("click", () => shown && downloadJSON(fileName({ model: $("model").value, view: "sparse" }, "json"), shown));
  $("export-cost-json").addEventListener("click", () => cost && downloadJSON(fileName({ model: "synthetic", view: "sparse-cost" }, "json"), cost));
  onArrowKeys((dLayer, dHead) => {
    if (!run) return false;
    $("layer").value = String(Math.max(0, Math.min(Number($("layer").max), Number($("layer").value) + dLayer)));
    $("head").value = String(Math.max(0, Math.min(Number($("head").max), Number($("head").value) + dHead)));
    state.layer = Number($("layer").value);
    state.head = Number($("head").value);
    withLoading("Applying the pattern", showSparse);
    return true;
  });
  if (state.text) await withLoading("Running the model", go);
}

main();
