// What a tenant's status says, in the order an operator reads it: failing first.

export function condition(tenant, type) {
  return ((tenant.status && tenant.status.conditions) || []).find((c) => c.type === type) || null;
}

/** "Failing", "Progressing", "Ready" or "Unknown": the one word a tenant is summed up by. */
export function standing(tenant) {
  const ready = condition(tenant, "Ready");
  const degraded = condition(tenant, "Degraded");
  const progressing = condition(tenant, "Progressing");
  if (ready && ready.status === "True") return "Ready";
  if (degraded && degraded.status === "True") return "Failing";
  if (progressing && progressing.status === "True") return "Progressing";
  if (ready && ready.status === "False") return "Failing";
  return "Unknown";
}

export const ORDER = { Failing: 0, Unknown: 1, Progressing: 2, Ready: 3 };
export const TONE = { Failing: "bad", Unknown: "idle", Progressing: "warn", Ready: "ok" };

export function byStanding(a, b) {
  return ORDER[standing(a)] - ORDER[standing(b)] || a.metadata.name.localeCompare(b.metadata.name);
}

/** Why: the message of the condition that decided the standing. */
export function reason(tenant) {
  const word = standing(tenant);
  const type = word === "Failing" ? (condition(tenant, "Degraded")?.status === "True" ? "Degraded" : "Ready") : word === "Progressing" ? "Progressing" : "Ready";
  const found = condition(tenant, type);
  return found ? [found.reason, found.message].filter(Boolean).join(": ") : "";
}
