// The plan page: paste or upload YAML (or JSON), see what applying it would change
// (POST /plan, which writes nothing), then apply it (POST /apply, all or nothing).
// The server parses the YAML as `armillary apply -f` does, so its errors name the
// document and line.

import * as api from "./api.js";
import { h, replace, table, row, badge, notice } from "./dom.js";

function body(text) {
  const trimmed = text.trim();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    const parsed = JSON.parse(trimmed);
    return { documents: Array.isArray(parsed) ? parsed : parsed.documents || [parsed] };
  }
  return { documents: [], yaml: text };
}

function problems(error) {
  return [notice(error.message), error.errors && error.errors.length ? h("ul", { class: "issues" }, error.errors.map((e) => h("li", {}, `${e.line ? `line ${e.line}, ` : ""}${e.path || "document"}: ${e.message}`))) : null];
}

export function render(view, ctx) {
  const text = h("textarea", { id: "plan-text", rows: 18, spellcheck: "false", placeholder: "apiVersion: armillary.dev/v1\nkind: Tenant\n…" });
  const file = h("input", { id: "plan-file", type: "file", accept: ".yaml,.yml,.json" });
  const planButton = h("button", { type: "button" }, "Plan");
  const applyButton = ctx.can("developer") ? h("button", { type: "button", class: "mutating", disabled: true }, "Apply") : null;
  const out = h("div", { "aria-live": "polite" });
  file.addEventListener("change", async () => {
    if (file.files && file.files[0]) text.value = await file.files[0].text();
  });
  planButton.addEventListener("click", async () => {
    try {
      const answer = await api.send("POST", "/api/v1/plan", body(text.value));
      const changes = answer.changes || [];
      replace(out, changes.length ? table("Changes", ["Action", "Kind", "Name", "Fields"], changes.map((c) => row([badge(c.action, c.action === "delete" ? "bad" : c.action === "create" ? "ok" : "warn"), c.kind, c.name, h("ul", { class: "fields" }, (c.fields || []).map((f) => h("li", {}, h("code", {}, f.path), `: ${JSON.stringify(f.before)} → ${JSON.stringify(f.after)}`)))]))) : notice("No changes: the server already has all of it.", "ok"));
      if (applyButton) applyButton.disabled = !changes.length;
    } catch (error) {
      replace(out, problems(error));
      if (applyButton) applyButton.disabled = true;
    }
  });
  applyButton?.addEventListener("click", async () => {
    if (!confirm("Apply these documents?")) return;
    try {
      const answer = await api.send("POST", "/api/v1/apply", body(text.value));
      replace(out, table("Applied", ["Kind", "Name", "Result", "Generation"], (answer.results || []).map((r) => row([r.kind, r.name, badge(r.result, "ok"), String(r.generation)]))));
      applyButton.disabled = true;
    } catch (error) {
      replace(out, problems(error));
    }
  });
  replace(view, h("h1", {}, "Plan"),
    h("form", { class: "plan", "aria-label": "Documents to plan" },
      h("label", { for: "plan-text" }, "Documents (YAML or JSON)"), text,
      h("label", { for: "plan-file" }, "or upload a file"), file,
      h("div", { class: "actions" }, planButton, applyButton)),
    out);
}
