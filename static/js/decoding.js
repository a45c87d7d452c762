// Binary tiles: float16 (or uint8 with a scale) weights as Float32Array, and the tile's
// metadata from its base64url JSON header.

const F16_TABLE = (() => {
  // all 65536 half-precision values, once: decoding is then one lookup per weight
  const table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) table[h] = sign * 2 ** -14 * (frac / 1024);
    else if (exp === 31) table[h] = frac ? NaN : sign * Infinity;
    else table[h] = sign * 2 ** (exp - 15) * (1 + frac / 1024);
  }
  return table;
})();

/** Little-endian IEEE half floats (as Uint16Array) -> Float32Array. */
export function f16ToF32(u16) {
  const out = new Float32Array(u16.length);
  for (let i = 0; i < u16.length; i++) out[i] = F16_TABLE[u16[i]];
  return out;
}

/** uint8 levels times their scale -> Float32Array. */
export function u8ToF32(bytes, scale) {
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i] * scale;
  return out;
}

/** Flat row-major array -> array of rows (what Plotly's z wants). */
export function toRows(flat, rows, cols) {
  const out = new Array(rows);
  for (let r = 0; r < rows; r++) out[r] = Array.from(flat.subarray(r * cols, (r + 1) * cols));
  return out;
}

/** base64url JSON (no padding) -> object; token text may be any script, so decode UTF-8. */
export function decodeMeta(value) {
  if (!value) return {};
  const b64 = value.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (value.length % 4)) % 4);
  const bin = atob(b64);
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** A tile's body and headers (X-Shape, X-Dtype, X-Scale, X-Attnlab-Meta) -> {data, shape, meta}. */
export function decodeTile(buffer, headers) {
  const shape = (headers.get("X-Shape") || "").split(",").filter(Boolean).map(Number);
  const meta = decodeMeta(headers.get("X-Attnlab-Meta"));
  const data = headers.get("X-Dtype") === "uint8"
    ? u8ToF32(new Uint8Array(buffer), Number(headers.get("X-Scale")))
    : f16ToF32(new Uint16Array(buffer));
  return { data, shape, meta };
}
