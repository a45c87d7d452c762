// Encoder-decoder: encoder self-, decoder self- and cross-attention of one layer and head,
// side by side, from POST /api/attention (dense: seq2seq inputs here are short).
import {
  api, baseLayout, downloadJSON, downloadNPY, fillSelect, heatmapTrace, initChrome, onArrowKeys, plot, readState,
  setupModelSelect, tokenAxis, withLoading, writeState,
} from "./common.js";

const $ = (id) => document.getElementById(id);
const state = readState({ model: "seq2seq", text: "", backend: "", layer: 0, head: 0 });
let result = null;
const PANELS = [["encoder", "enc", "Encoder self-attention"], ["decoder", "dec", "Decoder self-attention (causal)"],
                ["cross", "cross", "Cross-attention (decoder \u2192 encoder)"]];

function saveState() {
  writeState({ model: $("model").value, text: $("text").value, backend: $("backend").value,
               layer: Number($("layer").value || state.layer), head: Number($("head").value || state.head) });
}

async function draw() {
  const layer = Number($("layer").value);
  const head = Number($("head").value);
  for (const [kind, id, title] of PANELS) {
    const maps = result[kind];
    if (!maps) continue;
    const l = Math.min(layer, maps.shape[0] - 1);
    const z = maps.attention[l][head];
    await plot($(id), [heatmapTrace(z, { rowTokens: maps.tokens, colTokens: maps.key_tokens })], baseLayout({
      title: { text: `${title}<br>layer ${l}, head ${head}` }, height: 460, margin: { l: 70, r: 10, t: 70, b: 80 },
      xaxis: { title: { text: kind === "cross" ? "encoder token" : "key" }, tickangle: -60, ...tokenAxis(maps.key_tokens) },
      yaxis: { title: { text: kind === "encoder" ? "query" : "decoder token" }, autorange: "reversed", ...tokenAxis(maps.tokens) },
    }), `${kind}-L${l}H${head}`);
  }
  saveState();
}

async function go() {
  saveState();
  result = await api("/api/attention", { method: "POST", body: { model: $("model").value, text: $("text").value,
                                                                 backend: $("backend").value || null } });
  const first = result.encoder || result.decoder;
  if (!first) throw new Error("This model returned no encoder or decoder maps: pick an encoder-decoder model.");
  const [nLayers, nHeads] = first.shape;
  fillSelect($("layer"), [...Array(nLayers).keys()], null, Math.min(state.layer, nLayers - 1));
  fillSelect($("head"), [...Array(nHeads).keys()], null, Math.min(state.head, nHeads - 1));
  $("s2s-panel").hidden = false;
  await draw();
}

async function main() {
  initChrome();
  $("text").value = state.text || $("text").value;
  const info = await withLoading("Loading models", () => setupModelSelect($("model"), $("backend"), state.model, state.backend));
  if (!info) return;
  $("controls").addEventListener("submit", (ev) => { ev.preventDefault(); withLoading("Running the model", go); });
  $("layer").addEventListener("change", draw);
  $("head").addEventListener("change", draw);
  $("export-s2s-json").addEventListener("click", () => result && downloadJSON("seq2seq-attention.json", result));
  $("export-s2s-npy").addEventListener("click", () => result && downloadNPY(
    `cross-L${$("layer").value}.npy`, result.cross.attention[Number($("layer").value)]));
  onArrowKeys((dLayer, dHead) => {
    if (!result) return false;
    const move = (select, d) => {
      const n = select.options.length;
      select.value = String(Math.max(0, Math.min(n - 1, Number(select.value) + d)));
    };
    move($("layer"), dLayer);
    move($("head"), dHead);
    withLoading("Drawing", draw);
    return true;
  });
  if (state.text) await withLoading("Running the model", go);
}

main();
