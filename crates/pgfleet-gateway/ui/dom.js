// Small DOM helpers: build elements, tables, times and durations.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  el.append(...children.flat().filter((c) => c !== undefined && c !== null && c !== false));
  return el;
}

export function table(label, headers, rows, id) {
  return h("table", { id, "aria-label": label },
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows));
}

export function time(t) {
  if (!t) return "—";
  const d = new Date(t);
  return h("time", { datetime: d.toISOString(), title: d.toISOString() }, d.toLocaleString());
}

export function ago(t) {
  if (!t) return "—";
  const s = (Date.now() - new Date(t).getTime()) / 1000;
  return `${duration(Math.abs(s))} ${s >= 0 ? "ago" : "from now"}`;
}

export function duration(secs) {
  if (secs === null || secs === undefined || Number.isNaN(secs)) return "—";
  if (secs < 1) return `${Math.round(secs * 1000)} ms`;
  if (secs < 120) return `${secs.toFixed(1)} s`;
  if (secs < 7200) return `${(secs / 60).toFixed(1)} min`;
  return `${(secs / 3600).toFixed(1)} h`;
}

export function pre(value) {
  return h("pre", { tabindex: "0" }, JSON.stringify(value, null, 2));
}

export function section(title, ...children) {
  const id = `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return h("section", { "aria-labelledby": id }, h("h3", { id }, title), ...children);
}

const $ = (id) => document.getElementById(id);

// The page-level error line (empty hides it).
export function showError(message) {
  $("error").textContent = message || "";
  $("error").hidden = !message;
}

// Tells screen readers (and everyone) what an action did.
export function announce(message) {
  $("status").textContent = message;
}

// Asks the operator to confirm; resolves true on Confirm.
export function confirmAction(text, confirmLabel) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-yes").textContent = confirmLabel;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    $("confirm-no").focus();
  });
}

