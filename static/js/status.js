// The page's status line: "label…" while a task runs longer than 200 ms, and its error in
// words (an aborted, superseded task is not an error).

let pending = 0;

function statusEl() { return document.getElementById("status"); }

/** Run an async task; show "label…" if it takes longer than 200 ms; errors go to the page. */
export async function withLoading(label, task) {
  pending += 1;
  clearError();
  const timer = setTimeout(() => {
    document.getElementById("status-text").textContent = `${label}…`;
    statusEl().hidden = false;
  }, 200);
  try {
    return await task();
  } catch (err) {
    if (err.name !== "AbortError") showError(err.message || String(err));
    return undefined;
  } finally {
    clearTimeout(timer);
    pending -= 1;
    if (pending === 0) statusEl().hidden = true;
  }
}

export function showError(message) {
  const el = document.getElementById("error");
  el.textContent = message; // text only: a message may quote the user's input
  el.hidden = false;
}

export function clearError() {
  const el = document.getElementById("error");
  el.textContent = "";
  el.hidden = true;
}
