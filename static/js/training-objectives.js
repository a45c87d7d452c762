// Training page, the two objectives: a fill-mask box for a masked LM (its top guesses and the mask
// token's attention, mean over heads, from the run's capture) and the causal vs masked LM on one
// text (what each predicts at every token, and from which context at one token). Tokens reach the
// DOM as text and Plotly labels through escapeLabel.
import { api, ApiError } from "./api.js";
import { fillSelect, listModels } from "./forms.js";
import { escapeLabel, showToken } from "./labels.js";
import { Latest } from "./latest.js";
import { baseLayout, plot } from "./plots.js";
import { withLoading } from "./status.js";

const $ = (id) => document.getElementById(id);
const fillLatest = new Latest();
const objLatest = new Latest();
let filled = null; // the last fill-mask answer
let compared = null; // the last objectives answer

function tokenAxis(tokens) {
  return { tickmode: "array", tickvals: tokens.map((_, i) => i), ticktext: tokens.map((t) => escapeLabel(showToken(t))),
           tickangle: -45 };
}

function bars(tokens, weights, highlight, title) {
  return [[{ type: "bar", x: tokens.map((_, i) => i), y: weights,
             marker: { color: tokens.map((_, i) => (i === highlight ? "#D55E00" : "#0072B2")) },
             hovertext: tokens.map((t, i) => `${escapeLabel(t)}: ${weights[i].toFixed(3)}`), hoverinfo: "text" }],
          baseLayout({ title: { text: title }, height: 320, xaxis: tokenAxis(tokens),
                       yaxis: { title: { text: "attention" }, range: [0, 1] } })];
}

function guessList(ol, guesses) {
  ol.replaceChildren(...guesses.map((g) => {
    const li = document.createElement("li");
    li.textContent = `${g.token}  ${(100 * g.prob).toFixed(1)}%`;
    return li;
  }));
}

// ----------------------------------------------------------------------------- fill-mask

async function maskRow(signal, layer, heads) {
  const { position } = filled.masks[0];
  const rows = [];
  for (let head = 0; head < heads; head += 1) {
    const query = new URLSearchParams({ layer, head, rows: `${position}:${position + 1}` });
    const get = () => api(`/api/runs/${filled.run_id}/attention?${query}`, { signal });
    let tile;
    try {
      tile = await get();
    } catch (err) { // evicted or another worker: the same request makes the same run again
      if (!(err instanceof ApiError) || err.status !== 404) throw err;
      await api("/api/fill-mask", { method: "POST", body: filled.request, signal });
      tile = await get();
    }
    rows.push(tile.attention[0]);
  }
  return rows[0].map((_, j) => rows.reduce((s, r) => s + r[j], 0) / rows.length);
}

async function drawMask(signal) {
  if (!filled || !filled.masks.length) return;
  const layer = Number($("fill-layer").value);
  const row = await maskRow(signal, layer, filled.n_heads);
  signal.throwIfAborted();
  await plot($("fill-attention"), ...bars(filled.tokens, row, filled.masks[0].position,
    `the first mask token's attention, layer ${layer}, mean over ${filled.n_heads} heads`), "fill-mask-attention");
}

async function fill(signal, infos) {
  const request = { model: $("fill-model").value, text: $("fill-text").value, k: Number($("fill-k").value) };
  const answer = await api("/api/fill-mask", { method: "POST", body: request, signal });
  signal.throwIfAborted();
  const info = infos.find((m) => m.id === answer.model);
  filled = { ...answer, request, n_heads: info.n_heads };
  const box = $("fill-results");
  box.replaceChildren(...answer.masks.map((m, i) => {
    const div = document.createElement("div");
    const h = document.createElement("h3");
    h.textContent = `mask ${i + 1} (token ${m.position})`;
    const ol = document.createElement("ol");
    ol.className = "guesses";
    guessList(ol, m.top);
    div.append(h, ol);
    return div;
  }));
  const layer = $("fill-layer").options.length ? Number($("fill-layer").value) : info.n_layers - 1;
  fillSelect($("fill-layer"), [...Array(info.n_layers).keys()], null, Math.min(layer, info.n_layers - 1));
  await drawMask(signal);
}

// ----------------------------------------------------------------------------- CLM vs MLM

function tableRow(i, token, clm, mlm, position) {
  const tr = document.createElement("tr");
  if (i === position) tr.className = "selected";
  const cells = [String(i), token, clm ? `${(100 * clm.prob).toFixed(1)}%` : "—", clm ? clm.top : "(no context)",
                 mlm ? `${(100 * mlm.prob).toFixed(1)}%` : "—", mlm ? mlm.top : "—"];
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }
  tr.dataset.position = String(i);
  return tr;
}

async function drawObjectives() {
  const a = compared;
  const layer = Number($("obj-layer").value);
  $("obj-clm-model").textContent = a.clm_model;
  $("obj-mlm-model").textContent = a.mlm_model;
  $("obj-note").textContent = `Token ${a.position} (${a.tokens[a.position]}): the causal model predicts it at query `
    + `${a.clm.query} from tokens 0..${a.position - 1} (p = ${(100 * a.clm.prob).toFixed(1)}%); the masked model `
    + `from every other token, with it masked (p = ${(100 * a.mlm.prob).toFixed(1)}%). Mean loss over the text: `
    + `causal ${a.clm.loss.toFixed(2)}, masked ${a.mlm.loss.toFixed(2)} nats.`;
  guessList($("obj-clm-top"), a.clm.top);
  guessList($("obj-mlm-top"), a.mlm.top);
  await plot($("obj-clm-chart"), ...bars(a.tokens, a.clm.attention[layer], a.clm.query,
    `causal: query ${a.clm.query}, layer ${layer}`), "objective-clm");
  await plot($("obj-mlm-chart"), ...bars(a.tokens, a.mlm.attention[layer], a.mlm.query,
    `masked: query ${a.mlm.query} (masked), layer ${layer}`), "objective-mlm");
  $("obj-table").tBodies[0].replaceChildren(...a.tokens.map(
    (t, i) => tableRow(i, t, a.clm.per_token[i], a.mlm.per_token[i], a.position)));
}

async function compare(signal) {
  const body = { text: $("obj-text").value, position: Number($("obj-position").value) };
  compared = await api("/api/objectives", { method: "POST", body, signal });
  signal.throwIfAborted();
  const layers = compared.clm.attention.length;
  fillSelect($("obj-layer"), [...Array(layers).keys()], null,
             $("obj-layer").options.length ? Math.min(Number($("obj-layer").value), layers - 1) : layers - 1);
  $("obj-position").max = String(compared.tokens.length - 1);
  await drawObjectives();
}

/** Which corpus lm was trained on (its results.json): WikiText-2 where a local cache had it, else Austen. */
async function corpusNote() {
  const checkpoints = await api("/api/training");
  if (!checkpoints.some((c) => c.name === "lm")) return;
  const corpus = ((await api("/api/training/lm")).results || {}).corpus;
  if (corpus) {
    $("corpus-note").textContent = `lm and mlm were trained on ${corpus === "austen" ? "six Jane Austen novels "
      + "(no local WikiText-2 cache when they were trained)" : corpus}`;
  }
}

export async function initObjectives() {
  const infos = await listModels();
  const available = (id) => infos.some((m) => m.id === id && m.available);
  const encoders = infos.filter((m) => m.family === "encoder" && m.available && m.source === "scratch");
  if (!encoders.length) return;
  $("objectives-panel").hidden = false;
  fillSelect($("fill-model"), encoders.map((m) => m.id), null, encoders.some((m) => m.id === "mlm") ? "mlm" : null);
  $("fill-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    withLoading("Filling the mask", () => fillLatest.run((signal) => fill(signal, infos)));
  });
  $("fill-layer").addEventListener("change", () => withLoading("Loading attention", () => fillLatest.run(drawMask)));
  const both = available("lm") && available("mlm");
  $("obj-form").hidden = !both;
  if (both) {
    $("obj-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      withLoading("Comparing objectives", () => objLatest.run(compare));
    });
    $("obj-layer").addEventListener("change", () => compared && drawObjectives());
    $("obj-table").addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr[data-position]");
      if (!tr || tr.dataset.position === "0") return;
      $("obj-position").value = tr.dataset.position;
      withLoading("Comparing objectives", () => objLatest.run(compare));
    });
    await corpusNote();
  } else {
    $("obj-note").textContent = "The causal vs masked comparison needs the zoo's lm and mlm checkpoints.";
  }
  // the section opens with its examples already answered, as every page does (small zoo models: well under a second)
  await withLoading("Filling the mask", () => fillLatest.run((signal) => fill(signal, infos)));
  if (both) await withLoading("Comparing objectives", () => objLatest.run(compare));
}
