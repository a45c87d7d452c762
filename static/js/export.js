// Export of what a view shows: PNG and SVG through Plotly's modebar, JSON and NPY files
// (np.load reads them) built in the browser.

/** Modebar settings for a chart named `name`: PNG via the camera button, SVG via an added
 *  button, the figure as JSON. */
export function imageExport(name) {
  return {
    toImageButtonOptions: { format: "png", filename: `attnlab-${name}`, scale: 2 },
    modeBarButtonsToAdd: ["downloadjson", {
      name: "Download as SVG",
      icon: window.Plotly.Icons.camera,
      click: (gd) => window.Plotly.downloadImage(gd, { format: "svg", filename: `attnlab-${name}` }),
    }],
  };
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
