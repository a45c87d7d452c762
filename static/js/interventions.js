// Interventions: head importance (click a head to ablate it, shift-click to add), the ablation's
// per-token loss change and changed predictions, activation patching of a clean/corrupted pair,
// the logit lens and the residual-stream norms, and the heads lab's pruning curve.
// Token text reaches the DOM through textContent and Plotly through escapeLabel only.
import { api } from "./api.js";
import { initChrome } from "./chrome.js";
import { downloadJSON, fileName } from "./export.js";
import { followCards } from "./examples.js";
import { setupModelSelect } from "./forms.js";
import { escapeLabel, showToken } from "./labels.js";
import { Latest } from "./latest.js";
import { baseLayout, plot } from "./plots.js";
import { bindState } from "./state.js";
import { withLoading } from "./status.js";

const $ = (id) => document.getElementById(id);
const view = bindState({
  model: "smollm2", text: "", backend: "", mode: "zero", grid: "importance", clean: "", corrupted: "",
  // the ablated heads as "layer.head" pairs, comma-separated
  heads: { value: "", get: () => ablated.map(([l, h]) => `${l}.${h}`).join(",") },
});
const { state } = view;
let importance = null;
let ablation = null;
let lens = null;
let ablated = [];
const selection = new Latest(); // the latest text run
const ablateSelection = new Latest(); // the latest set of ablated heads

function input() {
  return { model: $("model").value, text: $("text").value, backend: $("backend").value };
}

function headLabels(n, prefix) { return Array.from({ length: n }, (_, i) => `${prefix}${i}`); }

async function drawImportance() {
  const showAblation = $("grid").value === "ablation" && importance.ablation_loss_change;
  const z = showAblation ? importance.ablation_loss_change : importance.importance;
  const what = showAblation ? "loss change (nats)" : (importance.objective === "loss" ? "|dL/dξ|" : "|dH/dξ|/|H|");
  const picked = new Set(ablated.map(([l, h]) => `${l}.${h}`));
  const text = z.map((row, l) => row.map((_, h) => (picked.has(`${l}.${h}`) ? "\u2716" : "")));
  await plot($("importance"), [{
    type: "heatmap", z, colorscale: "Viridis", text, texttemplate: "%{text}", hoverongaps: false,
    customdata: z.map((row, l) => row.map((v, h) => [l, h, v])),
    hovertemplate: `layer %{customdata[0]}, head %{customdata[1]}: %{customdata[2]:.4f}<extra>${escapeLabel(what)}</extra>`,
    colorbar: { title: { text: what, side: "right" } },
  }], baseLayout({ height: 80 + 34 * z.length + 120,
                   xaxis: { title: { text: "head" }, tickvals: z[0].map((_, i) => i), ticktext: headLabels(z[0].length, "H") },
                   yaxis: { title: { text: "layer" }, autorange: "reversed", tickvals: z.map((_, i) => i),
                            ticktext: headLabels(z.length, "L") } }), "importance");
}

function bindImportanceClicks() {
  const el = $("importance");
  if (el.dataset.bound) return;
  el.dataset.bound = "1";
  el.on("plotly_click", (ev) => {
    const point = ev.points && ev.points[0];
    if (!point) return;
    const [layer, head] = point.pointIndex; // heatmap points carry [row, column] = [layer, head]
    const shift = ev.event && ev.event.shiftKey;
    const key = `${layer}.${head}`;
    const has = ablated.some(([l, h]) => `${l}.${h}` === key);
    if (!shift) ablated = [[layer, head]];
    else if (has) ablated = ablated.filter(([l, h]) => `${l}.${h}` !== key);
    else ablated = [...ablated, [layer, head]];
    withLoading("Ablating", () => ablateSelection.run(showAblation));
  });
}

async function showAblation(signal) {
  view.save();
  await drawImportance();
  if (!ablated.length) { $("ablation-panel").hidden = true; return; }
  const answer = await api("/api/interventions/ablate", {
    method: "POST", body: { ...input(), heads: ablated, mode: $("mode").value }, signal });
  signal.throwIfAborted();
  ablation = answer;
  $("ablation-panel").hidden = false;
  $("ablated").textContent = `ablated (${answer.mode}): ${ablated.map(([l, h]) => `L${l}H${h}`).join(", ")}`;
  const tokens = answer.tokens;
  const positions = tokens.map((_, i) => i);
  if (answer.loss_change !== null) {
    $("loss-change").textContent = `mean loss ${answer.loss_change >= 0 ? "+" : ""}${answer.loss_change.toFixed(4)} nats`;
    const delta = answer.loss_after.map((a, i) => (a === null ? null : a - answer.loss_before[i]));
    await plot($("ablation"), [{
      type: "bar", x: positions, y: delta, marker: { color: delta.map((d) => (d > 0 ? "#c0392b" : "#2c7fb8")) },
      customdata: tokens.map((t) => escapeLabel(showToken(t))),
      hovertemplate: "position %{x} \u201c%{customdata}\u201d: %{y:+.4f} nats<extra></extra>",
    }], baseLayout({ height: 380, yaxis: { title: { text: "loss change (nats)" } },
                     xaxis: { title: { text: "position" } } }), "ablation", { tokenAxes: { xaxis: { tokens } } });
  } else {
    $("loss-change").textContent = "no LM head: the change of the final hidden state per token";
    const rel = answer.hidden_change.map((c) => c.relative_norm);
    await plot($("ablation"), [{ type: "bar", x: positions, y: rel, name: "relative norm of the change",
                                 hovertemplate: "position %{x}: %{y:.4f}<extra></extra>" }],
               baseLayout({ height: 380, yaxis: { title: { text: "|h' \u2212 h| / |h|" } } }), "ablation",
               { tokenAxes: { xaxis: { tokens } } });
  }
  const body = $("changed").querySelector("tbody");
  body.replaceChildren();
  for (const c of answer.changed_predictions) {
    const row = document.createElement("tr");
    for (const [text, num] of [[String(c.position), true], [showToken(tokens[c.position]), false],
      [showToken(c.before.token), false], [c.before.prob.toFixed(3), true], [showToken(c.after.token), false],
      [c.after.prob.toFixed(3), true]]) {
      const cell = document.createElement("td");
      cell.textContent = text;
      if (num) cell.className = "num";
      row.appendChild(cell);
    }
    body.appendChild(row);
  }
}

async function showLens(signal) {
  lens = await api("/api/lens", { method: "POST", body: { ...input(), k: 3 }, signal });
  signal.throwIfAborted();
  $("lens-panel").hidden = false;
  const tokens = lens.tokens;
  const layers = lens.layers;
  if (lens.top) {
    const z = lens.final_prob;
    const text = lens.top.map((row) => row.map((cell) => escapeLabel(showToken(cell[0].token))));
    const custom = lens.top.map((row, li) => row.map((cell, t) => [
      layers[li], t, escapeLabel(showToken(tokens[t])), cell.map((c) => `${escapeLabel(showToken(c.token))} ${c.prob.toFixed(3)}`).join(", "),
      escapeLabel(showToken(lens.final_tokens[t])), z[li][t]]));
    await plot($("lens"), [{
      type: "heatmap", z, zmin: 0, zmax: 1, colorscale: "Viridis", text, texttemplate: "%{text}", customdata: custom,
      hovertemplate: "layer %{customdata[0]}, position %{customdata[1]} \u201c%{customdata[2]}\u201d: top %{customdata[3]}"
        + "<br>p(final \u201c%{customdata[4]}\u201d) = %{customdata[5]:.3f}<extra></extra>",
      colorbar: { title: { text: "p(final token)", side: "right" } },
    }], baseLayout({ height: Math.max(420, 60 + 26 * layers.length + 140),
                     yaxis: { title: { text: "layer" }, tickvals: layers.map((_, i) => i),
                              ticktext: layers.map((l) => `L${l}`), autorange: "reversed" },
                     xaxis: { title: { text: "position" } } }), "logit-lens", { tokenAxes: { xaxis: { tokens } } });
  } else {
    $("lens").replaceChildren();
    $("lens").textContent = "This model has no LM head: no lens, only the norms below.";
  }
  const mean = (rows) => rows.map((r) => r.reduce((a, b) => a + b, 0) / r.length);
  const series = [{ type: "scatter", mode: "lines+markers", name: "residual stream",
                    x: lens.residual_norm.map((_, i) => i), y: mean(lens.residual_norm) },
                  { type: "scatter", mode: "lines+markers", name: "attention adds",
                    x: lens.attention_norm.map((_, i) => i + 1), y: mean(lens.attention_norm) }];
  if (lens.ffn_norm) {
    series.push({ type: "scatter", mode: "lines+markers", name: "feed-forward adds",
                  x: lens.ffn_norm.map((_, i) => i + 1), y: mean(lens.ffn_norm) });
  }
  await plot($("norms"), series, baseLayout({ height: 360, xaxis: { title: { text: "after block (0 = embeddings)" } },
                                              yaxis: { title: { text: "L2 norm (mean over positions)" } } }), "norms");
}

async function go() {
  view.save();
  await selection.run(async (signal) => {
    importance = await api("/api/interventions/importance", { method: "POST", body: input(), signal });
    signal.throwIfAborted();
    $("importance-panel").hidden = false;
    if (!importance.ablation_loss_change) $("grid").value = "importance";
    $("grid").querySelector("option[value=ablation]").disabled = !importance.ablation_loss_change;
    await drawImportance();
    bindImportanceClicks();
    await showLens(signal);
    if (ablated.length) await ablateSelection.run(showAblation);
  });
  view.save();
}

async function patch() {
  view.save();
  const body = { model: $("model").value, backend: $("backend").value, clean: $("clean").value,
                 corrupted: $("corrupted").value };
  const answer = await api("/api/interventions/patch", { method: "POST", body });
  // the first column is the whole layer patched (every head at once), then each head alone
  const z = answer.heads.map((row, l) => [answer.layers[l], ...row]);
  const columns = ["all", ...headLabels(answer.heads[0].length, "H")];
  $("patch-note").textContent = `target \u201c${showToken(answer.target.token)}\u201d at position ${answer.position}: `
    + `logit ${answer.clean_logit.toFixed(2)} clean, ${answer.corrupted_logit.toFixed(2)} corrupted`
    + (answer.complete ? "" : ` (stopped after ${answer.budget_s} s: empty cells were not reached; layers that `
      + "restore most go first)");
  await plot($("patch"), [{
    type: "heatmap", z, zmid: 0, colorscale: "RdBu", reversescale: true, hoverongaps: false,
    customdata: z.map((row, l) => row.map((v, c) => [l, columns[c], v === null ? "not reached" : v.toFixed(3)])),
    hovertemplate: "layer %{customdata[0]}, %{customdata[1]}: restores %{customdata[2]}<extra></extra>",
    colorbar: { title: { text: "fraction restored", side: "right" } },
  }], baseLayout({ height: Math.max(360, 80 + 22 * z.length + 100),
                   xaxis: { title: { text: "head (all: the whole layer)" }, tickvals: columns.map((_, i) => i),
                            ticktext: columns },
                   yaxis: { title: { text: "layer" }, autorange: "reversed", tickvals: z.map((_, i) => i),
                            ticktext: headLabels(z.length, "L") } }), "patching");
}

async function showLab() {
  let lab;
  try {
    lab = await api("/api/interventions/lab");
  } catch (err) {
    if (err.status === 404) return; // no heads lab results on this server: the panel stays hidden
    throw err;
  }
  const ind = lab.induction;
  const lm = lab.lm;
  $("lab-panel").hidden = false;
  $("lab-summary").textContent = `induction: ablating layer 1 raises the repeated-half loss from `
    + `${ind.repeated_half_loss.toFixed(3)} to ${ind.layer1_ablated_loss.toFixed(2)} nats; `
    + `lm: ${lm.n_small} of ${lm.n_heads} heads change the loss by less than ${lm.small_change_nats} nats when removed alone.`;
  const series = ["induction", "lm"].map((name) => ({
    type: "scatter", mode: "lines+markers", name, x: lab[name].pruning.fraction_kept, y: lab[name].pruning.loss }));
  await plot($("pruning"), series, baseLayout({ height: 360, xaxis: { title: { text: "fraction of heads kept" },
                                                                      autorange: "reversed" },
                                                yaxis: { title: { text: "loss (nats)" } } }), "pruning");
}

async function main() {
  initChrome();
  view.restore();
  ablated = (state.heads || "").split(",").filter(Boolean).map((p) => p.split(".").map(Number))
    .filter((p) => p.length === 2 && p.every(Number.isInteger));
  const info = await withLoading("Loading models", () => setupModelSelect($("model"), $("backend"), state.model, state.backend));
  if (!info) return;
  // the model's own example in the text box (and on a model change while the text is still a default); a link
  // naming a model this page cannot run says so instead of running another one silently
  const named = new URLSearchParams(window.location.search);
  await followCards({ select: $("model"), info, text: $("text"), page: "interventions",
                      wanted: named.get("model") || "", hadText: Boolean(state.text) });
  $("controls").addEventListener("submit", (ev) => { ev.preventDefault(); withLoading("Running the model", go); });
  $("patch-form").addEventListener("submit", (ev) => { ev.preventDefault(); withLoading("Patching heads", patch); });
  $("grid").addEventListener("change", () => { view.save(); if (importance) drawImportance(); });
  $("mode").addEventListener("change", () => {
    view.save();
    if (importance && ablated.length) withLoading("Ablating", () => ablateSelection.run(showAblation));
  });
  $("export-importance-json").addEventListener("click", () => importance && downloadJSON(fileName({ model: importance.model, view: "importance" }, "json"), importance));
  $("export-ablation-json").addEventListener("click", () => ablation && downloadJSON(fileName({ model: ablation.model, view: "ablation" }, "json"), ablation));
  $("export-lens-json").addEventListener("click", () => lens && downloadJSON(fileName({ model: lens.model, view: "logit-lens" }, "json"), lens));
  withLoading("Loading the lab results", showLab);
  // the page opens with its default example answered (a shared link's text, else the form's own)
  if (state.text || $("text").value.trim()) await withLoading("Running the model", go);
}

main();
