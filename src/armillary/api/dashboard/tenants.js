// Tenants: search by name, filter by label selector (answered by the API) and by
// condition, a page of PAGE at a time; the list follows the live feed.

import { h, replace, table, row, badge, link, labels, notice } from "./dom.js";
import { standing, byStanding, reason, TONE } from "./tenancy.js";
import { watchKind } from "./watch.js";

const PAGE = 100;

export async function render(view, ctx) {
  const params = ctx.params;
  const search = h("input", { id: "tenant-search", type: "search", value: params.get("q") || "", placeholder: "name contains…" });
  const selector = h("input", { id: "tenant-selector", value: params.get("selector") || "", placeholder: "tier=gold,region!=eu" });
  const condition = h(
    "select",
    { id: "tenant-condition" },
    ["", "Failing", "Progressing", "Unknown", "Ready"].map((word) => h("option", { value: word, selected: word === (params.get("condition") || "") }, word || "any")),
  );
  const apply = h("button", { type: "submit" }, "Filter");
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter tenants" },
    h("label", { for: "tenant-search" }, "Name"), search,
    h("label", { for: "tenant-selector" }, "Labels"), selector,
    h("label", { for: "tenant-condition" }, "Condition"), condition,
    apply,
  );
  const box = h("div");
  const pager = h("nav", { class: "pager", "aria-label": "Pages of tenants" });
  let page = Math.max(0, Number(params.get("page") || 0));
  let all = new Map();
  const draw = () => {
    const needle = search.value.trim().toLowerCase();
    const word = condition.value;
    const chosen = [...all.values()].filter((t) => (!needle || t.metadata.name.includes(needle)) && (!word || standing(t) === word)).sort(byStanding);
    const pages = Math.max(1, Math.ceil(chosen.length / PAGE));
    page = Math.min(page, pages - 1);
    const rows = chosen.slice(page * PAGE, (page + 1) * PAGE).map((t) => {
      const w = standing(t);
      const replicas = t.status && t.status.replicas;
      return row([
        link(`#/tenants/${encodeURIComponent(t.metadata.name)}`, t.metadata.name),
        badge(w, TONE[w]),
        replicas ? `${replicas.ready}/${replicas.desired}` : "-",
        t.spec.org || "-",
        t.spec.stack || "-",
        labels(t.metadata.labels),
        reason(t) || "-",
      ], { dataset: { tenant: t.metadata.name } });
    });
    replace(box, h("p", { class: "muted", "aria-live": "polite" }, `${chosen.length} of ${all.size} tenants`), table("Tenants", ["Tenant", "Condition", "Ready", "Org", "Stack", "Labels", "Why"], rows, { id: "tenants" }));
    replace(
      pager,
      h("button", { type: "button", disabled: page === 0, onclick: () => { page -= 1; draw(); } }, "← Previous"),
      h("span", {}, ` page ${page + 1} of ${pages} `),
      h("button", { type: "button", disabled: page >= pages - 1, onclick: () => { page += 1; draw(); } }, "Next →"),
    );
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = new URLSearchParams();
    if (search.value) query.set("q", search.value);
    if (selector.value) query.set("selector", selector.value);
    if (condition.value) query.set("condition", condition.value);
    ctx.go(`/tenants?${query}`);
  });
  search.addEventListener("input", () => { page = 0; draw(); });
  condition.addEventListener("change", () => { page = 0; draw(); });
  replace(view, h("h1", {}, "Tenants"), form, box, pager);
  try {
    await watchKind(ctx, {
      kind: "Tenant",
      plural: "tenants",
      selector: selector.value || undefined,
      onChange: (items) => { all = items; draw(); },
    });
  } catch (error) {
    replace(box, notice(error.message));
  }
}
