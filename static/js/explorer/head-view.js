// The Explorer's head view: one head as a large heatmap with token labels, and the line view.
// Long inputs show a pooled overview; a box-zoom or drag fetches the exact block of the visible
// range. Every fetch goes through one Latest (a newer head or zoom refuses an older reply), and
// what the view shows and exports (weights, labels, layer, head) is taken from one reply.
import { toRows } from "../decoding.js";
import { Latest } from "../latest.js";
import { rawTexts } from "../labels.js";
import { baseLayout, heatmapTrace, plot } from "../plots.js";
import { colourScale, withoutSpecialKeys } from "../scale.js";
import { withLoading } from "../status.js";
import { drawLines } from "./line-view.js";

const EXACT_CELLS = 512 * 512; // largest block drawn exactly in the head view
const OVERVIEW = 512; // pooled overview side for long inputs

/** [rows, columns] of a kind: decoder self-attention and cross-attention have the target as
 *  queries, cross-attention the source as keys. */
function byKind(kind, source, target) {
  if (kind === "decoder") return [target, target];
  if (kind === "cross") return [target, source];
  return [source, source];
}

/** Token labels of the rows and columns of a kind. */
export function kindTokens(run, kind) {
  return byKind(kind, run.tokens, run.target_tokens || run.tokens);
}

/** Special flags of the rows and columns of a kind ([CLS], [SEP], <|endoftext|>...). */
function kindSpecial(run, kind) {
  const source = run.special || [];
  return byKind(kind, source, run.target_tokens ? run.target_special || [] : source);
}

/** Raw text of the rows and columns of a kind (hover): the slices the answer's offsets name. */
function kindRaw(run, kind) {
  const source = rawTexts(run, run.texts);
  return byKind(kind, source, run.target_tokens ? rawTexts(run, [run.target_text], "target_") : source);
}

/** What the head view shows and exports, all from one tile reply (its meta names the kind, layer,
 *  head and range it holds) and the run it was asked of. */
function headFromReply(run, t, params) {
  const m = t.meta || {};
  const kind = m.kind || params.kind;
  const [h, w] = t.shape;
  const rows = m.rows || params.rows.split(":").map(Number);
  const cols = m.cols || params.cols.split(":").map(Number);
  const factor = m.factor || 1;
  const exact = factor === 1;
  const [rowTokens, colTokens] = kindTokens(run, kind);
  const [rowRaw, colRaw] = kindRaw(run, kind);
  const [rowSpecial, colSpecial] = kindSpecial(run, kind);
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

export class HeadView {
  #latest = new Latest(); // the latest head, kind or zoom
  #relayoutTimer = null;
  #run = null;
  #selection = null; // {kind, layer, head} shown

  /**
   * `els`: {heatmap, lines, zoomNote}; `tile(params, signal)` fetches a tile of the run;
   * `options()` gives the controls' {scale, excludeSpecial}.
   */
  constructor(els, { tile, options }) {
    this.els = els;
    this.tile = tile;
    this.options = options;
    this.data = null; // what the view shows, all from one tile reply: {z, rows, cols, factor, tokens, ...}
    this.range = null; // the zoom the view was fetched for (null: the whole map)
  }

  /** Refuse the replies still on their way (a head of an earlier run or kind). */
  cancel() { this.#latest.cancel(); }

  /** Show a head of a run: {kind, layer, head}, the whole map. */
  open(run, selection) {
    this.#run = run;
    this.#selection = selection;
    return this.#show(null);
  }

  /** Fetch what the range shows: exact when small enough, else a pooled overview of the range.
   *  Labels, raw texts and special flags are taken for the rows and columns the reply covers. */
  async #show(range) {
    const run = this.#run;
    const { kind, layer, head } = this.#selection;
    const [rowTokens, colTokens] = kindTokens(run, kind);
    const r = range ? range.rows : [0, rowTokens.length];
    const c = range ? range.cols : [0, colTokens.length];
    const exact = (r[1] - r[0]) * (c[1] - c[0]) <= EXACT_CELLS;
    const params = { kind, layer: String(layer), head: String(head), rows: `${r[0]}:${r[1]}`, cols: `${c[0]}:${c[1]}` };
    if (!exact) params.pool = String(OVERVIEW);
    const t = await this.#latest.run((signal) => this.tile(params, signal)); // refused if a newer head or zoom came since
    this.data = headFromReply(run, t, params);
    this.range = range;
    const d = this.data;
    this.els.zoomNote.textContent = d.factor === 1
      ? (range ? `exact block rows ${d.rows[0]}:${d.rows[1]}, cols ${d.cols[0]}:${d.cols[1]}` : "exact map")
      : `pooled overview (max of ${d.factor}\u00d7${d.factor} blocks): box-zoom to fetch exact weights`;
    if (!range) this.drawLines();
    await this.#drawHeatmap(range);
  }

  /** The weights as shown, with the scale control and the exclude-specials toggle applied. */
  shownWeights(d = this.data) {
    const { scale, excludeSpecial } = this.options();
    const drop = excludeSpecial && d.factor === 1 && d.colSpecial && d.colSpecial.some(Boolean);
    const weights = drop ? withoutSpecialKeys(d.z, d.colSpecial) : d.z;
    const what = drop ? "weight without special keys, rows renormalised" : "weight";
    return { weights, scale: colourScale(scale, weights, what) };
  }

  /** Redraw what is shown (the colour scale or the special-token toggle changed). */
  redraw() {
    if (!this.data) return;
    if (!this.range) this.drawLines();
    this.#drawHeatmap(this.range);
  }

  /** The line view of the whole map (a zoomed view keeps the lines of the whole map). */
  drawLines() {
    if (this.data && !this.range) drawLines(this.els.lines, this.data, this.shownWeights());
  }

  #drawHeatmap(range) {
    const el = this.els.heatmap;
    const d = this.data;
    const { weights, scale } = this.shownWeights(d);
    const trace = heatmapTrace(weights, {
      rows: d.rows, cols: d.cols, block: d.factor, rowTokens: d.rowTokens, colTokens: d.colTokens,
      rowRaw: d.rowRaw, colRaw: d.colRaw, scale, note: d.factor === 1 ? "" : ` (max of ${d.factor}\u00d7${d.factor})`,
    });
    const layout = baseLayout({
      height: 620, uirevision: `${d.run_id}/${d.kind}/${d.layer}/${d.head}`,
      xaxis: { title: { text: "key" } },
      yaxis: { title: { text: "query" }, autorange: "reversed" },
    });
    // a zoomed block keeps the box the user drew through uirevision (the same for every zoom of this head), and
    // the layout itself stays on autorange: "Reset axes" and a double-click then return to autorange, which
    // #onRelayout answers with the whole map (an explicit range here would become the range they reset to)
    const tokenAxes = d.factor === 1
      ? { xaxis: { tokens: d.colTokens, offset: d.cols[0] }, yaxis: { tokens: d.rowTokens, offset: d.rows[0] } } : null;
    const drawn = plot(el, [trace], layout, `attnlab-${d.model}-head-${d.kind}-L${d.layer}H${d.head}`, { tokenAxes });
    if (!el.dataset.bound) {
      drawn.then(() => {
        if (el.dataset.bound) return;
        el.dataset.bound = "1";
        el.on("plotly_relayout", (ev) => {
          clearTimeout(this.#relayoutTimer);
          this.#relayoutTimer = setTimeout(() => this.#onRelayout(ev), 150);
        });
      });
    }
    return drawn;
  }

  /** A zoom or pan fetches the exact block now visible; a reset goes back to the whole map. */
  #onRelayout(ev) {
    const d = this.data;
    if (!this.#run || !d) return;
    // only a zoom, pan or reset moves the range (tick labels and font size do not)
    if (!Object.keys(ev).some((k) => /^[xy]axis\.(range|autorange)/.test(k))) return;
    const [rowTokens, colTokens] = kindTokens(this.#run, this.#selection.kind);
    if (ev["xaxis.autorange"] || ev["yaxis.autorange"]) {
      if (d.rows[0] !== 0 || d.cols[0] !== 0 || d.rows[1] !== rowTokens.length
          || d.cols[1] !== colTokens.length) withLoading("Loading overview", () => this.#show(null));
      return;
    }
    const x = [ev["xaxis.range[0]"], ev["xaxis.range[1]"]];
    const y = [ev["yaxis.range[0]"], ev["yaxis.range[1]"]];
    if (x[0] === undefined && Array.isArray(ev["xaxis.range"])) x.splice(0, 2, ...ev["xaxis.range"]);
    if (y[0] === undefined && Array.isArray(ev["yaxis.range"])) y.splice(0, 2, ...ev["yaxis.range"]);
    const gd = this.els.heatmap;
    const xr = x[0] !== undefined ? x : gd.layout.xaxis.range;
    const yr = y[0] !== undefined ? y : gd.layout.yaxis.range;
    if (!xr || !yr) return;
    const clamp = (v, n) => Math.max(0, Math.min(n, v));
    const cols = [clamp(Math.floor(Math.min(...xr) + 0.5), colTokens.length), clamp(Math.ceil(Math.max(...xr) + 0.5), colTokens.length)];
    const rows = [clamp(Math.floor(Math.min(...yr) + 0.5), rowTokens.length), clamp(Math.ceil(Math.max(...yr) + 0.5), rowTokens.length)];
    if (rows[1] <= rows[0] || cols[1] <= cols[0]) return;
    // already showing this block exactly: nothing to fetch
    if (d.factor === 1 && rows[0] >= d.rows[0] && rows[1] <= d.rows[1]
        && cols[0] >= d.cols[0] && cols[1] <= d.cols[1]) return;
    withLoading("Fetching exact block", () => this.#show({ rows, cols, xrange: xr, yrange: yr }));
  }
}
