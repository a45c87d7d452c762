// Only the latest selection is drawn. A view that fetches on a selection (a head, a zoomed
// block, a kind, a step, a scheme) runs each fetch through one Latest: starting a new one
// aborts the one before, and a reply that still arrives for an older selection is refused,
// so a slow reply can never draw over, or be exported under the labels of, a newer choice.

/** The reason a superseded task ends with: an AbortError, which withLoading ignores. */
function superseded() {
  return new DOMException("a newer selection replaced this one", "AbortError");
}

/** Whether an error only says that a request was aborted or superseded (not a failure to show). */
export function isAbort(err) {
  return Boolean(err) && err.name === "AbortError";
}

export class Latest {
  #controller = null;

  /**
   * Run task(signal) for a new selection, aborting the previous one. Resolves with the task's
   * result while it is still the latest; otherwise rejects with an AbortError. The task passes
   * the signal to every fetch and, after any other await, calls signal.throwIfAborted() before
   * it touches the page: `signal.aborted` is true as soon as a newer selection has started.
   */
  async run(task) {
    this.cancel();
    const controller = new AbortController();
    this.#controller = controller;
    const result = await task(controller.signal);
    controller.signal.throwIfAborted(); // the reply came for a selection no longer current
    if (this.#controller === controller) this.#controller = null;
    return result;
  }

  /** Abort the running task, if any (its reply, should it come, is refused). */
  cancel() {
    if (this.#controller) this.#controller.abort(superseded());
    this.#controller = null;
  }
}
