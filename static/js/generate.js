// Generation trace: POST /api/generate with stream true, read as Server-Sent Events through
// fetch + ReadableStream (EventSource cannot POST). Each step: the chosen token, the top-k
// probabilities and the new token's attention over the context (layers x context, one
// head or the average over heads). A step slider and a play button replay the trace.
// The text box shows the real text (each step's `text`, the bytes of a split character held
// back by the server until complete); the chips below it show one label per token.
import { ApiError } from "./api.js";
import { initChrome, onArrowKeys } from "./chrome.js";
import { followCards, warnUnknown } from "./examples.js";
import { addImageButtons, downloadJSON, downloadNPY, excerpt, fileName } from "./export.js";
import { fillSelect, offerAutoBackend, player, setupModelSelect } from "./forms.js";
import { CodePoints, escapeLabel, rawLiteral, rawTexts, showToken } from "./labels.js";
import { Latest } from "./latest.js";
import { baseLayout, fontSize, heatmapTrace, plot } from "./plots.js";
import { postSSE } from "./sse.js";
import { bindState } from "./state.js";
import { withLoading } from "./status.js";

const $ = (id) => document.getElementById(id);
const view = bindState({
  // a small causal LM opens the page at once (SmolLM2 loads in seconds to a minute)
  model: "lm", prompt: "", max_new_tokens: 16, temperature: 0,
  top_k: { value: 0, get: () => Number($("top_k").value) || "" }, // 0: all tokens, left out of the URL
  seed: 0, backend: "",
  step: { value: -1, get: () => (steps.length ? Number($("step").value) : state.step) }, // -1: follow the stream
  head: "avg",
});
const { state } = view;
let steps = [];
let summary = null;
const streams = new Latest(); // the latest Generate: a new one (or Stop) ends the stream before it
let promptText = ""; // the prompt of the trace shown (the field may change afterwards)
let promptSeq = null; // the prompt's tokens: the stream's first event (`prompt`), before any new token
let ending = ""; // how the trace ended, shown with every step: the summary's reason, or Stop
let modelInfo = () => null; // setupModelSelect's lookup

/** The generated text so far: every step's released text, then what the summary flushed. */
function generatedText() {
  return steps.map((s) => s.text).join("") + (summary ? summary.tail_text : "");
}

/** The raw text of a generated token: its offsets (code points) in the generated text. */
function stepRaw(text, step) {
  // a control token the model generated (<eos>) adds no text: its offsets are null
  return step.offsets ? text.slice(step.offsets[0], step.offsets[1]) : "";
}

/** The bytes of the character the last steps left unfinished, as the chips show them
 *  ("⟨F0 9F⟩"): the hex groups of the labels of the steps that reach into the held-back tail. */
function tailBytes() {
  const released = new CodePoints(steps.map((s) => s.text).join("")).length;
  const hex = steps.filter((s) => s.offsets && s.offsets[1] > released)
    .flatMap((s) => [...String(s.token).matchAll(/\u27e8([0-9A-Fa-f ]+)\u27e9/g)].map((m) => m[1].trim()));
  return hex.length ? `\u27e8${hex.join(" ")}\u27e9` : "\u27e8\u2026\u27e9";
}

/** Labels and raw texts of the keys a step attended to: the prompt, then the earlier steps. */
function contextTokens(stepIndex) {
  const step = steps[stepIndex];
  const nPrompt = step.context_len - stepIndex;
  const seq = summary || promptSeq; // the prompt event names the prompt's tokens before the first step
  const promptLabels = seq ? seq.prompt_tokens : Array.from({ length: nPrompt }, (_, i) => `p${i}`);
  const promptRaw = seq ? rawTexts(seq, [promptText], "prompt_") : promptLabels.map(() => null);
  const text = new CodePoints(generatedText());
  const earlier = steps.slice(0, stepIndex);
  const n = step.attention[0][0].length;
  return {
    labels: [...promptLabels, ...earlier.map((s) => s.token)].slice(0, n),
    raw: [...promptRaw, ...earlier.map((s) => stepRaw(text, s))].slice(0, n),
  };
}

function stepMatrix(step) {
  const choice = $("head").value;
  return step.attention.map((layer) => {
    if (choice !== "avg") return layer[Number(choice)];
    const n = layer.length;
    return layer[0].map((_, j) => layer.reduce((acc, row) => acc + row[j], 0) / n);
  });
}

/** The text (prompt, then each step's text) and one chip per generated token. */
function renderText(stepIndex) {
  const box = $("generated");
  box.replaceChildren();
  const prompt = document.createElement("span");
  prompt.textContent = promptText; // text only, never markup
  box.appendChild(prompt);
  steps.forEach((s, i) => {
    const span = document.createElement("span");
    span.className = i === stepIndex ? "gen current" : "gen";
    span.textContent = s.text; // "" while a character is unfinished: it shows with the step completing it
    if (!s.text) {
      // nothing to highlight: a marker (CSS, not text) says where the step stands
      span.classList.add("pending");
      span.title = `step ${i} (${s.token}) completes no text: its bytes start a character a later step finishes`;
    }
    box.appendChild(span);
  });
  if (summary && summary.tail_text) {
    // the decoder writes an unfinished character as U+FFFD: show its bytes instead, as the chips do
    const tail = document.createElement("span");
    const last = steps.length - 1;
    tail.className = stepIndex === last ? "gen tail incomplete current" : "gen tail incomplete";
    tail.title = "an unfinished character: generation stopped inside it (its UTF-8 bytes so far)";
    tail.textContent = tailBytes();
    box.appendChild(tail);
    const current = box.querySelector(".gen.current.pending");
    if (current && stepIndex === last) current.classList.remove("current"); // the tail holds its bytes
  }
  const chips = $("chips");
  chips.replaceChildren();
  const text = new CodePoints(generatedText());
  steps.forEach((s, i) => {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = i === stepIndex ? "chip current" : "chip";
    chip.textContent = showToken(s.token);
    chip.title = `step ${i}, id ${s.token_id}: ${rawLiteral(stepRaw(text, s))}`;
    chip.dataset.step = String(i);
    chip.setAttribute("aria-pressed", i === stepIndex ? "true" : "false");
    chip.addEventListener("click", () => showStep(i));
    chips.appendChild(chip);
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
  $("chosen").textContent = `${step.token} (id ${step.token_id})`;
  $("trace-info").textContent = `step ${i}, context ${step.context_len} tokens${ending}`;
  renderText(i);
  const top = step.top;
  // the chosen token reads as its chip does: a later step's relabel names the character it began
  const label = (t) => (t.token_id === step.token_id ? step.token : t.token);
  const note = (t) => (t.token_id === step.token_id && t.token !== step.token
    ? `<br>read as ${escapeLabel(showToken(t.token))} at this step, before its character was complete` : "");
  // one bar per rank (candidates with equal labels stay apart); the chosen one is matched by id
  await plot($("probs"), [{
    type: "bar", orientation: "h", x: top.map((t) => t.prob), y: top.map((_, k) => k),
    marker: { color: top.map((t) => (t.token_id === step.token_id ? "#E69F00" : "#0072B2")) },
    customdata: top.map((t) => [escapeLabel(showToken(label(t))), t.token_id, note(t)]),
    hovertemplate: "%{customdata[0]} (id %{customdata[1]})%{customdata[2]}<br>p = %{x:.4f}<extra></extra>",
  }], baseLayout({
    title: { text: "Top next-token probabilities" }, height: 380,
    xaxis: { title: { text: "probability" }, range: [0, 1] },
    yaxis: { autorange: "reversed", tickmode: "array", tickvals: top.map((_, k) => k),
             ticktext: top.map((t) => escapeLabel(showToken(label(t)))), automargin: true },
  }), `probs-step${i}`);
  const z = stepMatrix(step);
  const context = contextTokens(i);
  const tokens = context.labels;
  const last = tokens.length - 1; // the query: the last context token, whose output predicts the chosen token
  const heads = $("head").value === "avg" ? "average over heads" : `head ${$("head").value}`;
  await plot($("step-attention"), [heatmapTrace(z, {
    colTokens: tokens, colRaw: context.raw, rowName: "layer", colName: "key" })], baseLayout({
    // two lines at the tick font size, with room above the plot for them (large fonts too)
    title: { text: `Attention of the last context token “${escapeLabel(showToken(tokens[last] ?? ""))}”<br>`
      + `(it predicts “${escapeLabel(showToken(step.token))}”; ${heads})`, font: { size: fontSize() } },
    margin: { l: 70, r: 20, t: Math.round(fontSize() * 2.6) + 24, b: 60 },
    height: 380, xaxis: { title: { text: "context token (the query is the last)" } },
    yaxis: { title: { text: "layer" }, autorange: "reversed" },
    // the query's column, outlined: each row is the weights this token gives the context
    shapes: [{ type: "rect", xref: "x", yref: "paper", x0: last - 0.5, x1: last + 0.5, y0: 0, y1: 1,
               line: { color: "#E69F00", width: 3 } }],
  }), `new-token-attention-step${i}`, {
    // layers too: SmolLM2's 30 labels overprint in the chart's height unless fitted
    tokenAxes: { xaxis: { tokens }, yaxis: { tokens: z.map((_, l) => String(l)) } },
  });
  view.save();
}

function setupTrace() {
  $("trace-panel").hidden = false;
  $("step").max = String(Math.max(0, steps.length - 1));
  const nHeads = steps[0].attention[0].length;
  const heads = ["avg", ...Array.from({ length: nHeads }, (_, h) => String(h))];
  fillSelect($("head"), heads, ["average", ...heads.slice(1).map((h) => `head ${h}`)], state.head);
}

async function generate() {
  view.save();
  const body = {
    model: $("model").value, prompt: $("prompt").value, max_new_tokens: Number($("max_new_tokens").value),
    temperature: Number($("temperature").value), seed: Number($("seed").value), backend: $("backend").value || null,
    stream: true,
  };
  if (Number($("top_k").value) > 0) body.top_k = Number($("top_k").value);
  await streams.run(async (signal) => {
    steps = [];
    summary = null;
    promptSeq = null;
    ending = "";
    promptText = body.prompt;
    $("stop").disabled = false;
    try {
      await stream(body, signal);
    } finally {
      if (!signal.aborted) $("stop").disabled = true; // aborted: Stop turned itself off, or a newer stream owns it
    }
  });
  if (!steps.length) throw new Error("The model produced no tokens (end of sequence at once?)");
  const target = state.step >= 0 ? state.step : steps.length - 1;
  state.step = -1;
  // the backend that ran: with `auto` the server chose it by the prompt's length
  ending = summary ? ` \u00b7 stopped: ${summary.stopped}, ${Math.round(summary.timings.per_token_ms || 0)} ms/token `
    + `on ${summary.backend}` : "";
  await showStep(target);
}

/** Stop: the stream ends (the server stops at the next step) and the trace so far stays, complete. */
function stopByUser() {
  streams.cancel();
  $("stop").disabled = true;
  if (!steps.length) return;
  ending = ` \u00b7 stopped by the user (Stop) after ${steps.length} token${steps.length === 1 ? "" : "s"}`;
  $("step").max = String(steps.length - 1);
  showStep(steps.length - 1);
}

/** POST /api/generate and read its events into steps and summary, while the signal allows. */
async function stream(body, signal) {
  // a refusal before the stream throws the server's error; the events are read by the shared SSE reader
  await postSSE("/api/generate", body, (name, data) => {
    signal.throwIfAborted(); // a newer Generate started: this stream's events are not shown
    if (name === "prompt") {
      promptSeq = data; // the context's labels from the first token on
      warnUnknown(data.prompt_tokens, modelInfo(data.model));
    } else if (name === "token") {
      for (const r of data.relabel || []) steps[r.step].token = r.token; // a character is now whole
      steps.push(data);
      if (steps.length === 1) setupTrace();
      $("step").max = String(steps.length - 1);
      $("trace-info").textContent = `streaming: ${steps.length} tokens`;
      if (state.step < 0) showStep(steps.length - 1); else renderText(Number($("step").value));
    } else if (name === "summary") {
      summary = data;
      summary.tokens.forEach((label, k) => { if (steps[k]) steps[k].token = label; });
    } else if (name === "error") {
      throw new ApiError(data.status || 500, data.detail);
    }
  }, signal);
}

async function main() {
  initChrome();
  view.restore();
  if (state.top_k) $("top_k").value = String(state.top_k);
  const info = await withLoading("Loading models", () => setupModelSelect($("model"), $("backend"), state.model, state.backend));
  if (!info) return;
  offerAutoBackend($("backend"), $("model"), state.backend); // long prompts then generate on flash
  modelInfo = info;
  const named = new URLSearchParams(window.location.search);
  await followCards({ select: $("model"), info, text: $("prompt"), page: "generate", wanted: named.get("model") || "",
                      hadText: named.has("prompt") });
  $("controls").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.step = -1;
    withLoading("Generating", generate);
  });
  $("stop").addEventListener("click", stopByUser);
  $("step").addEventListener("input", () => showStep(Number($("step").value)));
  $("head").addEventListener("change", () => { state.head = $("head").value; showStep(Number($("step").value)); });
  player($("play"), $("step"), (i) => showStep(i));
  addImageButtons($("export-trace-json"), $("step-attention"), () => steps.length && {
    file: { model: $("model").value, view: `generation-step${$("step").value}` },
    title: `${$("model").value} \u00b7 step ${$("step").value}: attention of the last context token \u00b7 `
      + `\u201c${excerpt(promptText)}\u201d` });
  $("export-trace-json").addEventListener("click", () => steps.length && downloadJSON(
    fileName({ model: $("model").value, view: "generation" }, "json"), { steps, summary }));
  $("export-step-npy").addEventListener("click", () => {
    if (!steps.length) return;
    const i = Number($("step").value);
    downloadNPY(fileName({ model: $("model").value, view: `generation-step${i}` }, "npy"), steps[i].attention); // [layer][head][context]
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
  // the page opens with a trace: the link's prompt, or the model's example
  const wanted = state.step;
  await withLoading("Generating", async () => { state.step = wanted; await generate(); });
}

main();
