"""The live protocol's pure decisions (api/live/frames.py): what a change is to a
subscription, what a tenant's caller may ask for, positions, and bad frames named by
their field."""

from __future__ import annotations

from typing import Any

import pytest

from armillary.api.live import frames
from armillary.api.live.frames import Error, Request
from armillary.auth.access import Principal

ADMIN = Principal(kind="token", id="k", role="admin")
TENANT_A = Principal(kind="tenant", id="t", role="tenant", tenant="a")


def org(name: str, tenant: str | None = None, **labels: str) -> frames.Item:
    doc = {"metadata": {"name": name, "labels": labels}}
    return frames.item("resources:Org", name, tenant, doc, labels)


def subscribe(channel: str, payload: dict[str, Any], who: Principal = ADMIN) -> frames.Spec:
    return frames.spec(Request(channel=channel, type="subscribe", id="s", payload=payload), who)


def test_a_selector_turns_label_changes_into_added_and_deleted() -> None:
    spec = subscribe("resources", {"kinds": ["Org"], "selector": "team=x"})
    inside, outside = org("o", team="x"), org("o", team="y")
    assert frames.verdict(spec, None, inside) == ("ADDED", inside)
    moved = frames.verdict(spec, inside, org("o", team="x", more="1"))
    assert moved is not None and moved[0] == "MODIFIED"
    assert frames.verdict(spec, inside, outside) == ("DELETED", inside)  # as it was seen
    assert frames.verdict(spec, outside, inside) == ("ADDED", inside)
    assert frames.verdict(spec, inside, None) == ("DELETED", inside)
    assert frames.verdict(spec, outside, outside) is None


def test_a_tenant_sees_only_its_own_items() -> None:
    spec = subscribe("resources", {"kinds": ["Tenant", "Org"]}, TENANT_A)
    assert frames.verdict(spec, None, org("a", tenant="a")) is not None
    assert frames.verdict(spec, None, org("b", tenant="b")) is None
    assert frames.verdict(spec, None, org("cluster-wide")) is None


@pytest.mark.parametrize(
    ("channel", "payload"),
    [
        ("nodes", {}),
        ("replicas", {"tenant": "b"}),
        ("events", {"tenant": "b"}),
        ("logs", {"tenant": "b", "component": "agent"}),
    ],
)
def test_a_tenant_naming_another_tenant_is_forbidden(channel: str, payload: dict[str, Any]) -> None:
    with pytest.raises(Error) as refused:
        subscribe(channel, payload, TENANT_A)
    assert refused.value.code == "Forbidden"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (
            '{"channel":"resources","type":"subscribe","id":"s","payload":{"kinds":["Nope"]}}',
            "payload.kinds[0]",
        ),
        (
            '{"channel":"resources","type":"subscribe","id":"s","payload":{"kinds":[]}}',
            "payload.kinds",
        ),
        (
            '{"channel":"logs","type":"subscribe","id":"s","payload":{"tenant":"a","component":"c","tail":-1}}',
            "payload.tail",
        ),
        (
            '{"channel":"logs","type":"subscribe","id":"s","payload":{"tenant":"a","component":"c","since":"soon"}}',
            "payload.since",
        ),
        ('{"channel":"weather","type":"subscribe","id":"s"}', "channel"),
        ('{"channel":"events","type":"subscribe","id":"","payload":{}}', "id"),
        ('{"channel":"events","type":"subscribe","id":"s","extra":1}', "extra"),
    ],
)
def test_bad_frames_name_their_field(text: str, field: str) -> None:
    with pytest.raises(Error) as refused:
        request = frames.read(text)
        subscribe(request.channel, request.payload)
    assert (refused.value.code, refused.value.field) == ("Invalid", field)


def test_positions_belong_to_one_server() -> None:
    assert frames.parse_position(frames.position("ab12", 41), "ab12") == 41
    assert frames.parse_position("ab12.41", "cd34") is None
    assert frames.parse_position("ab12.x", "ab12") is None


def test_a_data_frame_is_json_built_from_its_pieces() -> None:
    thing = org("o", team="x")
    payload = frames.payload_text("resources", "resources:Org", thing, "e.7")
    text = frames.data_frame("resources", "ADDED", frames.dumps("s"), payload)
    assert frames.read(text).payload == {"object": thing.doc, "resourceVersion": "e.7"}


def test_an_item_that_moves_to_another_tenant_is_deleted_as_it_was() -> None:
    spec = frames.Spec(channel="resources", sources=("resources:Schedule",), tenant="a")
    was = frames.item("resources:Schedule", "s", "a", {"spec": {"tenant": "a"}}, None)
    now = frames.item("resources:Schedule", "s", "b", {"spec": {"tenant": "b", "x": 1}}, None)
    assert frames.verdict(spec, was, now) == ("DELETED", was)
