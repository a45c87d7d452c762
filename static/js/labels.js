// Token text as labels. Token text only ever reaches the DOM through textContent, and Plotly
// labels through escapeLabel (Plotly renders a subset of HTML in labels). Offsets index text by
// Unicode code point, as the server (Python's str) does.

/** A token as Plotly label text: <, > and & as entities, so it shows literally. */
export function escapeLabel(text) {
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** A token label for an axis: labels come from the server (whitespace already visible, one
 *  rule for every view: models/labels.py); long ones are shortened here. */
export function showToken(token) {
  const s = String(token);
  return s.length > 24 ? `${s.slice(0, 23)}\u2026` : s;
}

/** Raw text as a quoted literal with invisible characters escaped: " the", "\r\n", "\u00a0". */
export function rawLiteral(text) {
  if (text === null || text === undefined) return "";
  const named = { "\n": "\\n", "\r": "\\r", "\t": "\\t", "\"": "\\\"", "\\": "\\\\" };
  let out = "";
  for (const ch of String(text)) {
    const code = ch.codePointAt(0);
    if (named[ch]) out += named[ch];
    else if (code < 0x20 || code === 0x7f || code === 0xa0 || (code >= 0x2000 && code <= 0x200f)
             || (code >= 0x2028 && code <= 0x202f) || code === 0xfeff || (code >= 0xfe00 && code <= 0xfe0f)) {
      out += `\\u${code.toString(16).padStart(4, "0")}`;
    } else out += ch;
  }
  return `"${out}"`;
}

/** Text indexed as the server indexes it: by Unicode code point (Python's str), where a JS
 *  string counts UTF-16 units (an emoji is one code point, two units). Every view slices token
 *  text through this one helper: `new CodePoints(text).slice(start, end)` == Python text[start:end]. */
export class CodePoints {
  constructor(text) { this.points = Array.from(String(text ?? "")); }

  get length() { return this.points.length; }

  slice(start, end) { return this.points.slice(start, end).join(""); }
}

/** The slice [start, end) of text in code points (Python's text[start:end]). */
export function sliceCodePoints(text, start, end) {
  return new CodePoints(text).slice(start, end);
}

/** The raw text of each token of an answer: the slice its offsets name (in code points) of the
 *  text it came from (texts[segment]; segment 0 without a pair); null for tokens the tokenizer added. */
export function rawTexts(answer, texts, prefix = "") {
  const offsets = answer[`${prefix}offsets`] || [];
  const segments = answer[`${prefix}segments`];
  const sources = texts.map((t) => (typeof t === "string" ? new CodePoints(t) : null));
  return offsets.map((o, i) => {
    if (!o) return null;
    const source = sources[segments ? segments[i] : 0];
    return source ? source.slice(o[0], o[1]) : null;
  });
}
