"""The pure rules of per-tenant users: which mode a node runs in, the uid a tenant
gets, the range a flag names, and which directory would keep tenant users out."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from armillary.node import tenancy
from armillary.node.tenancy import UidRange

NAMES = st.from_regex(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True)
RANGES = st.builds(
    lambda first, size: UidRange(first=first, last=first + size - 1),
    st.integers(min_value=1000, max_value=2**31),
    st.integers(min_value=1, max_value=2**20),
)


@pytest.mark.parametrize(
    ("euid", "uids", "expected"),
    [
        (0, tenancy.DEFAULT_RANGE, "per-tenant-user"),
        (0, None, "shared-user"),  # --tenant-uids off
        (1000, tenancy.DEFAULT_RANGE, "shared-user"),  # not root: cannot change users
        (1000, None, "shared-user"),
    ],
)
def test_only_root_with_a_range_runs_tenants_as_their_own_users(
    euid: int, uids: UidRange | None, expected: str
) -> None:
    assert tenancy.isolation(euid=euid, uids=uids) == expected


@given(NAMES, RANGES)
def test_a_tenant_always_gets_the_same_uid_inside_the_range(name: str, uids: UidRange) -> None:
    uid = tenancy.uid_for(name, uids)
    assert uids.first <= uid <= uids.last
    assert tenancy.uid_for(name, uids) == uid


def test_the_uid_is_the_hash_of_the_name_so_other_nodes_agree() -> None:
    assert tenancy.uid_for("acme-support", tenancy.DEFAULT_RANGE) == 200000 + (
        int.from_bytes(hashlib.sha256(b"acme-support").digest()[:8], "big") % 65536
    )
    spread = {tenancy.uid_for(f"t{i}", tenancy.DEFAULT_RANGE) for i in range(200)}
    assert len(spread) > 190  # a hash, not a counter: collisions are possible but rare


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("200000-265535", UidRange(first=200000, last=265535)),
        (" 5000-5000 ", UidRange(first=5000, last=5000)),
        ("off", None),
        ("OFF", None),
    ],
)
def test_ranges_parse(text: str, expected: UidRange | None) -> None:
    assert tenancy.parse_range(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("200000", "FIRST-LAST"),
        ("a-b", "FIRST-LAST"),
        ("-5-7", "FIRST-LAST"),
        ("0-65535", "below 1000"),  # root and the system accounts
        ("300000-200000", "FIRST <= LAST"),
        ("200000-4294967295", "< 4294967295"),  # (uid_t)-1 means "no change"
    ],
)
def test_bad_ranges_say_what_is_expected(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="--tenant-uids") as caught:
        tenancy.parse_range(text)
    assert says in str(caught.value)


def test_the_first_directory_others_cannot_traverse_is_named() -> None:
    modes = {
        Path("/"): 0o755,
        Path("/root"): 0o700,
        Path("/root/p"): 0o700,
        Path("/root/p/node"): 0o711,
        Path("/srv"): 0o755,
        Path("/srv/node"): 0o711,
    }

    def mode_of(path: Path) -> int:
        return stat.S_IFDIR | modes[path]

    assert tenancy.blocking_dir(Path("/root/p/node"), mode_of=mode_of) == Path("/root")
    assert tenancy.blocking_dir(Path("/srv/node"), mode_of=mode_of) is None
