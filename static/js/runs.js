// Runs: POST /api/runs captures a forward pass once; later requests name it by run_id. Any
// worker or replica serves a run from the shared run store (it recomputes what it has not
// cached); a run past its expiry (run_ttl_s after its last POST) answers 404. Every page asks
// for a run's data through withRun, which then recreates the run from the request that made it
// (the id is a hash of that request: it comes back the same) and asks once more.
import { api, ApiError } from "./api.js";

const requests = new WeakMap(); // run answer -> the body that created it (kept out of the answer: pages export it)
const recreating = new WeakMap(); // run answer -> the POST under way (concurrent 404s share one)

/**
 * POST /api/runs for {model, text, text_pair?, backend, values?}; the answer, with `texts` (what its
 * offsets index: [text, text_pair or null]) added. `values`: the run keeps V too (a run of its own id).
 */
export async function createRun({ model, text, text_pair: pair = "", backend = "", values = false }, signal) {
  const body = { model, text, backend: backend || null };
  if (pair && pair.trim()) body.text_pair = pair;
  if (values) body.values = true;
  return adoptRun(await api("/api/runs", { method: "POST", body, signal }), body);
}

/** A POST /api/runs answer (or a streamed run's) made by `body`: `texts` added, and withRun can recreate it. */
export function adoptRun(answer, body) {
  answer.texts = [body.text, body.text_pair ?? null];
  requests.set(answer, body);
  return answer;
}

/** Recreate an evicted run in place (same object, fresh fields), once for concurrent callers.
 *  The POST takes no caller's signal: one caller giving up must not fail the others waiting on it. */
function recreate(run) {
  if (!recreating.has(run)) {
    const body = requests.get(run);
    const post = api("/api/runs", { method: "POST", body })
      .then((answer) => { Object.assign(run, answer); })
      .finally(() => recreating.delete(run));
    recreating.set(run, post);
  }
  return recreating.get(run);
}

/**
 * call(runId) for a run made by createRun; a 404 (the run expired from the run store) recreates
 * the run and calls once more. Every other error, and a second 404, goes to the caller.
 */
export async function withRun(run, call, signal) {
  try {
    return await call(run.run_id);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 404 || !requests.has(run)) throw err;
    await recreate(run);
    signal?.throwIfAborted();
    return call(run.run_id);
  }
}
