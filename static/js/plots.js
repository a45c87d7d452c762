// Plotly glue: chart defaults, one drawing queue per chart, token axes fitted to the drawn
// plot area (the maths is in ticks.js), and the heatmap trace of a map of weights with hover
// that names every cell's tokens. Colour scales: scale.js; export buttons: export.js.
import { imageExport } from "./export.js";
import { escapeLabel, rawLiteral, showToken } from "./labels.js";
import { VIRIDIS } from "./scale.js";
import { fitTokenTicks, labelStep, onlyTicks, tokenTicks } from "./ticks.js";

export function fontSize() { return document.body.classList.contains("large") ? 20 : 13; }

/** Plotly config: export buttons (export.js), no logo, no "share to cloud" (a remote origin), responsive. */
export function plotConfig(name) {
  return { responsive: true, displaylogo: false, showSendToCloud: false, ...imageExport(name) };
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

/** Every chart on the page to the current font size (the large-font toggle), in each chart's queue. */
export function relayoutFonts() {
  if (!window.Plotly) return;
  for (const gd of document.querySelectorAll(".js-plotly-plot")) {
    serial(gd, () => window.Plotly.relayout(gd, { "font.size": fontSize() }));
  }
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
    const given = out[name] || {};
    // titles stand off the tick labels and push the margins (automargin), at any font size;
    // no zero line: it draws through the blank columns of excluded special tokens
    out[name] = { tickangle: name.startsWith("x") ? -90 : 0, ...given, tickmode: "array", zeroline: false,
                  automargin: true, title: { standoff: 8, ...(given.title || {}) }, ...tokenTicks(labels, offset, step) };
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
