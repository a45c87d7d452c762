// The Positional page's "trained tables" section: what training made of a learned absolute table (MiniLM, the
// extrapolation lab's decoder) or of T5 relative biases (the zoo's seq2seq), from
// GET /api/positional/trained/{source}. Only the latest source is drawn.
import { api } from "./api.js";
import { downloadJSON, fileName } from "./export.js";
import { listModels } from "./forms.js";
import { Latest } from "./latest.js";
import { baseLayout, plot } from "./plots.js";
import { withLoading } from "./status.js";

const $ = (id) => document.getElementById(id);
const selection = new Latest();
let shown = null;

async function drawTable(table) {
  const pos = table.similarity.map((_, i) => i);
  await plot($("trained-main"), [{
    type: "heatmap", z: table.similarity, x: pos, y: pos, colorscale: "Viridis", zmin: -1, zmax: 1,
    hovertemplate: "position %{y} \u00b7 position %{x}: cosine %{z:.3f}<extra></extra>",
    colorbar: { title: { text: "cosine", side: "right" } },
  }], baseLayout({ title: { text: `${table.name}: similarity of positions (first ${table.shown} of ${table.n_positions})` },
                   height: 480, xaxis: { title: { text: "position" } },
                   yaxis: { title: { text: "position" }, autorange: "reversed" } }), "trained-similarity");
  await plot($("trained-side"), [
    { type: "scatter", mode: "lines", name: "mean cosine", x: pos, y: table.by_offset },
    { type: "scatter", mode: "lines", name: "norm of position vector", x: pos, y: table.norms, yaxis: "y2" },
  ], baseLayout({ title: { text: "by distance, and each position's norm" }, height: 480,
                  xaxis: { title: { text: "offset (similarity) / position (norm)" } },
                  yaxis: { title: { text: "mean cosine" } },
                  yaxis2: { title: { text: "norm" }, overlaying: "y", side: "right" },
                  legend: { orientation: "h", y: -0.25 } }), "trained-by-offset");
}

async function drawBiases(biases) {
  const charts = [$("trained-main"), $("trained-side")];
  for (let i = 0; i < charts.length; i++) {
    const b = biases[i];
    if (!b) { charts[i].hidden = true; continue; }
    charts[i].hidden = false;
    const heads = b.by_offset.map((_, h) => h);
    // a causal bias only ever meets keys before the query: offsets > 0 are masked
    const keep = b.offsets.map((o) => b.bidirectional || o <= 0);
    const x = b.offsets.filter((_, j) => keep[j]);
    const z = b.by_offset.map((row) => row.filter((_, j) => keep[j]));
    await plot(charts[i], [{
      type: "heatmap", z, x, y: heads, colorscale: "RdBu", zmid: 0,
      hovertemplate: "head %{y}, key offset %{x}: bias %{z:.3f}<extra></extra>",
      colorbar: { title: { text: "bias", side: "right" } },
    }], baseLayout({ title: { text: `${b.name} (${b.bidirectional ? "bidirectional" : "causal"}, ${b.num_buckets} buckets)` },
                     height: 480, xaxis: { title: { text: "key position \u2212 query position" } },
                     yaxis: { title: { text: "head" }, dtick: 1 } }), `t5-bias-${i}`);
  }
}

async function show(signal) {
  const source = $("trained-source").value;
  shown = await api(`/api/positional/trained/${encodeURIComponent(source)}?max_len=128`, { signal });
  $("trained-main").hidden = false;
  $("trained-side").hidden = false;
  if (shown.tables.length) await drawTable(shown.tables[0]);
  else await drawBiases(shown.t5_biases);
}

/** Draw the section; `save` writes the page's URL state (the source is one of its keys). */
export async function initTrained(save) {
  // a source this server does not have (not registered, or unavailable) is listed disabled, with the reason
  const models = new Map((await listModels()).map((m) => [m.id, m]));
  const select = $("trained-source");
  for (const option of select.options) {
    const info = models.get(option.value);
    option.disabled = !info || !info.available;
    if (option.disabled) option.title = info ? info.reason || "unavailable here" : "not served by this server";
  }
  if (select.selectedOptions[0] && select.selectedOptions[0].disabled) {
    const first = [...select.options].find((o) => !o.disabled);
    if (!first) {
      $("trained-note").textContent = "None of the models with trained position tables is served here.";
      return;
    }
    select.value = first.value;
  }
  select.addEventListener("change", () => {
    save();
    withLoading("Reading the trained tables", () => selection.run(show));
  });
  $("export-trained-json").addEventListener("click", () => shown && downloadJSON(fileName({ model: shown.source, view: "trained-positions" }, "json"), shown));
  await withLoading("Reading the trained tables", () => selection.run(show));
}
