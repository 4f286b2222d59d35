"""What one tenant runs, with everything expansion needs read from the store.

`read(conn, tenant, stack)` fetches only the Release records the tenant's stack and
overrides pin (in one query), and the versions of the Secrets the tenant may use,
then hands them to the pure `expand.expand`. Called by the tenant controller on every reconcile and
by the schedule controller for each run, so it reads by name, never whole kinds.
"""

from __future__ import annotations

from armillary.resources.release import Release, release_name
from armillary.resources.stack import Stack
from armillary.resources.tenant import Tenant
from armillary.runtime import expand
from armillary.runtime.instance import Instance
from armillary.store import repository
from armillary.store import secrets as secret_store
from armillary.store.database import Tx


async def read(conn: Tx, tenant: Tenant, stack: Stack) -> Instance:
    """`tenant` on `stack` as templates, with its pinned releases and usable secrets."""
    names: set[str] = set()
    for component in stack.spec.components:
        reference = expand.pinned_release(tenant, component)
        if reference is not None:
            names.add(release_name(*reference.split("@", 1)))
    rows = await repository.get_many(conn, "Release", names)
    releases = {name: Release.model_validate(row.document()) for name, row in rows.items()}
    uses = [use.name for use in tenant.spec.secrets]
    secrets = await secret_store.usable(conn, tenant=tenant.metadata.name, names=uses)
    return expand.expand(tenant, stack, releases, secrets)
