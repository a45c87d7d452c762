// Backends: math vs sdpa vs flash on a synthetic size sweep or on one model's input; the
// server runs the measurement and draws time and memory against T, log-log. Only the latest
// submit's answer is drawn. The page opens on the last measured results (GET /api/benchmark/latest: this
// server's last run, else the results shipped with attnlab) and measures only when Run is pressed, so a
// class opening the page starts no benchmark; controls that the chosen form does not use are disabled.
import { api } from "./api.js";
import { showBackendsHere } from "./backends_here.js";
import { initChrome } from "./chrome.js";
import { followCards } from "./examples.js";
import { downloadJSON, fileName } from "./export.js";
import { setupModelSelect } from "./forms.js";
import { Latest } from "./latest.js";
import { plotFigure } from "./plots.js";
import { bindState } from "./state.js";
import { withLoading } from "./status.js";

const $ = (id) => document.getElementById(id);
function form() { return document.querySelector("input[name=form]:checked").value; }
function backends() { return Array.from(document.querySelectorAll("input[name=backends]:checked")).map((b) => b.value); }

const view = bindState({
  form: { value: "synthetic", get: form }, backends: { value: "math,sdpa,flash", get: () => backends().join(",") },
  seq_lens: "64,128,256,512", n_heads: 4, head_dim: 64, passes: "fwd", causal: true, model: "minilm",
  text: { value: "", get: () => (form() === "model" ? $("text").value : "") }, // the sweep's URL carries no text
  backend: "",
});
const { state } = view;
let result = null;
const submits = new Latest();

function cell(row, text, numeric = false) {
  const td = document.createElement("td");
  td.textContent = text;
  if (numeric) td.className = "num";
  row.appendChild(td);
}

// the controls each form uses; the others are disabled while it is chosen
const SYNTHETIC_ONLY = ["seq_lens", "n_heads", "head_dim", "passes", "causal"];
const MODEL_ONLY = ["model", "backend", "text"];

function enableForForm() {
  const synthetic = form() === "synthetic";
  for (const id of SYNTHETIC_ONLY) $(id).disabled = !synthetic;
  for (const id of MODEL_ONLY) if ($(id)) $(id).disabled = synthetic;
}

async function run() {
  view.save();
  let body;
  if (form() === "synthetic") {
    const lens = $("seq_lens").value.split(/[ ,]+/).filter(Boolean).map(Number);
    if (!lens.length || lens.some((n) => !Number.isInteger(n) || n < 1)) {
      throw new Error("Sequence lengths: give positive whole numbers separated by commas, e.g. 64,128,256");
    }
    body = { seq_lens: lens, backends: backends(), causal: $("causal").checked, n_heads: Number($("n_heads").value),
             head_dim: Number($("head_dim").value), passes: $("passes").value };
  } else {
    body = { model: $("model").value, text: $("text").value, backends: backends() };
  }
  result = await submits.run((signal) => api("/api/benchmark?format=figure", { method: "POST", body, signal }));
  await show(result, "Measured now on this server.");
}

/** Draw a benchmark answer: chart, table and what each column measured. */
async function show(answer, source) {
  result = answer;
  $("bench-source").textContent = source;
  $("bench-panel").hidden = false;
  await plotFigure($("bench"), result.figure, "benchmark");
  const synthetic = result.form === "synthetic";
  // what one timed run is (models/benchmark.py): one attention call, or the app's whole forward
  $("bench-time-head").textContent = synthetic
    ? `median ms of one attention call (${(result.request?.passes ?? $("passes").value) === "fwd_bwd"
      ? "forward + backward" : "forward"})`
    : "median ms of one model forward (tokenise, run, capture), 3\u201310 runs";
  $("bench-mem-head").textContent = synthetic ? "peak MiB allocated by torch during the call"
    : "peak MiB allocated by torch in one attention kernel call";
  const method = result.results.find((r) => r.memory_method)?.memory_method;
  $("bench-mem-note").textContent = (synthetic
    ? "Peak MiB: the most memory torch held at any moment of one attention call, above what it held before. "
    : "Peak MiB: the most memory torch held during one attention kernel call of the model's forward (the largest "
      + "over its layers), above what it held when the call began; projections and capture are outside it. ")
    + (method ? `Measured (${method}).` : "") + " Never the process's RSS.";
  const tbody = $("bench-table").querySelector("tbody");
  tbody.replaceChildren();
  for (const r of result.results) {
    const tr = document.createElement("tr");
    cell(tr, r.backend);
    cell(tr, String(r.seq_len ?? r.n_tokens ?? ""), true);
    cell(tr, r.median_ms == null ? "" : Number(r.median_ms).toFixed(3), true);
    cell(tr, r.gflops == null ? "" : Number(r.gflops).toFixed(r.gflops < 10 ? 2 : 1), true);  // synthetic rows only
    const mem = r.peak_memory_bytes ?? r.attention_peak_memory_bytes;  // synthetic: the call; model: one kernel call
    cell(tr, mem == null ? "" : (mem / 2 ** 20).toFixed(mem < 2 ** 20 ? 3 : 1), true);
    const diff = r.max_abs_diff_vs_math ?? r.max_abs_diff;
    cell(tr, diff == null ? "" : Number(diff).toExponential(2), true);
    tbody.appendChild(tr);
  }
}

/** The last measured results, without measuring: this server's last run or the shipped one. */
async function latest() {
  const answer = await api("/api/benchmark/latest?format=figure");
  const when = answer.measured_at.replace("T", " ").replace("Z", " UTC");
  const where = answer.source === "shipped" ? `shipped with attnlab, measured on ${answer.machine} at ${when}`
    : `the last run on this server (${answer.machine}) at ${when}`;
  await show(answer, `Last measured results: ${where}. Press \u201cRun benchmark\u201d to measure on this server.`);
}

/** The controls of a request (the latest answer's, when the URL names none). */
function setControls(request) {
  if (request.seq_lens) $("seq_lens").value = request.seq_lens.join(",");
  for (const key of ["n_heads", "head_dim", "passes"]) if (request[key] !== undefined) $(key).value = String(request[key]);
  if (request.causal !== undefined) $("causal").checked = Boolean(request.causal);
  if (request.backends) {
    for (const b of document.querySelectorAll("input[name=backends]")) b.checked = request.backends.includes(b.value);
  }
}

async function main() {
  initChrome();
  await withLoading("Listing this machine's backends", showBackendsHere);  // first: it may add checkboxes
  document.querySelector(`input[name=form][value=${state.form === "model" ? "model" : "synthetic"}]`).checked = true;
  const wanted = state.backends.split(",");
  for (const b of document.querySelectorAll("input[name=backends]")) b.checked = wanted.includes(b.value);
  view.restore();
  if (state.text) $("text").value = state.text;
  const info = await withLoading("Loading models", () => setupModelSelect($("model"), $("backend"), state.model,
                                                                       state.backend));
  const params = new URLSearchParams(window.location.search);
  if (info) {
    await followCards({ select: $("model"), info, text: $("text"), page: "backends", wanted: params.get("model") || "",
                        hadText: params.has("text") });
  }
  $("controls").addEventListener("submit", (ev) => { ev.preventDefault(); withLoading("Measuring (up to the server's time budget)", run); });
  $("export-bench-json").addEventListener("click", () => result && downloadJSON(
    fileName({ model: result.form === "model" ? $("model").value : "synthetic", view: "benchmark" }, "json"), result.results));
  for (const radio of document.querySelectorAll("input[name=form]")) radio.addEventListener("change", enableForForm);
  enableForForm();
  const named = params.has("form");
  await withLoading("Loading the last measured results", async () => {
    await latest();
    if (!named && result.form === "synthetic") setControls(result.request); // the controls say what is shown
  });
}

main();
