"""What one tenant runs, with everything expansion needs read from the store.

`read(conn, tenant, stack)` fetches only the Release records the tenant's stack and
overrides pin, and the versions of the Secrets the tenant may use, then hands them
to the pure `expand.expand`. Called by the tenant controller on every reconcile and
by the schedule controller for each run, so it reads by name, never whole kinds.
"""

from __future__ import annotations

from armillary.control import expand
from armillary.resources.release import Release, release_name
from armillary.resources.stack import Stack
from armillary.resources.tenant import Tenant
from armillary.runtime.instance import Instance
from armillary.store import repository
from armillary.store import secrets as secret_store
from armillary.store.database import Tx


async def read(conn: Tx, tenant: Tenant, stack: Stack) -> Instance:
    """`tenant` on `stack` as templates, with its pinned releases and usable secrets."""
    releases: dict[str, Release] = {}
    for component in stack.spec.components:
        reference = expand.pinned_release(tenant, component)
        if reference is None:
            continue
        name = release_name(*reference.split("@", 1))
        if name not in releases:
            row = await repository.get(conn, "Release", name)
            if row is not None:
                releases[name] = Release.model_validate(row.document())
    uses = [use.name for use in tenant.spec.secrets]
    secrets = await secret_store.usable(conn, tenant=tenant.metadata.name, names=uses)
    return expand.expand(tenant, stack, releases, secrets)
