// Server-Sent Events over fetch (a POST body, an AbortSignal: EventSource has neither). Closing the
// connection (aborting the signal) is how a page cancels the server's work: POST /api/runs/stream stops the
// run at its next layer when its client goes.
import { apiStream } from "./api.js";

/** Parse an SSE byte stream: calls onEvent(name, data) per event (data parsed as JSON); skips comments (pings). */
export async function readSSE(response, onEvent) {
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

/** POST `body` to an SSE endpoint and call onEvent(name, data) per event until the stream ends; a refusal
 *  before the stream (4xx) throws the server's error, an abort throws an AbortError. */
export async function postSSE(path, body, onEvent, signal) {
  const response = await apiStream(path, { body, signal });
  await readSSE(response, onEvent);
}
