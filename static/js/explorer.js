// Explorer: the model view (layers x heads grid of pooled thumbnails, loaded lazily) and,
// on a click, the head view (a large heatmap with token labels and a BertViz-style line
// view). Long inputs show a pooled overview; a box-zoom or drag fetches the exact block of
// the visible range from /api/runs/{id}/attention as float16. Every fetch for the head view
// goes through one Latest (a newer head or zoom refuses an older reply), and what the head
// view shows and exports (weights, labels, layer, head) is taken from one reply.
import {
  api, apiBinary, ApiError, baseLayout, downloadJSON, downloadNPY, fillSelect, heatmapTrace, initChrome,
  onArrowKeys, plot, rawLiteral, rawTexts, readState, setupModelSelect, showToken, toRows, viridis,
  withLoading, writeState,
} from "./common.js";
import { isAbort, Latest } from "./latest.js";
import { colourScale, SCALES, scaleName, withoutSpecialKeys } from "./scale.js";

const THUMB = 48; // pooled thumbnail side, in cells and canvas pixels
const EXACT_CELLS = 512 * 512; // largest block drawn exactly in the head view
const OVERVIEW = 512; // pooled overview side for long inputs
const LINE_VIEW_MAX = 160; // tokens; past this the line view is unreadable

const $ = (id) => document.getElementById(id);
const state = readState({ model: "minilm", text: "", text_pair: "", backend: "", kind: "", layer: -1, head: -1,
                          colour: "", scale: "linear", exclude_special: false });
let run = null; // the POST /api/runs answer
let headData = null; // what the head view shows, all from one tile reply: {z, rows, cols, factor, tokens, ...}
let thumbObserver = null;
const runs = new Latest(); // POST /api/runs of the latest submit
const headView = new Latest(); // the head view's tile: the latest head, kind or zoom
let thumbs = new AbortController(); // the thumbnails of the grid shown

function kindTokens(kind) {
  const target = run.target_tokens || run.tokens;
  if (kind === "decoder") return [target, target];
  if (kind === "cross") return [target, run.tokens];
  return [run.tokens, run.tokens];
}

/** Special flags of the rows and columns of a kind ([CLS], [SEP], <|endoftext|>...). */
function kindSpecial(kind) {
  const source = run.special || [];
  const target = run.target_tokens ? run.target_special || [] : source;
  if (kind === "decoder") return [target, target];
  if (kind === "cross") return [target, source];
  return [source, source];
}

/** Raw text of the rows and columns of a kind (hover): the slices the answer's offsets name. */
function kindRaw(kind) {
  const source = rawTexts(run, run.texts);
  const target = run.target_tokens ? rawTexts(run, [run.target_text], "target_") : source;
  if (kind === "decoder") return [target, target];
  if (kind === "cross") return [target, source];
  return [source, source];
}

function saveState() {
  writeState({
    model: $("model").value, text: $("text").value, text_pair: $("text_pair").value, backend: $("backend").value,
    kind: run ? $("kind").value : state.kind, layer: state.layer, head: state.head, colour: $("colour-by").value,
    scale: $("scale").value, exclude_special: $("exclude-special").checked,
  });
}

async function createRun(signal) {
  const body = { model: $("model").value, text: $("text").value, backend: $("backend").value || null };
  if ($("text_pair").value.trim()) body.text_pair = $("text_pair").value;
  const answer = await api("/api/runs", { method: "POST", body, signal });
  answer.texts = [body.text, body.text_pair ?? null]; // what the offsets index, kept with the answer
  return answer;
}

/** A tile request; a run evicted from the server's cache is recreated (same id) once. */
async function tile(params, signal) {
  const query = new URLSearchParams({ kind: $("kind").value, format: "f16", ...params });
  try {
    return await apiBinary(`/api/runs/${run.run_id}/attention?${query}`, { signal });
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404) throw err;
    run = await createRun(signal);
    return apiBinary(`/api/runs/${run.run_id}/attention?${query}`, { signal });
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
  // the thumbnails of an earlier grid are not fetched or drawn any more
  thumbs.abort();
  thumbs = new AbortController();
  queue.length = 0;
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
    const { signal } = thumbs;
    tile({ layer, head, pool: String(THUMB) }, signal)
      .then((t) => { if (!signal.aborted) drawThumb(button.querySelector("canvas"), t); })
      .catch((err) => { if (!isAbort(err)) { button.classList.add("failed"); button.title = err.message; } })
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

/** Fetch what the range shows: exact when small enough, else a pooled overview of the range.
 *  Labels, raw texts and special flags are taken for the rows and columns the reply covers. */
async function showRange(range) {
  const kind = $("kind").value;
  const [rowTokens, colTokens] = kindTokens(kind);
  const r = range ? range.rows : [0, rowTokens.length];
  const c = range ? range.cols : [0, colTokens.length];
  const exact = (r[1] - r[0]) * (c[1] - c[0]) <= EXACT_CELLS;
  const params = { kind, layer: String(state.layer), head: String(state.head), rows: `${r[0]}:${r[1]}`, cols: `${c[0]}:${c[1]}` };
  if (!exact) params.pool = String(OVERVIEW);
  const t = await headView.run((signal) => tile(params, signal)); // refused if a newer head or zoom came since
  headData = headFromReply(t, params);
  shownRange = range;
  const d = headData;
  $("zoom-note").textContent = d.factor === 1
    ? (range ? `exact block rows ${d.rows[0]}:${d.rows[1]}, cols ${d.cols[0]}:${d.cols[1]}` : "exact map")
    : `pooled overview (max of ${d.factor}\u00d7${d.factor} blocks): box-zoom to fetch exact weights`;
  if (!range) drawLines();
  await drawHeatmap(range);
}

/** What the head view shows and exports, all from one tile reply (its meta names the kind, layer,
 *  head and range it holds) and the run it was asked of. */
function headFromReply(t, params) {
  const m = t.meta || {};
  const kind = m.kind || params.kind;
  const [h, w] = t.shape;
  const rows = m.rows || params.rows.split(":").map(Number);
  const cols = m.cols || params.cols.split(":").map(Number);
  const factor = m.factor || 1;
  const exact = factor === 1;
  const [rowTokens, colTokens] = kindTokens(kind);
  const [rowRaw, colRaw] = kindRaw(kind);
  const [rowSpecial, colSpecial] = kindSpecial(kind);
  const slice = (list, [a, b]) => (exact && list ? list.slice(a, b) : null);
  return {
    model: run.model, run_id: m.run_id || run.run_id, kind, layer: m.layer ?? Number(params.layer),
    head: m.head ?? Number(params.head), rows, cols, factor,
    rowTokens: m.row_tokens || slice(rowTokens, rows), // the reply's own labels (exact tiles carry them)
    colTokens: m.col_tokens || slice(colTokens, cols),
    rowRaw: slice(rowRaw, rows), colRaw: slice(colRaw, cols),
    rowSpecial: slice(rowSpecial, rows), colSpecial: slice(colSpecial, cols),
    z: toRows(t.data, h, w),
  };
}

/** The weights as shown, with the scale control and the exclude-specials toggle applied. */
function shownWeights(d) {
  const drop = $("exclude-special").checked && d.factor === 1 && d.colSpecial && d.colSpecial.some(Boolean);
  const weights = drop ? withoutSpecialKeys(d.z, d.colSpecial) : d.z;
  const what = drop ? "weight without special keys, rows renormalised" : "weight";
  return { weights, scale: colourScale($("scale").value, weights, what) };
}

let shownRange = null; // the zoom the head view was fetched for (null: the whole map)
let relayoutTimer = null;
function drawHeatmap(range) {
  const el = $("heatmap");
  const d = headData;
  const { weights, scale } = shownWeights(d);
  const trace = heatmapTrace(weights, {
    rows: d.rows, cols: d.cols, block: d.factor, rowTokens: d.rowTokens, colTokens: d.colTokens,
    rowRaw: d.rowRaw, colRaw: d.colRaw, scale, note: d.factor === 1 ? "" : ` (max of ${d.factor}\u00d7${d.factor})`,
  });
  const layout = baseLayout({
    height: 620, uirevision: `${d.run_id}/${d.kind}/${d.layer}/${d.head}`,
    xaxis: { title: { text: "key" } },
    yaxis: { title: { text: "query" }, autorange: "reversed" },
  });
  if (range) {
    layout.xaxis.range = range.xrange;
    layout.yaxis.range = range.yrange;
    layout.yaxis.autorange = false;
  }
  const tokenAxes = d.factor === 1
    ? { xaxis: { tokens: d.colTokens, offset: d.cols[0] }, yaxis: { tokens: d.rowTokens, offset: d.rows[0] } } : null;
  const drawn = plot(el, [trace], layout, `L${d.layer}H${d.head}`, { tokenAxes });
  if (!el.dataset.bound) {
    drawn.then(() => {
      if (el.dataset.bound) return;
      el.dataset.bound = "1";
      el.on("plotly_relayout", (ev) => {
        clearTimeout(relayoutTimer);
        relayoutTimer = setTimeout(() => onRelayout(ev), 150);
      });
    });
  }
  return drawn;
}

function onRelayout(ev) {
  if (!run || !headData) return;
  // only a zoom, pan or reset moves the range (tick labels and font size do not)
  if (!Object.keys(ev).some((k) => /^[xy]axis\.(range|autorange)/.test(k))) return;
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

/** BertViz-style lines: query tokens on the left, keys on the right, opacity = the weight on
 *  the heatmap's colour scale. */
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
  const rowH = document.body.classList.contains("large") ? 24 : 18; // a row per label at its font size
  const height = Math.max(d.rowTokens.length, d.colTokens.length) * rowH + 10;
  const width = 480;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "line-view", role: "img",
                            "aria-label": "attention lines" });
  const lines = svg("g");
  const left = svg("g");
  const right = svg("g");
  root.append(lines, left, right);
  const all = [];
  // opacity follows the heatmap's colour scale (and drops special keys with it)
  const { weights, scale } = shownWeights(d);
  weights.forEach((row, i) => row.forEach((w, j) => {
    if (w === null) return;
    const level = scale.level(w);
    if (level < 0.02) return; // too faint to see: not drawn
    const line = svg("line", { x1: 150, y1: 12 + i * rowH, x2: width - 150, y2: 12 + j * rowH,
                               "stroke-opacity": level.toFixed(3), class: "att" });
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
  const label = (group, tokens, raw, x, anchor, side) => tokens.forEach((tok, i) => {
    const text = svg("text", { x, y: 16 + i * rowH, "text-anchor": anchor, class: "tok", tabindex: 0 });
    text.textContent = showToken(tok); // text only: a token is never parsed as markup
    // hover: position, label and the raw text the token came from (a <title> beside the text,
    // in one group, so the text element holds the label alone)
    const title = svg("title");
    const first = side === "q" ? d.rows[0] : d.cols[0];
    title.textContent = `${first + i}: ${tok}${raw && raw[i] !== null ? ` ${rawLiteral(raw[i])}` : ""}`;
    const item = svg("g");
    item.append(title, text);
    text.dataset.side = side;
    text.dataset.index = String(i);
    text.addEventListener("mouseenter", () => highlight(side, i));
    text.addEventListener("focus", () => highlight(side, i));
    text.addEventListener("mouseleave", () => highlight(side, null));
    text.addEventListener("blur", () => highlight(side, null));
    group.appendChild(item);
  });
  label(left, d.rowTokens, d.rowRaw, 142, "end", "q");
  label(right, d.colTokens, d.colRaw, width - 142, "start", "k");
  box.appendChild(root);
}

// ---------------------------------------------------------------- wiring

async function go() {
  saveState();
  headView.cancel(); // a head of the previous run is not drawn any more
  run = await runs.run((signal) => createRun(signal));
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
  fillSelect($("scale"), Object.keys(SCALES), Object.values(SCALES), scaleName(state.scale));
  $("exclude-special").checked = state.exclude_special;
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
    headView.cancel();
    state.layer = -1;
    state.head = -1;
    $("head-view-panel").hidden = true;
    saveState();
    buildGrid();
  });
  $("colour-by").addEventListener("change", () => { colourGrid(); saveState(); });
  const redraw = () => {
    saveState();
    if (!headData) return;
    if (!shownRange) drawLines();
    drawHeatmap(shownRange);
  };
  $("scale").addEventListener("change", redraw);
  $("exclude-special").addEventListener("change", redraw);
  document.addEventListener("fontsizechange", () => { if (headData && !shownRange) drawLines(); });
  $("long-demo").addEventListener("click", () => {
    const paragraph = "Attention lets every token look at every other token; a long context shows a pooled overview first. ";
    $("text").value = paragraph.repeat(120);
  });
  $("export-head-npy").addEventListener("click", () => headData && downloadNPY(
    `attention-${headData.kind}-L${headData.layer}H${headData.head}.npy`, headData.z));
  $("export-head-json").addEventListener("click", () => headData && downloadJSON(
    `attention-${headData.kind}-L${headData.layer}H${headData.head}.json`, headData)); // weights and labels of one reply
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
