// Token tick labels that never overprint. An axis over tokens is numeric (a categorical axis
// would merge repeated tokens) with one tick label per shown token; how many are shown
// follows the font size and the axis's length in pixels: every label when they fit, else
// every step-th one. Hover always names every cell's token, so thinning loses nothing.

/** Pixels one horizontal label line needs (x labels stand at -90 degrees, so the same). Chromium
 *  renders a 13 px font in 15 px glyph boxes and a 20 px one in 22-23 px: 1.15 em plus a 1 px
 *  gap keeps them apart. (1.3 em + 2 asked 19 px at 13 px and thinned 34 labels that fit in 17.) */
export function labelPitch(fontPx) {
  return Math.ceil(fontPx * 1.15) + 1;
}

/** Every how many tokens a label fits: axis `lengthPx` long showing `span` positions. */
export function labelStep(span, lengthPx, fontPx) {
  if (!(span > 0) || !(lengthPx > 0)) return 1;
  const cellPx = lengthPx / span;
  return Math.max(1, Math.ceil(labelPitch(fontPx) / cellPx));
}

/** Tick values (position offset + i) and label text for every step-th token. */
export function tokenTicks(labels, offset, step) {
  const tickvals = [];
  const ticktext = [];
  for (let i = 0; i < labels.length; i += step) {
    tickvals.push(offset + i);
    ticktext.push(labels[i]);
  }
  return { tickvals, ticktext };
}

/** Whether a plotly_relayout update only set tick labels (our own fitting: nothing to redo). */
export function onlyTicks(update) {
  const keys = Object.keys(update || {});
  return keys.length > 0 && keys.every((k) => /^[xy]axis\d*\.tick(vals|text)$/.test(k));
}

function sameTicks(axis, ticks) {
  const vals = (axis && axis.tickvals) || [];
  return vals.length === ticks.tickvals.length && vals.every((v, i) => v === ticks.tickvals[i]);
}

/**
 * Set the tick labels of the token axes of a drawn chart to what its plot area holds.
 * `axes`: {xaxis: {labels, offset}, yaxis: ...}, labels already escaped for Plotly. Relayout
 * moves the margins (automargin), so the plot area changes: refit up to a few times, never
 * letting a step shrink within one fit, which ends it (more space only leaves labels sparser).
 */
export async function fitTokenTicks(gd, axes) {
  const steps = {};
  for (let pass = 0; pass < 4; pass++) {
    const update = {};
    for (const [name, spec] of Object.entries(axes)) {
      const ax = gd._fullLayout && gd._fullLayout[name];
      if (!ax || !ax._length || !Array.isArray(ax.range)) continue;
      const span = Math.abs(ax.range[1] - ax.range[0]);
      const font = (ax.tickfont && ax.tickfont.size) || gd._fullLayout.font.size;
      steps[name] = Math.max(steps[name] || 1, labelStep(span, ax._length, font));
      const ticks = tokenTicks(spec.labels, spec.offset, steps[name]);
      if (!sameTicks(gd.layout[name], ticks)) {
        update[`${name}.tickvals`] = ticks.tickvals;
        update[`${name}.ticktext`] = ticks.ticktext;
      }
    }
    if (!Object.keys(update).length) return;
    await window.Plotly.relayout(gd, update);
  }
}
