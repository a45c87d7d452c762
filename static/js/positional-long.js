// The Positional page's "see it on a real text" part of the extrapolation section (issue 15): the same
// Austen text, 8x the 64 characters the extrapolation lab's decoders were trained on, run on each scheme
// (POST /api/runs, flash), its next-token loss by position (GET /api/runs/{id}/loss, buckets of 16), one
// line per scheme, and links that open each run in the Explorer. Schemes this server lacks are left out.
import { api } from "./api.js";
import { listModels } from "./forms.js";
import { Latest } from "./latest.js";
import { baseLayout, plot } from "./plots.js";

const $ = (id) => document.getElementById(id);
export const LONG_TEXT = ("It is a truth universally acknowledged, that a single man in possession of a good fortune, must be "
  + "in want of a wife. However little known the feelings or views of such a man may be on his first entering a "
  + "neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered as "
  + "the rightful property of some one or other of their daughters. ").repeat(3).slice(0, 512);
const SCHEMES = ["alibi", "rope", "t5_relative", "none", "sinusoidal"];
const latest = new Latest();

function explorerLink(model) {
  const params = new URLSearchParams({ model, text: LONG_TEXT, backend: "flash", layer: "1", head: "0" });
  return `/?${params}`;
}

async function draw(signal) {
  const served = new Map((await listModels()).map((m) => [m.id, m]));
  const models = SCHEMES.map((s) => `extrapolation-${s}`).filter((id) => served.has(id) && served.get(id).available);
  const panel = $("long-panel");
  if (!models.length) { panel.hidden = true; return; }
  panel.hidden = false;
  const links = $("long-links");
  links.replaceChildren();
  const traces = [];
  for (const model of models) {
    const run = await api("/api/runs", { method: "POST", body: { model, text: LONG_TEXT, backend: "flash" }, signal });
    const loss = await api(`/api/runs/${run.run_id}/loss?bucket=16`, { signal });
    const scheme = model.replace("extrapolation-", "");
    traces.push({ type: "scatter", mode: "lines", name: scheme, x: loss.positions.map((p) => p + 8), y: loss.loss,
                  hovertemplate: `${scheme}: positions %{x}\u00b18, loss %{y:.2f} nats<extra></extra>` });
    const a = document.createElement("a");
    a.href = explorerLink(model);
    a.textContent = `${scheme} in the Explorer`;
    links.append(a, document.createTextNode(" \u00b7 "));
  }
  links.lastChild?.remove();
  await plot($("long-loss"), traces, baseLayout({
    height: 380, xaxis: { title: { text: "position in the text (characters)" } },
    yaxis: { title: { text: "next-character loss (nats), mean of 16" } },
    shapes: [{ type: "line", x0: 64, x1: 64, yref: "paper", y0: 0, y1: 1, line: { dash: "dot", width: 1 } }],
    annotations: [{ x: 64, yref: "paper", y: 1, text: "trained length (64)", showarrow: false, xanchor: "left" }],
  }), "long-loss");
}

/** Run the long text on every extrapolation decoder served here and draw loss vs position. */
export function initLong() {
  return latest.run(draw);
}
