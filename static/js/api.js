// API calls with the server's errors in words. Every JSON call, every binary tile and every
// stream reads a failed answer through one parser (errorFrom): the server's `detail`, or the
// status text when the body is not JSON.
import { decodeTile } from "./decoding.js";

export class ApiError extends Error {
  constructor(status, detail) {
    super(`${detail} (HTTP ${status})`);
    this.status = status;
    this.detail = detail;
  }
}

/** A non-2xx answer -> ApiError carrying the server's message (a structured detail as JSON). */
export async function errorFrom(response) {
  let detail = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (body && body.detail) detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
  } catch (_) { /* not JSON */ }
  return new ApiError(response.status, detail);
}

/** fetch that names an unreachable server in words; an abort stays an AbortError. */
export async function request(path, init = {}) {
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new Error(`Cannot reach the server (${err.message}). Is attnlab still running?`);
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

/** The init of a request with a JSON body (or none). */
function jsonInit(method, body, signal) {
  const init = { method, signal, headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return init;
}

/** fetch + JSON; a non-2xx answer throws ApiError carrying the server's message. */
export async function api(path, { method = "GET", body, signal } = {}) {
  return (await request(path, jsonInit(method, body, signal))).json();
}

/** A response to read as a stream (Server-Sent Events); a non-2xx answer throws ApiError. */
export function apiStream(path, { method = "POST", body, signal } = {}) {
  return request(path, jsonInit(method, body, signal));
}

/** GET a binary tile: {data: Float32Array, shape, meta} from format=f16 (or u8). */
export async function apiBinary(path, { signal } = {}) {
  const response = await fetch(path, { signal });
  if (!response.ok) throw await errorFrom(response);
  return decodeTile(await response.arrayBuffer(), response.headers);
}
