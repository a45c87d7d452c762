// Explain a head: how one query's weights are computed (q, q∘k_j, scores, softmax, value norms, the
// head's output and its share of the block output), and the head's query/key geometry. The run keeps
// V ("values": true). A run and a (kind, layer, head, query) are one selection: a newer one refuses the
// older's replies.
import { api } from "./api.js";
import { initChrome, onArrowKeys } from "./chrome.js";
import { downloadJSON, fileName } from "./export.js";
import { fillSelect, setupModelSelect } from "./forms.js";
import { escapeLabel, showToken } from "./labels.js";
import { Latest } from "./latest.js";
import { baseLayout, plot } from "./plots.js";
import { createRun, withRun } from "./runs.js";
import { bindState } from "./state.js";
import { withLoading } from "./status.js";

const $ = (id) => document.getElementById(id);
const view = bindState({
  model: "minilm", text: "", backend: "", kind: "", layer: 0, head: 0, query: 0, method: "pca",
  pre: { value: false, el: "pre-rotary" },
  colour: "position",
});
const { state } = view;
let run = null;
let step = null; // the computation shown
let qk = null; // the geometry shown
const selection = new Latest();
const geometry = new Latest();
const DIVERGING = "RdBu";

const label = (t) => escapeLabel(showToken(t));

function queryTokens(kind) {
  return kind === "encoder" || !run.target_tokens ? run.tokens : run.target_tokens;
}

function norm(v) { return Math.sqrt(v.reduce((s, x) => s + x * x, 0)); }

function params() {
  return new URLSearchParams({ kind: $("kind").value, layer: $("layer").value, head: $("head").value,
                               query: $("query").value });
}

async function fetchStep(signal) {
  const kind = $("kind").value;
  const base = params();
  const one = (head) => {
    const p = new URLSearchParams(base);
    p.set("head", String(head));
    return withRun(run, (id) => api(`/api/runs/${id}/computation?${p}`, { signal }), signal);
  };
  const head = Number($("head").value);
  const heads = Array.from({ length: run.n_heads }, (_, h) => h);
  const all = await Promise.all(heads.map(one)); // every head of this query: the block output, Day 9
  return { kind, answer: all[head], all };
}

async function drawStep({ answer, all }) {
  step = { ...answer, model: run.model };
  const tokens = answer.key_tokens;
  const pre = $("pre-rotary").checked && answer.q_pre_rotary;
  const q = pre ? answer.q_pre_rotary : answer.q;
  const k = pre ? answer.k_pre_rotary : answer.k;
  const dims = q.map((_, i) => i);
  const products = dims.map((d) => k.map((kj) => q[d] * kj[d]));
  const where = `query ${answer.query} \u201c${label(answer.query_token)}\u201d`;
  $("step-title").textContent = `How one weight is computed: layer ${answer.layer}, head ${answer.head}, ` +
    `query ${answer.query} \u201c${showToken(answer.query_token)}\u201d`;
  const keyAxis = { xaxis: { tokens } };
  await plot($("vectors"), [{ type: "bar", orientation: "h", x: q, y: dims, marker: { color: "#4c78a8" },
                              hovertemplate: `q[%{y}] = %{x:.3f}<extra>${pre ? "before rotation" : ""}</extra>` }],
             baseLayout({ title: { text: pre ? "q (before rotation)" : "q" }, height: 380,
                          yaxis: { title: { text: "dimension" }, autorange: "reversed" } }), "q");
  const maxAbs = Math.max(1e-9, ...products.flat().map(Math.abs));
  await plot($("products"), [{
    type: "heatmap", z: products, colorscale: DIVERGING, zmin: -maxAbs, zmax: maxAbs, zmid: 0,
    customdata: products.map((row, d) => row.map((_, j) => [label(tokens[j]), k[j][d]])),
    hovertemplate: `${where} \u00b7 key %{x} \u201c%{customdata[0]}\u201d, dim %{y}: q\u2218k = %{z:.4f} ` +
      "(k = %{customdata[1]:.3f})<extra></extra>",
  }], baseLayout({ title: { text: "q \u2218 k\u2c7c (columns sum to q\u00b7k\u2c7c)" }, height: 380,
                   yaxis: { title: { text: "dimension" }, autorange: "reversed" } }), "products", { tokenAxes: keyAxis });
  const scoreTraces = [{ type: "bar", name: "q\u00b7k \u00d7 scale", x: tokens.map((_, j) => j),
                         y: answer.dot.map((d, j) => (answer.mask[j] ? d * answer.scale : null)),
                         hovertemplate: "key %{x}: %{y:.3f}<extra>q\u00b7k \u00d7 scale</extra>" }];
  if (answer.bias) {
    scoreTraces.push({ type: "bar", name: "+ bias", x: tokens.map((_, j) => j),
                       y: answer.bias.map((b, j) => (answer.mask[j] ? b : null)),
                       hovertemplate: "key %{x}: %{y:.3f}<extra>bias</extra>" });
  }
  scoreTraces.push({ type: "scatter", mode: "markers", name: "score", x: tokens.map((_, j) => j), y: answer.scores,
                     marker: { color: "#000", symbol: "diamond" },
                     hovertemplate: "key %{x}: score %{y:.3f}<extra></extra>" });
  await plot($("scores"), scoreTraces,
             baseLayout({ title: { text: `scores (scale ${answer.scale.toFixed(3)}${answer.bias ? ", + bias" : ""})` },
                          barmode: "relative", height: 380, legend: { orientation: "h", y: -0.3 } }),
             "scores", { tokenAxes: keyAxis });
  const weightTraces = [{ type: "bar", name: "weight (softmax)", x: tokens.map((_, j) => j), y: answer.weights,
                          hovertemplate: "key %{x}: %{y:.4f}<extra>weight</extra>" }];
  if (answer.value_norms) {
    const contrib = answer.weights.map((w, j) => w * answer.value_norms[j]);
    const total = contrib.reduce((s, x) => s + x, 0) || 1;
    weightTraces.push({ type: "bar", name: "weight \u00d7 \u2016v W\u2092\u2016 (normalised)",
                        x: tokens.map((_, j) => j), y: contrib.map((c) => c / total),
                        hovertemplate: "key %{x}: %{y:.4f}<extra>value-weighted</extra>" });
  }
  await plot($("weights"), weightTraces,
             baseLayout({ title: { text: "softmax \u2192 weights" }, barmode: "group", height: 380,
                          yaxis: { range: [0, 1] }, legend: { orientation: "h", y: -0.3 } }),
             "weights", { tokenAxes: keyAxis });
  if (answer.output) {
    await plot($("output"), [{ type: "bar", x: answer.output.map((_, i) => i), y: answer.output,
                               hovertemplate: "output[%{x}] = %{y:.4f}<extra></extra>" }],
               baseLayout({ title: { text: "head output \u03a3\u2c7c weight\u2c7c v\u2c7c" }, height: 320,
                            xaxis: { title: { text: "dimension" } } }), "output");
    const projected = all.map((a) => a.output_projected);
    const block = projected[0].map((_, i) => projected.reduce((s, p) => s + p[i], 0) +
      (answer.output_bias ? answer.output_bias[i] : 0));
    const names = all.map((_, h) => `H${h}`).concat(["block"]);
    const values = projected.map(norm).concat([norm(block)]);
    await plot($("shares"), [{ type: "bar", x: names, y: values,
                               marker: { color: names.map((n, h) => (h === answer.head ? "#e45756" : "#4c78a8")) },
                               hovertemplate: "%{x}: \u2016\u00b7\u2016 = %{y:.3f}<extra></extra>" }],
               baseLayout({ title: { text: "\u2016head output \u00b7 W\u2092\u2016 per head, and of the block" },
                            height: 320 }), "shares");
  }
}

async function showStep() {
  view.save();
  await selection.run(async (signal) => {
    const result = await fetchStep(signal);
    signal.throwIfAborted();
    $("query-out").textContent = `${$("query").value} \u201c${showToken(result.answer.query_token)}\u201d`;
    $("rotary-label").hidden = !result.answer.q_pre_rotary;
    $("head-link").href = `/?${new URLSearchParams({ model: run.model, text: $("text").value,
                                                     backend: $("backend").value, kind: result.kind,
                                                     layer: $("layer").value, head: $("head").value })}`;
    await drawStep(result);
  });
  view.save();
  await showGeometry();
}

async function showGeometry() {
  const p = new URLSearchParams({ kind: $("kind").value, layer: $("layer").value, head: $("head").value,
                                  method: $("method").value });
  await geometry.run(async (signal) => {
    qk = await withRun(run, (id) => api(`/api/runs/${id}/qk?${p}`, { signal }), signal);
    $("qk-panel").hidden = false;
    await drawGeometry();
  });
}

async function drawGeometry() {
  if (!qk) return;
  const byRole = (role) => qk.role.map((r, i) => (r === role ? i : -1)).filter((i) => i >= 0);
  const byColour = $("colour").value;
  const traces = ["query", "key"].map((role) => {
    const idx = byRole(role);
    return {
      type: "scatter", mode: "markers", name: role === "query" ? "queries" : "keys",
      x: idx.map((i) => qk.x[i]), y: idx.map((i) => qk.y[i]),
      customdata: idx.map((i) => [qk.position[i], label(qk.token[i])]),
      marker: { symbol: role === "query" ? "circle" : "x", size: 9,
                color: byColour === "role" ? (role === "query" ? "#4c78a8" : "#f58518") : idx.map((i) => qk.position[i]),
                colorscale: "Viridis", showscale: byColour === "position" && role === "query",
                colorbar: { title: { text: "position" } } },
      hovertemplate: `${role} %{customdata[0]} \u201c%{customdata[1]}\u201d<extra></extra>`,
    };
  });
  if (step && step.kind === qk.kind && step.layer === qk.layer && step.head === qk.head) {
    const keys = byRole("key");
    const top = step.weights.map((w, j) => [w, j]).sort((a, b) => b[0] - a[0]).slice(0, 5).map(([, j]) => keys[j]);
    traces.push({ type: "scatter", mode: "markers", name: `top keys of query ${step.query}`,
                  x: top.map((i) => qk.x[i]), y: top.map((i) => qk.y[i]), hoverinfo: "skip",
                  marker: { symbol: "circle-open", size: 20, color: "#e45756", line: { width: 2 } } });
  }
  const el = $("qk");
  await plot(el, traces, baseLayout({ height: 620, legend: { orientation: "h", y: 1.06 }, xaxis: { title: { text: `${qk.method} 1` } },
                                      yaxis: { title: { text: `${qk.method} 2` } } }), "qk");
  if (!el.dataset.bound) {
    el.dataset.bound = "1";
    el.on("plotly_click", (ev) => {
      const point = ev.points && ev.points[0];
      if (!point || point.curveNumber !== 0) return; // queries only
      $("query").value = String(point.customdata[0]);
      state.query = Number(point.customdata[0]);
      withLoading("Computing", showStep);
    });
  }
}

async function go() {
  view.save();
  const request = { model: $("model").value, text: $("text").value, backend: $("backend").value, values: true };
  run = await createRun(request, undefined);
  fillSelect($("kind"), run.kinds, null, run.kinds.includes(state.kind) ? state.kind : run.kinds[0]);
  configure();
  $("step-panel").hidden = false;
  await showStep();
}

/** Bounds of the layer, head and query inputs for the chosen kind; values kept where they fit. */
function configure() {
  const kind = $("kind").value;
  const clamp = (el, max, wanted) => {
    el.max = String(max);
    el.value = String(Math.max(0, Math.min(max, wanted)));
  };
  clamp($("layer"), run.layers_by_kind[kind] - 1, Number($("layer").value || state.layer));
  clamp($("head"), run.n_heads - 1, Number($("head").value || state.head));
  clamp($("query"), queryTokens(kind).length - 1, Number(state.query));
}

async function main() {
  initChrome();
  view.restore();
  const info = await withLoading("Loading models",
                                 () => setupModelSelect($("model"), $("backend"), state.model, state.backend));
  if (!info) return;
  $("controls").addEventListener("submit", (ev) => { ev.preventDefault(); withLoading("Running the model", go); });
  $("kind").addEventListener("change", () => { configure(); withLoading("Computing", showStep); });
  for (const id of ["layer", "head"]) $(id).addEventListener("change", () => withLoading("Computing", showStep));
  $("query").addEventListener("input", () => { state.query = Number($("query").value); withLoading("Computing", showStep); });
  $("pre-rotary").addEventListener("change", () => withLoading("Computing", showStep));
  $("method").addEventListener("change", () => { view.save(); withLoading("Embedding queries and keys", showGeometry); });
  $("colour").addEventListener("change", () => { view.save(); drawGeometry(); });
  $("export-step-json").addEventListener("click", () => step && downloadJSON(fileName({ model: $("model").value, view: "computation", layer: step.layer, head: step.head }, "json"), step));
  $("export-qk-json").addEventListener("click", () => qk && downloadJSON(fileName({ model: $("model").value, view: `qk-${qk.method}`, layer: qk.layer, head: qk.head }, "json"), qk));
  onArrowKeys((dLayer, dHead) => {
    if (!run) return false;
    const q = $("query");
    if (dHead) q.value = String(Math.max(0, Math.min(Number(q.max), Number(q.value) + dHead)));
    else $("layer").value = String(Math.max(0, Math.min(Number($("layer").max), Number($("layer").value) + dLayer)));
    state.query = Number(q.value);
    withLoading("Computing", showStep);
    return true;
  });
  if (state.text) await withLoading("Running the model", go);
}

main();
