// Logs: pick a tenant's component (every replica, or one), follow its output live,
// filter the lines shown, and download them. Lines come from the live feed's `logs`
// channel; while the feed is down, from the API's own followed log stream
// (`GET /replicas/{id}/logs?follow=true`). A replica's stdout and stderr are one log
// on its node (interleaved as written), so the page shows them together.

import * as api from "./api.js";
import * as live from "./live.js";
import { h, replace, notice } from "./dom.js";

const KEPT = 5000; // lines held in the page; the download link asks the API for more
const TAIL = 200;

export async function render(view, ctx) {
  const params = ctx.params;
  const tenants = await api.all("/api/v1/tenants");
  const tenantSelect = h("select", { id: "logs-tenant" }, tenants.map((t) => h("option", { value: t.metadata.name, selected: t.metadata.name === params.get("tenant") }, t.metadata.name)));
  const componentSelect = h("select", { id: "logs-component" });
  const replicaSelect = h("select", { id: "logs-replica" });
  const search = h("input", { id: "logs-search", type: "search", placeholder: "show lines containing…" });
  const follow = h("input", { id: "logs-follow", type: "checkbox", checked: true });
  const download = h("a", { id: "logs-download", class: "button", href: "#", download: "logs.txt" }, "Download");
  const state = h("span", { class: "muted", "aria-live": "polite" });
  const lines = h("ol", { id: "log-lines", class: "log", "aria-label": "Log lines", tabindex: "0" });
  replace(
    view,
    h("h1", {}, "Logs"),
    h("form", { class: "filters", "aria-label": "Choose logs" },
      h("label", { for: "logs-tenant" }, "Tenant"), tenantSelect,
      h("label", { for: "logs-component" }, "Component"), componentSelect,
      h("label", { for: "logs-replica" }, "Replica"), replicaSelect,
      h("label", { for: "logs-search" }, "Search"), search,
      h("label", { for: "logs-follow" }, follow, " follow"),
      download, state),
    lines,
  );
  if (!tenants.length) return replace(lines, h("li", { class: "muted" }, "No tenants."));

  let replicas = [];
  let stopFollowing = () => {};
  ctx.cleanup(() => stopFollowing());

  const visible = (li) => !search.value || li.textContent.toLowerCase().includes(search.value.toLowerCase());
  const add = (replica, stream, text) => {
    for (const line of text.split("\n")) {
      if (!line) continue;
      const li = h("li", { class: stream || "", dataset: { stream: stream || "" } }, h("span", { class: "who" }, replica), h("span", { class: "text" }, line));
      li.hidden = !visible(li);
      lines.append(li);
    }
    while (lines.children.length > KEPT) lines.firstElementChild.remove();
    if (follow.checked) lines.scrollTop = lines.scrollHeight;
  };

  const loadReplicas = async () => {
    const answer = await api.get("/api/v1/replicas", { tenant: tenantSelect.value });
    replicas = answer.items || [];
    const components = [...new Set(replicas.map((r) => r.component))].sort();
    replace(componentSelect, components.map((c) => h("option", { value: c, selected: c === params.get("component") }, c)));
    fillReplicas();
  };
  const fillReplicas = () => {
    const mine = replicas.filter((r) => r.component === componentSelect.value);
    replace(replicaSelect, h("option", { value: "" }, "every replica"), mine.map((r) => h("option", { value: r.id, selected: r.id === params.get("replica") }, `${r.component}/${r.replica}`)));
  };

  const start = () => {
    stopFollowing();
    replace(lines);
    const chosen = replicas.filter((r) => r.component === componentSelect.value && (!replicaSelect.value || r.id === replicaSelect.value));
    const names = new Map(chosen.map((r) => [r.id, `${r.component}/${r.replica}`]));
    download.href = chosen.length === 1 ? api.href(`/api/v1/replicas/${encodeURIComponent(chosen[0].id)}/logs`, { tail: 100000 }) : "#";
    download.setAttribute("download", `${tenantSelect.value}-${componentSelect.value}.log`);
    if (!componentSelect.value) return;
    if (document.getElementById("live").dataset.status === "live") {
      state.textContent = "following (live)";
      const payload = { tenant: tenantSelect.value, component: componentSelect.value, tail: TAIL };
      if (replicaSelect.value) payload.replica = replicaSelect.value;
      stopFollowing = live.subscribe("logs", payload, (frame) => {
        if (frame.type === "line") add(names.get(frame.payload.replica) || frame.payload.replica, "", frame.payload.line);
        else if (frame.type === "end" && frame.payload.error) add(names.get(frame.payload.replica) || "armillary", "error", frame.payload.error);
        else if (frame.type === "error") add("armillary", "error", frame.payload.message);
      });
      return;
    }
    state.textContent = "following (HTTP)";
    const controller = new AbortController();
    stopFollowing = () => controller.abort();
    for (const r of chosen) {
      api.stream(`/api/v1/replicas/${encodeURIComponent(r.id)}/logs`, { follow: true, tail: TAIL }, (text) => add(names.get(r.id), "", text), controller.signal)
        .catch((error) => { if (error.name !== "AbortError") replace(state, notice(error.message)); });
    }
  };

  download.addEventListener("click", (event) => {
    if (download.getAttribute("href") !== "#") return; // one replica: the API's whole log
    event.preventDefault();
    const text = [...lines.children].map((li) => li.textContent).join("\n");
    const url = URL.createObjectURL(new Blob([text + "\n"], { type: "text/plain" }));
    const a = h("a", { href: url, download: download.getAttribute("download") });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  });
  search.addEventListener("input", () => { for (const li of lines.children) li.hidden = !visible(li); });
  tenantSelect.addEventListener("change", async () => { await loadReplicas(); start(); });
  componentSelect.addEventListener("change", () => { fillReplicas(); start(); });
  replicaSelect.addEventListener("change", start);
  await loadReplicas();
  start();
}
