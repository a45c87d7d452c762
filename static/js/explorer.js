// Explorer: the model view (layers x heads grid of pooled thumbnails, loaded lazily) and,
// on a click, the head view (a large heatmap with token labels and a BertViz-style line
// view). Long inputs show a pooled overview; a box-zoom or drag fetches the exact block of
// the visible range from /api/runs/{id}/attention as float16.
import {
  api, apiBinary, ApiError, baseLayout, downloadJSON, downloadNPY, fillSelect, heatmapTrace, initChrome,
  onArrowKeys, plot, readState, setupModelSelect, showToken, toRows, tokenAxis, viridis, withLoading, writeState,
} from "./common.js";

const THUMB = 48; // pooled thumbnail side, in cells and canvas pixels
const EXACT_CELLS = 512 * 512; // largest block drawn exactly in the head view
const OVERVIEW = 512; // pooled overview side for long inputs
const LINE_VIEW_MAX = 160; // tokens; past this the line view is unreadable

const $ = (id) => document.getElementById(id);
const state = readState({ model: "minilm", text: "", text_pair: "", backend: "", kind: "", layer: -1, head: -1,
                          colour: "" });
let run = null; // the POST /api/runs answer
let headData = null; // what the head view shows: {z, rows, cols, factor, rowTokens, colTokens}
let thumbObserver = null;

function kindTokens(kind) {
  const target = run.target_tokens || run.tokens;
  if (kind === "decoder") return [target, target];
  if (kind === "cross") return [target, run.tokens];
  return [run.tokens, run.tokens];
}

function saveState() {
  writeState({
    model: $("model").value, text: $("text").value, text_pair: $("text_pair").value, backend: $("backend").value,
    kind: run ? $("kind").value : state.kind, layer: state.layer, head: state.head, colour: $("colour-by").value,
  });
}

async function createRun() {
  const body = { model: $("model").value, text: $("text").value, backend: $("backend").value || null };
  if ($("text_pair").value.trim()) body.text_pair = $("text_pair").value;
  return api("/api/runs", { method: "POST", body });
}

/** A tile request; a run evicted from the server's cache is recreated (same id) once. */
async function tile(params) {
  const query = new URLSearchParams({ kind: $("kind").value, format: "f16", ...params });
  try {
    return await apiBinary(`/api/runs/${run.run_id}/attention?${query}`);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
    run = await createRun();
    return apiBinary(`/api/runs/${run.run_id}/attention?${query}`);
  }
}

// ---------------------------------------------------------------- model view

function drawThumb(canvas, t) {
  const [rows, cols] = t.shape;
  canvas.width = cols;
  canvas.height = rows;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(cols, rows);
  let max = 0;
  for (const v of t.data) if (v > max) max = v;
  for (let i = 0; i < t.data.length; i++) {
    // square root: a sink or the diagonal (weight ~1) would otherwise leave the rest black
    const [r, g, b] = viridis(max > 0 ? Math.sqrt(t.data[i] / max) : 0);
    image.data.set([r, g, b, 255], i * 4);
  }
  ctx.putImageData(image, 0, 0);
  canvas.dataset.loaded = "1";
}

function buildGrid() {
  const grid = $("grid");
  grid.replaceChildren();
  if (thumbObserver) thumbObserver.disconnect();
  const kind = $("kind").value;
  const nLayers = run.layers_by_kind[kind];
  const nHeads = run.n_heads;
  grid.style.setProperty("--heads", String(nHeads));
  const corner = document.createElement("span");
  corner.className = "axis";
  grid.appendChild(corner);
  for (let h = 0; h < nHeads; h++) {
    const label = document.createElement("span");
    label.className = "axis";
    label.textContent = `H${h}`;
    grid.appendChild(label);
  }
  thumbObserver = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      thumbObserver.unobserve(entry.target);
      loadThumb(entry.target);
    }
  }, { rootMargin: "200px" });
  for (let l = 0; l < nLayers; l++) {
    const label = document.createElement("span");
    label.className = "axis";
    label.textContent = `L${l}`;
    grid.appendChild(label);
    for (let h = 0; h < nHeads; h++) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "thumb";
      button.dataset.layer = String(l);
      button.dataset.head = String(h);
      button.setAttribute("aria-label", `layer ${l} head ${h}`);
      button.title = `layer ${l}, head ${h}`;
      const canvas = document.createElement("canvas");
      canvas.width = THUMB;
      canvas.height = THUMB;
      button.appendChild(canvas);
      const score = document.createElement("span");
      score.className = "score";
      button.appendChild(score);
      button.addEventListener("click", () => openHead(l, h));
      grid.appendChild(button);
      thumbObserver.observe(button);
    }
  }
  colourGrid();
}

const queue = [];
let active = 0;
function loadThumb(button) {
  queue.push(button);
  pump();
}
function pump() {
  while (active < 6 && queue.length) {
    const button = queue.shift();
    active += 1;
    const { layer, head } = button.dataset;
    tile({ layer, head, pool: String(THUMB) })
      .then((t) => drawThumb(button.querySelector("canvas"), t))
      .catch((err) => { button.classList.add("failed"); button.title = err.message; })
      .finally(() => { active -= 1; pump(); });
  }
}

function colourGrid() {
  const detector = $("colour-by").value;
  const scores = run && run.head_stats && run.head_stats[$("kind").value];
  const table = detector && scores ? scores[detector] : null;
  let lo = Infinity;
  let hi = -Infinity;
  if (table) for (const row of table) for (const v of row) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
  for (const button of document.querySelectorAll("#grid .thumb")) {
    const label = button.querySelector(".score");
    if (!table) {
      button.style.removeProperty("--tint");
      button.classList.remove("tinted");
      label.textContent = "";
      continue;
    }
    const v = table[Number(button.dataset.layer)][Number(button.dataset.head)];
    const [r, g, b] = viridis(hi > lo ? (v - lo) / (hi - lo) : 0);
    button.style.setProperty("--tint", `rgb(${r}, ${g}, ${b})`);
    button.classList.add("tinted");
    label.textContent = v.toFixed(2);
    button.title = `layer ${button.dataset.layer}, head ${button.dataset.head}: ${detector} ${v.toFixed(3)}`;
  }
}

// ---------------------------------------------------------------- head view

async function openHead(layer, head) {
  state.layer = layer;
  state.head = head;
  saveState();
  for (const b of document.querySelectorAll("#grid .thumb")) {
    const on = Number(b.dataset.layer) === layer && Number(b.dataset.head) === head;
    b.classList.toggle("selected", on);
    b.setAttribute("aria-selected", on ? "true" : "false");
    if (on && document.activeElement && document.activeElement.classList.contains("thumb")) b.focus();
  }
  $("head-view-panel").hidden = false;
  $("head-title").textContent = `Head view: ${$("kind").value} layer ${layer}, head ${head}`;
  await withLoading("Loading head", () => showRange(null));
}

/** Fetch what the range shows: exact when small enough, else a pooled overview of the range. */
async function showRange(range) {
  const [rowTokens, colTokens] = kindTokens($("kind").value);
  const nRows = rowTokens.length;
  const nCols = colTokens.length;
  const r = range ? range.rows : [0, nRows];
  const c = range ? range.cols : [0, nCols];
  const exact = (r[1] - r[0]) * (c[1] - c[0]) <= EXACT_CELLS;
  const params = { layer: String(state.layer), head: String(state.head), rows: `${r[0]}:${r[1]}`, cols: `${c[0]}:${c[1]}` };
  if (!exact) params.pool = String(OVERVIEW);
  const t = await tile(params);
  const [h, w] = t.shape;
  const factor = t.meta.factor || 1;
  headData = {
    z: toRows(t.data, h, w), rows: r, cols: c, factor, layer: state.layer, head: state.head, kind: $("kind").value,
    rowTokens: factor === 1 ? rowTokens.slice(r[0], r[1]) : null,
    colTokens: factor === 1 ? colTokens.slice(c[0], c[1]) : null,
  };
  await drawHeatmap(range);
  const note = factor === 1
    ? (range ? `exact block rows ${r[0]}:${r[1]}, cols ${c[0]}:${c[1]}` : "exact map")
    : `pooled overview (max of ${factor}\u00d7${factor} blocks): box-zoom to fetch exact weights`;
  $("zoom-note").textContent = note;
  if (!range) drawLines();
}

let relayoutTimer = null;
async function drawHeatmap(range) {
  const el = $("heatmap");
  const d = headData;
  const off = (d.factor - 1) / 2; // a pooled cell is centred on the block it covers
  const trace = heatmapTrace(d.z, {
    x0: d.cols[0] + off, y0: d.rows[0] + off, dx: d.factor, dy: d.factor, rowTokens: d.rowTokens, colTokens: d.colTokens,
  });
  const layout = baseLayout({
    height: 620, uirevision: `${run.run_id}/${d.kind}/${d.layer}/${d.head}`,
    xaxis: { title: { text: "key" }, tickangle: -60, ...(d.colTokens ? tokenAxis(d.colTokens, d.cols[0]) : {}) },
    yaxis: { title: { text: "query" }, autorange: "reversed", ...(d.rowTokens ? tokenAxis(d.rowTokens, d.rows[0]) : {}) },
  });
  if (range) {
    layout.xaxis.range = range.xrange;
    layout.yaxis.range = range.yrange;
    layout.yaxis.autorange = false;
  }
  await plot(el, [trace], layout, `L${d.layer}H${d.head}`);
  if (!el.dataset.bound) {
    el.dataset.bound = "1";
    el.on("plotly_relayout", (ev) => {
      clearTimeout(relayoutTimer);
      relayoutTimer = setTimeout(() => onRelayout(ev), 150);
    });
  }
}

function onRelayout(ev) {
  if (!run || !headData) return;
  const [rowTokens, colTokens] = kindTokens($("kind").value);
  if (ev["xaxis.autorange"] || ev["yaxis.autorange"]) {
    if (headData.rows[0] !== 0 || headData.cols[0] !== 0 || headData.rows[1] !== rowTokens.length
        || headData.cols[1] !== colTokens.length) withLoading("Loading overview", () => showRange(null));
    return;
  }
  const x = [ev["xaxis.range[0]"], ev["xaxis.range[1]"]];
  const y = [ev["yaxis.range[0]"], ev["yaxis.range[1]"]];
  if (x[0] === undefined && Array.isArray(ev["xaxis.range"])) x.splice(0, 2, ...ev["xaxis.range"]);
  if (y[0] === undefined && Array.isArray(ev["yaxis.range"])) y.splice(0, 2, ...ev["yaxis.range"]);
  const gd = $("heatmap");
  const xr = x[0] !== undefined ? x : gd.layout.xaxis.range;
  const yr = y[0] !== undefined ? y : gd.layout.yaxis.range;
  if (!xr || !yr) return;
  const clamp = (v, n) => Math.max(0, Math.min(n, v));
  const cols = [clamp(Math.floor(Math.min(...xr) + 0.5), colTokens.length), clamp(Math.ceil(Math.max(...xr) + 0.5), colTokens.length)];
  const rows = [clamp(Math.floor(Math.min(...yr) + 0.5), rowTokens.length), clamp(Math.ceil(Math.max(...yr) + 0.5), rowTokens.length)];
  if (rows[1] <= rows[0] || cols[1] <= cols[0]) return;
  // already showing this block exactly: nothing to fetch
  if (headData.factor === 1 && rows[0] >= headData.rows[0] && rows[1] <= headData.rows[1]
      && cols[0] >= headData.cols[0] && cols[1] <= headData.cols[1]) return;
  withLoading("Fetching exact block", () => showRange({ rows, cols, xrange: xr, yrange: yr }));
}

function svg(tag, attrs = {}) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** BertViz-style lines: query tokens on the left, keys on the right, opacity = weight. */
function drawLines() {
  const box = $("lines");
  box.replaceChildren();
  const d = headData;
  if (!d.rowTokens || d.rowTokens.length > LINE_VIEW_MAX || d.colTokens.length > LINE_VIEW_MAX) {
    const p = document.createElement("p");
    p.className = "note";
    p.textContent = `The line view shows inputs of up to ${LINE_VIEW_MAX} tokens; use the heatmap (zoom for detail).`;
    box.appendChild(p);
    return;
  }
  const rowH = 18;
  const height = Math.max(d.rowTokens.length, d.colTokens.length) * rowH + 10;
  const width = 480;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "line-view", role: "img",
                            "aria-label": "attention lines" });
  const lines = svg("g");
  const left = svg("g");
  const right = svg("g");
  root.append(lines, left, right);
  const all = [];
  d.z.forEach((row, i) => row.forEach((w, j) => {
    if (w < 0.01) return;
    const line = svg("line", { x1: 150, y1: 12 + i * rowH, x2: width - 150, y2: 12 + j * rowH,
                               "stroke-opacity": Math.min(1, w).toFixed(3), class: "att" });
    line.dataset.q = String(i);
    line.dataset.k = String(j);
    lines.appendChild(line);
    all.push(line);
  }));
  const highlight = (attr, index) => {
    for (const line of all) line.classList.toggle("dim", index !== null && line.dataset[attr] !== String(index));
    for (const t of root.querySelectorAll("text")) {
      t.classList.toggle("active", index !== null && t.dataset.side === attr && t.dataset.index === String(index));
    }
  };
  const label = (group, tokens, x, anchor, side) => tokens.forEach((tok, i) => {
    const text = svg("text", { x, y: 16 + i * rowH, "text-anchor": anchor, class: "tok", tabindex: 0 });
    text.textContent = showToken(tok); // text only: a token is never parsed as markup
    text.dataset.side = side;
    text.dataset.index = String(i);
    text.addEventListener("mouseenter", () => highlight(side, i));
    text.addEventListener("focus", () => highlight(side, i));
    text.addEventListener("mouseleave", () => highlight(side, null));
    text.addEventListener("blur", () => highlight(side, null));
    group.appendChild(text);
  });
  label(left, d.rowTokens, 142, "end", "q");
  label(right, d.colTokens, width - 142, "start", "k");
  box.appendChild(root);
}

// ---------------------------------------------------------------- wiring

async function go() {
  saveState();
  run = await createRun();
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
    saveState();
  }
}

async function main() {
  initChrome();
  $("text").value = state.text || $("text").value;
  $("text_pair").value = state.text_pair;
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
    state.layer = -1;
    state.head = -1;
    $("head-view-panel").hidden = true;
    saveState();
    buildGrid();
  });
  $("colour-by").addEventListener("change", () => { colourGrid(); saveState(); });
  $("long-demo").addEventListener("click", () => {
    const paragraph = "Attention lets every token look at every other token; a long context shows a pooled overview first. ";
    $("text").value = paragraph.repeat(120);
  });
  $("export-head-npy").addEventListener("click", () => headData && downloadNPY(
    `attention-${headData.kind}-L${headData.layer}H${headData.head}.npy`, headData.z));
  $("export-head-json").addEventListener("click", () => headData && downloadJSON(
    `attention-${headData.kind}-L${headData.layer}H${headData.head}.json`,
    { model: run.model, run_id: run.run_id, ...headData }));
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
