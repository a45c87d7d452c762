// Architecture: the selected model's structure from its config (blocks, shapes, parameters
// and FLOPs per token by component, norm placement, where positions enter) and a
// forward/backward time-per-component profile. Only the latest model's answers are drawn.
import { api } from "./api.js";
import { initChrome } from "./chrome.js";
import { followCards } from "./examples.js";
import { downloadJSON, fileName } from "./export.js";
import { setupModelSelect } from "./forms.js";
import { Latest } from "./latest.js";
import { plotFigure } from "./plots.js";
import { bindState } from "./state.js";
import { withLoading } from "./status.js";

const $ = (id) => document.getElementById(id);
const view = bindState({ model: "minilm", context: 128, tokens: 32, profile: { value: false, get: () => Boolean(profile) } });
const { state } = view;
let arch = null;
let profile = null;
const described = new Latest(); // the latest model's structure
const profiled = new Latest(); // the latest profile

function human(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
  return String(n);
}

function fact(dl, term, value) {
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.textContent = value;
  dl.append(dt, dd);
}

async function describe() {
  profiled.cancel();
  profile = null;
  $("profile-chart").replaceChildren();
  $("profile-chart").hidden = true; // no blank band: the chart shows once a profile is drawn
  $("profile-note").textContent = "Press Profile to time the forward and backward pass of each component.";
  view.save();
  const url = `/api/figures/architecture/${encodeURIComponent($("model").value)}?context=${Number($("context").value)}`;
  const answer = await described.run((signal) => api(url, { signal }));
  arch = answer.architecture;
  $("arch-panel").hidden = false;
  $("profile-panel").hidden = false;
  $("arch-title").textContent = `Structure of ${arch.model.id} (${arch.family})`;
  const s = arch.shape;
  const dl = $("arch-facts");
  dl.replaceChildren();
  fact(dl, "parameters", `${human(arch.total_params)}${arch.model.n_params ? ` (counted on the model: ${human(arch.model.n_params)})` : ""}`);
  fact(dl, "forward FLOPs / token", `${human(arch.total_flops_per_token)} at a context of ${arch.context}`);
  fact(dl, "width", `d_model ${s.d_model}, ${s.n_heads} heads of ${s.head_dim}${s.n_kv_heads !== s.n_heads ? `, ${s.n_kv_heads} KV heads (grouped-query)` : ""}, feed-forward ${s.d_ff}`);
  fact(dl, "normalisation", arch.norm);
  fact(dl, "positions enter", arch.positions);
  fact(dl, "embeddings", !arch.shape.lm_head ? "no language-model head (a bare encoder: its output is the hidden states)"
    : arch.tied_embeddings ? "output projection tied to the token embedding" : "separate output projection");
  const ol = $("blocks");
  ol.replaceChildren();
  for (const b of arch.blocks) {
    const li = document.createElement("li");
    li.textContent = `${b.stack}: ${b.n_layers} \u00d7 [${b.sublayers.join(" \u2192 ")}], each ${b.residual}`;
    ol.appendChild(li);
  }
  const tbody = $("shapes").querySelector("tbody");
  tbody.replaceChildren();
  for (const row of arch.shapes) {
    const tr = document.createElement("tr");
    const a = document.createElement("td");
    a.textContent = row.step;
    const b = document.createElement("td");
    b.textContent = `(${row.shape.join(", ")})`;
    tr.append(a, b);
    tbody.appendChild(tr);
  }
  await plotFigure($("arch-chart"), answer.figure, `${arch.model.id}-architecture`);
}

async function runProfile() {
  const url = `/api/figures/profile/${encodeURIComponent($("model").value)}?tokens=${Number($("tokens").value)}`;
  const answer = await profiled.run((signal) => api(url, { signal }));
  profile = answer.profile;
  $("profile-note").textContent = `${profile.tokens} tokens, forward ${profile.total_forward_ms.toFixed(1)} ms, backward `
    + `${profile.total_backward_ms.toFixed(1)} ms on ${profile.threads} CPU threads (${profile.note}).`;
  $("profile-chart").hidden = false;
  await plotFigure($("profile-chart"), answer.figure, `${profile.model}-profile`);
  view.save();
}

async function main() {
  initChrome();
  view.restore();
  const info = await withLoading("Loading models", () => setupModelSelect($("model"), $("backend"), state.model, ""));
  if (!info) return;
  await followCards({ select: $("model"), info, page: "architecture",
                      wanted: new URLSearchParams(window.location.search).get("model") || "" });
  $("controls").addEventListener("submit", (ev) => { ev.preventDefault(); withLoading("Loading the model's config", describe); });
  $("profile").addEventListener("click", () => withLoading("Profiling forward and backward", runProfile));
  $("export-arch-json").addEventListener("click", () => arch && downloadJSON(fileName({ model: $("model").value, view: "architecture" }, "json"), arch));
  $("export-profile-json").addEventListener("click", () => profile && downloadJSON(fileName({ model: $("model").value, view: "profile" }, "json"), profile));
  // the page opens with a result: the structure, then the profile (a small model's profile takes well
  // under a second), unless a shared link says it had none
  const params = new URLSearchParams(window.location.search);
  await withLoading("Loading the model's config", describe);
  if (arch && (state.profile || !params.has("model"))) await withLoading("Profiling forward and backward", runProfile);
}

main();
