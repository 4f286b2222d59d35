// Provisioning runs as step timelines, releases with the tenants rolling each one
// out (its waves), and the audit log's search.

import * as api from "./api.js";
import * as live from "./live.js";
import { h, replace, table, row, badge, when, link, notice, section } from "./dom.js";

function duration(start, end) {
  if (!start) return "";
  const ms = (end ? new Date(end) : new Date()) - new Date(start);
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function timeline(run) {
  return h("article", { class: "card", dataset: { provision: run.id }, "aria-labelledby": `run-${run.id}` },
    h("h2", { id: `run-${run.id}` }, `${run.action} ${run.tenant} `, badge(run.state), h("span", { class: "muted" }, ` ${run.id.slice(0, 8)} · org ${run.org} · `, when(run.createdAt))),
    run.error ? notice(run.error) : null,
    h("ol", { class: "timeline", "aria-label": `Steps of ${run.action} ${run.tenant}` }, (run.steps || []).map((step) =>
      h("li", { class: `step ${badgeTone(step.state)}` },
        h("span", { class: "dot", "aria-hidden": "true" }),
        h("strong", {}, step.name), " ", badge(step.state), " ",
        h("span", { class: "muted" }, duration(step.startedAt, step.finishedAt)),
        step.error ? h("div", { class: "error" }, step.error) : null))));
}

function badgeTone(state) {
  return ["succeeded", "done", "complete"].includes(state) ? "ok" : ["failed", "rolled-back"].includes(state) ? "bad" : state === "running" ? "warn" : "idle";
}

export async function provisioning(view, ctx) {
  const tenant = ctx.params.get("tenant") || undefined;
  const box = h("div", { class: "stack" });
  replace(view, h("h1", {}, "Provisioning runs"), box);
  const runs = new Map();
  const draw = () => replace(box, runs.size ? [...runs.values()].sort((a, b) => String(b.createdAt).localeCompare(String(a.createdAt))).slice(0, 50).map(timeline) : h("p", { class: "muted" }, "No provisioning runs yet (`armillary provision`)."));
  const page = await api.get("/api/v1/provision/runs", { tenant, limit: 50 });
  for (const run of page.items || []) runs.set(run.id, run);
  draw();
  ctx.cleanup(live.subscribe("runs", { kind: "provision", ...(tenant ? { tenant } : {}) }, (frame) => {
    if (frame.payload && frame.payload.kind === "provision" && frame.payload.run) {
      runs.set(frame.payload.run.id, frame.payload.run);
      draw();
    }
  }));
}

export async function releases(view, ctx) {
  const [found, tenants] = await Promise.all([api.all("/api/v1/releases"), api.all("/api/v1/tenants")]);
  const byComponent = new Map();
  for (const release of found) {
    const list = byComponent.get(release.spec.component) || [];
    list.push(release);
    byComponent.set(release.spec.component, list);
  }
  // A tenant pins a release per component of its stack: overrides.<component>.release
  // is "<release component>@<version>". The wave: those tenants by rollout state.
  const pinned = (release) => {
    const ref = `${release.spec.component}@${release.spec.version}`;
    return tenants.flatMap((t) => Object.entries(t.spec.overrides || {})
      .filter(([, override]) => override && override.release === ref)
      .map(([component]) => [t, component]));
  };
  const sections = [...byComponent.entries()].sort().map(([component, list]) => section(`Component ${component}`,
    table(`Releases of ${component}`, ["Version", "Git tag", "Commit", "Artifact", "Tenants pinned", "Wave"], list.map((release) => {
      const users = pinned(release);
      const waves = {};
      for (const [t, used] of users) {
        const state = (t.status && t.status.rollouts && t.status.rollouts[used] && t.status.rollouts[used].state) || "pending";
        waves[state] = (waves[state] || 0) + 1;
      }
      return row([release.spec.version, release.spec.git.tag, (release.spec.git.commit || "").slice(0, 12), JSON.stringify(release.spec.artifact), users.length ? users.map(([t]) => link(`#/tenants/${encodeURIComponent(t.metadata.name)}`, `${t.metadata.name} `)) : "-", Object.entries(waves).map(([state, n]) => h("span", {}, badge(state), ` ${n} `))]);
    }))));
  replace(view, h("h1", {}, "Releases"), sections.length ? sections : h("p", { class: "muted" }, "No releases recorded (`armillary release`)."));
}

const AUDIT_FIELDS = [["principal", "Who"], ["tenant", "Tenant"], ["kind", "Kind"], ["name", "Name"], ["verb", "Verb"], ["outcome", "Outcome"]];

export async function audit(view, ctx) {
  if (!ctx.can("admin")) {
    replace(view, h("h1", {}, "Audit"), notice("Only admins may read the audit log.", "idle"));
    return;
  }
  const filters = {};
  for (const [name] of AUDIT_FIELDS) if (ctx.params.get(name)) filters[name] = ctx.params.get(name);
  const form = h("form", { class: "filters", role: "search", "aria-label": "Search the audit log" },
    AUDIT_FIELDS.map(([name, label]) => [h("label", { for: `audit-${name}` }, label), h("input", { id: `audit-${name}`, name, value: filters[name] || "" })]),
    h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    for (const [name] of AUDIT_FIELDS) if (form.elements[name].value) query.set(name, form.elements[name].value);
    ctx.go(`/audit?${query}`);
  });
  const tbody = h("tbody");
  const more = h("button", { type: "button" }, "Older…");
  let cursor = null;
  const load = async () => {
    const page = await api.get("/api/v1/audit", { ...filters, limit: 100, continue: cursor });
    for (const e of page.items || []) tbody.append(row([when(e.at), e.principal || "-", e.role || "-", e.verb, [e.kind, e.name].filter(Boolean).join("/") || e.path || "-", e.tenant || "-", badge(e.outcome), String(e.status ?? "-")]));
    cursor = page.metadata && page.metadata.continue;
    more.hidden = !cursor;
  };
  more.addEventListener("click", () => load().catch((error) => tbody.append(row([notice(error.message)]))));
  replace(view, h("h1", {}, "Audit"), form, h("table", { id: "audit" }, h("caption", { class: "sr" }, "Audit log, newest first"), h("thead", {}, h("tr", {}, ["When", "Who", "Role", "Verb", "Object", "Tenant", "Outcome", "Status"].map((x) => h("th", { scope: "col" }, x)))), tbody), more);
  await load();
}
