// Events and agent runs: filtered lists that grow live, an inspector per item (an
// event's headers and body; a run's attempts, each request and answer), retry of a
// failed run, and a bulk replay of every failed or dead run a filter matches.

import * as api from "./api.js";
import * as live from "./live.js";
import { h, replace, table, row, badge, when, link, notice } from "./dom.js";

const LIMIT = 100;

function filterForm(id, fields, params, onSubmit) {
  const inputs = fields.map(([name, label, choices]) => {
    const input = choices
      ? h("select", { id: `${id}-${name}`, name }, choices.map((c) => h("option", { value: c, selected: c === (params.get(name) || "") }, c || "any")))
      : h("input", { id: `${id}-${name}`, name, value: params.get(name) || "" });
    return [h("label", { for: `${id}-${name}` }, label), input];
  });
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter" }, inputs, h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [name] of fields) {
      const value = form.elements[name].value;
      if (value) query.set(name, value);
    }
    onSubmit(query);
  });
  return form;
}

function chosen(params, names) {
  const out = {};
  for (const name of names) if (params.get(name)) out[name] = params.get(name);
  return out;
}

function pre(text) {
  return h("pre", { class: "body" }, text);
}

export async function events(view, ctx) {
  const filters = chosen(ctx.params, ["source", "tenant", "state"]);
  const inspector = h("aside", { class: "inspector", "aria-live": "polite" });
  const tbody = h("tbody");
  const show = (e) => {
    let body = e.body;
    if (e.bodyEncoding === "base64") body = `(base64) ${body}`;
    else try { body = JSON.stringify(JSON.parse(body), null, 2); } catch { /* shown as sent */ }
    replace(inspector, h("h2", {}, `Event ${e.id}`),
      h("dl", {}, h("dt", {}, "Source"), h("dd", {}, e.source), h("dt", {}, "Type"), h("dd", {}, e.eventType || "-"), h("dt", {}, "Delivery"), h("dd", {}, e.deliveryId || "-"), h("dt", {}, "Tenant"), h("dd", {}, e.tenant || "unrouted"), h("dt", {}, "Routing key"), h("dd", {}, e.routingKey || "-"), h("dt", {}, "SHA-256"), h("dd", {}, e.bodySha256)),
      h("h3", {}, "Headers"), pre(Object.entries(e.headers || {}).map(([k, v]) => `${k}: ${v}`).join("\n")),
      h("h3", {}, "Body"), pre(body),
      link(`#/runs?event=${encodeURIComponent(e.id)}`, "Runs of this event"));
  };
  const draw = (e) => row([h("button", { type: "button", class: "linkish", onclick: () => show(e) }, e.id.slice(0, 8)), e.source, e.eventType || "-", e.tenant || "-", badge(e.state), when(e.receivedAt)], { dataset: { event: e.id } });
  const page = await api.get("/api/v1/events", { ...filters, limit: LIMIT });
  for (const e of page.items || []) tbody.append(draw(e));
  replace(view, h("h1", {}, "Events"),
    filterForm("events", [["source", "Source"], ["tenant", "Tenant"], ["state", "State", ["", "routed", "unrouted"]]], ctx.params, (q) => ctx.go(`/events?${q}`)),
    h("div", { class: "split" }, h("table", { id: "events" }, h("caption", { class: "sr" }, "Events, newest first"), h("thead", {}, h("tr", {}, ["Event", "Source", "Type", "Tenant", "State", "Received"].map((x) => h("th", { scope: "col" }, x)))), tbody), inspector));
  const wanted = ctx.params.get("id") && (page.items || []).find((e) => e.id === ctx.params.get("id"));
  if (wanted) show(wanted);
  ctx.cleanup(live.subscribe("events", { ...(filters.tenant ? { tenant: filters.tenant } : {}), ...(filters.source ? { source: filters.source } : {}) }, (frame) => {
    const e = frame.payload && frame.payload.event;
    if (!e || (filters.state && e.state !== filters.state)) return;
    const existing = tbody.querySelector(`tr[data-event="${CSS.escape(e.id)}"]`);
    if (existing) existing.replaceWith(draw(e));
    else tbody.prepend(draw(e));
  }));
}

const RETRYABLE = new Set(["failed", "dead"]);

export async function runs(view, ctx) {
  const filters = chosen(ctx.params, ["tenant", "component", "state", "event"]);
  const inspector = h("aside", { class: "inspector", "aria-live": "polite" });
  const message = h("div", { "aria-live": "polite" });
  const tbody = h("tbody");
  const retry = async (id) => {
    const done = await api.send("POST", `/api/v1/runs/${encodeURIComponent(id)}/retry`);
    tbody.querySelector(`tr[data-run="${CSS.escape(id)}"]`)?.replaceWith(draw(done));
    return done;
  };
  const show = async (id) => {
    const run = await api.get(`/api/v1/runs/${encodeURIComponent(id)}`);
    const attempts = (run.history || []).map((attempt, i) => h("details", { open: i === (run.history.length - 1) },
      h("summary", {}, `Attempt ${attempt.attempt ?? i + 1}: `, badge(attempt.state || attempt.outcome || (attempt.error ? "failed" : "done")), ` ${attempt.status ?? ""}`),
      pre(JSON.stringify(attempt, null, 2))));
    replace(inspector, h("h2", {}, `Run ${run.id}`),
      h("dl", {}, h("dt", {}, "Agent"), h("dd", {}, `${run.tenant}/${run.component}`), h("dt", {}, "State"), h("dd", {}, badge(run.state)), h("dt", {}, "Attempts"), h("dd", {}, `${run.attempts}/${run.maxAttempts}`), h("dt", {}, "Event"), h("dd", {}, run.event ? link(`#/events?id=${encodeURIComponent(run.event)}`, run.event) : "-"), h("dt", {}, "Requested by"), h("dd", {}, run.requestedBy), h("dt", {}, "Error"), h("dd", {}, run.error || "-")),
      h("h3", {}, "Request"), pre(JSON.stringify(run.input, null, 2)),
      h("h3", {}, "Answer"), pre(run.answer || "-"),
      h("h3", {}, "Attempts"), attempts.length ? attempts : h("p", { class: "muted" }, "None yet."),
      ctx.can("developer") && RETRYABLE.has(run.state) ? h("button", { type: "button", class: "mutating", onclick: async () => {
        try { await retry(run.id); replace(message, notice(`run ${run.id} queued again`, "ok")); show(run.id); } catch (error) { replace(message, notice(error.message)); }
      } }, "Retry") : null);
  };
  const draw = (r) => row([h("button", { type: "button", class: "linkish", onclick: () => show(r.id) }, r.id.slice(0, 8)), `${r.tenant}/${r.component}`, badge(r.state), `${r.attempts}/${r.maxAttempts}`, r.statusCode ? String(r.statusCode) : "-", r.durationMs ? `${r.durationMs} ms` : "-", when(r.createdAt)], { dataset: { run: r.id } });
  const page = await api.get("/api/v1/runs", { ...filters, limit: LIMIT });
  const items = (page.items || []).filter((r) => !filters.component || r.component === filters.component);
  for (const r of items) tbody.append(draw(r));
  const replay = ctx.can("developer") ? h("button", { type: "button", class: "mutating", onclick: async () => {
    const all = (await api.all("/api/v1/runs", filters, 10000, 200)).filter((r) => !filters.component || r.component === filters.component).filter((r) => RETRYABLE.has(r.state));
    if (!all.length) return replace(message, notice("No failed or dead run matches this filter.", "ok"));
    if (!confirm(`Retry ${all.length} failed or dead runs?`)) return;
    let done = 0;
    const refused = [];
    for (const r of all) {
      try { await retry(r.id); done += 1; } catch (error) { refused.push(`${r.id}: ${error.message}`); }
    }
    replace(message, notice(`${done} of ${all.length} runs queued again${refused.length ? `; refused: ${refused.join("; ")}` : ""}`, refused.length ? "bad" : "ok"));
  } }, "Replay failed runs matching the filter") : null;
  replace(view, h("h1", {}, "Agent runs"),
    filterForm("runs", [["tenant", "Tenant"], ["component", "Component"], ["state", "State", ["", "queued", "running", "succeeded", "failed", "dead"]], ["event", "Event"]], ctx.params, (q) => ctx.go(`/runs?${q}`)),
    replay, message,
    h("div", { class: "split" }, h("table", { id: "runs" }, h("caption", { class: "sr" }, "Agent runs, newest first"), h("thead", {}, h("tr", {}, ["Run", "Agent", "State", "Attempts", "Status", "Duration", "Created"].map((x) => h("th", { scope: "col" }, x)))), tbody), inspector));
  if (ctx.params.get("id")) show(ctx.params.get("id")).catch((error) => replace(message, notice(error.message)));
  ctx.cleanup(live.subscribe("runs", { kind: "agent", ...(filters.tenant ? { tenant: filters.tenant } : {}) }, (frame) => {
    const r = frame.payload && frame.payload.run;
    if (!r || (frame.payload.kind && frame.payload.kind !== "agent")) return;
    if ((filters.state && r.state !== filters.state) || (filters.component && r.component !== filters.component) || (filters.event && r.event !== filters.event)) return;
    const existing = tbody.querySelector(`tr[data-run="${CSS.escape(r.id)}"]`);
    if (existing) existing.replaceWith(draw(r));
    else tbody.prepend(draw(r));
  }));
}
