// Backends: which attention backends and SDPA kernels run on the server's machine, and why not
// (GET /api/backends). Backends the toggle offers there but the page's form lacks (on a GPU:
// triton, sdpa_flash, ...) get a checkbox. Text only: names and reasons go in via textContent.
import { api } from "./api.js";

const $ = (id) => document.getElementById(id);

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

/** Fill #here-device and #here-table; add a checkbox for each offered backend the form lacks. */
export async function showBackendsHere() {
  const report = await api("/api/backends");
  const gpu = report.device === "cuda" ? ` (${report.name})` : "";
  $("here-device").textContent = `Models run on ${report.device}${gpu} in ${report.dtype}; torch ${report.torch}, `
    + `Triton ${report.triton ?? "not installed"}. For an unmasked causal call SDPA takes its `
    + `${report.sdpa_choice ?? "(none)"} kernel here.`;
  const tbody = $("here-table").querySelector("tbody");
  tbody.replaceChildren();
  for (const b of report.backends) {
    const tr = document.createElement("tr");
    cell(tr, b.name);
    cell(tr, b.registered ? "yes" : "no");
    cell(tr, b.available ? "yes" : `no: ${b.reason}`);
    cell(tr, b.returns_lse ? "yes" : "no");
    cell(tr, b.description);
    tbody.appendChild(tr);
  }
  const fieldset = $("backend-choices");
  const present = new Set(Array.from(fieldset.querySelectorAll("input[name=backends]")).map((i) => i.value));
  for (const b of report.backends) {
    if (!b.registered || present.has(b.name)) continue;
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox";
    input.name = "backends";
    input.value = b.name;
    label.append(input, ` ${b.name}`);
    fieldset.appendChild(label);
  }
  return report;
}
