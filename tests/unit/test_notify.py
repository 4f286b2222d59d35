"""The change feed's NOTIFY payloads: every change comes back as it was sent, in
order, in payloads under the limit; what cannot fit becomes a resync marker."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from armillary.store import notify
from armillary.store.feed import RESYNC, Change

_text = st.text(min_size=1, max_size=80)
changes = st.builds(
    Change,
    kind=st.sampled_from(["Tenant", "Allocation", "Node", "Assignments", "Credential"]),
    name=_text,
    tenant=st.none() | _text,
    node=st.none() | _text,
    status=st.booleans(),
    run=st.none() | _text,
    report=st.booleans(),
)


def decoded(payloads: list[str]) -> list[Change]:
    return [change for payload in payloads for change in notify.decode(payload)[1]]


@given(st.lists(changes, max_size=300), st.integers(min_value=600, max_value=8000))
def test_every_change_comes_back_in_order_within_the_limit(
    sent: list[Change], limit_bytes: int
) -> None:
    payloads = notify.encode(sent, sender="s1", limit_bytes=limit_bytes)
    assert all(len(p.encode()) <= limit_bytes for p in payloads)
    assert decoded(payloads) == sent
    assert all(notify.decode(p)[0] == "s1" for p in payloads)


def test_many_changes_are_split_across_payloads() -> None:
    sent = [Change(kind="Allocation", name=f"{i:036d}", node="node-a") for i in range(500)]
    payloads = notify.encode(sent, sender="s1")
    assert len(payloads) > 1
    assert all(len(p.encode()) <= notify.LIMIT_BYTES for p in payloads)
    assert decoded(payloads) == sent


def test_a_change_too_large_for_one_payload_becomes_a_resync() -> None:
    huge = Change(kind="Tenant", name="x" * 9000)
    payloads = notify.encode([Change(kind="Tenant", name="a"), huge], sender="s1")
    assert payloads == [notify.resync_marker("s1")]
    assert notify.decode(payloads[0]) == ("s1", [Change(kind=RESYNC, name="*")])


def test_a_common_change_is_compact() -> None:
    assert notify.encode([Change(kind="Tenant", name="acme")], sender="s1") == [
        '{"s":"s1","c":[["Tenant","acme"]]}'
    ]


def test_an_unreadable_payload_means_resync() -> None:
    assert notify.decode("not json") == ("", [Change(kind=RESYNC, name="*")])
    assert notify.decode('{"s": "s2", "c": [[1]]}')[1] == [Change(kind=RESYNC, name="*")]


def test_nothing_to_say_sends_nothing() -> None:
    assert notify.encode([], sender="s1") == []
