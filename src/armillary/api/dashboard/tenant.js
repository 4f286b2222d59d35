// One tenant: its conditions with their reasons, components and their release pins,
// replicas (node, pid, health, restarts, ports, uptime) updated live, public URLs,
// revision history with undo, schedules with their next run, recent events and runs.

import * as api from "./api.js";
import * as live from "./live.js";
import { h, replace, table, row, badge, section, when, link, labels, notice } from "./dom.js";
import { standing, TONE } from "./tenancy.js";

export async function render(view, ctx, name) {
  const [tenant, replicaList, rollouts, jobs, events, runs, nodes] = await Promise.all([
    api.get(`/api/v1/tenants/${encodeURIComponent(name)}`),
    api.get("/api/v1/replicas", { tenant: name }),
    api.get(`/api/v1/tenants/${encodeURIComponent(name)}/rollouts`).catch(() => null),
    api.all("/api/v1/scheduled-jobs").catch(() => []),
    api.get("/api/v1/events", { tenant: name, limit: 10 }).catch(() => ({ items: [] })),
    api.get("/api/v1/runs", { tenant: name, limit: 10 }).catch(() => ({ items: [] })),
    api.all("/api/v1/nodes").catch(() => []),
  ]);
  const addresses = new Map(nodes.map((n) => [n.name, n.address]));
  const heading = h("div", { class: "title" });
  const conditionsBox = h("div");
  const componentsBox = h("div");
  const replicasBody = h("tbody");
  const urlsBox = h("ul", { class: "urls" });
  const revisionsBox = h("div");
  const message = h("div", { "aria-live": "polite" });
  const replicas = new Map((replicaList.items || []).map((r) => [r.id, r]));

  const drawTenant = (t) => {
    const word = standing(t);
    const notes = Object.entries(t.metadata.annotations || {});
    replace(heading, h("h1", {}, t.metadata.name), " ", badge(word, TONE[word]), " ", labels(t.metadata.labels),
      notes.length ? h("dl", { class: "annotations", "aria-label": "Annotations" }, notes.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])) : null);
    const conditions = (t.status && t.status.conditions) || [];
    replace(conditionsBox, table("Conditions", ["Type", "Status", "Reason", "Message", "Since"], conditions.map((c) => row([c.type, badge(c.status === "True" ? (c.type === "Degraded" ? "True" : "Ready") : c.status, c.type === "Degraded" ? (c.status === "True" ? "bad" : "ok") : c.status === "True" ? (c.type === "Ready" ? "ok" : "warn") : c.type === "Ready" ? "bad" : "idle"), c.reason || "-", c.message || "-", when(c.lastTransitionTime)]))));
    const components = Object.entries((t.status && t.status.components) || {});
    const overrides = t.spec.overrides || {};
    replace(componentsBox, table("Components", ["Component", "Ready", "Updated", "Rollout", "Release pin"], components.map(([component, seen]) => {
      const rollout = t.status.rollouts && t.status.rollouts[component];
      const pin = overrides[component] && overrides[component].release;
      return row([component, `${seen.ready}/${seen.desired}`, String(seen.updated ?? "-"), rollout ? h("span", {}, `#${rollout.revision} `, badge(rollout.state)) : "-", pin || "-"]);
    })));
  };

  const drawReplica = (r) => {
    const report = r.report || {};
    const healthy = report.healthy === true ? "healthy" : report.healthy === false ? "unhealthy" : "-";
    const ports = Object.entries(r.ports || {}).map(([k, v]) => `${k}:${v}`).join(" ") || "-";
    const cells = [
      ["name", `${r.component}/${r.replica}`],
      ["node", r.node],
      ["state", badge(report.state || "pending")],
      ["pid", report.pid ? String(report.pid) : "-"],
      ["health", healthy === "-" ? "-" : badge(healthy)],
      ["restarts", String(report.restarts ?? 0)],
      ["ports", ports],
      ["uptime", report.startedAt && report.state === "running" ? when(report.startedAt) : "-"],
      ["logs", link(`#/logs?tenant=${encodeURIComponent(r.tenant)}&component=${encodeURIComponent(r.component)}&replica=${encodeURIComponent(r.id)}`, "logs", { "aria-label": `Logs of ${r.component}/${r.replica}` })],
    ];
    return h("tr", { dataset: { replica: r.id } }, cells.map(([field, value]) => h("td", { dataset: { field } }, value)));
  };

  const drawReplicas = () => {
    const sorted = [...replicas.values()].sort((a, b) => a.component.localeCompare(b.component) || a.replica - b.replica);
    replace(replicasBody, sorted.map(drawReplica));
    const urls = sorted.filter((r) => r.type === "service").flatMap((r) => Object.values(r.ports || {}).slice(0, 1).map((port) => [r, `http://${addresses.get(r.node) || location.hostname}:${port}`]));
    replace(urlsBox, urls.length ? urls.map(([r, url]) => h("li", {}, `${r.component}/${r.replica}: `, h("a", { href: url, rel: "noopener noreferrer", target: "_blank" }, url))) : h("li", { class: "muted" }, "No public URL."));
  };

  const drawRevisions = (answer) => {
    if (!answer) return replace(revisionsBox, h("p", { class: "muted" }, "No revisions."));
    const undo = (component, revision) => async () => {
      if (!confirm(`Roll ${component} back to revision ${revision}?`)) return;
      try {
        const done = await api.send("POST", `/api/v1/tenants/${encodeURIComponent(name)}/rollouts/${encodeURIComponent(component)}/undo`, { toRevision: revision });
        replace(message, notice(`${component}: ${done.result} (revision ${done.revision})`, "ok"));
        drawRevisions(await api.get(`/api/v1/tenants/${encodeURIComponent(name)}/rollouts`));
      } catch (error) {
        replace(message, notice(error.message));
      }
    };
    const newest = new Map();
    for (const rev of answer.items || []) newest.set(rev.component, Math.max(newest.get(rev.component) || 0, rev.revision));
    replace(revisionsBox, table("Revision history", ["Component", "Revision", "Release", "State", "Started", "Finished", ""], (answer.items || []).map((rev) => row([
      rev.component, `#${rev.revision}`, rev.release || "-", badge(rev.state), when(rev.startedAt), when(rev.finishedAt),
      ctx.can("developer") && rev.revision < newest.get(rev.component) && rev.state === "complete" ? h("button", { type: "button", class: "mutating", onclick: undo(rev.component, rev.revision) }, `Undo to #${rev.revision}`) : "",
    ]))));
  };

  const schedules = jobs.filter((j) => j.tenant === name);
  replace(
    view,
    heading,
    message,
    section("Conditions", conditionsBox),
    section("Components", componentsBox),
    section("Replicas", h("table", { id: "replicas" }, h("caption", { class: "sr" }, "Replicas"), h("thead", {}, h("tr", {}, ["Replica", "Node", "State", "PID", "Health", "Restarts", "Ports", "Up since", "Logs"].map((x) => h("th", { scope: "col" }, x)))), replicasBody)),
    section("Public URLs", urlsBox),
    section("Revisions", revisionsBox),
    section("Schedules", schedules.length ? table("Schedules", ["Schedule", "Cron", "Time zone", "Next run", "Last run"], schedules.map((j) => row([j.name, j.cron || "-", j.timeZone || "UTC", when(j.status && j.status.nextScheduleTime), when(j.status && j.status.lastScheduleTime)]))) : h("p", { class: "muted" }, "No schedules.")),
    h("div", { class: "grid" },
      section("Recent events", table("Recent events", ["Source", "Type", "State", "Received"], (events.items || []).map((e) => row([link(`#/events?id=${encodeURIComponent(e.id)}`, e.source), e.eventType || "-", badge(e.state), when(e.receivedAt)])))),
      section("Recent runs", table("Recent runs", ["Run", "Component", "State", "Attempts", "Created"], (runs.items || []).map((r) => row([link(`#/runs?id=${encodeURIComponent(r.id)}`, r.id.slice(0, 8)), r.component, badge(r.state), String(r.attempts), when(r.createdAt)]))))),
  );
  drawTenant(tenant);
  drawReplicas();
  drawRevisions(rollouts);

  ctx.cleanup(live.subscribe("replicas", { tenant: name }, (frame) => {
    if (frame.type === "reconnected") {
      api.get("/api/v1/replicas", { tenant: name }).then((answer) => {
        replicas.clear();
        for (const r of answer.items || []) replicas.set(r.id, r);
        drawReplicas();
      }, console.error);
      return;
    }
    const r = frame.payload && frame.payload.replica;
    if (!r || r.tenant !== name) return; // SYNCED and errors carry no replica
    if (frame.type === "DELETED") {
      replicas.delete(r.id);
      drawReplicas();
      return;
    }
    replicas.set(r.id, r);
    const existing = replicasBody.querySelector(`tr[data-replica="${CSS.escape(r.id)}"]`);
    if (existing) existing.replaceWith(drawReplica(r));
    else drawReplicas();
  }));
  ctx.cleanup(live.subscribe("resources", { kinds: ["Tenant"], name }, (frame) => {
    const object = frame.payload && frame.payload.object;
    if (object && object.metadata.name === name && frame.type !== "DELETED") drawTenant(object);
  }));
}
