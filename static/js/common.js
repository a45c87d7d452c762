// Shared helpers for every page: API calls with errors in words, a loading indicator,
// state in the URL, token-safe labels, float16 decoding, NPY/JSON export, chart defaults.
// Token text only ever reaches the DOM through textContent, and Plotly labels through
// escapeLabel (Plotly renders a subset of HTML in labels). Stale replies: latest.js; token
// tick labels: ticks.js; colour scales: scale.js.
import { fitTokenTicks, labelStep, onlyTicks, tokenTicks } from "./ticks.js";

export const VIRIDIS = "Viridis";

// ---------------------------------------------------------------- status: loading and errors

let pending = 0;
let statusTimer = null;

function statusEl() { return document.getElementById("status"); }

/** Run an async task; show "label…" if it takes longer than 200 ms; errors go to the page. */
export async function withLoading(label, task) {
  pending += 1;
  clearError();
  const timer = setTimeout(() => {
    document.getElementById("status-text").textContent = `${label}…`;
    statusEl().hidden = false;
  }, 200);
  try {
    return await task();
  } catch (err) {
    if (err.name !== "AbortError") showError(err.message || String(err));
    return undefined;
  } finally {
    clearTimeout(timer);
    pending -= 1;
    if (pending === 0) statusEl().hidden = true;
  }
}

export function showError(message) {
  const el = document.getElementById("error");
  el.textContent = message;
  el.hidden = false;
}

export function clearError() {
  const el = document.getElementById("error");
  el.textContent = "";
  el.hidden = true;
}

// ---------------------------------------------------------------- API

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${detail} (HTTP ${status})`);
    this.status = status;
    this.detail = detail;
  }
}

async function errorFrom(response) {
  let detail = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (body && body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (_) { /* not JSON */ }
  return new ApiError(response.status, detail);
}

/** fetch + JSON; a non-2xx answer throws ApiError carrying the server's message. */
export async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, signal, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new Error(`Cannot reach the server (${err.message}). Is attnlab still running?`);
  }
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

/** GET a binary tile: {data: Float32Array, shape, meta} from format=f16 (or u8). */
export async function apiBinary(path, { signal } = {}) {
  const response = await fetch(path, { signal });
  if (!response.ok) throw await errorFrom(response);
  const buffer = await response.arrayBuffer();
  const shape = (response.headers.get("X-Shape") || "").split(",").filter(Boolean).map(Number);
  const dtype = response.headers.get("X-Dtype");
  const meta = decodeMeta(response.headers.get("X-Attnlab-Meta"));
  let data;
  if (dtype === "uint8") {
    const scale = Number(response.headers.get("X-Scale"));
    const bytes = new Uint8Array(buffer);
    data = new Float32Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) data[i] = bytes[i] * scale;
  } else {
    data = f16ToF32(new Uint16Array(buffer));
  }
  return { data, shape, meta };
}

/** base64url JSON (no padding) -> object; token text may be any script, so decode UTF-8. */
export function decodeMeta(value) {
  if (!value) return {};
  const b64 = value.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (value.length % 4)) % 4);
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

// ---------------------------------------------------------------- float16

const F16_TABLE = (() => {
  // all 65536 half-precision values, once: decoding is then one lookup per weight
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) table[h] = sign * 2 ** -14 * (frac / 1024);
    else if (exp === 31) table[h] = frac ? NaN : sign * Infinity;
    else table[h] = sign * 2 ** (exp - 15) * (1 + frac / 1024);
  }
  return table;
})();

/** Little-endian IEEE half floats (as Uint16Array) -> Float32Array. */
export function f16ToF32(u16) {
  const out = new Float32Array(u16.length);
  for (let i = 0; i < u16.length; i++) out[i] = F16_TABLE[u16[i]];
  return out;
}

/** Flat row-major array -> array of rows (what Plotly's z wants). */
export function toRows(flat, rows, cols) {
  const out = new Array(rows);
  for (let r = 0; r < rows; r++) out[r] = Array.from(flat.subarray(r * cols, (r + 1) * cols));
  return out;
}

// ---------------------------------------------------------------- URL state

/** Values from the query string, falling back to defaults (types follow the defaults). */
export function readState(defaults) {
  const params = new URLSearchParams(window.location.search);
  const state = { ...defaults };
  for (const [key, fallback] of Object.entries(defaults)) {
    if (!params.has(key)) continue;
    const raw = params.get(key);
    if (typeof fallback === "number") {
      const n = Number(raw);
      if (raw !== "" && Number.isFinite(n)) state[key] = n;
    } else if (typeof fallback === "boolean") {
      state[key] = raw === "1" || raw === "true";
    } else {
      state[key] = raw;
    }
  }
  return state;
}

/** Put the whole view state in the URL (replaceState: a reload or a shared link restores it). */
export function writeState(state) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(state)) {
    if (value === null || value === undefined || value === "") continue;
    params.set(key, typeof value === "boolean" ? (value ? "1" : "0") : String(value));
  }
  const url = `${window.location.pathname}?${params.toString()}`;
  if (url !== `${window.location.pathname}${window.location.search}`) window.history.replaceState(null, "", url);
}

// ---------------------------------------------------------------- labels

/** A token as Plotly label text: <, > and & as entities, so it shows literally. */
export function escapeLabel(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** A token label for an axis: labels come from the server (whitespace already visible, one
 *  rule for every view: models/labels.py); long ones are shortened here. */
export function showToken(token) {
  const s = String(token);
  return s.length > 24 ? `${s.slice(0, 23)}\u2026` : s;
}

/** Raw text as a quoted literal with invisible characters escaped: " the", "\r\n", "\u00a0". */
export function rawLiteral(text) {
  if (text === null || text === undefined) return "";
  const named = { "\n": "\\n", "\r": "\\r", "\t": "\\t", "\"": "\\\"", "\\": "\\\\" };
  let out = "";
  for (const ch of String(text)) {
    const code = ch.codePointAt(0);
    if (named[ch]) out += named[ch];
    else if (code < 0x20 || code === 0x7f || code === 0xa0 || (code >= 0x2000 && code <= 0x200f)
             || (code >= 0x2028 && code <= 0x202f) || code === 0xfeff || (code >= 0xfe00 && code <= 0xfe0f)) {
      out += `\\u${code.toString(16).padStart(4, "0")}`;
    } else out += ch;
  }
  return `"${out}"`;
}

/** Text indexed as the server indexes it: by Unicode code point (Python's str), where a JS
 *  string counts UTF-16 units (an emoji is one code point, two units). Every view slices token
 *  text through this one helper: `new CodePoints(text).slice(start, end)` == Python text[start:end]. */
export class CodePoints {
  constructor(text) { this.points = Array.from(String(text ?? "")); }

  get length() { return this.points.length; }

  slice(start, end) { return this.points.slice(start, end).join(""); }
}

/** The slice [start, end) of text in code points (Python's text[start:end]). */
export function sliceCodePoints(text, start, end) {
  return new CodePoints(text).slice(start, end);
}

/** The raw text of each token of an answer: the slice its offsets name (in code points) of the
 *  text it came from (texts[segment]; segment 0 without a pair); null for tokens the tokenizer added. */
export function rawTexts(answer, texts, prefix = "") {
  const offsets = answer[`${prefix}offsets`] || [];
  const segments = answer[`${prefix}segments`];
  const sources = texts.map((t) => (typeof t === "string" ? new CodePoints(t) : null));
  return offsets.map((o, i) => {
    if (!o) return null;
    const source = sources[segments ? segments[i] : 0];
    return source ? source.slice(o[0], o[1]) : null;
  });
}

// ---------------------------------------------------------------- charts

export function fontSize() { return document.body.classList.contains("large") ? 20 : 13; }

/** Plotly config: PNG via the camera button, SVG via an added button, the figure as JSON,
 *  no logo, no "share to cloud" (a remote origin), responsive. */
export function plotConfig(name) {
  return {
    responsive: true,
    displaylogo: false,
    showSendToCloud: false,
    toImageButtonOptions: { format: "png", filename: `attnlab-${name}`, scale: 2 },
    modeBarButtonsToAdd: ["downloadjson", {
      name: "Download as SVG",
      icon: window.Plotly.Icons.camera,
      click: (gd) => window.Plotly.downloadImage(gd, { format: "svg", filename: `attnlab-${name}` }),
    }],
  };
}

export function baseLayout(extra = {}) {
  return {
    paper_bgcolor: "#fff",
    plot_bgcolor: "#fff",
    margin: { l: 70, r: 20, t: 40, b: 60 },
    font: { size: fontSize() },
    ...extra,
  };
}

// Plotly.react calls on one element run one after another: overlapping calls on the same
// div (a slider dragged while a stream arrives) can hang plotly.js.
const queues = new WeakMap();
function serial(el, fn) {
  const next = (queues.get(el) || Promise.resolve()).then(fn, fn);
  queues.set(el, next.catch(() => {}));
  return next;
}

// the token axes of each chart: refitted whenever its size, font or range changes
const tokenAxesOf = new WeakMap();

/** Fit the token labels of a drawn chart; data-ticks="fitted" says they match its size now. */
async function fitTicks(gd) {
  const axes = tokenAxesOf.get(gd);
  if (!axes) return;
  await fitTokenTicks(gd, axes);
  gd.dataset.ticks = "fitted";
}

function watchTicks(gd) {
  if (gd.dataset.ticksBound) return;
  gd.dataset.ticksBound = "1";
  // zoom, pan, autosize (window resize), font size: refit after the change, in the queue
  gd.on("plotly_relayout", (update) => {
    if (onlyTicks(update) || !tokenAxesOf.has(gd)) return;
    delete gd.dataset.ticks;
    serial(gd, () => fitTicks(gd));
  });
}

/** Token axes of a layout: numeric, labelled with the tokens; a first guess at how many labels
 *  fit from the element's size (plot() fits them to the drawn plot area). */
function withTokenAxes(el, layout, tokenAxes) {
  const axes = {};
  const out = { ...layout };
  for (const [name, spec] of Object.entries(tokenAxes || {})) {
    if (!spec || !spec.tokens) continue;
    const labels = spec.tokens.map((t) => escapeLabel(showToken(t)));
    const offset = spec.offset || 0;
    axes[name] = { labels, offset };
    const guessPx = name.startsWith("x") ? (el.clientWidth || 600) * 0.7 : (layout.height || 450) * 0.6;
    const step = labelStep(labels.length, guessPx, out.font.size);
    out[name] = { tickangle: name.startsWith("x") ? -90 : 0, ...(out[name] || {}), tickmode: "array",
                  automargin: true, ...tokenTicks(labels, offset, step) };
  }
  return { layout: out, axes };
}

/** Draw (or redraw) a chart; sizes fonts for the large-font option. `tokenAxes`:
 *  {xaxis: {tokens, offset}, yaxis: ...}: axes labelled with tokens, as many as fit. */
export function plot(el, data, layout, name, { tokenAxes = null } = {}) {
  const sized = { ...layout, font: { ...(layout.font || {}), size: fontSize() } };
  const { layout: merged, axes } = withTokenAxes(el, sized, tokenAxes);
  delete el.dataset.ticks;
  return serial(el, async () => {
    delete el.dataset.ticks;
    await window.Plotly.react(el, data, merged, plotConfig(name));
    if (Object.keys(axes).length) {
      tokenAxesOf.set(el, axes);
      watchTicks(el);
      await fitTicks(el);
    } else {
      tokenAxesOf.delete(el);
    }
  }).then(() => el);
}

/** A server-built figure (JSON from /api/figures/...). */
export function plotFigure(el, figure, name) {
  const layout = { ...(figure.layout || {}), font: { ...((figure.layout || {}).font || {}), size: fontSize() } };
  return serial(el, () => window.Plotly.react(el, figure.data, layout, plotConfig(name))).then(() => el);
}

/** What one row or column of a map covers: "query 6 “mat”", "query 2 “·the” (" the")" (the raw
 *  text where it differs from the label), or "query 12–15" for a pooled cell. Positions are
 *  0-based, as in the API; labels escaped for Plotly. */
function describeCells(name, count, [start, end], block, tokens, raw) {
  return Array.from({ length: count }, (_, i) => {
    const first = start + i * block;
    const pos = block === 1 ? String(first) : `${first}\u2013${Math.min(end, first + block) - 1}`;
    if (!tokens || block !== 1) return `${name} ${pos}`;
    // the raw text too where it differs from the label (whitespace marks, [CLS], byte fragments)
    const literal = raw && raw[i] !== null && raw[i] !== undefined ? rawLiteral(raw[i]) : null;
    const extra = literal && literal !== `"${tokens[i]}"` ? ` (${escapeLabel(literal)})` : "";
    return `${name} ${pos} \u201c${escapeLabel(showToken(tokens[i]))}\u201d${extra}`;
  });
}

/**
 * A heatmap of a (rows x cols) map of weights. Cell (i, j) covers rows[0] + i*block and
 * cols[0] + j*block (block > 1: a pooled overview). Hover comes from customdata, never from
 * %{x}/%{y} (Plotly puts the tick text there): `query 6 “mat” → key 18 “the”: 0.0123`, with
 * the raw text given rowRaw/colRaw. `scale` (scale.js colourScale) maps weights to colours.
 */
export function heatmapTrace(weights, { rows = null, cols = null, block = 1, rowTokens = null, colTokens = null,
                                        rowRaw = null, colRaw = null, rowName = "query", colName = "key",
                                        scale = null, zmax = null, colorscale = VIRIDIS, what = "weight",
                                        note = "" } = {}) {
  const nRows = weights.length;
  const nCols = nRows ? weights[0].length : 0;
  const r = rows || [0, nRows * block];
  const c = cols || [0, nCols * block];
  const trace = {
    type: "heatmap", x0: c[0] + (block - 1) / 2, y0: r[0] + (block - 1) / 2, dx: block, dy: block, colorscale,
    hoverongaps: false,
  };
  if (scale) {
    Object.assign(trace, { z: scale.z, zmin: scale.zmin, zmax: scale.zmax, colorbar: scale.colorbar });
  } else {
    Object.assign(trace, { z: weights, zmin: 0, colorbar: { title: { text: what, side: "right" } } });
    if (zmax !== null) trace.zmax = zmax;
  }
  const rowDesc = describeCells(rowName, nRows, r, block, rowTokens, rowRaw);
  const colDesc = describeCells(colName, nCols, c, block, colTokens, colRaw);
  trace.customdata = weights.map((row, i) => row.map((w, j) => [rowDesc[i], colDesc[j], w]));
  trace.hovertemplate = `%{customdata[0]} \u2192 %{customdata[1]}: %{customdata[2]:.4f}${note}<extra></extra>`;
  return trace;
}

// ---------------------------------------------------------------- export

export function download(filename, blob) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function downloadJSON(filename, data) {
  download(filename, new Blob([JSON.stringify(data)], { type: "application/json" }));
}

/** An NPY (version 1.0) file of float32 values in C order: np.load() reads it. */
export function npyBlob(values, shape) {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const unpadded = 10 + header.length + 1;
  header += " ".repeat((64 - (unpadded % 64)) % 64) + "\n";
  const head = new Uint8Array(10 + header.length);
  head.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(head.buffer).setUint16(8, header.length, true);
  head.set(new TextEncoder().encode(header), 10);
  const body = new Float32Array(values.length);
  body.set(values);
  return new Blob([head, body.buffer], { type: "application/octet-stream" });
}

/** Nested arrays (rows of numbers, any depth) -> {values, shape}. */
export function flatten(nested) {
  const shape = [];
  let probe = nested;
  while (Array.isArray(probe) || ArrayBuffer.isView(probe)) {
    shape.push(probe.length);
    probe = probe[0];
  }
  const values = Array.isArray(nested) ? nested.flat(shape.length) : Array.from(nested);
  return { values, shape };
}

export function downloadNPY(filename, nested) {
  const { values, shape } = flatten(nested);
  download(filename, npyBlob(values, shape));
}

// ---------------------------------------------------------------- models and forms

let modelsCache = null;

export async function listModels() {
  if (!modelsCache) modelsCache = await api("/api/models");
  return modelsCache;
}

/**
 * Fill the model <select> with the models of the given families; unavailable ones stay
 * listed, disabled, with the reason. Returns the chosen model's info.
 */
export async function setupModelSelect(select, backendSelect, wanted, wantedBackend) {
  const families = (select.dataset.families || "").split(",").filter(Boolean);
  const models = (await listModels()).filter((m) => !families.length || families.includes(m.family));
  select.replaceChildren();
  for (const m of models) {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = m.available
      ? `${m.id} (${m.family}, ${m.n_layers}\u00d7${m.n_heads})`
      : `${m.id} \u2014 unavailable: ${m.reason || "unknown reason"}`;
    option.disabled = !m.available;
    if (!m.available) option.title = m.reason || "";
    select.appendChild(option);
  }
  const available = models.filter((m) => m.available);
  const pick = available.find((m) => m.id === wanted) || available[0];
  if (pick) select.value = pick.id;
  const note = document.getElementById("model-note");
  if (!pick && note) note.textContent = `No available ${families.join(" / ")} model on this server.`;
  const fillBackends = () => {
    const info = models.find((m) => m.id === select.value);
    if (!backendSelect || !info) return;
    const previous = backendSelect.value || wantedBackend;
    backendSelect.replaceChildren();
    for (const b of info.backends) {
      const option = document.createElement("option");
      option.value = b;
      option.textContent = b;
      backendSelect.appendChild(option);
    }
    if (info.backends.includes(previous)) backendSelect.value = previous;
  };
  fillBackends();
  select.addEventListener("change", fillBackends);
  return (id) => models.find((m) => m.id === (id || select.value));
}

export function fillSelect(select, values, labels = null, selected = null) {
  select.replaceChildren();
  values.forEach((v, i) => {
    const option = document.createElement("option");
    option.value = String(v);
    option.textContent = labels ? labels[i] : String(v);
    select.appendChild(option);
  });
  if (selected !== null && values.map(String).includes(String(selected))) select.value = String(selected);
}

// ---------------------------------------------------------------- page chrome

function applyLargeFont(on) {
  document.body.classList.toggle("large", on);
  const button = document.getElementById("large-font");
  if (button) button.setAttribute("aria-pressed", on ? "true" : "false");
  document.dispatchEvent(new CustomEvent("fontsizechange")); // views that lay out text themselves redo it
  if (!window.Plotly) return;
  for (const gd of document.querySelectorAll(".js-plotly-plot")) {
    serial(gd, () => window.Plotly.relayout(gd, { "font.size": fontSize() }));
  }
}

export function initChrome() {
  let on = false;
  try { on = window.localStorage.getItem("attnlab-large") === "1"; } catch (_) { /* storage off */ }
  applyLargeFont(on);
  document.getElementById("large-font").addEventListener("click", () => {
    const next = !document.body.classList.contains("large");
    try { window.localStorage.setItem("attnlab-large", next ? "1" : "0"); } catch (_) { /* storage off */ }
    applyLargeFont(next);
  });
}

/** Arrow-key navigation over (layer, head), ignoring keys typed into form fields. */
export function onArrowKeys(handler) {
  document.addEventListener("keydown", (event) => {
    const tag = (event.target && event.target.tagName) || "";
    if (["INPUT", "TEXTAREA", "SELECT"].includes(tag) || event.altKey || event.ctrlKey || event.metaKey) return;
    const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
    const move = moves[event.key];
    if (!move) return;
    if (handler(move[0], move[1]) !== false) event.preventDefault();
  });
}

/** Viridis colour for t in [0, 1] (for the canvas thumbnails and score tints). */
const VIRIDIS_STOPS = [
  [68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37],
];
export function viridis(t) {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS_STOPS.length - 1);
  const i = Math.min(VIRIDIS_STOPS.length - 2, Math.floor(x));
  const f = x - i;
  const a = VIRIDIS_STOPS[i];
  const b = VIRIDIS_STOPS[i + 1];
  return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * f));
}

/** Play/pause a range input through its values. */
export function player(button, range, onStep, intervalMs = 600) {
  let timer = null;
  const stop = () => {
    clearInterval(timer);
    timer = null;
    button.textContent = "Play";
    button.setAttribute("aria-pressed", "false");
  };
  button.addEventListener("click", () => {
    if (timer) { stop(); return; }
    if (Number(range.value) >= Number(range.max)) range.value = range.min;
    button.textContent = "Pause";
    button.setAttribute("aria-pressed", "true");
    timer = setInterval(() => {
      if (Number(range.value) >= Number(range.max)) { stop(); return; }
      range.value = String(Number(range.value) + 1);
      onStep(Number(range.value));
    }, intervalMs);
  });
  return stop;
}
