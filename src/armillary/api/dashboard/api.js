// Calls to the API, as the CLI makes them: the browser sends the session cookie, and
// every request that changes something carries the session's CSRF token in
// X-CSRF-Token (the server refuses it otherwise). The token is the login answer's;
// it is kept in localStorage so a reload or a second tab can still act.

const CSRF_KEY = "armillary.csrf";
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, title, detail, errors) {
    super(detail || title || `HTTP ${status}`);
    this.status = status;
    this.title = title;
    this.errors = errors || [];
  }
}

/** Called with the status of every refused call (401: log in again). */
export function onRefused(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function csrf() {
  return localStorage.getItem(CSRF_KEY);
}

export function remember(token) {
  if (token) localStorage.setItem(CSRF_KEY, token);
  else localStorage.removeItem(CSRF_KEY);
}

function url(path, params) {
  const target = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") target.searchParams.set(key, value);
  }
  return target;
}

async function problem(response) {
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = { detail: await response.text().catch(() => "") };
  }
  const error = new ApiError(response.status, body.title, body.detail, body.errors);
  for (const listener of listeners) listener(error);
  return error;
}

export async function get(path, params) {
  const response = await fetch(url(path, params), {
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  if (!response.ok) throw await problem(response);
  return response.json();
}

/** Every page of a list (`metadata.continue`), up to `max` items. */
export async function all(path, params = {}, max = 100000, size = 1000) {
  const items = [];
  let token = null;
  do {
    const page = await get(path, { ...params, limit: size, continue: token });
    items.push(...(page.items || []));
    token = page.metadata && page.metadata.continue;
  } while (token && items.length < max);
  return items;
}

export async function send(method, path, body, { params, contentType = "application/json" } = {}) {
  const headers = { Accept: "application/json" };
  const token = csrf();
  if (token) headers["X-CSRF-Token"] = token;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = contentType;
    payload = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(url(path, params), {
    method,
    credentials: "same-origin",
    headers,
    body: payload,
  });
  if (!response.ok) throw await problem(response);
  const text = await response.text();
  return text ? JSON.parse(text) : {};
}

/** A streamed text answer (logs followed): `onText` per chunk until `signal` aborts. */
export async function stream(path, params, onText, signal) {
  const response = await fetch(url(path, params), { credentials: "same-origin", signal });
  if (!response.ok) throw await problem(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onText(value);
  }
}

export function href(path, params) {
  return url(path, params).toString();
}
