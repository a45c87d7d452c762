// Generation trace: POST /api/generate with stream true, read as Server-Sent Events through
// fetch + ReadableStream (EventSource cannot POST). Each step: the chosen token, the top-k
// probabilities and the new token's attention over the context (layers x context, one
// head or the average over heads). A step slider and a play button replay the trace.
import {
  ApiError, baseLayout, downloadJSON, downloadNPY, escapeLabel, fillSelect, heatmapTrace, initChrome, onArrowKeys,
  player, plot, readState, setupModelSelect, showToken, tokenAxis, withLoading, writeState,
} from "./common.js";

const $ = (id) => document.getElementById(id);
const state = readState({ model: "smollm2", prompt: "", max_new_tokens: 16, temperature: 0, top_k: 0, seed: 0,
                          backend: "", step: -1, head: "avg" });
let steps = [];
let summary = null;
let controller = null;

function saveState() {
  writeState({
    model: $("model").value, prompt: $("prompt").value, max_new_tokens: Number($("max_new_tokens").value),
    temperature: Number($("temperature").value), top_k: Number($("top_k").value) || "", seed: Number($("seed").value),
    backend: $("backend").value, step: steps.length ? Number($("step").value) : state.step, head: $("head").value,
  });
}

/** Parse an SSE byte stream: calls onEvent(name, data) per event; ignores comments (pings). */
async function readSSE(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") name = val;
        else if (field === "data") data.push(val);
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

function contextTokens(stepIndex) {
  const step = steps[stepIndex];
  const prompt = summary ? summary.prompt_tokens : null;
  const generated = steps.slice(0, stepIndex).map((s) => s.token);
  const nPrompt = step.context_len - stepIndex;
  const head = prompt || Array.from({ length: nPrompt }, (_, i) => `p${i}`);
  return [...head, ...generated].slice(0, step.attention[0][0].length);
}

function stepMatrix(step) {
  const choice = $("head").value;
  return step.attention.map((layer) => {
    if (choice !== "avg") return layer[Number(choice)];
    const n = layer.length;
    return layer[0].map((_, j) => layer.reduce((acc, row) => acc + row[j], 0) / n);
  });
}

function renderText(stepIndex) {
  const box = $("generated");
  box.replaceChildren();
  if (summary) {
    const prompt = document.createElement("span");
    prompt.textContent = $("prompt").value;
    box.appendChild(prompt);
  }
  steps.forEach((s, i) => {
    const span = document.createElement("span");
    span.className = i === stepIndex ? "gen current" : "gen";
    span.textContent = s.token; // token text only, never markup
    box.appendChild(span);
  });
}

// one redraw at a time: while one runs, only the latest request is kept
let drawing = null;
let wanted = null;
function showStep(index) {
  wanted = index;
  if (!drawing) {
    drawing = (async () => {
      while (wanted !== null) {
        const next = wanted;
        wanted = null;
        await drawStep(next);
      }
    })().finally(() => { drawing = null; });
  }
  return drawing;
}

async function drawStep(index) {
  if (!steps.length) return;
  const i = Math.max(0, Math.min(steps.length - 1, index));
  const step = steps[i];
  $("step").value = String(i);
  $("step-out").textContent = String(i);
  $("chosen").textContent = JSON.stringify(step.token).slice(1, -1);
  $("trace-info").textContent = `step ${i}, context ${step.context_len} tokens`;
  renderText(i);
  const top = step.top;
  await plot($("probs"), [{
    type: "bar", orientation: "h", x: top.map((t) => t.prob), y: top.map((_, k) => k),
    marker: { color: top.map((t) => (t.token === step.token ? "#E69F00" : "#0072B2")) },
    customdata: top.map((t) => escapeLabel(showToken(t.token))),
    hovertemplate: "%{customdata}<br>p = %{x:.4f}<extra></extra>",
  }], baseLayout({
    title: { text: "Top next-token probabilities" }, height: 380,
    xaxis: { title: { text: "probability" }, range: [0, 1] },
    yaxis: { autorange: "reversed", tickmode: "array", tickvals: top.map((_, k) => k),
             ticktext: top.map((t) => escapeLabel(showToken(t.token))), automargin: true },
  }), `probs-step${i}`);
  const z = stepMatrix(step);
  const tokens = contextTokens(i);
  const layers = z.map((_, l) => `L${l}`);
  await plot($("step-attention"), [heatmapTrace(z, { rowTokens: layers, colTokens: tokens })], baseLayout({
    title: { text: `Attention of the new token (${$("head").value === "avg" ? "average over heads" : `head ${$("head").value}`})` },
    height: 380, xaxis: { title: { text: "context token" }, tickangle: -60, ...tokenAxis(tokens) },
    yaxis: { title: { text: "layer" }, autorange: "reversed", dtick: 1 },
  }), `new-token-attention-step${i}`);
  saveState();
}

function setupTrace() {
  $("trace-panel").hidden = false;
  $("step").max = String(Math.max(0, steps.length - 1));
  const nHeads = steps[0].attention[0].length;
  const heads = ["avg", ...Array.from({ length: nHeads }, (_, h) => String(h))];
  fillSelect($("head"), heads, ["average", ...heads.slice(1).map((h) => `head ${h}`)], state.head);
}

async function generate() {
  saveState();
  steps = [];
  summary = null;
  if (controller) controller.abort();
  controller = new AbortController();
  const body = {
    model: $("model").value, prompt: $("prompt").value, max_new_tokens: Number($("max_new_tokens").value),
    temperature: Number($("temperature").value), seed: Number($("seed").value), backend: $("backend").value || null,
    stream: true,
  };
  if (Number($("top_k").value) > 0) body.top_k = Number($("top_k").value);
  $("stop").disabled = false;
  try {
    const response = await fetch("/api/generate", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (_) { /* not JSON */ }
      throw new ApiError(response.status, detail);
    }
    await readSSE(response, (name, data) => {
      if (name === "token") {
        steps.push(data);
        if (steps.length === 1) setupTrace();
        $("step").max = String(steps.length - 1);
        $("trace-info").textContent = `streaming: ${steps.length} tokens`;
        if (state.step < 0) showStep(steps.length - 1); else renderText(Number($("step").value));
      } else if (name === "summary") {
        summary = data;
      } else if (name === "error") {
        throw new ApiError(data.status || 500, data.detail);
      }
    });
  } finally {
    $("stop").disabled = true;
    controller = null;
  }
  if (!steps.length) throw new Error("The model produced no tokens (end of sequence at once?)");
  const target = state.step >= 0 ? state.step : steps.length - 1;
  state.step = -1;
  await showStep(target);
  $("trace-info").textContent += summary ? ` \u00b7 stopped: ${summary.stopped}, ${Math.round(summary.timings.per_token_ms || 0)} ms/token` : "";
}

async function main() {
  initChrome();
  $("prompt").value = state.prompt || $("prompt").value;
  $("max_new_tokens").value = String(state.max_new_tokens);
  $("temperature").value = String(state.temperature);
  if (state.top_k) $("top_k").value = String(state.top_k);
  $("seed").value = String(state.seed);
  const info = await withLoading("Loading models", () => setupModelSelect($("model"), $("backend"), state.model, state.backend));
  if (!info) return;
  $("controls").addEventListener("submit", (ev) => { ev.preventDefault(); state.step = -1; withLoading("Generating", generate); });
  $("stop").addEventListener("click", () => controller && controller.abort());
  $("step").addEventListener("input", () => showStep(Number($("step").value)));
  $("head").addEventListener("change", () => { state.head = $("head").value; showStep(Number($("step").value)); });
  player($("play"), $("step"), (i) => showStep(i));
  $("export-trace-json").addEventListener("click", () => steps.length && downloadJSON("generation-trace.json", { steps, summary }));
  $("export-step-npy").addEventListener("click", () => {
    if (!steps.length) return;
    const i = Number($("step").value);
    downloadNPY(`step${i}-attention.npy`, steps[i].attention); // [layer][head][context]
  });
  onArrowKeys((dLayer, dHead) => {
    if (!steps.length) return false;
    if (dHead !== 0) {
      const options = Array.from($("head").options).map((o) => o.value);
      const k = Math.max(0, Math.min(options.length - 1, options.indexOf($("head").value) + dHead));
      $("head").value = options[k];
      state.head = options[k];
    } else {
      $("step").value = String(Number($("step").value) + dLayer);
    }
    showStep(Number($("step").value));
    return true;
  });
  if (state.prompt) {
    const wanted = state.step;
    await withLoading("Generating", async () => { state.step = wanted; await generate(); });
  }
}

main();
