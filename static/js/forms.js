// Form controls shared by the views: the model and backend selects (from GET /api/models),
// option lists, and a play button that steps a range input. Option text is set as text.
import { api } from "./api.js";

let modelsCache = null;

export async function listModels() {
  if (!modelsCache) modelsCache = await api("/api/models");
  return modelsCache;
}

/**
 * Fill the model <select> with the models of the given families; unavailable ones stay
 * listed, disabled, with the reason. Returns a lookup of a model's info (the chosen one by default).
 */
export async function setupModelSelect(select, backendSelect, wanted, wantedBackend) {
  const families = (select.dataset.families || "").split(",").filter(Boolean);
  const models = (await listModels()).filter((m) => !families.length || families.includes(m.family));
  select.replaceChildren();
  for (const m of models) {
    const option = document.createElement("option");
    option.value = m.id;
    option.textContent = m.available
      ? `${m.id} (${m.family}, ${m.n_layers}\u00d7${m.n_heads})`
      : `${m.id} (unavailable: hover for why)`; // the reason in the title: a long one would widen the page
    option.disabled = !m.available;
    if (!m.available) option.title = m.reason || "";
    select.appendChild(option);
  }
  const available = models.filter((m) => m.available);
  const pick = available.find((m) => m.id === wanted) || available[0];
  if (pick) select.value = pick.id;
  const note = document.getElementById("model-note");
  if (!pick && note) note.textContent = `No available ${families.join(" / ")} model on this server.`;
  const fillBackends = () => {
    const info = models.find((m) => m.id === select.value);
    if (!backendSelect || !info) return;
    const previous = backendSelect.value || wantedBackend;
    backendSelect.replaceChildren();
    for (const b of info.backends) {
      const option = document.createElement("option");
      option.value = b;
      option.textContent = b;
      backendSelect.appendChild(option);
    }
    if (info.backends.includes(previous)) backendSelect.value = previous;
  };
  fillBackends();
  select.addEventListener("change", fillBackends);
  return (id) => models.find((m) => m.id === (id || select.value));
}

export function fillSelect(select, values, labels = null, selected = null) {
  select.replaceChildren();
  values.forEach((v, i) => {
    const option = document.createElement("option");
    option.value = String(v);
    option.textContent = labels ? labels[i] : String(v);
    select.appendChild(option);
  });
  if (selected !== null && values.map(String).includes(String(selected))) select.value = String(selected);
}

/**
 * Put "auto" first in a backend select, for pages whose endpoint takes it (the server picks by the input's
 * length: flash for long inputs, and says which it picked), and keep the choice across a model change
 * (setupModelSelect refills the backends). `wanted`: the URL's backend ("" or "auto": auto).
 */
export function offerAutoBackend(backendSelect, modelSelect, wanted) {
  const add = (choice) => {
    if (!backendSelect.querySelector('option[value="auto"]')) {
      const option = document.createElement("option");
      option.value = "auto";
      option.textContent = "auto (flash for long inputs)";
      backendSelect.prepend(option);
    }
    if (!choice || choice === "auto") backendSelect.value = "auto";
    else if ([...backendSelect.options].some((o) => o.value === choice)) backendSelect.value = choice;
  };
  add(wanted);
  let choice = backendSelect.value;
  backendSelect.addEventListener("change", () => { choice = backendSelect.value; });
  modelSelect.addEventListener("change", () => add(choice));
}

/** Play/pause a range input through its values. */
export function player(button, range, onStep, intervalMs = 600) {
  let timer = null;
  const stop = () => {
    clearInterval(timer);
    timer = null;
    button.textContent = "Play";
    button.setAttribute("aria-pressed", "false");
  };
  button.addEventListener("click", () => {
    if (timer) { stop(); return; }
    if (Number(range.value) >= Number(range.max)) range.value = range.min;
    button.textContent = "Pause";
    button.setAttribute("aria-pressed", "true");
    timer = setInterval(() => {
      if (Number(range.value) >= Number(range.max)) { stop(); return; }
      range.value = String(Number(range.value) + 1);
      onStep(Number(range.value));
    }, intervalMs);
  });
  return stop;
}
