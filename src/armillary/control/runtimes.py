"""Which runtime runs a tenant: `Tenant.spec.runtime`, else its Org's, else `nodes`.

`Runtimes.choose(conn, tenant)` answers with the runtime, or with the problem that
keeps the tenant from its cluster (no such Cluster, its kubeconfig Secret missing or
not readable): the tenant's status says it, nothing else is disturbed. A kubernetes
runtime is built once per Cluster and kept while the Cluster's spec and kubeconfig
stay the same (its watches and what it applied live with it); a changed Cluster gets
a new one, the old one closed.

`by_name(conn, name)` finds the runtime a tenant's status says it ran on
(`nodes`, `kubernetes/<cluster>`), for the move away from it; `every(conn)` is every
runtime a deleted tenant may have left objects on.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from armillary.auth import secrets as secret_values
from armillary.auth.secrets import Vault
from armillary.errors import PermanentError
from armillary.resources.cluster import Cluster, KubernetesRuntime, RuntimeChoice
from armillary.resources.tenant import Org, Tenant
from armillary.runtime.base import Problem, Runtime
from armillary.runtime.kubernetes import runtime as kubernetes
from armillary.store import repository
from armillary.store import secrets as secret_store
from armillary.store.database import Database, Tx

log = logging.getLogger(__name__)

NODES = "nodes"
PREFIX = "kubernetes/"


@dataclass(frozen=True, slots=True, kw_only=True)
class Chosen:
    name: str  # `nodes` or `kubernetes/<cluster>`
    runtime: Runtime | None
    problem: Problem | None = None


def wanted(tenant: Tenant, org: Org | None) -> str:
    """The runtime name a tenant asks for (its own choice, else its Org's, else nodes)."""
    choice: RuntimeChoice | None = tenant.spec.runtime
    if choice is None and org is not None:
        choice = org.spec.runtime
    if isinstance(choice, KubernetesRuntime):
        return PREFIX + choice.kubernetes.cluster
    return NODES


class Runtimes:
    def __init__(self, db: Database, nodes: Runtime, *, vault: Vault | None = None) -> None:
        self._db = db
        self._nodes = nodes
        self._vault = vault
        self._clusters: dict[str, tuple[str, kubernetes.KubernetesRuntime]] = {}

    @property
    def nodes(self) -> Runtime:
        return self._nodes

    async def choose(self, conn: Tx, tenant: Tenant) -> Chosen:
        org_row = await repository.get(conn, "Org", tenant.spec.org)
        org = Org.model_validate(org_row.document()) if org_row is not None else None
        return await self.by_name(conn, wanted(tenant, org))

    async def by_name(self, conn: Tx, name: str) -> Chosen:
        if not name.startswith(PREFIX):
            return Chosen(name=NODES, runtime=self._nodes)
        cluster = name.removeprefix(PREFIX)
        row = await repository.get(conn, "Cluster", cluster)
        if row is None:
            return Chosen(
                name=name,
                runtime=None,
                problem=Problem(
                    reason="ClusterNotFound",
                    message=f"cluster {cluster!r} does not exist; apply a Cluster named so",
                ),
            )
        spec = Cluster.model_validate(row.document()).spec
        access = kubernetes.Access(in_cluster=True)
        if spec.kubeconfig is not None:
            ref = spec.kubeconfig
            found: list[str] = []
            if self._vault is not None:
                found, _missing = await secret_values.values_of(
                    conn, self._vault, [(ref.secret, ref.key)]
                )
            if not found:
                return Chosen(
                    name=name,
                    runtime=None,
                    problem=Problem(
                        reason="ClusterConfigInvalid",
                        message=(
                            f"cluster {cluster!r}: its kubeconfig, key {ref.key!r} of Secret "
                            f"{ref.secret!r}, cannot be read (no such Secret or key)"
                        ),
                    ),
                )
            access = kubernetes.Access(kubeconfig=found[0])
        fingerprint = hashlib.sha256(
            repr((row.spec, access.kubeconfig, access.in_cluster)).encode()
        ).hexdigest()
        kept = self._clusters.get(cluster)
        if kept is not None and kept[0] == fingerprint:
            return Chosen(name=name, runtime=kept[1])
        if kept is not None:
            await kept[1].close()
        made = kubernetes.KubernetesRuntime(
            cluster=cluster,
            settings=kubernetes.settings_of(spec),
            access=access,
            view=kubernetes.store_views(self._db),
            publish=lambda change: self._db.feed.publish([change]),
            secrets=self._secret_values,
        )
        self._clusters[cluster] = (fingerprint, made)
        return Chosen(name=name, runtime=made)

    async def every(self, conn: Tx) -> list[Chosen]:
        """The nodes runtime and one per Cluster."""
        found = [Chosen(name=NODES, runtime=self._nodes)]
        for cluster in sorted(await repository.names(conn, "Cluster")):
            found.append(await self.by_name(conn, PREFIX + cluster))
        return found

    async def _secret_values(self, tenant: str, names: list[str]) -> dict[str, dict[str, str]]:
        """The values of those of `names` that `tenant` may use (its own or shared),
        for the kubernetes runtime to write into its namespace. Never logged."""
        if self._vault is None:
            return {}
        found: dict[str, dict[str, str]] = {}
        async with self._db.read() as conn:
            for sealed in await secret_store.list_all(conn, names):
                if sealed.tenant not in (None, tenant) or sealed.ciphertext is None:
                    continue
                try:
                    found[sealed.name] = self._vault.open(sealed.ciphertext, name=sealed.name)
                except PermanentError as exc:  # names the Secret, never a value
                    log.error("%s", exc)
        return found

    def built(self, cluster: str) -> kubernetes.KubernetesRuntime | None:
        """The runtime of `cluster`, if one was built (for tests and benchmarks)."""
        kept = self._clusters.get(cluster)
        return kept[1] if kept is not None else None

    async def close(self) -> None:
        for _, made in self._clusters.values():
            await made.close()
        self._clusters.clear()
