// The Positional page's "see it on a real text" part of the extrapolation section (issue 15): the same
// Austen text, 8x the 64 characters the extrapolation lab's decoders were trained on, run on each scheme
// (POST /api/runs, flash), its next-token loss by position (GET /api/runs/{id}/loss, buckets of 16), one
// line per scheme, and links that open each run in the Explorer. Below it, two schemes side by side: the
// same head's map on each (an exact float16 tile of the whole map, max-pooled 4x4 here) and how far back
// each query looks (sum_j w_ij (i - j)). Schemes this server lacks are left out.
import { api, apiBinary } from "./api.js";
import { fillSelect, listModels } from "./forms.js";
import { Latest } from "./latest.js";
import { baseLayout, heatmapTrace, plot } from "./plots.js";
import { createRun, withRun } from "./runs.js";
import { colourScale } from "./scale.js";
import { withLoading } from "./status.js";

const $ = (id) => document.getElementById(id);
export const LONG_TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be "
  + "in want of a wife. However little known the feelings or views of such a man may be on his first entering a "
  + "neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered as "
  + "the rightful property of some one or other of their daughters. ").repeat(3).slice(0, 512);
const SCHEMES = ["alibi", "rope", "t5_relative", "none", "sinusoidal"];
const TRAINED = 64; // the lab's training length (characters)
const CELL = 4; // the side maps: each cell the largest weight of CELL x CELL
const BUCKET = 16; // loss and distance: mean over this many positions
// layer 1, head 0: the head whose contrast is plainest (ALiBi looks back ~3 characters at every position,
// sinusoidal 16 inside the trained length and ~180 past it; measured on this text)
const PAIR_DEFAULT = { left: "alibi", right: "sinusoidal", layer: 1, head: 0 };
const latest = new Latest();
const pairLatest = new Latest();
const runs = new Map(); // model id -> run
let view = { state: {}, save() {} }; // the page's URL state (positional.js bindState): the pair's choices
const served = new Map(); // model id -> model info

const schemeOf = (model) => model.replace("extrapolation-", "");

function explorerLink(model, layer = 1, head = 0) {
  const params = new URLSearchParams({ model, text: LONG_TEXT, backend: "flash", layer: String(layer),
                                       head: String(head) });
  return `/?${params}`;
}

function linkTo(href, text) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  return a;
}

async function draw(signal) {
  for (const m of await listModels()) served.set(m.id, m);
  const models = SCHEMES.map((s) => `extrapolation-${s}`).filter((id) => served.has(id) && served.get(id).available);
  const panel = $("long-panel");
  if (!models.length) { panel.hidden = true; return; }
  panel.hidden = false;
  const links = $("long-links");
  links.replaceChildren();
  const traces = [];
  for (const model of models) {
    const run = await createRun({ model, text: LONG_TEXT, backend: "flash" }, signal);
    runs.set(model, run);
    const loss = await withRun(run, (id) => api(`/api/runs/${id}/loss?bucket=${BUCKET}`, { signal }), signal);
    const scheme = schemeOf(model);
    traces.push({ type: "scatter", mode: "lines", name: scheme, x: loss.positions.map((p) => p + BUCKET / 2),
                  y: loss.loss, hovertemplate: `${scheme}: positions %{x}\u00b1${BUCKET / 2}, loss %{y:.2f} nats<extra></extra>` });
    links.append(linkTo(explorerLink(model), `${scheme} in the Explorer`), document.createTextNode(" \u00b7 "));
  }
  if (models.length > 1) links.append(linkTo("#pair", "two side by side"));
  else links.lastChild?.remove();
  signal.throwIfAborted();
  await plot($("long-loss"), traces, baseLayout({
    height: 380, xaxis: { title: { text: "position in the text (characters)" } },
    yaxis: { title: { text: `next-character loss (nats), mean of ${BUCKET}` } },
    shapes: [trainedLine("x")],
    annotations: [{ x: TRAINED, yref: "paper", y: 1, text: `trained length (${TRAINED})`, showarrow: false,
                    xanchor: "left" }],
  }), "long-loss");
  $("pair-panel").hidden = models.length < 2;
  if (models.length < 2) return;
  setupPair(models);
  await drawPair();
}

function trainedLine(axis) {
  const line = { type: "line", line: { dash: "dot", width: 1 } };
  return axis === "x" ? { ...line, x0: TRAINED, x1: TRAINED, yref: "paper", y0: 0, y1: 1 }
                      : { ...line, y0: TRAINED, y1: TRAINED, xref: "paper", x0: 0, x1: 1 };
}

function setupPair(models) {
  const schemes = models.map(schemeOf);
  const pick = (want, fallback) => (schemes.includes(want) ? want : fallback);
  const { state } = view;
  // the URL's choice where it names one this server has, else the default pair
  const side = (key, fallback) => (models.includes(state[key]) ? state[key] : `extrapolation-${fallback}`);
  fillSelect($("pair-left"), models, schemes, side("pair_left", pick(PAIR_DEFAULT.left, schemes[0])));
  fillSelect($("pair-right"), models, schemes,
             side("pair_right", pick(PAIR_DEFAULT.right, schemes[schemes.length - 1])));
  const info = served.get(models[0]);
  const index = (key, n, fallback) => {
    const v = Number(state[key]);
    return state[key] !== "" && Number.isInteger(v) && v >= 0 && v < n ? v : Math.min(fallback, n - 1);
  };
  fillSelect($("pair-layer"), [...Array(info.n_layers).keys()], null, index("pair_layer", info.n_layers, PAIR_DEFAULT.layer));
  fillSelect($("pair-head"), [...Array(info.n_heads).keys()], null, index("pair_head", info.n_heads, PAIR_DEFAULT.head));
  if (!$("pair-form").dataset.wired) {
    $("pair-form").dataset.wired = "1";
    for (const id of ["pair-left", "pair-right", "pair-layer", "pair-head"]) {
      $(id).addEventListener("change", () => { view.save(); withLoading("Drawing the two maps", drawPair); });
    }
  }
}

/** One head's whole map as rows of Float32Array (an exact tile, float16 on the wire). */
async function headMap(model, layer, head, signal) {
  const run = runs.get(model);
  const tile = await withRun(run, (id) => apiBinary(
    `/api/runs/${id}/attention?layer=${layer}&head=${head}&format=f16`, { signal }), signal);
  const [rows, cols] = tile.shape;
  return Array.from({ length: rows }, (_, i) => tile.data.subarray(i * cols, (i + 1) * cols));
}

/** The largest weight of each CELL x CELL block. */
function maxPool(map) {
  const n = Math.ceil(map.length / CELL);
  const m = Math.ceil(map[0].length / CELL);
  const out = Array.from({ length: n }, () => new Array(m).fill(0));
  map.forEach((row, i) => row.forEach((w, j) => {
    const cell = out[Math.floor(i / CELL)];
    const c = Math.floor(j / CELL);
    if (w > cell[c]) cell[c] = w;
  }));
  return out;
}

/** Mean over buckets of queries of sum_j w_ij (i - j): how many positions back a query looks. */
function lookBack(map) {
  const per = map.map((row, i) => row.reduce((sum, w, j) => sum + w * Math.max(0, i - j), 0));
  const x = [];
  const y = [];
  for (let i = 0; i < per.length; i += BUCKET) {
    const part = per.slice(i, i + BUCKET);
    x.push(i + part.length / 2);
    y.push(part.reduce((a, b) => a + b, 0) / part.length);
  }
  return { x, y };
}

async function drawPair() {
  return pairLatest.run(async (signal) => {
    const pair = [$("pair-left").value, $("pair-right").value];
    const layer = Number($("pair-layer").value);
    const head = Number($("pair-head").value);
    const maps = await Promise.all(pair.map((model) => headMap(model, layer, head, signal)));
    signal.throwIfAborted();
    const links = $("pair-links");
    links.replaceChildren();
    const lines = [];
    for (const [i, model] of pair.entries()) {
      const scheme = schemeOf(model);
      const el = $(i === 0 ? "pair-a" : "pair-b");
      const pooled = maxPool(maps[i]);
      // log colours (4 decades): a spread-out head's small weights stay visible beside a sharp one's
      const trace = heatmapTrace(pooled, { block: CELL, scale: colourScale("log", pooled),
                                           note: ` (largest of ${CELL}\u00d7${CELL})` });
      await plot(el, [trace], baseLayout({
        height: 460, title: { text: `${scheme}: layer ${layer}, head ${head}` },
        xaxis: { title: { text: "key position" } }, yaxis: { title: { text: "query position" }, autorange: "reversed" },
        shapes: [trainedLine("x"), trainedLine("y")],
      }), `pair-${scheme}`);
      const back = lookBack(maps[i]);
      lines.push({ type: "scatter", mode: "lines", name: scheme, ...back,
                   hovertemplate: `${scheme}: queries %{x}\u00b1${BUCKET / 2} look back %{y:.1f} positions<extra></extra>` });
      if (i) links.append(document.createTextNode(" \u00b7 "));
      links.append(linkTo(explorerLink(model, layer, head), `${scheme}, layer ${layer} head ${head} in the Explorer`));
    }
    await plot($("pair-distance"), lines, baseLayout({
      height: 320, xaxis: { title: { text: "query position" } },
      yaxis: { title: { text: "looks back (positions)" } },
      shapes: [trainedLine("x")],
    }), "pair-distance");
  });
}

/** Run the long text on every extrapolation decoder served here and draw loss vs position and the pair.
 *  `pageView`: the page's bindState result; the pair's selectors are kept in its URL (pair_left, ...). */
export function initLong(pageView) {
  if (pageView) view = pageView;
  return latest.run(draw);
}
