// A run with its progress: POST /api/runs/stream says the tokens, the backend (and why: `auto` picks flash
// for long inputs) and the estimated time first, then one event per layer. A run estimated over
// SHOW_AFTER_S seconds shows a progress bar and a Cancel button; Cancel closes the connection, and the
// server stops the forward at its next layer. Also the long-text demo: GET /api/long-text gives a passage
// that fits the chosen model.
import { api, ApiError } from "../api.js";
import { adoptRun } from "../runs.js";
import { postSSE } from "../sse.js";

const SHOW_AFTER_S = 5; // runs estimated shorter than this show only the status spinner

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

/** The progress block, made once, after `anchor` (hidden until a long run starts). */
export class RunProgress {
  constructor(anchor, onCancel) {
    this.box = el("div", { id: "run-progress", class: "run-progress", role: "status", "aria-live": "polite" });
    this.box.hidden = true;
    this.bar = el("progress", { id: "run-progress-bar", max: "1", value: "0" });
    this.text = el("span", { id: "run-progress-text", class: "note" });
    this.cancel = el("button", { type: "button", id: "run-cancel", class: "secondary" }, "Cancel");
    this.cancel.addEventListener("click", onCancel);
    this.box.append(this.bar, this.text, this.cancel);
    anchor.after(this.box);
    this.note = el("p", { id: "run-note", class: "note" });
    this.box.after(this.note);
  }

  /** A new run: nothing of the last one (or of the long-text note) stays on show. */
  start() {
    this.planned = null;
    this.note.textContent = "";
  }

  estimate(e) {
    this.planned = e;
    this.note.textContent = `${e.n_tokens} tokens on ${e.backend} (${e.backend_reason}); ${estimateText(e.estimate_s)}`;
    this.box.hidden = e.estimate_s < SHOW_AFTER_S;
    this.bar.max = e.n_steps;
    this.bar.value = 0;
    this.text.textContent = `about ${Math.ceil(e.estimate_s)} s`;
  }

  progress(p) {
    this.bar.max = p.total;
    this.bar.value = p.done;
    this.text.textContent = `layer ${p.done} of ${p.total}, ${p.elapsed_s.toFixed(1)} s`
      + (this.planned ? ` of about ${Math.ceil(this.planned.estimate_s)} s` : "");
  }

  done(run) {
    this.box.hidden = true;
    const ms = run.timings && run.timings.forward_ms;
    if (!this.planned) this.note.textContent = `${run.n_tokens} tokens on ${run.backend}${run.cached ? ", from the cache" : ""}`;
    else if (ms) this.note.textContent += `; took ${(ms / 1000).toFixed(1)} s`;
  }

  cancelled() {
    this.box.hidden = true;
    this.note.textContent = "Run cancelled: the server stopped it.";
  }
}

/** "estimated 12.3 s", or that there is nothing to estimate from yet (a server's first run of a model). */
export function estimateText(seconds) {
  return seconds >= 0.05 ? `estimated ${seconds.toFixed(1)} s` : "no estimate yet (no run of this model timed here)";
}

/** The run of `request` ({model, text, text_pair, backend: a backend or "auto"}) through the stream,
 *  progress shown on `progress`; resolves with the POST /api/runs answer (see runs.js). */
export async function streamRun(request, progress, signal) {
  const body = { model: request.model, text: request.text, backend: request.backend || "auto" };
  if (request.text_pair && request.text_pair.trim()) body.text_pair = request.text_pair;
  if (request.values) body.values = true;
  let answer = null;
  progress.start();
  await postSSE("/api/runs/stream", body, (name, data) => {
    if (name === "estimate") progress.estimate(data);
    else if (name === "progress") progress.progress(data);
    else if (name === "done") answer = data;
    else if (name === "error") throw new ApiError(data.status, data.detail);
  }, signal);
  if (!answer) throw new Error("the run's stream ended without a result; run it again");
  progress.done(answer);
  // recreating it later (evicted, another worker) names the backend the run used, not "auto"
  return adoptRun(answer, { ...body, backend: answer.backend });
}

/** The long-text demo for a model: {text, n_tokens, limit, limit_reason, backend, backend_reason, estimate_s}. */
export function longText(model) {
  return api(`/api/long-text?${new URLSearchParams({ model })}`);
}
