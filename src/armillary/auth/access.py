"""Who may do what: principals, roles, and the rule every API route declares.

Roles, from least to most: `viewer` reads everything but secret values;
`developer` also applies and deletes stacks, tenants, releases and schedules,
provisions and starts runs; `admin` also manages users, API keys, webhook sources,
secrets and settings. Two narrow roles sit beside them: `node` may only connect a
node daemon, and `tenant` (a tenant token) may only read its own tenant's things.

Every route states one `Rule`; `decide` is the whole policy, pure, so the
authorization matrix test can check every route against every kind of caller.
A tenant token that reaches for another tenant's things is told "not found", not
"forbidden", so guessing names or ids reveals nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Role = Literal["viewer", "developer", "admin", "node", "tenant"]
StaffRole = Literal["viewer", "developer", "admin"]
STAFF: tuple[StaffRole, ...] = ("viewer", "developer", "admin")
ROLES: tuple[Role, ...] = ("viewer", "developer", "admin", "node", "tenant")
_RANK = {"viewer": 1, "developer": 2, "admin": 3}

TenantScope = Literal["none", "path", "query", "handler"]
"""How a tenant token may use a route: `none`, not at all; `path`/`query`, when the
route's `tenant` path or query parameter names its own tenant; `handler`, the
handler checks each thing it looks up (`Principal.sees`)."""


ADMIN_KINDS = frozenset({"WebhookSource", "Secret", "Cluster"})
"""Kinds only admins may write: where events come in, what is secret, and where
tenants' replicas run (a Cluster names the Secret that reaches it)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """The caller a request acts for."""

    kind: Literal["token", "user", "tenant"]
    id: str  # the API key's id, the user's name, or the tenant token's id
    role: Role
    tenant: str | None = None  # tenant tokens only
    via_cookie: bool = False  # a dashboard session: mutations need the CSRF token

    @property
    def name(self) -> str:
        """How logs and the audit log name the caller: `token:3f2a…`, `user:ana`."""
        return f"{self.kind}:{self.tenant if self.kind == 'tenant' else self.id}"

    def sees(self, tenant: str | None) -> bool:
        """May this caller see a thing belonging to `tenant` (None: cluster-wide)?"""
        if self.role != "tenant":
            return self.role in _RANK
        return tenant is not None and tenant == self.tenant


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """What a route needs: a staff role at least `role` (None: no staff access, only
    what `tenant`/`node` allow), and whether tenant tokens or node keys may use it."""

    role: StaffRole | None
    tenant: TenantScope = "none"
    node: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    allowed: bool
    status: int = 200  # 403 (role too low) or 404 (another tenant's thing)
    reason: str = ""


def decide(
    rule: Rule,
    who: Principal,
    *,
    path: Mapping[str, str],
    query: Mapping[str, str],
) -> Decision:
    """Whether `who` may call a route with `rule`, given the request's parameters."""
    if who.role == "node":
        if rule.node:
            return Decision(allowed=True)
        return Decision(allowed=False, status=403, reason="a node key may only connect a node")
    if who.role == "tenant":
        return _tenant(rule, who, path=path, query=query)
    if rule.role is not None and _RANK.get(who.role, 0) >= _RANK[rule.role]:
        return Decision(allowed=True)
    needed = rule.role or "a node key"
    return Decision(allowed=False, status=403, reason=f"needs {needed}; {who.name} is {who.role}")


def _tenant(
    rule: Rule, who: Principal, *, path: Mapping[str, str], query: Mapping[str, str]
) -> Decision:
    if rule.tenant == "handler":
        return Decision(allowed=True)
    named = path.get("tenant") if rule.tenant == "path" else query.get("tenant")
    if rule.tenant in ("path", "query") and named == who.tenant:
        return Decision(allowed=True)
    if rule.tenant in ("path", "query") and named is not None:
        return Decision(allowed=False, status=404, reason="not found")
    return Decision(
        allowed=False,
        status=403,
        reason=f"a tenant token may only read its own tenant ({who.tenant})",
    )


def may_write(who: Principal, kinds: list[str]) -> Decision:
    """Whether `who` (already allowed to apply) may write every one of `kinds`."""
    needs_admin = sorted(set(kinds) & ADMIN_KINDS)
    if needs_admin and who.role != "admin":
        return Decision(
            allowed=False,
            status=403,
            reason=f"writing {', '.join(needs_admin)} needs admin; {who.name} is {who.role}",
        )
    return Decision(allowed=True)
