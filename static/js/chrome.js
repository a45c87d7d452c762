// Page chrome shared by every view: the large-font toggle for a projector (kept in
// localStorage) and arrow-key navigation over (layer, head).
import { relayoutFonts } from "./plots.js";
import { watchPreparing } from "./preparing.js";

function applyLargeFont(on) {
  document.body.classList.toggle("large", on);
  const button = document.getElementById("large-font");
  if (button) button.setAttribute("aria-pressed", on ? "true" : "false");
  document.dispatchEvent(new CustomEvent("fontsizechange")); // views that lay out text themselves redo it
  relayoutFonts();
}

export function initChrome() {
  let on = false;
  try { on = window.localStorage.getItem("attnlab-large") === "1"; } catch (_) { /* storage off */ }
  applyLargeFont(on);
  document.getElementById("large-font").addEventListener("click", () => {
    const next = !document.body.classList.contains("large");
    try { window.localStorage.setItem("attnlab-large", next ? "1" : "0"); } catch (_) { /* storage off */ }
    applyLargeFont(next);
  });
  watchPreparing(); // a note while the server prepares models at start-up
}

/** Arrow-key navigation over (layer, head), ignoring keys typed into form fields. */
export function onArrowKeys(handler) {
  document.addEventListener("keydown", (event) => {
    const tag = (event.target && event.target.tagName) || "";
    if (["INPUT", "TEXTAREA", "SELECT"].includes(tag) || event.altKey || event.ctrlKey || event.metaKey) return;
    const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
    const move = moves[event.key];
    if (!move) return;
    if (handler(move[0], move[1]) !== false) event.preventDefault();
  });
}
