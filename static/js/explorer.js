// Explorer: the model view (layers x heads grid of pooled thumbnails, loaded lazily:
// explorer/grid.js) and, on a click, the head view (a large heatmap with token labels:
// explorer/head-view.js, and a BertViz-style line view: explorer/line-view.js). This module
// holds the run and the view state and wires the controls. Tiles come from
// /api/runs/{id}/attention as float16; an evicted run is recreated (runs.js).
import { apiBinary } from "./api.js";
import { initChrome, onArrowKeys } from "./chrome.js";
import { cardFocus, followCards, warnUnknown } from "./examples.js";
import { addImageButtons, downloadJSON, downloadNPY, excerpt, fileName } from "./export.js";
import { fillSelect, offerAutoBackend, setupModelSelect } from "./forms.js";
import { Latest } from "./latest.js";
import { withRun } from "./runs.js";
import { SCALES, scaleName, viridis } from "./scale.js";
import { bindState } from "./state.js";
import { withLoading } from "./status.js";
import { HeadGrid, THUMB } from "./explorer/grid.js";
import { HeadView } from "./explorer/head-view.js";
import { estimateText, longText, RunProgress, streamRun } from "./explorer/long-run.js";

const $ = (id) => document.getElementById(id);
const view = bindState({
  model: "minilm", text: "", text_pair: "", backend: "", kind: "",
  layer: -1, head: -1, // the open head (-1: none)
  colour: { value: "", el: "colour-by" }, shared: { value: false, el: "shared-scale" }, scale: "linear", exclude_special: { value: false, el: "exclude-special" },
  weighting: "raw", // value_norm: alpha_ij ||v_j W_O|| per row (Kobayashi et al. 2020); the run then keeps V
});
const { state } = view;
let run = null; // the POST /api/runs answer
const runs = new Latest(); // the run of the latest submit (POST /api/runs/stream)
const progress = new RunProgress($("controls"), () => { runs.cancel(); progress.cancelled(); });
let modelInfo = () => null; // setupModelSelect's lookup
let focusOpen = false; // the first run of a page opened with no head named: open the card's focus head
const named = new URLSearchParams(window.location.search); // what a shared link asked for

/** A tile of the run shown (kind of the kind select unless params name one). */
function tile(params, signal) {
  const query = new URLSearchParams({ kind: $("kind").value, format: "f16", ...params });
  // only a run that kept V can be value-weighted (a toggle while the old run's thumbnails load)
  if (run.values && $("weighting").value === "value_norm") query.set("weighting", "value_norm");
  return withRun(run, (id) => apiBinary(`/api/runs/${id}/attention?${query}`, { signal }), signal);
}

/** Every head's pooled thumbnail of layers [first, last), one request (explorer/grid.js). */
function overviews(first, last, signal) {
  const query = new URLSearchParams({ kind: $("kind").value, layers: `${first}:${last}`, pool: String(THUMB), format: "f16" });
  return withRun(run, (id) => apiBinary(`/api/runs/${id}/overviews?${query}`, { signal }), signal);
}

const grid = new HeadGrid($("grid"), {
  fetchLayers: overviews,
  onOpen: (layer, head) => openHead(layer, head, true),
  shared: () => $("shared-scale").checked,
});
const headView = new HeadView({ heatmap: $("heatmap"), lines: $("lines"), zoomNote: $("zoom-note") }, {
  tile,
  options: () => ({ scale: $("scale").value, excludeSpecial: $("exclude-special").checked }),
});

function colourGrid() {
  const detector = $("colour-by").value;
  const scores = run && run.head_stats && run.head_stats[$("kind").value];
  const table = detector && scores ? scores[detector] : null;
  grid.colour(table, detector);
  legend(table, detector);
}

/** The legend of "Colour by": the score's range on the tint's colour scale (its lowest to highest head). */
function legend(table, detector) {
  $("colour-legend").hidden = !table;
  if (!table) return;
  const values = table.flat();
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const unit = { entropy: " nats", mean_offset: " tokens" }[detector] || "";
  $("legend-lo").textContent = `${detector.replace(/_/g, " ")}: ${lo.toFixed(2)}${unit}`;
  $("legend-hi").textContent = `${hi.toFixed(2)}${unit}`;
  const bar = $("legend-bar");
  const ctx = bar.getContext("2d");
  for (let x = 0; x < bar.width; x++) {
    const [r, g, b] = viridis(x / (bar.width - 1));
    ctx.fillStyle = `rgb(${r}, ${g}, ${b})`;
    ctx.fillRect(x, 0, 1, bar.height);
  }
}

/** "Colour by": the head-type scores of the kind shown (cross-attention has fewer than self-attention). */
function fillColourBy() {
  const stats = run.head_stats && run.head_stats[$("kind").value];
  const names = stats ? Object.keys(stats) : [];
  const current = $("colour-by").value || state.colour;
  fillSelect($("colour-by"), ["", ...names], ["attention pattern", ...names.map((k) => k.replace(/_/g, " "))],
             names.includes(current) ? current : "");
}

function buildGrid() {
  grid.build(run.layers_by_kind[$("kind").value], run.n_heads);
  colourGrid();
}

/** Bring the head view into sight (a tall grid puts it far below the thumbnail clicked). */
function revealHead() {
  const panel = $("head-view-panel");
  const box = panel.getBoundingClientRect();
  if (box.top < 0 || box.top > window.innerHeight * 0.5) panel.scrollIntoView({ block: "start" });
}

async function openHead(layer, head, reveal = false) {
  state.layer = layer;
  state.head = head;
  view.save();
  grid.select(layer, head);
  $("head-view-panel").hidden = false;
  $("head-title").textContent = `Head view: ${$("kind").value} layer ${layer}, head ${head}`;
  if (reveal) revealHead();
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
  run = await runs.run((signal) => streamRun(request, progress, signal));
  const kinds = run.kinds;
  fillSelect($("kind"), kinds, null, kinds.includes(state.kind) ? state.kind : kinds[0]);
  $("run-info").textContent = `${run.n_tokens} tokens, ${run.layers_by_kind[$("kind").value]} layers \u00d7 ${run.n_heads} heads, `
    + `forward ${Math.round(run.timings.forward_ms || 0)} ms${run.cached ? " (cached)" : ""}`;
  $("model-view-panel").hidden = false;
  warnUnknown(run.tokens, modelInfo(run.model));
  const focus = cardFocus(modelInfo(run.model));
  if (focusOpen && state.layer < 0 && focus && run.kinds.includes(focus.kind)) {
    // the model's most telling head, opened when nothing else was asked for
    $("kind").value = focus.kind;
    state.layer = focus.layer;
    state.head = focus.head;
  }
  fillColourBy();
  buildGrid();
  const nLayers = run.layers_by_kind[$("kind").value];
  if (state.layer >= 0 && state.head >= 0 && state.layer < nLayers && state.head < run.n_heads) {
    await openHead(state.layer, state.head, true);
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
  offerAutoBackend($("backend"), $("model"), state.backend);
  modelInfo = info;
  await followCards({ select: $("model"), info, text: $("text"), page: "explorer", wanted: named.get("model") || "",
                      hadText: named.has("text") });
  const togglePair = () => { $("pair-label").hidden = (info() || {}).family !== "encoder"; };
  togglePair();
  $("model").addEventListener("change", togglePair);
  $("controls").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.layer = -1;
    state.head = -1;
    focusOpen = false;
    withLoading("Running the model", go);
  });
  $("kind").addEventListener("change", () => {
    state.kind = $("kind").value;
    headView.cancel();
    state.layer = -1;
    state.head = -1;
    $("head-view-panel").hidden = true;
    fillColourBy();
    view.save();
    buildGrid();
  });
  $("colour-by").addEventListener("change", () => { colourGrid(); view.save(); });
  $("shared-scale").addEventListener("change", () => { grid.rescale(); view.save(); });
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
  $("long-demo").addEventListener("click", () => withLoading("Fitting the passage to the model", async () => {
    const lt = await longText($("model").value);
    $("text").value = lt.text;
    $("text_pair").value = "";
    $("backend").value = "auto";
    const why = lt.limit_reason === "max_positions" ? `the most ${$("model").value} takes (max_positions ${lt.limit})`
      : lt.limit_reason === "long_text_tokens" ? `the classroom default (long_text_tokens ${lt.limit}; paste a longer `
        + "text to go further)" : `as far as the run cache allows (${lt.limit_reason} ${lt.limit})`;
    progress.note.textContent = `Long text: ${lt.n_tokens} tokens, ${why}; ${lt.backend_reason}; `
      + `${estimateText(lt.estimate_s)}. Press Run.`;
  }));
  // one name pattern for every file of the head view (export.js); images are titled with what they show
  const headFile = (d) => ({ model: d.model, view: `head-${d.kind}`, layer: d.layer, head: d.head });
  addImageButtons($("export-head-npy"), $("heatmap"), () => {
    const d = headView.data;
    if (!d) return null;
    const rows = d.factor === 1 ? "" : ` (pooled ${d.factor}\u00d7${d.factor})`;
    return { file: headFile(d),
             title: `${d.model} \u00b7 ${d.kind} layer ${d.layer}, head ${d.head}${rows} \u00b7 \u201c${excerpt(run.texts[0])}\u201d` };
  });
  $("export-head-npy").addEventListener("click", () => headView.data && downloadNPY(
    fileName(headFile(headView.data), "npy"), headView.data.z));
  $("export-head-json").addEventListener("click", () => headView.data && downloadJSON(
    fileName(headFile(headView.data), "json"), headView.data)); // weights and labels of one reply
  $("export-grid-json").addEventListener("click", () => run && downloadJSON(
    fileName({ model: run.model, view: "run" }, "json"), run));
  onArrowKeys((dLayer, dHead) => {
    if (!run) return false;
    const nLayers = run.layers_by_kind[$("kind").value];
    const layer = Math.max(0, Math.min(nLayers - 1, (state.layer < 0 ? 0 : state.layer) + dLayer));
    const head = Math.max(0, Math.min(run.n_heads - 1, (state.head < 0 ? 0 : state.head) + dHead));
    withLoading("Loading head", () => openHead(layer, head));
    return true;
  });
  // the page opens with a result: the link's input, or the model's example
  const layer = state.layer;
  const head = state.head;
  focusOpen = !named.has("layer");
  await withLoading("Running the model", async () => {
    state.layer = layer;
    state.head = head;
    await go();
  });
  focusOpen = false;
}

main();
