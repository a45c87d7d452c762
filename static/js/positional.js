// Positional encodings: the chosen scheme's figures (matrix, RoPE rotations, ALiBi biases,
// T5 buckets), similarity vs offset for every scheme, and the extrapolation curve when the
// lab has produced it. All figures are built by the server (app/web/figures.py); the schemes, their
// labels and summaries come from GET /api/positional (models/positional.py). Only the latest
// scheme's figures are drawn: a newer choice refuses the older's replies.
import { api } from "./api.js";
import { initChrome } from "./chrome.js";
import { downloadJSON, fileName } from "./export.js";
import { Latest } from "./latest.js";
import { plotFigure } from "./plots.js";
import { bindState } from "./state.js";
import { withLoading } from "./status.js";
import { initLong } from "./positional-long.js";
import { initTrained } from "./positional-trained.js";

const $ = (id) => document.getElementById(id);
const view = bindState({ scheme: "sinusoidal", d_model: 64, max_len: 128, n_heads: 8,
                         trained: { value: "minilm", el: "trained-source" },
                         // the side-by-side of two extrapolation decoders (positional-long.js); "" = its default
                         pair_left: { value: "", el: "pair-left" }, pair_right: { value: "", el: "pair-right" },
                         pair_layer: { value: "", el: "pair-layer" }, pair_head: { value: "", el: "pair-head" } });
let shown = null;
const selection = new Latest(); // the latest scheme and sizes

let schemes = {}; // name -> {label, summary, paper}, from GET /api/positional

function params() {
  return new URLSearchParams({ d_model: $("d_model").value, max_len: $("max_len").value, n_heads: $("n_heads").value });
}

function show() {
  return selection.run(showScheme);
}

/** Sizes the chosen scheme does not use are disabled (their values are kept for the others). */
function enableForScheme() {
  const uses = schemes[$("scheme").value]?.parameters || ["d_model", "max_len", "n_heads"];
  for (const id of ["d_model", "max_len", "n_heads"]) {
    $(id).disabled = !uses.includes(id);
    $(id).title = uses.includes(id) ? "" : `${schemes[$("scheme").value]?.label || "this scheme"} does not use it`;
  }
}

async function showScheme(signal) {
  view.save();
  enableForScheme();
  shown = null; // a failed Show exports nothing rather than the scheme before
  $("scheme-figures").replaceChildren();
  $("scheme-note").textContent = schemes[$("scheme").value]?.summary || "";
  const query = params();
  query.set("format", "figure");
  shown = await api(`/api/positional/${encodeURIComponent($("scheme").value)}?${query}`, { signal });
  const box = $("scheme-figures");
  box.replaceChildren();
  const names = Object.keys(shown.figures);
  if (!names.length) {
    const p = document.createElement("p");
    p.className = "note";
    p.textContent = "This scheme has nothing to draw: it adds no vector, rotation or bias.";
    box.appendChild(p);
  }
  for (const name of names) {
    const div = document.createElement("div");
    div.className = "chart";
    div.dataset.figure = name;
    box.appendChild(div);
    await plotFigure(div, shown.figures[name], `${shown.scheme}-${name}`);
    signal.throwIfAborted();
  }
  const similarity = await api(`/api/figures/similarity?${params()}`, { signal });
  const skipped = Object.entries(similarity.skipped || {}).map(([name, why]) => `${name} is not shown: ${why}.`);
  $("similarity-skipped").textContent = skipped.join(" ");
  $("similarity-definition").textContent = similarity.definition;
  await plotFigure($("similarity"), similarity.figure, "similarity-vs-offset");
}

async function extrapolation() {
  const answer = await api("/api/figures/extrapolation");
  if (!answer.available) {
    $("extrapolation-note").textContent = answer.reason;
    $("extrapolation").hidden = true;
    return;
  }
  $("extrapolation").hidden = false;
  $("extrapolation-note").textContent = "Perplexity on texts up to 8× the training length, per positional scheme (the extrapolation lab).";
  await plotFigure($("extrapolation"), answer.figure, "extrapolation");
}

// the data the figures were drawn from: the answer without its figures
function withoutFigures(answer) {
  const { figures, ...data } = answer;
  return data;
}

async function loadSchemes() {
  const list = await api("/api/positional");
  const select = $("scheme");
  select.replaceChildren();
  for (const scheme of list) {
    schemes[scheme.name] = scheme;
    const option = document.createElement("option");
    option.value = scheme.name;
    option.textContent = scheme.label;
    if (scheme.paper) option.title = scheme.paper;
    select.appendChild(option);
  }
}

async function main() {
  initChrome();
  await loadSchemes(); // the select's options first, so restoring the scheme finds its option
  view.restore();
  $("controls").addEventListener("submit", (ev) => { ev.preventDefault(); withLoading("Computing", show); });
  $("scheme").addEventListener("change", () => withLoading("Computing", show));
  enableForScheme();
  $("export-scheme-json").addEventListener("click", () => shown && downloadJSON(
    fileName({ model: "positional", view: shown.scheme }, "json"), withoutFigures(shown)));
  await withLoading("Computing", show);
  // every section starts now (a start clears the page's error line): none clears an error a later click shows
  const long = withLoading("Running the long text on each scheme", () => initLong(view));
  await withLoading("Loading extrapolation results", extrapolation);
  await initTrained(() => view.save());
  await long;
}

main();
