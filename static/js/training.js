// Training: loss and learning-rate curves of a zoo checkpoint (server-built figure) and its
// attention snapshots on fixed probes, one head at a time, with a slider over steps. The
// checkpoint and the (probe, kind, layer, head) chosen are one selection: a newer one refuses
// the older's replies, and the slider steps through the snapshots of one reply.
import { api } from "./api.js";
import { initChrome, onArrowKeys } from "./chrome.js";
import { cardFocus, setNotice } from "./examples.js";
import { addImageButtons, downloadJSON, downloadNPY, fileName } from "./export.js";
import { fillSelect, listModels, player } from "./forms.js";
import { Latest } from "./latest.js";
import { baseLayout, heatmapTrace, plot, plotFigure } from "./plots.js";
import { bindState } from "./state.js";
import { withLoading } from "./status.js";
import { initCompare } from "./training-compare.js";
import { initObjectives } from "./training-objectives.js";

const $ = (id) => document.getElementById(id);
const view = bindState({
  model: { value: "", el: "checkpoint" }, probe: "", kind: "", layer: 0, head: 0,
  runs: "", metric: { value: "loss", el: "metric" }, // the runs overlaid (ids, comma-separated) and what is drawn
  step: { value: -1, get: () => (snaps ? snaps.steps[Number($("step").value)] : state.step) }, // a training step, not an index
});
const { state } = view;
let info = null;
let snaps = null;
const selection = new Latest(); // the latest checkpoint or snapshot selection
const named = new URLSearchParams(window.location.search);
let openFocus = !named.has("layer") && !named.has("head"); // the first show may open the card's focus head

// results.json fields that are not results: the configs (shown on the Architecture page) and stored figures
const NOT_RESULTS = new Set(["config", "train_config", "figures", "samples", "examples", "lab"]);

function formatValue(v) {
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : (Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3
    ? v.toExponential(3) : String(Number(v.toPrecision(4))));
  if (Array.isArray(v)) return v.length > 8 ? `${v.length} values` : v.map(formatValue).join(", ");
  return v === null ? "\u2014" : String(v);
}

/** Rows of a results object: scalars as they are, small objects one level deep ("exact_match reverse"). */
function resultRows(results) {
  const rows = [];
  for (const [key, value] of Object.entries(results || {})) {
    if (NOT_RESULTS.has(key)) continue;
    if (value && typeof value === "object" && !Array.isArray(value)) {
      for (const [sub, v] of Object.entries(value)) {
        if (v === null || typeof v !== "object" || Array.isArray(v)) rows.push([`${key} ${sub}`, formatValue(v)]);
      }
    } else {
      rows.push([key, formatValue(value)]);
    }
  }
  return rows.map(([k, v]) => [k.replace(/_/g, " "), v]);
}

function showResults(results) {
  const table = $("results");
  const tbody = table.querySelector("tbody");
  tbody.replaceChildren();
  for (const [key, value] of resultRows(results)) {
    const tr = document.createElement("tr");
    for (const text of [key, value]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    tbody.appendChild(tr);
  }
  table.hidden = !tbody.children.length;
}

async function loadSnapshots(signal) {
  const query = new URLSearchParams({ probe: $("probe").value, kind: $("kind").value, layer: $("layer").value,
                                      head: $("head").value });
  snaps = await api(`/api/training/${encodeURIComponent($("checkpoint").value)}/snapshots?${query}`, { signal });
  $("step").max = String(Math.max(0, snaps.steps.length - 1));
  const wanted = state.step >= 0 ? snaps.steps.indexOf(state.step) : snaps.steps.length - 1;
  $("step").value = String(wanted >= 0 ? wanted : snaps.steps.length - 1);
  await drawSnapshot();
}

async function drawSnapshot() {
  const i = Number($("step").value);
  const step = snaps.steps[i];
  $("step-out").textContent = `step ${step}`;
  state.step = step;
  await plot($("snapshot"), [heatmapTrace(snaps.maps[i], { rowTokens: snaps.row_tokens, colTokens: snaps.col_tokens, zmax: 1 })],
    baseLayout({ title: { text: `${snaps.kind} layer ${snaps.layer}, head ${snaps.head} at step ${step}` }, height: 620,
                 xaxis: { title: { text: "key" } }, yaxis: { title: { text: "query" }, autorange: "reversed" } }),
    `snapshot-step${step}`, { tokenAxes: { xaxis: { tokens: snaps.col_tokens }, yaxis: { tokens: snaps.row_tokens } } });
  view.save();
}

async function show(signal) {
  info = await api(`/api/training/${encodeURIComponent($("checkpoint").value)}`, { signal });
  $("curves-panel").hidden = false;
  await plotFigure($("curves"), info.figure, `${info.name}-training`);
  signal.throwIfAborted();
  showResults(info.results || info.summary);
  const meta = info.snapshots;
  if (!meta || !meta.probes || !meta.probes.length) {
    $("snap-panel").hidden = true;
    snaps = null;
    view.save();
    return;
  }
  $("snap-panel").hidden = false;
  const probes = meta.probes.map((p) => p.name);
  fillSelect($("probe"), probes, null, probes.includes(state.probe) ? state.probe : probes[0]);
  const probe = meta.probes.find((p) => p.name === $("probe").value);
  // the checkpoint's most telling head (its model card) when the link named no head
  const focus = openFocus ? cardFocus((await listModels()).find((m) => m.id === info.name)) : null;
  openFocus = false;
  if (focus && probe.kinds.includes(focus.kind)) Object.assign(state, { kind: focus.kind, layer: focus.layer, head: focus.head });
  fillSelect($("kind"), probe.kinds, null, probe.kinds.includes(state.kind) ? state.kind : probe.kinds[0]);
  // layer and head counts come back with the first snapshot request
  fillSelect($("layer"), [0], null, 0);
  fillSelect($("head"), [0], null, 0);
  const first = await api(`/api/training/${encodeURIComponent(info.name)}/snapshots?${new URLSearchParams(
    { probe: $("probe").value, kind: $("kind").value, layer: "0", head: "0" })}`, { signal });
  fillSelect($("layer"), [...Array(first.n_layers).keys()], null, Math.min(state.layer, first.n_layers - 1));
  fillSelect($("head"), [...Array(first.n_heads).keys()], null, Math.min(state.head, first.n_heads - 1));
  await loadSnapshots(signal);
}

async function main() {
  initChrome();
  // the comparisons and the objectives do not depend on a checkpoint being chosen
  withLoading("Loading runs", () => initCompare(state, view.save));
  withLoading("Loading models", initObjectives);
  const list = await withLoading("Loading checkpoints", () => api("/api/training"));
  if (!list) return;
  if (!list.length) {
    $("checkpoint-note").textContent = "No checkpoint with a training log on this server yet (attnlab train / attnlab lab write them under models/zoo/).";
    $("run").disabled = true;
    return;
  }
  const asked = named.get("model");
  if (asked && !list.some((c) => c.name === asked)) {
    setNotice("link", `The link asked for checkpoint \u201c${asked}\u201d, but this server has no training log of `
      + `that name (it has ${list.map((c) => c.name).join(", ")}). Showing another instead.`);
  }
  fillSelect($("checkpoint"), list.map((c) => c.name),
             list.map((c) => `${c.name}${c.snapshots ? " (with attention snapshots)" : ""}`),
             list.some((c) => c.name === state.model) ? state.model : (list.find((c) => c.snapshots) || list[0]).name);
  const showLatest = () => selection.run(show);
  const snapshotsLatest = () => selection.run(loadSnapshots);
  $("controls").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.step = -1;
    openFocus = !info || info.name !== $("checkpoint").value; // another checkpoint opens on its telling head
    withLoading("Loading", showLatest);
  });
  for (const id of ["probe", "kind", "layer", "head"]) {
    $(id).addEventListener("change", () => { state[id] = $(id).value; withLoading("Loading snapshots", snapshotsLatest); });
  }
  $("step").addEventListener("input", drawSnapshot);
  player($("play"), $("step"), drawSnapshot);
  addImageButtons($("export-log-json"), $("curves"), () => info && {
    file: { model: info.name, view: "training-curves" }, title: `${info.name} \u00b7 loss and learning rate` });
  addImageButtons($("export-snap-npy"), $("snapshot"), () => snaps && {
    file: { model: snaps.name, view: `snapshots-${snaps.kind}`, layer: snaps.layer, head: snaps.head },
    title: `${snaps.name} \u00b7 ${snaps.kind} layer ${snaps.layer}, head ${snaps.head} over training` });
  $("export-log-json").addEventListener("click", () => info && downloadJSON(fileName({ model: info.name, view: "training-log" }, "json"), info.log));
  $("export-snap-npy").addEventListener("click", () => snaps && downloadNPY(
    fileName({ model: snaps.name, view: `snapshots-${snaps.kind}`, layer: snaps.layer, head: snaps.head }, "npy"), snaps.maps));
  onArrowKeys((dLayer, dHead) => {
    if (!snaps) return false;
    const move = (select, d) => {
      select.value = String(Math.max(0, Math.min(select.options.length - 1, Number(select.value) + d)));
    };
    move($("layer"), dLayer);
    move($("head"), dHead);
    withLoading("Loading snapshots", snapshotsLatest);
    return true;
  });
  await withLoading("Loading", showLatest);
}

main();
