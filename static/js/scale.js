// Colour scales for attention maps. A head that puts most of each row on [CLS]/[SEP] leaves
// every other weight in the bottom few percent of a linear scale, and the map looks uniform.
// A scale maps each weight to the value the colour (and the line view's opacity) is drawn
// from: linear, square root, log, or linear clipped at a percentile; the colour bar keeps its
// ticks in weights and its title says which scale is shown. Excluding the special tokens
// drops their columns and renormalises each row over the other keys. Viridis, the colours
// every map is drawn in, is here too (canvas thumbnails and score tints use viridis(t)).

export const SCALES = {
  linear: "linear",
  sqrt: "square root",
  log: "log (4 decades)",
  p99: "clip at 99th percentile",
  p95: "clip at 95th percentile",
  p90: "clip at 90th percentile",
};
const LOG_DECADES = 4; // below max / 10^4 a weight draws as the lowest colour
const SQRT_TICKS = [0, 0.001, 0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1];

/** A scale name from the URL, or linear when it names none. */
export function scaleName(name) {
  return Object.hasOwn(SCALES, name) ? name : "linear";
}

function finite(rows) {
  const out = [];
  for (const row of rows) for (const v of row) if (v !== null && Number.isFinite(v)) out.push(v);
  return out;
}

/** The nearest-rank p-th percentile of the values. */
export function percentile(values, p) {
  if (!values.length) return 0;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

function short(v, digits = 2) {
  return v === 0 ? "0" : Number(v.toPrecision(digits)).toString();
}

/**
 * The colour mapping of a map of weights (rows, nulls for cells not shown) under a scale:
 * {z (the values Plotly colours), zmin, zmax, colorbar: {title, tickvals, ticktext}, level(w)
 * in [0, 1] (the line view's opacity)}. `what` names the values for the colour bar title.
 */
export function colourScale(name, weights, what = "weight") {
  const scale = scaleName(name);
  const values = finite(weights);
  const max = values.reduce((m, v) => (v > m ? v : m), 0);
  let f = (w) => w;
  let zmin = 0;
  let zmax = max > 0 ? max : 1;
  let title = `${what} (linear)`;
  let ticks = null;
  if (scale === "sqrt") {
    f = (w) => Math.sqrt(Math.max(0, w));
    zmax = Math.sqrt(zmax);
    const vals = SQRT_TICKS.filter((v) => v <= (max > 0 ? max : 1));
    ticks = { tickvals: vals.map(f), ticktext: vals.map(short) };
    title = `${what} (square-root scale)`;
  } else if (scale === "log") {
    const top = Math.log10(zmax);
    const floor = top - LOG_DECADES;
    f = (w) => (w > 0 ? Math.max(floor, Math.log10(w)) : floor);
    zmin = floor;
    zmax = top;
    const decades = [];
    for (let k = Math.ceil(floor); k <= Math.floor(top); k++) decades.push(k);
    ticks = { tickvals: decades, ticktext: decades.map((k) => short(10 ** k)) };
    title = `${what} (log scale, ${LOG_DECADES} decades)`;
  } else if (scale.startsWith("p")) {
    const p = Number(scale.slice(1));
    const clip = percentile(values, p);
    if (clip > 0) zmax = clip;
    title = `${what} (linear, clipped at ${p}th percentile = ${short(zmax, 3)})`;
  }
  const z = weights.map((row) => row.map((w) => (w === null || !Number.isFinite(w) ? null : f(w))));
  // a long title on two lines, the scale apart from what it measures: one line runs off the figure
  const colorbar = { title: { text: title.replace(/ \(/, "<br>("), side: "right" } };
  if (ticks) Object.assign(colorbar, { tickmode: "array", ...ticks });
  const span = zmax - zmin || 1;
  const level = (w) => Math.min(1, Math.max(0, (f(w) - zmin) / span));
  return { name: scale, z, zmin, zmax, colorbar, title, level };
}

/** Rows renormalised over the keys that are not special; special keys' cells become null. */
export function withoutSpecialKeys(weights, keySpecial) {
  return weights.map((row) => {
    let sum = 0;
    row.forEach((w, j) => { if (!keySpecial[j]) sum += w; });
    return row.map((w, j) => (keySpecial[j] ? null : sum > 0 ? w / sum : 0));
  });
}

/** Plotly's name of the colour scale every map is drawn in. */
export const VIRIDIS = "Viridis";

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
