// Training page, comparisons: shipped and user runs overlaid (loss, learning rate, gradient norm,
// per-layer gradient norms, spike markers), each with its caption and its lab's claims; and the
// gradient-checkpointing table (memory from torch's allocator, step time) as bars. Text from the
// server (labels, captions, claims) is set as text, never as HTML.
import { api } from "./api.js";
import { downloadJSON, fileName } from "./export.js";
import { Latest } from "./latest.js";
import { baseLayout, plot, plotFigure } from "./plots.js";
import { withLoading } from "./status.js";

const $ = (id) => document.getElementById(id);
const picked = new Latest();
const cache = new Map(); // run id -> series
let shown = [];

const METRIC = {
  loss: { key: "loss", title: "training loss", axis: "loss" },
  lr: { key: "lr", title: "learning rate", axis: "learning rate" },
  grad_norm: { key: "grad_norm", title: "gradient norm (before clipping)", axis: "norm" },
};

async function series(id, signal) {
  if (!cache.has(id)) cache.set(id, await api(`/api/training/runs/${encodeURIComponent(id)}`, { signal }));
  return cache.get(id);
}

function checkedIds() {
  return [...document.querySelectorAll("#run-picker input:checked")].map((el) => el.value);
}

function traces(runs, metric) {
  if (metric === "layers") {
    const run = runs.find((r) => r.layer_grad_norms);
    if (!run) return [];
    return run.layer_grad_norms.map((values, layer) => ({
      type: "scatter", mode: "lines", name: `${run.label}: layer ${layer}`, x: run.step, y: values }));
  }
  const { key } = METRIC[metric];
  const out = runs.map((r) => ({ type: "scatter", mode: "lines", name: r.label, x: r.step, y: r[key] }));
  if (metric === "loss") {
    for (const r of runs) {
      const flagged = [...r.spikes, ...r.skipped];
      if (!flagged.length) continue;
      const at = flagged.map((s) => r.step.indexOf(s));
      out.push({ type: "scatter", mode: "markers", name: `${r.label}: spike / skipped`, x: flagged,
                 y: at.map((i) => (i >= 0 ? r.loss[i] : null)), marker: { symbol: "x", size: 10 } });
    }
  }
  return out;
}

function fillList(ul, items) {
  ul.replaceChildren(...items.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
}

async function draw(signal, groups, state, save) {
  const ids = checkedIds();
  const runs = [];
  for (const id of ids) runs.push(await series(id, signal));
  signal.throwIfAborted();
  shown = runs;
  const metric = $("metric").value;
  const title = metric === "layers" ? "gradient norm per layer, before clipping" : METRIC[metric].title;
  await plot($("runs-chart"), traces(runs, metric), baseLayout({
    title: { text: title }, height: 460, xaxis: { title: { text: "step" } },
    yaxis: { title: { text: metric === "layers" ? "norm" : METRIC[metric].axis }, type: $("log-y").checked ? "log" : "linear" },
    legend: { orientation: "h", y: -0.2 } }), "training-runs");
  fillList($("run-captions"), runs.map((r) => r.caption));
  const seen = [...new Set(runs.map((r) => r.group))].filter((g) => groups[g]);
  fillList($("lab-claims"), seen.flatMap((g) => Object.values(groups[g].claims).map(
    (c) => `${g}: ${c.holds ? "held" : "did not hold"}: ${c.claim}`)));
  state.runs = ids.join(",");
  state.metric = metric;
  save();
}

function picker(index, wanted) {
  const box = $("run-picker");
  box.replaceChildren();
  const byGroup = new Map();
  for (const run of index.runs) {
    if (!byGroup.has(run.group)) byGroup.set(run.group, []);
    byGroup.get(run.group).push(run);
  }
  for (const [group, runs] of byGroup) {
    const fieldset = document.createElement("fieldset");
    const legend = document.createElement("legend");
    const lab = index.groups[group];
    legend.textContent = lab ? `${group} (${lab.holds ? "its claims held" : "a claim did not hold"})` : group;
    fieldset.appendChild(legend);
    for (const run of runs) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.value = run.id;
      input.checked = wanted.includes(run.id);
      label.append(input, ` ${run.label}${run.diverged_at !== null ? " (diverged)" : ""}`);
      fieldset.appendChild(label);
    }
    box.appendChild(fieldset);
  }
}

function defaultRuns(index) {
  const ids = index.runs.map((r) => r.id);
  const stability = ids.filter((id) => id.startsWith("stability.") && id.endsWith("_high"));
  if (stability.length) return stability;
  return ids.slice(0, 1);
}

export async function initCompare(state, save) {
  const index = await api("/api/training/runs");
  if (!index.runs.length) return;
  $("compare-panel").hidden = false;
  const known = new Set(index.runs.map((r) => r.id));
  const wanted = (state.runs || "").split(",").filter((id) => known.has(id));
  picker(index, wanted.length ? wanted : defaultRuns(index));
  if (METRIC[state.metric] || state.metric === "layers") $("metric").value = state.metric;
  const redraw = () => withLoading("Loading runs", () => picked.run((signal) => draw(signal, index.groups, state, save)));
  $("run-picker").addEventListener("change", redraw);
  $("metric").addEventListener("change", redraw);
  $("log-y").addEventListener("change", redraw);
  $("export-runs-json").addEventListener("click", () => downloadJSON(fileName({ model: "training", view: "runs" }, "json"), shown));
  await redraw();
  if (index.checkpointing) await checkpointing();
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

async function checkpointing() {
  const table = await api("/api/training/checkpointing");
  $("ckpt-panel").hidden = false;
  $("ckpt-note").textContent = `${table.source === "user" ? "your re-run" : "shipped results"}: one forward+backward of `
    + `${table.batch_size} x ${table.seq_len} tokens on ${table.device}, median of ${table.repeats}; memory: `
    + (table.rows.length ? table.rows[0].method : "");
  $("ckpt-table").tBodies[0].replaceChildren(...table.rows.map((r) => {
    const tr = document.createElement("tr");
    tr.append(cell(r.model), cell(String(r.n_layers)), cell(r.n_params.toLocaleString("en")), cell(r.batch),
              cell(r.peak_without_mib.toFixed(1)), cell(r.peak_with_mib.toFixed(1)),
              cell(`${Math.round(100 * r.saving_ratio)}%`), cell(r.step_ms_without.toFixed(0)),
              cell(r.step_ms_with.toFixed(0)), cell(`${r.slowdown.toFixed(2)}x`),
              ...(r.step_cpu_ms_without === null || r.step_cpu_ms_without === undefined ? [cell("—"), cell("—"), cell("—")]
                : [cell(r.step_cpu_ms_without.toFixed(0)), cell(r.step_cpu_ms_with.toFixed(0)),
                   cell(`${r.cpu_slowdown.toFixed(2)}x`)]));
    return tr;
  }));
  await plotFigure($("ckpt-chart"), table.figure, "gradient-checkpointing");
}
