// Encoder-decoder: encoder self-, decoder self- and cross-attention of one layer and head,
// side by side, from POST /api/attention (dense: seq2seq inputs here are short). Only the
// latest submit's answer is drawn; layer and head are picked from that answer, no fetch.
import { api } from "./api.js";
import { initChrome, onArrowKeys } from "./chrome.js";
import { cardFocus, followCards, warnUnknown } from "./examples.js";
import { addImageButtons, downloadJSON, downloadNPY, excerpt, fileName } from "./export.js";
import { fillSelect, setupModelSelect } from "./forms.js";
import { rawTexts } from "./labels.js";
import { Latest } from "./latest.js";
import { baseLayout, fontSize, heatmapTrace, plot } from "./plots.js";
import { bindState } from "./state.js";
import { withLoading } from "./status.js";

const $ = (id) => document.getElementById(id);
const view = bindState({ model: "seq2seq", text: "", backend: "", layer: 0, head: 0 });
const { state } = view;
let result = null;
const submits = new Latest();
let modelInfo = () => null; // setupModelSelect's lookup
let submitted = false; // a submit keeps the layer and head shown; the first draw may open the card's focus head
const named = new URLSearchParams(window.location.search); // what a shared link asked for
const PANELS = [["encoder", "enc", "Encoder self-attention"], ["decoder", "dec", "Decoder self-attention (causal)"],
                ["cross", "cross", "Cross-attention (decoder \u2192 encoder)"]];

async function draw() {
  const layer = Number($("layer").value);
  const head = Number($("head").value);
  for (const [kind, id, title] of PANELS) {
    const maps = result[kind];
    if (!maps) continue;
    const l = Math.min(layer, maps.shape[0] - 1);
    const z = maps.attention[l][head];
    // raw text on hover: offsets index the source text (encoder side) or the decoded target
    const rowText = kind === "encoder" ? result.source_text : result.target_text;
    const colText = kind === "decoder" ? result.target_text : result.source_text;
    const rowName = kind === "encoder" ? "query" : "decoder token";
    const colName = kind === "cross" ? "encoder token" : "key";
    const trace = heatmapTrace(z, { rowTokens: maps.tokens, colTokens: maps.key_tokens, rowName, colName,
                                    rowRaw: rawTexts(maps, [rowText]), colRaw: rawTexts(maps, [colText], "key_") });
    await plot($(id), [trace], baseLayout({
      // two title lines at the tick font size, with room above the plot for them (large fonts too)
      title: { text: `${title}<br>layer ${l}, head ${head}`, font: { size: fontSize() } }, height: 460,
      margin: { l: 70, r: 10, t: Math.round(fontSize() * 2.6) + 24, b: 80 },
      xaxis: { title: { text: colName } },
      yaxis: { title: { text: rowName }, autorange: "reversed" },
    }), `attnlab-${$("model").value}-seq2seq-${kind}-L${l}H${head}`, { tokenAxes: { xaxis: { tokens: maps.key_tokens }, yaxis: { tokens: maps.tokens } } });
  }
  view.save();
}

async function go() {
  view.save();
  const text = $("text").value;
  const body = { model: $("model").value, text, backend: $("backend").value || null };
  result = await submits.run((signal) => api("/api/attention", { method: "POST", body, signal }));
  result.source_text = text; // what the encoder tokens' offsets index, kept with the answer
  const first = result.encoder || result.decoder;
  if (!first) throw new Error("This model returned no encoder or decoder maps: pick an encoder-decoder model.");
  warnUnknown(result.encoder ? result.encoder.tokens : [], modelInfo(result.model));
  const focus = cardFocus(modelInfo(result.model));
  if (focus && !named.has("layer") && !named.has("head") && !submitted) {
    // the model's most telling head (its card), when the link named none
    state.layer = focus.layer;
    state.head = focus.head;
  }
  const [nLayers, nHeads] = first.shape;
  fillSelect($("layer"), [...Array(nLayers).keys()], null, Math.min(state.layer, nLayers - 1));
  fillSelect($("head"), [...Array(nHeads).keys()], null, Math.min(state.head, nHeads - 1));
  $("s2s-panel").hidden = false;
  await draw();
}

async function main() {
  initChrome();
  view.restore();
  const info = await withLoading("Loading models", () => setupModelSelect($("model"), $("backend"), state.model, state.backend));
  if (!info) return;
  modelInfo = info;
  await followCards({ select: $("model"), info, text: $("text"), page: "seq2seq", wanted: named.get("model") || "",
                      hadText: named.has("text") });
  $("controls").addEventListener("submit", (ev) => {
    ev.preventDefault();
    submitted = true;
    state.layer = Number($("layer").value || state.layer);
    state.head = Number($("head").value || state.head);
    withLoading("Running the model", go);
  });
  $("layer").addEventListener("change", draw);
  $("head").addEventListener("change", draw);
  // NPY: the map on screen of the kind chosen here (layer and head as shown), named by export.js's pattern
  const npyKind = document.createElement("select");
  npyKind.id = "export-s2s-kind";
  npyKind.setAttribute("aria-label", "kind of the NPY export");
  fillSelect(npyKind, PANELS.map(([kind]) => kind), PANELS.map(([kind]) => `NPY of ${kind}`), "cross");
  $("export-s2s-npy").before(npyKind);
  // PNG/SVG of the chosen kind's chart, as shown
  const panelOf = Object.fromEntries(PANELS.map(([kind, id]) => [kind, id]));
  addImageButtons(npyKind, () => $(panelOf[npyKind.value]), () => {
    const maps = result && result[npyKind.value];
    if (!maps) return null;
    const layer = Math.min(Number($("layer").value), maps.shape[0] - 1);
    const head = Number($("head").value);
    const model = result.model || $("model").value;
    return { file: { model, view: `seq2seq-${npyKind.value}`, layer, head },
             title: `${model} \u00b7 ${npyKind.value} layer ${layer}, head ${head} \u00b7 \u201c${excerpt(result.source_text)}\u201d` };
  });
  $("export-s2s-json").addEventListener("click", () => result && downloadJSON(
    fileName({ model: result.model || $("model").value, view: "seq2seq" }, "json"), result));
  $("export-s2s-npy").addEventListener("click", () => {
    const maps = result && result[npyKind.value];
    if (!maps) return;
    const layer = Math.min(Number($("layer").value), maps.shape[0] - 1);
    const head = Number($("head").value);
    downloadNPY(fileName({ model: result.model || $("model").value, view: `seq2seq-${npyKind.value}`, layer, head },
                         "npy"), maps.attention[layer][head]);
  });
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
  await withLoading("Running the model", go); // the page opens with a result: the link's input or the example
}

main();
