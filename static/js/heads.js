// Head types: a layers x heads heatmap per detector (server-built figure) and the
// attention rollout / flow across layers. A click on a head opens it in the Explorer.
import {
  api, baseLayout, downloadJSON, downloadNPY, fillSelect, heatmapTrace, initChrome, onArrowKeys, plot, plotFigure,
  readState, setupModelSelect, tokenAxis, withLoading, writeState,
} from "./common.js";

const $ = (id) => document.getElementById(id);
const state = readState({ model: "minilm", text: "", backend: "", kind: "", method: "rollout", layer: -1 });
let run = null;
let heads = null;
let rollout = null;

function saveState() {
  writeState({ model: $("model").value, text: $("text").value, backend: $("backend").value,
               kind: run ? $("kind").value : state.kind, method: $("method").value,
               layer: rollout ? Number($("layer").value) : state.layer });
}

function explorerLink(layer, head) {
  const params = new URLSearchParams({ model: $("model").value, text: $("text").value, backend: $("backend").value,
                                       kind: $("kind").value, layer: String(layer), head: String(head) });
  return `/?${params}`;
}

async function showHeads() {
  heads = await api(`/api/figures/heads/${run.run_id}?kind=${encodeURIComponent($("kind").value)}`);
  const el = $("head-types");
  await plotFigure(el, heads.figure, "head-types");
  if (!el.dataset.bound) {
    el.dataset.bound = "1";
    el.on("plotly_click", (ev) => {
      const point = ev.points && ev.points[0];
      // heatmap points carry [row, column] = [layer, head]; their x/y are the "H3"/"L1" labels
      if (point) window.location.assign(explorerLink(...point.pointIndex));
    });
  }
}

async function showRollout() {
  const kind = $("kind").value;
  if (kind === "cross") { $("rollout-panel").hidden = true; return; }
  rollout = await api(`/api/runs/${run.run_id}/rollout?kind=${encodeURIComponent(kind)}`);
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
  await plot($("rollout"), [heatmapTrace(z, { rowTokens: tokens, colTokens: tokens, hover: $("method").value })],
             baseLayout({ height: 600, xaxis: { title: { text: "input token" }, tickangle: -60, ...tokenAxis(tokens) },
                          yaxis: { title: { text: "position" }, autorange: "reversed", ...tokenAxis(tokens) } }),
             `${$("method").value}-L${layer}`);
  saveState();
}

async function go() {
  saveState();
  const body = { model: $("model").value, text: $("text").value, backend: $("backend").value || null };
  run = await api("/api/runs", { method: "POST", body });
  const kinds = run.kinds.filter((k) => k !== "cross");
  fillSelect($("kind"), kinds, null, kinds.includes(state.kind) ? state.kind : kinds[0]);
  $("heads-panel").hidden = false;
  await showHeads();
  await showRollout();
  saveState();
}

async function main() {
  initChrome();
  $("text").value = state.text || $("text").value;
  $("method").value = state.method === "flow" ? "flow" : "rollout";
  const info = await withLoading("Loading models", () => setupModelSelect($("model"), $("backend"), state.model, state.backend));
  if (!info) return;
  $("controls").addEventListener("submit", (ev) => { ev.preventDefault(); state.layer = -1; withLoading("Running the model", go); });
  $("kind").addEventListener("change", () => {
    state.kind = $("kind").value;
    withLoading("Scoring heads", async () => { await showHeads(); await showRollout(); });
  });
  $("layer").addEventListener("input", () => { state.layer = Number($("layer").value); drawRollout(); });
  $("method").addEventListener("change", () => rollout && drawRollout());
  $("export-heads-json").addEventListener("click", () => heads && downloadJSON("head-types.json",
    { model: run.model, run_id: run.run_id, kind: heads.kind, scores: heads.scores }));
  $("export-rollout-json").addEventListener("click", () => rollout && downloadJSON("rollout.json", rollout));
  $("export-rollout-npy").addEventListener("click", () => rollout && downloadNPY(
    `${$("method").value}.npy`, rollout[$("method").value]));
  onArrowKeys((dLayer) => {
    if (!rollout || dLayer === 0) return false;
    const next = Math.max(0, Math.min(Number($("layer").max), Number($("layer").value) + dLayer));
    $("layer").value = String(next);
    state.layer = next;
    drawRollout();
    return true;
  });
  if (state.text) await withLoading("Running the model", go);
}

main();
