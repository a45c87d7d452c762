// Model cards on the pages (attnlab.models.cards, served in GET /api/models as `card`): the line under
// the model select saying what the model was trained on and reads; the model's own example in the text
// box when the page opens with no text, and again when another model is chosen while the text is still
// the previous default; a warning when a run's tokens are mostly <unk>; and a notice when a shared link
// names a model this page cannot run (unknown, unavailable, or of another family), instead of running
// another model silently. Every message is set as text, never markup.

import { listModels } from "./forms.js";

const $ = (id) => document.getElementById(id);

/** The card's first example meant for `page`, or null. */
export function cardExample(model, page) {
  const card = model && model.card;
  if (!card) return null;
  // an example written for this page first, else one for every page
  const example = card.examples.find((e) => e.pages.includes(page)) || card.examples.find((e) => !e.pages.length);
  return example ? example.text : null;
}

/** The card's most telling head ({kind, layer, head, why}) or null. */
export function cardFocus(model) {
  return (model && model.card && model.card.focus) || null;
}

/** The notice box under the form (made once, after the controls): notices and warnings go there. */
function noticeBox() {
  let box = $("model-notice");
  if (!box) {
    box = document.createElement("p");
    box.id = "model-notice";
    box.className = "notice";
    box.setAttribute("role", "status");
    box.hidden = true;
    const form = $("controls");
    form.parentNode.insertBefore(box, form.nextSibling);
  }
  return box;
}

/** Show a notice of one kind ("link", "unknown"); an empty message hides it. */
export function setNotice(kind, message) {
  const box = noticeBox();
  box.dataset.kind = kind;
  box.textContent = message;
  box.hidden = !message;
}

/** Clear the notice of one kind ("link" or "unknown") if it is the one shown. */
export function clearNotice(kind) {
  const box = $("model-notice");
  if (box && box.dataset.kind === kind) setNotice(kind, "");
}

/**
 * Wire a page's model select to the cards. `info` is setupModelSelect's lookup; `text` the page's text
 * field (or null); `page` the page's name in the cards; `wanted` the model the URL named ("" when none);
 * `hadText` whether the URL gave a text. Returns {note(), defaultText()}.
 */
export async function followCards({ select, info, text = null, page, wanted = "", hadText = false }) {
  const noteEl = $("model-note");
  const templateDefault = text ? text.defaultValue : "";
  const defaultFor = (id) => cardExample(info(id), page) ?? templateDefault;
  const note = () => {
    const model = info();
    if (!model) return; // no model on this page: forms.js's note says so
    const card = model.card;
    if (noteEl) noteEl.textContent = card ? `Reads: ${card.expects}` : (model.description || "");
  };
  if (wanted && wanted !== select.value) {
    const asked = (await listModels()).find((m) => m.id === wanted); // any family: say which it is
    const families = (select.dataset.families || "").split(",").filter(Boolean).join(" or ");
    const shown = select.value || "no model";
    let why;
    if (!asked) why = "this server has no model of that name";
    else if (!asked.available) why = `it is not available here: ${asked.reason || "unknown reason"}`;
    else why = `it is ${/^[aeiou]/.test(asked.family) ? "an" : "a"} ${asked.family} model and this page needs `
      + `${families ? `${/^[aeiou]/.test(families) ? "an" : "a"} ${families}` : "another kind"}`;
    setNotice("link", `The link asked for model \u201c${wanted}\u201d, but ${why}. Showing ${shown} instead.`);
  }
  if (text && !hadText) text.value = defaultFor(select.value);
  let previous = select.value;
  select.addEventListener("change", () => {
    if (text && (text.value === defaultFor(previous) || text.value === templateDefault || !text.value.trim())) {
      text.value = defaultFor(select.value);
    }
    previous = select.value;
    clearNotice("link");
    clearNotice("unknown");
    note();
  });
  note();
  return { note, defaultText: () => defaultFor(select.value) };
}

// the labels of unknown tokens begin with the vocabulary's unknown string (attnlab.models.labels)
const UNKNOWN = /^(<unk>|\[UNK\]|<\|unk\|>)/;

/** Warn when the text reads as unknown tokens to this model; returns the number of unknown tokens. */
export function warnUnknown(tokens, model) {
  const unknown = (tokens || []).filter((t) => UNKNOWN.test(String(t))).length;
  clearNotice("unknown");
  if (!unknown) return 0;
  const card = model && model.card;
  const share = unknown / tokens.length;
  setNotice("unknown", `${unknown} of ${tokens.length} tokens are unknown to ${model ? model.id : "this model"} `
    + `(<unk>)${share >= 0.3 ? ": it cannot read most of this text" : ""}.`
    + (card ? ` It reads ${card.expects}.` : ""));
  return unknown;
}
