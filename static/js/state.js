// A page's view state lives in its URL (replaceState: a reload or a shared link restores it).
// Each page declares its state once with bindState; the declaration says where each value is
// read from when the state is saved and where it goes back when the page loads.

/** Values from the query string, falling back to defaults (types follow the defaults). */
export function readState(defaults) {
  const params = new URLSearchParams(window.location.search);
  const state = { ...defaults };
  for (const [key, fallback] of Object.entries(defaults)) {
    if (!params.has(key)) continue;
    const raw = params.get(key);
    if (typeof fallback === "number") {
      const n = Number(raw);
      if (raw !== "" && Number.isFinite(n)) state[key] = n;
    } else if (typeof fallback === "boolean") {
      state[key] = raw === "1" || raw === "true";
    } else {
      state[key] = raw;
    }
  }
  return state;
}

/** Put the whole view state in the URL; null, undefined and "" are left out. */
export function writeState(state) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(state)) {
    if (value === null || value === undefined || value === "") continue;
    params.set(key, typeof value === "boolean" ? (value ? "1" : "0") : String(value));
  }
  const url = `${window.location.pathname}?${params.toString()}`;
  if (url !== `${window.location.pathname}${window.location.search}`) window.history.replaceState(null, "", url);
}

const CONTROLS = ["INPUT", "SELECT", "TEXTAREA"];

/** The form control a key is bound to, or null (the key then lives in `state` alone). */
function controlOf(id) {
  const el = id ? document.getElementById(id) : null;
  return el && CONTROLS.includes(el.tagName) ? el : null;
}

/** A select that holds no choice yet (its options are filled once an answer comes). */
function unfilled(el) {
  return el.tagName === "SELECT" && el.options.length === 0;
}

/**
 * Bind a page's view state to its URL. `spec`: key -> default, or key -> {value: default,
 * el: "control-id", get: () => value}. The type of each value follows its default.
 *  - A key is bound to the form control whose id is `el` (the key itself when not given): its
 *    value is saved (a checkbox's checked; Number(value) for a number) and restored into it.
 *    While the control holds no choice yet (a select not filled), state[key] is saved instead.
 *    A key with no such control lives in `state` alone: the page sets state[key].
 *  - `get` computes the value saved instead (null, undefined or "" leave the key out); the page
 *    restores such a key itself.
 * Returns {state, save, restore}: state holds the URL's values (the page may change them), save()
 * writes the whole state into the URL, restore() puts the values the URL named into their
 * controls (a select only when one of its options has the value: selects filled later are given
 * state[key] by the page).
 */
export function bindState(spec) {
  const keys = Object.entries(spec).map(([key, s]) => {
    const full = s !== null && typeof s === "object" ? s : { value: s };
    return { key, value: full.value, id: "el" in full ? full.el : key, get: full.get };
  });
  const state = readState(Object.fromEntries(keys.map((k) => [k.key, k.value])));
  const named = new URLSearchParams(window.location.search);

  function current({ key, value, id, get }) {
    if (get) return get();
    const el = controlOf(id);
    if (!el || unfilled(el)) return state[key];
    if (el.type === "checkbox") return el.checked;
    return typeof value === "number" ? Number(el.value) : el.value;
  }

  function save() {
    writeState(Object.fromEntries(keys.map((k) => [k.key, current(k)])));
  }

  function restore() {
    for (const { key, id, get } of keys) {
      const el = controlOf(id);
      if (get || !el || !named.has(key)) continue;
      if (el.type === "checkbox") el.checked = Boolean(state[key]);
      else if (el.tagName !== "SELECT" || Array.from(el.options).some((o) => o.value === String(state[key]))) {
        el.value = String(state[key]);
      }
    }
  }

  return { state, save, restore };
}
