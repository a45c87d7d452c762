// Explorer: the model view (layers x heads grid of pooled thumbnails, loaded lazily:
// explorer/grid.js) and, on a click, the head view (a large heatmap with token labels:
// explorer/head-view.js, and a BertViz-style line view: explorer/line-view.js). This module
// holds the run and the view state and wires the controls. Tiles come from
// /api/runs/{id}/attention as float16; an evicted run is recreated (runs.js).
import { apiBinary } from "./api.js";
import { initChrome, onArrowKeys } from "./chrome.js";
import { downloadJSON, downloadNPY } from "./export.js";
import { fillSelect, setupModelSelect } from "./forms.js";
import { Latest } from "./latest.js";
import { createRun, withRun } from "./runs.js";
import { SCALES, scaleName } from "./scale.js";
import { bindState } from "./state.js";
import { withLoading } from "./status.js";
import { HeadGrid, THUMB } from "./explorer/grid.js";
import { HeadView } from "./explorer/head-view.js";

const $ = (id) => document.getElementById(id);
const view = bindState({
  model: "minilm", text: "", text_pair: "", backend: "", kind: "",
  layer: -1, head: -1, // the open head (-1: none)
  colour: { value: "", el: "colour-by" }, scale: "linear", exclude_special: { value: false, el: "exclude-special" },
  weighting: "raw", // value_norm: alpha_ij ||v_j W_O|| per row (Kobayashi et al. 2020); the run then keeps V
});
const { state } = view;
let run = null; // the POST /api/runs answer
const runs = new Latest(); // POST /api/runs of the latest submit

/** A tile of the run shown (kind of the kind select unless params name one). */
function tile(params, signal) {
  const query = new URLSearchParams({ kind: $("kind").value, format: "f16", ...params });
  // only a run that kept V can be value-weighted (a toggle while the old run's thumbnails load)
  if (run.values && $("weighting").value === "value_norm") query.set("weighting", "value_norm");
  return withRun(run, (id) => apiBinary(`/api/runs/${id}/attention?${query}`, { signal }), signal);
}

const grid = new HeadGrid($("grid"), {
  fetchThumb: (layer, head, signal) => tile({ layer, head, pool: String(THUMB) }, signal),
  onOpen: (layer, head) => openHead(layer, head),
});
const headView = new HeadView({ heatmap: $("heatmap"), lines: $("lines"), zoomNote: $("zoom-note") }, {
  tile,
  options: () => ({ scale: $("scale").value, excludeSpecial: $("exclude-special").checked }),
});

function colourGrid() {
  const detector = $("colour-by").value;
  const scores = run && run.head_stats && run.head_stats[$("kind").value];
  grid.colour(detector && scores ? scores[detector] : null, detector);
}

function buildGrid() {
  grid.build(run.layers_by_kind[$("kind").value], run.n_heads);
  colourGrid();
}

async function openHead(layer, head) {
  state.layer = layer;
  state.head = head;
  view.save();
  grid.select(layer, head);
  $("head-view-panel").hidden = false;
  $("head-title").textContent = `Head view: ${$("kind").value} layer ${layer}, head ${head}`;
  $("explain-link").href = `/explain?${new URLSearchParams({ model: run.model, text: $("text").value,
                                                             backend: $("backend").value, kind: $("kind").value,
                                                             layer: String(layer), head: String(head) })}`;
  await withLoading("Loading head", () => headView.open(run, { kind: $("kind").value, layer, head }));
}

async function go() {
  view.save();
  headView.cancel(); // a head of the previous run is not drawn any more
  const request = { model: $("model").value, text: $("text").value, text_pair: $("text_pair").value,
                    backend: $("backend").value, values: $("weighting").value === "value_norm" };
  run = await runs.run((signal) => createRun(request, signal));
  const kinds = run.kinds;
  fillSelect($("kind"), kinds, null, kinds.includes(state.kind) ? state.kind : kinds[0]);
  const stats = run.head_stats && run.head_stats[$("kind").value];
  const current = $("colour-by").value || state.colour;
  fillSelect($("colour-by"), ["", ...(stats ? Object.keys(stats) : [])],
             ["attention pattern", ...(stats ? Object.keys(stats).map((k) => k.replace(/_/g, " ")) : [])], current);
  $("run-info").textContent = `${run.n_tokens} tokens, ${run.layers_by_kind[$("kind").value]} layers \u00d7 ${run.n_heads} heads, `
    + `forward ${Math.round(run.timings.forward_ms || 0)} ms${run.cached ? " (cached)" : ""}`;
  $("model-view-panel").hidden = false;
  buildGrid();
  const nLayers = run.layers_by_kind[$("kind").value];
  if (state.layer >= 0 && state.head >= 0 && state.layer < nLayers && state.head < run.n_heads) {
    await openHead(state.layer, state.head);
  } else {
    state.layer = -1;
    state.head = -1;
    $("head-view-panel").hidden = true;
    view.save();
  }
}

async function main() {
  initChrome();
  view.restore();
  fillSelect($("scale"), Object.keys(SCALES), Object.values(SCALES), scaleName(state.scale));
  const info = await withLoading("Loading models", () => setupModelSelect($("model"), $("backend"), state.model, state.backend));
  if (!info) return;
  const togglePair = () => { $("pair-label").hidden = (info() || {}).family !== "encoder"; };
  togglePair();
  $("model").addEventListener("change", togglePair);
  $("controls").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.layer = -1;
    state.head = -1;
    withLoading("Running the model", go);
  });
  $("kind").addEventListener("change", () => {
    state.kind = $("kind").value;
    headView.cancel();
    state.layer = -1;
    state.head = -1;
    $("head-view-panel").hidden = true;
    view.save();
    buildGrid();
  });
  $("colour-by").addEventListener("change", () => { colourGrid(); view.save(); });
  $("weighting").addEventListener("change", () => {
    view.save();
    if (!run) return;
    const layer = state.layer;
    const head = state.head;
    withLoading("Running the model", async () => {
      state.layer = layer;
      state.head = head;
      await go(); // a run that keeps V has its own id; the same head reopens
    });
  });
  const redraw = () => { view.save(); headView.redraw(); };
  $("scale").addEventListener("change", redraw);
  $("exclude-special").addEventListener("change", redraw);
  document.addEventListener("fontsizechange", () => headView.drawLines());
  $("long-demo").addEventListener("click", () => {
    const paragraph = "Attention lets every token look at every other token; a long context shows a pooled overview first. ";
    $("text").value = paragraph.repeat(120);
  });
  const shownName = (d) => `attention-${d.kind}-L${d.layer}H${d.head}`;
  $("export-head-npy").addEventListener("click", () => headView.data && downloadNPY(
    `${shownName(headView.data)}.npy`, headView.data.z));
  $("export-head-json").addEventListener("click", () => headView.data && downloadJSON(
    `${shownName(headView.data)}.json`, headView.data)); // weights and labels of one reply
  $("export-grid-json").addEventListener("click", () => run && downloadJSON("run.json", run));
  onArrowKeys((dLayer, dHead) => {
    if (!run) return false;
    const nLayers = run.layers_by_kind[$("kind").value];
    const layer = Math.max(0, Math.min(nLayers - 1, (state.layer < 0 ? 0 : state.layer) + dLayer));
    const head = Math.max(0, Math.min(run.n_heads - 1, (state.head < 0 ? 0 : state.head) + dHead));
    withLoading("Loading head", () => openHead(layer, head));
    return true;
  });
  if (state.text) {
    const layer = state.layer;
    const head = state.head;
    await withLoading("Running the model", async () => {
      state.layer = layer;
      state.head = head;
      await go();
    });
  }
}

main();
