// The overview: tenants by condition with the failing ones first, nodes with live CPU
// and memory sparklines, rollouts in flight, and the latest events and agent runs.

import * as api from "./api.js";
import * as live from "./live.js";
import { h, replace, table, row, badge, section, when, link } from "./dom.js";
import { Series, sparkline, percentages } from "./chart.js";
import { standing, byStanding, reason, TONE } from "./tenancy.js";
import { watchKind } from "./watch.js";

const SHOWN = 200; // tenants listed here; the Tenants page pages through the rest

export async function render(view, ctx) {
  const counts = h("ul", { class: "counts", "aria-label": "Tenants by condition" });
  const tenantsBox = h("div");
  const nodesBox = h("div");
  const rolloutsBox = h("div");
  const eventsBox = h("div");
  const runsBox = h("div");
  replace(
    view,
    h("h1", {}, "Overview"),
    section("Tenants", counts, tenantsBox),
    h("div", { class: "grid" }, section("Nodes", nodesBox), section("Rollouts in flight", rolloutsBox)),
    h("div", { class: "grid" }, section("Recent events", eventsBox), section("Recent agent runs", runsBox)),
  );
  await Promise.all([
    watchKind(ctx, {
      kind: "Tenant",
      plural: "tenants",
      onChange: (items) => {
        const tenants = [...items.values()].sort(byStanding);
        showCounts(counts, tenants);
        showTenants(tenantsBox, tenants);
        showRollouts(rolloutsBox, tenants);
      },
    }),
    showNodes(nodesBox, ctx),
    recent(eventsBox, ctx, "events"),
    recent(runsBox, ctx, "runs"),
  ]);
}

function showCounts(counts, tenants) {
  const by = { Failing: 0, Progressing: 0, Unknown: 0, Ready: 0 };
  for (const tenant of tenants) by[standing(tenant)] += 1;
  replace(
    counts,
    Object.entries(by).map(([word, n]) =>
      h("li", {}, link(`#/tenants?condition=${word}`, h("span", {}, badge(word, TONE[word]), " ", h("strong", { dataset: { count: word } }, String(n))))),
    ),
  );
}

function showTenants(box, tenants) {
  const rows = tenants.slice(0, SHOWN).map((tenant) => {
    const word = standing(tenant);
    const name = tenant.metadata.name;
    return row([link(`#/tenants/${encodeURIComponent(name)}`, name), badge(word, TONE[word]), reason(tenant) || "-"], { dataset: { tenant: name } });
  });
  replace(
    box,
    tenants.length ? table("Tenants, failing first", ["Tenant", "Condition", "Why"], rows, { id: "overview-tenants" }) : h("p", { class: "muted" }, "No tenants yet: `armillary apply -f` some."),
    tenants.length > SHOWN ? link("#/tenants", `All ${tenants.length} tenants…`) : null,
  );
}

function showRollouts(box, tenants) {
  const rows = [];
  for (const tenant of tenants) {
    for (const [component, rollout] of Object.entries((tenant.status && tenant.status.rollouts) || {})) {
      if (rollout.state && rollout.state !== "complete") {
        rows.push(row([link(`#/tenants/${encodeURIComponent(tenant.metadata.name)}`, tenant.metadata.name), component, `#${rollout.revision}`, badge(rollout.state)]));
      }
    }
  }
  replace(box, rows.length ? table("Rollouts in flight", ["Tenant", "Component", "Revision", "State"], rows) : h("p", { class: "muted" }, "None: every rollout is complete."));
}

async function showNodes(box, ctx) {
  const nodes = await api.all("/api/v1/nodes");
  const charts = new Map();
  const rows = nodes.map((node) => {
    const cpu = new Series();
    const memory = new Series();
    const now = percentages(node.usage);
    cpu.push(now.cpu);
    memory.push(now.memory);
    const cpuLine = sparkline(cpu, { label: `${node.name} CPU` });
    const memoryLine = sparkline(memory, { label: `${node.name} memory`, tone: "line alt" });
    charts.set(node.name, { cpu, memory, cpuLine, memoryLine });
    return row([link("#/nodes", node.name), badge(node.status), cpuLine, memoryLine, String(node.replicas)], { dataset: { node: node.name } });
  });
  replace(box, rows.length ? table("Nodes", ["Node", "Status", "CPU", "Memory", "Replicas"], rows) : h("p", { class: "muted" }, "No node has registered."));
  ctx.cleanup(
    live.subscribe("nodes", {}, (frame) => {
      if (frame.type !== "heartbeat") return;
      const chart = charts.get(frame.payload.name);
      if (!chart) return;
      const now = percentages(frame.payload);
      chart.cpu.push(now.cpu);
      chart.memory.push(now.memory);
      chart.cpuLine.redraw();
      chart.memoryLine.redraw();
    }),
  );
}

const RECENT = 10;

async function recent(box, ctx, what) {
  const page = await api.get(`/api/v1/${what}`, { limit: RECENT });
  const items = page.items || [];
  const tbody = h("tbody");
  const draw = (item) =>
    what === "events"
      ? row([link(`#/events?id=${encodeURIComponent(item.id)}`, item.source), item.eventType || "-", item.tenant || "-", badge(item.state), when(item.receivedAt)], { dataset: { event: item.id } })
      : row([link(`#/runs?id=${encodeURIComponent(item.id)}`, item.id.slice(0, 8)), `${item.tenant}/${item.component}`, badge(item.state), String(item.attempts), when(item.createdAt)], { dataset: { run: item.id } });
  for (const item of items) tbody.append(draw(item));
  const headers = what === "events" ? ["Source", "Type", "Tenant", "State", "Received"] : ["Run", "Agent", "State", "Attempts", "Created"];
  const caption = what === "events" ? "Recent events" : "Recent agent runs";
  replace(box, h("table", { id: `recent-${what}` }, h("caption", { class: "sr" }, caption), h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))), tbody));
  const key = what === "events" ? "event" : "run";
  ctx.cleanup(
    live.subscribe(what, {}, (frame) => {
      const item = frame.payload && frame.payload[key];
      if (!item) return;
      const existing = tbody.querySelector(`tr[data-${key}="${CSS.escape(item.id)}"]`);
      const fresh = draw(item);
      if (existing) existing.replaceWith(fresh);
      else tbody.prepend(fresh);
      while (tbody.children.length > RECENT) tbody.lastElementChild.remove();
    }),
  );
}
