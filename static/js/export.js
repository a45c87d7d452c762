// Export of what a view shows: PNG and SVG buttons next to JSON/NPY (and in Plotly's modebar), JSON and
// NPY files (np.load reads them) built in the browser. Every file is named by one pattern,
// attnlab-<model>-<view>[-L<l>H<h>].<ext> (fileName), and an exported image carries a title saying what
// it shows (model, kind, layer, head, the start of the text).

/** A piece of a file name: letters, digits, dot, dash and underscore only. */
function slug(text) {
  return String(text).replace(/[^A-Za-z0-9._-]+/g, "_").replace(/^_+|_+$/g, "") || "x";
}

/** attnlab-<model>-<view>[-L<layer>H<head>].<ext> */
export function fileName({ model, view, layer = null, head = null }, ext) {
  const where = layer !== null && layer !== undefined && head !== null && head !== undefined ? `-L${layer}H${head}` : "";
  return `attnlab-${slug(model)}-${slug(view)}${where}.${ext}`;
}

// the SVG button's icon: the letters "SVG" are too small to read, so a page with a folded corner
const SVG_ICON = { width: 1000, height: 1000,
  path: "M200 50h450l200 200v700h-650zM650 50v200h200M300 500h400M300 650h400M300 800h250" };

/** Modebar settings for a chart named `name` (a file name without extension): PNG via the camera
 *  button, SVG via an added button of its own icon, the figure as JSON. */
export function imageExport(name) {
  const filename = name.startsWith("attnlab-") ? name : `attnlab-${name}`;
  return {
    toImageButtonOptions: { format: "png", filename, scale: 2 },
    modeBarButtonsToAdd: ["downloadjson", {
      name: "Download as SVG",
      icon: SVG_ICON,
      click: (gd) => window.Plotly.downloadImage(gd, { format: "svg", filename }),
    }],
  };
}

/** The chart as an image with `title` on top (the page's own chart is not touched). */
export async function chartImage(gd, format, title) {
  const layout = { ...gd.layout, title: { text: title, x: 0.01, xanchor: "left", font: { size: 14 } } };
  layout.margin = { ...(gd.layout.margin || {}), t: Math.max(70, (gd.layout.margin || {}).t || 0) };
  const width = gd.clientWidth || 900;
  const height = gd.clientHeight || 600;
  return window.Plotly.toImage({ data: gd.data, layout }, { format, width, height, scale: format === "png" ? 2 : 1 });
}

/** The start of a text for an image title (the whole text when short). */
export function excerpt(text, n = 60) {
  const t = String(text || "");
  return t.length > n ? `${t.slice(0, n)}\u2026` : t;
}

/**
 * PNG and SVG buttons for the chart `gd` (an element, or a function giving the one to export), placed before `anchor` (the view's first JSON/NPY button);
 * `describe()` gives {file: {model, view, layer, head}, title} of what the chart shows now (or null:
 * nothing to export).
 */
export function addImageButtons(anchor, gd, describe) {
  for (const format of ["png", "svg"]) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.dataset.export = format;
    button.textContent = format.toUpperCase();
    button.title = `Download the chart as ${format.toUpperCase()}, titled with what it shows`;
    button.addEventListener("click", async () => {
      const what = describe();
      const chart = typeof gd === "function" ? gd() : gd;
      if (!what || !chart || !chart.data) return;
      const url = await chartImage(chart, format, what.title);
      const a = document.createElement("a");
      a.href = url;
      a.download = fileName(what.file, format);
      document.body.appendChild(a);
      a.click();
      a.remove();
    });
    anchor.before(button);
  }
}

export function download(filename, blob) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function downloadJSON(filename, data) {
  download(filename, new Blob([JSON.stringify(data)], { type: "application/json" }));
}

/** An NPY (version 1.0) file of float32 values in C order: np.load() reads it. */
export function npyBlob(values, shape) {
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': ${shapeText}, }`;
  const unpadded = 10 + header.length + 1;
  header += " ".repeat((64 - (unpadded % 64)) % 64) + "\n";
  const head = new Uint8Array(10 + header.length);
  head.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(head.buffer).setUint16(8, header.length, true);
  head.set(new TextEncoder().encode(header), 10);
  const body = new Float32Array(values.length);
  body.set(values);
  return new Blob([head, body.buffer], { type: "application/octet-stream" });
}

/** Nested arrays (rows of numbers, any depth) -> {values, shape}. */
export function flatten(nested) {
  const shape = [];
  let probe = nested;
  while (Array.isArray(probe) || ArrayBuffer.isView(probe)) {
    shape.push(probe.length);
    probe = probe[0];
  }
  const values = Array.isArray(nested) ? nested.flat(shape.length) : Array.from(nested);
  return { values, shape };
}

export function downloadNPY(filename, nested) {
  const { values, shape } = flatten(nested);
  download(filename, npyBlob(values, shape));
}
