// Head types: a layers x heads heatmap per detector (server-built figure) and the
// attention rollout / flow across layers. A click on a head opens it in the Explorer.
// A run and its kind are one selection: a newer one refuses the older's replies.
import { api } from "./api.js";
import { initChrome, onArrowKeys } from "./chrome.js";
import { followCards, warnUnknown } from "./examples.js";
import { addImageButtons, downloadJSON, downloadNPY, excerpt, fileName } from "./export.js";
import { fillSelect, setupModelSelect } from "./forms.js";
import { rawTexts } from "./labels.js";
import { Latest } from "./latest.js";
import { baseLayout, heatmapTrace, plot, plotFigure } from "./plots.js";
import { createRun, withRun } from "./runs.js";
import { bindState } from "./state.js";
import { withLoading } from "./status.js";

const $ = (id) => document.getElementById(id);
const view = bindState({
  model: "minilm", text: "", backend: "", kind: "", method: "rollout",
  // the rollout's layer: the slider's once a rollout is shown, else the URL's (-1: the last)
  layer: { value: -1, get: () => (rollout ? Number($("layer").value) : state.layer) },
});
const { state } = view;
let run = null;
let heads = null;
let rollout = null;
const selection = new Latest(); // the latest run and kind
let modelInfo = () => null; // setupModelSelect's lookup

function explorerLink(layer, head) {
  const params = new URLSearchParams({ model: $("model").value, text: $("text").value, backend: $("backend").value,
                                       kind: $("kind").value, layer: String(layer), head: String(head) });
  return `/?${params}`;
}

/** Head scores and rollout of the run's chosen kind, drawn only while they are still the latest. */
function showKind(signal) {
  return showHeads(signal).then(() => showRollout(signal));
}

async function showHeads(signal) {
  const kind = encodeURIComponent($("kind").value);
  const answer = await withRun(run, (id) => api(`/api/figures/heads/${id}?kind=${kind}`, { signal }), signal);
  heads = { ...answer, model: run.model, run_id: run.run_id }; // the export names the run it came from
  const el = $("head-types");
  await plotFigure(el, heads.figure, "head-types");
  signal.throwIfAborted();
  if (!el.dataset.bound) {
    el.dataset.bound = "1";
    el.on("plotly_click", (ev) => {
      const point = ev.points && ev.points[0];
      // heatmap points carry [row, column] = [layer, head]; their x/y are the "H3"/"L1" labels
      if (point) window.location.assign(explorerLink(...point.pointIndex));
    });
  }
}

async function showRollout(signal) {
  const kind = $("kind").value;
  // the previous run's rollout never stays on screen beside this run's scores (e.g. when this one is refused)
  rollout = null;
  $("rollout-panel").hidden = true;
  if (kind === "cross") return;
  const answer = await withRun(run, (id) => api(`/api/runs/${id}/rollout?kind=${encodeURIComponent(kind)}`, { signal }),
                               signal);
  rollout = answer;
  const nLayers = rollout.shape[0];
  $("layer").max = String(nLayers - 1);
  $("layer").value = String(state.layer >= 0 && state.layer < nLayers ? state.layer : nLayers - 1);
  $("rollout-panel").hidden = false;
  await drawRollout();
}

async function drawRollout() {
  const layer = Number($("layer").value);
  $("layer-out").textContent = String(layer);
  const z = rollout[$("method").value][layer];
  const tokens = rollout.tokens;
  // raw text on hover: offsets index the request's text, or the decoded target of a seq2seq run
  const texts = rollout.kind === "decoder" && run.target_text !== undefined && run.target_text !== null
    ? [run.target_text] : run.texts;
  const raw = rawTexts(rollout, texts);
  await plot($("rollout"), [heatmapTrace(z, { rowTokens: tokens, colTokens: tokens, rowRaw: raw, colRaw: raw,
                                                rowName: "position", colName: "input token",
                                                what: $("method").value })],
             baseLayout({ height: 600, xaxis: { title: { text: "input token" } },
                          yaxis: { title: { text: "position" }, autorange: "reversed" } }),
             `${$("method").value}-L${layer}`, { tokenAxes: { xaxis: { tokens }, yaxis: { tokens } } });
  view.save();
}

async function go() {
  view.save();
  const request = { model: $("model").value, text: $("text").value, backend: $("backend").value };
  await selection.run(async (signal) => {
    run = await createRun(request, signal);
    warnUnknown(run.tokens, modelInfo(run.model));
    const kinds = run.kinds; // cross-attention too: its scores for two sequences (no rollout)
    fillSelect($("kind"), kinds, null, kinds.includes(state.kind) ? state.kind : kinds[0]);
    $("heads-panel").hidden = false;
    await showKind(signal);
  });
  view.save();
}

async function main() {
  initChrome();
  view.restore();
  const info = await withLoading("Loading models", () => setupModelSelect($("model"), $("backend"), state.model, state.backend));
  if (!info) return;
  modelInfo = info;
  const named = new URLSearchParams(window.location.search);
  await followCards({ select: $("model"), info, text: $("text"), page: "heads", wanted: named.get("model") || "",
                      hadText: named.has("text") });
  $("controls").addEventListener("submit", (ev) => { ev.preventDefault(); state.layer = -1; withLoading("Running the model", go); });
  $("kind").addEventListener("change", () => {
    state.kind = $("kind").value;
    withLoading("Scoring heads", () => selection.run(showKind));
  });
  $("layer").addEventListener("input", () => { state.layer = Number($("layer").value); drawRollout(); });
  $("method").addEventListener("change", () => rollout && drawRollout());
  // PNG/SVG of each chart, titled with the model, kind and the start of the text (export.js)
  addImageButtons($("export-heads-json"), $("head-types"), () => heads && run && {
    file: { model: heads.model, view: "head-types" },
    title: `${heads.model} \u00b7 head types \u00b7 \u201c${excerpt(run.texts[0])}\u201d` });
  addImageButtons($("export-rollout-npy"), $("rollout"), () => rollout && run && {
    file: { model: run.model, view: `${$("method").value}-${rollout.kind}` },
    title: `${run.model} \u00b7 ${$("method").value} (${rollout.kind}) after layer ${$("layer").value} `
      + `\u00b7 \u201c${excerpt(run.texts[0])}\u201d` });
  $("export-heads-json").addEventListener("click", () => heads && downloadJSON(fileName({ model: heads.model, view: "head-types" }, "json"),
    { model: heads.model, run_id: heads.run_id, kind: heads.kind, scores: heads.scores }));
  $("export-rollout-json").addEventListener("click", () => rollout && downloadJSON(fileName({ model: $("model").value, view: "rollout" }, "json"), rollout));
  $("export-rollout-npy").addEventListener("click", () => rollout && downloadNPY(
    fileName({ model: $("model").value, view: $("method").value }, "npy"), rollout[$("method").value]));
  onArrowKeys((dLayer) => {
    if (!rollout || dLayer === 0) return false;
    const next = Math.max(0, Math.min(Number($("layer").max), Number($("layer").value) + dLayer));
    $("layer").value = String(next);
    state.layer = next;
    drawRollout();
    return true;
  });
  await withLoading("Running the model", go); // the page opens with a result: the link's input or the example
}

main();
