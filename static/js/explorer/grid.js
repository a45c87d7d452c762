// The Explorer's model view: a layers x heads grid of pooled thumbnails, fetched a band of layers
// at a time (GET /api/runs/{id}/overviews: every head of up to BAND layers in one answer) when
// their rows scroll into view, and drawn on canvases; tinted by a head-type score on demand.
// One request per band instead of one per head: SmolLM2's 30 x 9 grid is 4 requests, not 270
// (bench/grid.py measures the page's draw time both ways).
import { isAbort } from "../latest.js";
import { viridis } from "../scale.js";

export const THUMB = 48; // pooled thumbnail side, in cells and canvas pixels
const PARALLEL = 2; // band requests in flight at once
const BAND = 8; // layers per request: bands start at multiples of BAND

function drawThumb(canvas, t, shared = false) {
  canvas.tile = t; // kept to redraw on a change of scale
  const [rows, cols] = t.shape.slice(-2);
  canvas.width = cols;
  canvas.height = rows;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(cols, rows);
  let max = shared ? 1 : 0; // shared: every head on one scale, weight 0 to 1; else its own maximum
  if (!shared) for (const v of t.data) if (v > max) max = v;
  for (let i = 0; i < t.data.length; i++) {
    // square root: a sink or the diagonal (weight ~1) would otherwise leave the rest black
    const [r, g, b] = viridis(max > 0 ? Math.sqrt(t.data[i] / max) : 0);
    image.data.set([r, g, b, 255], i * 4);
  }
  ctx.putImageData(image, 0, 0);
  canvas.dataset.loaded = "1";
}

function axisLabel(text) {
  const label = document.createElement("span");
  label.className = "axis";
  label.textContent = text;
  return label;
}

export class HeadGrid {
  #observer = null;
  #thumbs = new AbortController(); // the thumbnails of the grid shown
  #queue = [];
  #active = 0;

  /** `fetchLayers(first, last, signal)` resolves with the pooled overviews of layers [first, last), every
   *  head: {data, shape: [layers, heads, rows, cols]}; `onOpen(layer, head)` on a click; `shared()` says
   *  whether every thumbnail is drawn on one scale (weight 0 to 1) instead of its own maximum. */
  constructor(el, { fetchLayers, onOpen, shared = () => false }) {
    this.el = el;
    this.shared = shared;
    this.fetchLayers = fetchLayers;
    this.onOpen = onOpen;
  }

  /** A fresh grid of nLayers x nHeads buttons; the thumbnails of an earlier grid are not fetched or drawn any more. */
  build(nLayers, nHeads) {
    const grid = this.el;
    grid.replaceChildren();
    if (this.#observer) this.#observer.disconnect();
    this.#thumbs.abort();
    this.#thumbs = new AbortController();
    this.#queue.length = 0;
    delete grid.dataset.drawn;
    grid.style.setProperty("--heads", String(nHeads));
    grid.appendChild(axisLabel(""));
    for (let h = 0; h < nHeads; h++) grid.appendChild(axisLabel(`H${h}`));
    this.#observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        if (!entry.isIntersecting) continue;
        this.#queueBand(Math.floor(Number(entry.target.dataset.layer) / BAND));
      }
      this.#pump();
    }, { rootMargin: "200px" });
    for (let l = 0; l < nLayers; l++) {
      const label = axisLabel(`L${l}`);
      label.dataset.layer = String(l);
      grid.appendChild(label);
      this.#observer.observe(label); // a row's thumbnails are fetched with its band
      for (let h = 0; h < nHeads; h++) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "thumb";
        button.dataset.layer = String(l);
        button.dataset.head = String(h);
        button.setAttribute("aria-label", `layer ${l} head ${h}`);
        button.title = `layer ${l}, head ${h}`;
        const canvas = document.createElement("canvas");
        canvas.width = THUMB;
        canvas.height = THUMB;
        button.appendChild(canvas);
        const score = document.createElement("span");
        score.className = "score";
        button.appendChild(score);
        button.addEventListener("click", () => this.onOpen(l, h));
        grid.appendChild(button);
      }
    }
  }

  /** Queue band b (layers [b*BAND, (b+1)*BAND)): its rows are not watched any more. */
  #queueBand(band) {
    const labels = [...this.el.querySelectorAll(".axis[data-layer]")]
      .filter((label) => Math.floor(Number(label.dataset.layer) / BAND) === band && !label.dataset.queued);
    if (!labels.length) return;
    for (const label of labels) {
      this.#observer.unobserve(label);
      label.dataset.queued = "1";
    }
    this.#queue.push(band);
  }

  /** The rows in sight are drawn: fetch the others too (a band costs one request), then mark the grid drawn. */
  #rest() {
    const left = [...this.el.querySelectorAll(".axis[data-layer]")].filter((label) => !label.dataset.queued);
    if (!left.length) { this.el.dataset.drawn = "1"; return; }
    for (const label of left) this.#queueBand(Math.floor(Number(label.dataset.layer) / BAND));
  }

  /** Fetch the queued bands, PARALLEL requests at once. */
  #pump() {
    while (this.#active < PARALLEL && this.#queue.length) {
      const band = this.#queue.shift();
      const nLayers = this.el.querySelectorAll(".axis[data-layer]").length;
      const first = band * BAND;
      const last = Math.min(first + BAND, nLayers);
      this.#active += 1;
      const { signal } = this.#thumbs;
      const buttons = (layer) => this.el.querySelectorAll(`.thumb[data-layer="${layer}"]`);
      this.fetchLayers(first, last, signal)
        .then((t) => {
          if (signal.aborted) return;
          const [, heads, rows, cols] = t.shape;
          const cells = rows * cols;
          for (let l = first; l < last; l++) {
            buttons(l).forEach((button, h) => {
              const offset = ((l - first) * heads + h) * cells;
              drawThumb(button.querySelector("canvas"), { shape: [rows, cols], data: t.data.subarray(offset, offset + cells) },
                        this.shared());
            });
          }
        })
        .catch((err) => {
          if (isAbort(err)) return;
          for (let l = first; l < last; l++) {
            buttons(l).forEach((button) => { button.classList.add("failed"); button.title = err.message; });
          }
        })
        .finally(() => {
          this.#active -= 1;
          if (signal.aborted) return;
          if (this.#active === 0 && !this.#queue.length) this.#rest();
          this.#pump();
        });
    }
  }

  /** Redraw the thumbnails drawn so far on the current scale (own maximum, or shared). */
  rescale() {
    for (const canvas of this.el.querySelectorAll("canvas[data-loaded]")) drawThumb(canvas, canvas.tile, this.shared());
  }

  /** Tint every head by table[layer][head] (a detector's scores), or clear the tints (no table). */
  colour(table, detector) {
    let lo = Infinity;
    let hi = -Infinity;
    if (table) for (const row of table) for (const v of row) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    for (const button of this.el.querySelectorAll(".thumb")) {
      const label = button.querySelector(".score");
      if (!table) {
        button.style.removeProperty("--tint");
        button.classList.remove("tinted");
        label.textContent = "";
        continue;
      }
      const v = table[Number(button.dataset.layer)][Number(button.dataset.head)];
      const [r, g, b] = viridis(hi > lo ? (v - lo) / (hi - lo) : 0);
      button.style.setProperty("--tint", `rgb(${r}, ${g}, ${b})`);
      button.classList.add("tinted");
      label.textContent = v.toFixed(2);
      button.title = `layer ${button.dataset.layer}, head ${button.dataset.head}: ${detector} ${v.toFixed(3)}`;
    }
  }

  /** Mark the open head (keyboard focus follows it when it was on the grid). */
  select(layer, head) {
    for (const b of this.el.querySelectorAll(".thumb")) {
      const on = Number(b.dataset.layer) === layer && Number(b.dataset.head) === head;
      b.classList.toggle("selected", on);
      b.setAttribute("aria-selected", on ? "true" : "false");
      if (on && document.activeElement && document.activeElement.classList.contains("thumb")) b.focus();
    }
  }
}
