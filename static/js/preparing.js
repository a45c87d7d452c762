// While the server prepares models in the background at start-up (SmolLM2's first load converts its GGUF
// file, about a minute), every page says so: GET /api/health answers `preparing` with what each model is
// doing; the note goes away when it is done. The pages work meanwhile; a run on that model waits for it.
import { api } from "./api.js";

const POLL_MS = 3000;

export async function watchPreparing() {
  let health;
  try { health = await api("/api/health"); } catch (_) { return; } // the page's own calls report errors
  if (health.status !== "preparing") return;
  const note = document.createElement("p");
  note.id = "preparing-note";
  note.className = "note preparing";
  note.setAttribute("role", "status");
  document.getElementById("status").before(note);
  for (;;) {
    note.textContent = "Preparing " + Object.entries(health.preparing)
      .map(([model, what]) => `${model}: ${what}`).join("; ") + ". Other models work meanwhile.";
    await new Promise((resolve) => { setTimeout(resolve, POLL_MS); });
    try { health = await api("/api/health"); } catch (_) { break; }
    if (health.status !== "preparing") break;
  }
  note.remove();
}
