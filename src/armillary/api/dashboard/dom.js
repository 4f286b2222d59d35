// Building the page without markup: every text goes in through textContent, so a
// tenant's label or an event's body is shown as text, never parsed as HTML. Nothing
// in the dashboard parses a string as markup (tests/integration/test_access.py checks
// every asset); the Content-Security-Policy forbids inline script.

/** h("tr", {class: "x", onclick: f}, "text", child) -> element */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      element.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(element.dataset, value);
    } else if (value === true) {
      element.setAttribute(key, "");
    } else {
      element.setAttribute(key, String(value));
    }
  }
  append(element, children);
  return element;
}

export function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function replace(element, ...children) {
  element.replaceChildren();
  return append(element, children);
}

/** A table: headers, and rows of cells (text or nodes); caption for screen readers. */
export function table(caption, headers, rows, attrs = {}) {
  return h(
    "table",
    attrs,
    h("caption", { class: "sr" }, caption),
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, rows),
  );
}

export function row(cells, attrs = {}) {
  return h("tr", attrs, cells.map((cell) => h("td", {}, cell)));
}

/** A badge for a state: ok / warn / bad / idle colours, the word always visible. */
export function badge(text, tone) {
  return h("span", { class: `badge ${tone || toneOf(text)}` }, text);
}

export function toneOf(state) {
  const value = String(state || "").toLowerCase();
  if (["ready", "true", "running", "succeeded", "healthy", "done", "delivered", "complete", "completed", "live"].includes(value)) return "ok";
  if (["failed", "dead", "lost", "notready", "crashloop", "crashloopbackoff", "error", "unhealthy", "false", "rejected", "degraded"].includes(value)) return "bad";
  if (["queued", "pending", "progressing", "starting", "draining", "retrying", "running…"].includes(value)) return "warn";
  return "idle";
}

export function section(title, ...children) {
  const id = `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return h("section", { "aria-labelledby": id }, h("h2", { id }, title), children);
}

export function when(iso) {
  if (!iso) return "-";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso);
  return h("time", { datetime: iso, title: iso }, ago(date));
}

export function ago(date, now = Date.now()) {
  const seconds = Math.round((now - date.getTime()) / 1000);
  const future = seconds < 0;
  const s = Math.abs(seconds);
  const text = s < 60 ? `${s}s` : s < 3600 ? `${Math.floor(s / 60)}m` : s < 86400 ? `${Math.floor(s / 3600)}h` : `${Math.floor(s / 86400)}d`;
  return future ? `in ${text}` : `${text} ago`;
}

export function link(href, text, attrs = {}) {
  return h("a", { href, ...attrs }, text);
}

export function notice(text, tone = "bad") {
  return h("p", { class: `notice ${tone}`, role: tone === "bad" ? "alert" : "status" }, text);
}

export function labels(object) {
  const entries = Object.entries(object || {});
  if (!entries.length) return "-";
  return h("span", { class: "labels" }, entries.map(([k, v]) => h("code", { class: "label" }, `${k}=${v}`)));
}
