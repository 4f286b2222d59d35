"""The naming contract: what a tenant's instances and replicas are called.

Other tools compute these names on their own, so the vectors below are fixed by hand
(they are also listed in docs/naming.md). If one of them changes, the contract changed:
every running instance would be renamed.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from armillary.resources import naming

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# tenant id -> tenant_hash. "ünïcode" is written with escapes so that no editor can
# normalise it: these are the precomposed (NFC) code points, UTF-8 c3 bc 6e c3 af ...
VECTORS = [
    ("acme-support", "3li2ylakmg"),
    ("globex", "lpa2bdji4q"),
    ("a", "zklycewkdo"),
    ("tenant-with-a-very-long-name-0123456789", "4o6zpux7nw"),
    ("\u00fcn\u00efcode", "xc7isz7e3y"),
    ("u\u0308ni\u0308code", "ou6dv45q5i"),  # the same text with combining marks (NFD)
]


@pytest.mark.parametrize(("tenant_id", "expected"), VECTORS)
def test_tenant_hash_vectors(tenant_id: str, expected: str) -> None:
    assert naming.tenant_hash(tenant_id) == expected


@pytest.mark.parametrize(("tenant_id", "expected"), VECTORS)
def test_instance_and_replica_name_vectors(tenant_id: str, expected: str) -> None:
    assert naming.instance_name("agent", tenant_id) == f"agent-{expected}"
    assert naming.replica_name("agent", tenant_id, 0) == f"agent-{expected}-0"
    assert naming.replica_name("agent", tenant_id, 999) == f"agent-{expected}-999"


@pytest.mark.parametrize(("tenant_id", "expected"), VECTORS)
def test_namespace_name_vectors(tenant_id: str, expected: str) -> None:
    name = naming.namespace_name(tenant_id)
    assert name == f"armillary-{expected}"
    assert DNS_LABEL.fullmatch(name) and len(name) == 20


def test_longest_component_and_highest_index_fill_exactly_63_characters() -> None:
    name = naming.replica_name("c" * 48, "acme-support", 999)

    assert name == f"{'c' * 48}-3li2ylakmg-999"
    assert len(name) == 63


def test_negative_replica_index_is_refused() -> None:
    with pytest.raises(ValueError, match="expected a replica index ≥ 0, got -1"):
        naming.replica_name("agent", "acme-support", -1)


component_names = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,46}[a-z0-9])?", fullmatch=True)
tenant_ids = st.text(max_size=80)


@settings(max_examples=200)
@given(tenant_ids)
def test_tenant_hash_is_ten_dns_safe_characters(tenant_id: str) -> None:
    assert re.fullmatch(r"[a-z2-7]{10}", naming.tenant_hash(tenant_id))


@settings(max_examples=200)
@given(component_names, tenant_ids, st.integers(min_value=0, max_value=999))
def test_replica_name_is_a_dns_label_and_deterministic(
    component: str, tenant_id: str, index: int
) -> None:
    name = naming.replica_name(component, tenant_id, index)

    assert len(name) <= 63
    assert DNS_LABEL.fullmatch(name)
    assert DNS_LABEL.fullmatch(naming.instance_name(component, tenant_id))
    assert name == naming.replica_name(component, tenant_id, index)
    assert name.startswith(naming.instance_name(component, tenant_id) + "-")


@settings(max_examples=200)
@given(tenant_ids, tenant_ids)
def test_different_tenant_ids_get_different_hashes(first: str, second: str) -> None:
    if first != second:
        assert naming.tenant_hash(first) != naming.tenant_hash(second)


def test_hashes_of_many_similar_tenant_ids_do_not_collide() -> None:
    ids = [f"tenant-{i}" for i in range(20_000)]

    assert len({naming.tenant_hash(i) for i in ids}) == len(ids)
