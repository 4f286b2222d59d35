"""The naming contract: what everything a tenant owns is called, deterministically.

    tenant_hash(tenant_id)            = base32(sha256(utf-8(tenant_id)))[:10], lower-case
    instance_name(component, tenant)  = f"{component}-{tenant_hash(tenant)}"
    replica_name(component, tenant, i)= f"{instance_name(component, tenant)}-{i}"
    namespace_name(tenant)            = f"armillary-{tenant_hash(tenant)}"

The tenant id is the Tenant's `metadata.name`. The alphabet of base32 (a-z, 2-7) is
DNS-safe, and a component name is at most 48 characters, so an instance name is a
valid DNS-1123 label (≤ 63) and so is a replica name for indexes up to 999.
Ten base32 characters carry 50 bits: the chance that two of 100,000 tenants share
a hash is below one in 200,000. Other tools compute the same names with this
function; docs/naming.md lists test vectors and tests/unit/test_naming.py holds
them, so the contract cannot drift.
"""

from __future__ import annotations

import base64
import functools
import hashlib

HASH_LENGTH = 10


@functools.lru_cache(maxsize=65536)
def tenant_hash(tenant_id: str) -> str:
    """The short, stable, DNS-safe hash of a tenant id."""
    digest = hashlib.sha256(tenant_id.encode("utf-8")).digest()
    # base32 turns each 5 bytes into 8 characters on their own, so the first 10 bytes
    # give the same first 16 characters as the whole digest, at a third of the work
    # (rendering computes this for every object of every tenant).
    return base64.b32encode(digest[:10]).decode("ascii").lower()[:HASH_LENGTH]


def instance_name(component: str, tenant_id: str) -> str:
    """The name of one tenant's instance of a component, e.g. `agent-3vq7wz2kxa`."""
    return f"{component}-{tenant_hash(tenant_id)}"


def replica_name(component: str, tenant_id: str, index: int) -> str:
    """The name of replica `index` (0-based) of a tenant's component."""
    if index < 0:
        raise ValueError(f"expected a replica index ≥ 0, got {index}")
    return f"{instance_name(component, tenant_id)}-{index}"


def namespace_name(tenant_id: str) -> str:
    """The Kubernetes namespace of a tenant, e.g. `armillary-3li2ylakmg` (20 characters)."""
    return f"armillary-{tenant_hash(tenant_id)}"
