// The Explorer's line view (BertViz style): query tokens on the left, keys on the right, one
// line per weight with its opacity on the heatmap's colour scale; hovering or focusing a token
// shows only its lines. Tokens are SVG text nodes (textContent): never parsed as markup.
import { rawLiteral, showToken } from "../labels.js";

export const LINE_VIEW_MAX = 160; // tokens; past this the line view is unreadable

function svg(tag, attrs = {}) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** Draw the head view's data `d` (rowTokens, colTokens, rowRaw, colRaw, rows, cols) into `box`,
 *  with `weights` as shown and `scale` (scale.js colourScale) for the opacity. */
export function drawLines(box, d, { weights, scale }) {
  box.replaceChildren();
  if (!d.rowTokens || d.rowTokens.length > LINE_VIEW_MAX || d.colTokens.length > LINE_VIEW_MAX) {
    const p = document.createElement("p");
    p.className = "note";
    p.textContent = `The line view shows inputs of up to ${LINE_VIEW_MAX} tokens; use the heatmap (zoom for detail).`;
    box.appendChild(p);
    return;
  }
  const rowH = document.body.classList.contains("large") ? 24 : 18; // a row per label at its font size
  const height = Math.max(d.rowTokens.length, d.colTokens.length) * rowH + 10;
  const width = 480;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "line-view", role: "img",
                            "aria-label": "attention lines" });
  const lines = svg("g");
  const left = svg("g");
  const right = svg("g");
  root.append(lines, left, right);
  const all = [];
  // opacity follows the heatmap's colour scale (and drops special keys with it)
  weights.forEach((row, i) => row.forEach((w, j) => {
    if (w === null) return;
    const level = scale.level(w);
    if (level < 0.02) return; // too faint to see: not drawn
    const line = svg("line", { x1: 150, y1: 12 + i * rowH, x2: width - 150, y2: 12 + j * rowH,
                               "stroke-opacity": level.toFixed(3), class: "att" });
    line.dataset.q = String(i);
    line.dataset.k = String(j);
    lines.appendChild(line);
    all.push(line);
  }));
  const highlight = (attr, index) => {
    for (const line of all) line.classList.toggle("dim", index !== null && line.dataset[attr] !== String(index));
    for (const t of root.querySelectorAll("text")) {
      t.classList.toggle("active", index !== null && t.dataset.side === attr && t.dataset.index === String(index));
    }
  };
  const label = (group, tokens, raw, x, anchor, side) => tokens.forEach((tok, i) => {
    const text = svg("text", { x, y: 16 + i * rowH, "text-anchor": anchor, class: "tok", tabindex: 0 });
    text.textContent = showToken(tok); // text only: a token is never parsed as markup
    // hover: position, label and the raw text the token came from (a <title> beside the text,
    // in one group, so the text element holds the label alone)
    const title = svg("title");
    const first = side === "q" ? d.rows[0] : d.cols[0];
    title.textContent = `${first + i}: ${tok}${raw && raw[i] !== null ? ` ${rawLiteral(raw[i])}` : ""}`;
    const item = svg("g");
    item.append(title, text);
    text.dataset.side = side;
    text.dataset.index = String(i);
    text.addEventListener("mouseenter", () => highlight(side, i));
    text.addEventListener("focus", () => highlight(side, i));
    text.addEventListener("mouseleave", () => highlight(side, null));
    text.addEventListener("blur", () => highlight(side, null));
    group.appendChild(item);
  });
  label(left, d.rowTokens, d.rowRaw, 142, "end", "q");
  label(right, d.colTokens, d.colRaw, width - 142, "start", "k");
  box.appendChild(root);
}
