"""Routing of inbound events (armillary.ingress.routing): where each sender keeps its
routing key, JSON pointers as RFC 6901 reads them, form posts, and the rule that an
event goes to a tenant only when exactly one tenant lists its key."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from armillary.ingress import routing
from armillary.resources import webhook

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("kind", "body", "content_type", "pointer", "expected"),
    [
        ("github", {"repository": {"full_name": "acme/api"}}, JSON, None, "acme/api"),
        ("github", {"repository": {}}, JSON, None, None),
        ("slack", {"type": "event_callback", "event": {"channel": "C123"}}, JSON, None, "C123"),
        ("slack", {"channel_id": "C999"}, JSON, None, "C999"),
        ("pagerduty", {"event": {"data": {"service": {"id": "PSVC1"}}}}, JSON, None, "PSVC1"),
        ("stripe", {"account": "acct_1"}, JSON, None, None),  # no default place
        ("stripe", {"account": "acct_1"}, JSON, "/account", "acct_1"),
        ("github", {"repository": {"full_name": "a/b"}}, JSON, "/organization/login", None),
        ("standard", {"a/b": {"m~n": "x"}}, JSON, "/a~1b/m~0n", "x"),  # RFC 6901 escapes
        ("standard", {"items": [{"id": "first"}]}, JSON, "/items/0/id", "first"),
        ("standard", {"items": []}, JSON, "/items/0/id", None),
        ("standard", {"n": 42}, JSON, "/n", "42"),
        ("standard", {"n": True}, JSON, "/n", None),
        ("standard", {"n": ""}, JSON, "/n", None),
        ("standard", {"n": "x" * 513}, JSON, "/n", None),
        ("standard", {"n": {"deep": 1}}, JSON, "/n", None),
    ],
)
def test_keys_are_read_where_the_sender_or_the_source_says(
    kind: webhook.SourceType,
    body: dict[str, Any],
    content_type: str,
    pointer: str | None,
    expected: str | None,
) -> None:
    document = routing.document(json.dumps(body).encode(), content_type=content_type)
    assert routing.key(kind, document, pointer=pointer) == expected


def test_a_slack_slash_command_form_post_routes_on_its_channel() -> None:
    body = b"token=x&team_id=T1&channel_id=C2147483705&command=%2Fweather&text=94070"
    document = routing.document(body, content_type=f"{FORM}; charset=utf-8")
    assert routing.key("slack", document, pointer=None) == "C2147483705"


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b"\xff\xfe", b'"text"'])
def test_bodies_that_are_not_objects_have_no_key(body: bytes) -> None:
    assert routing.document(body, content_type=JSON) == {}
    assert routing.key("github", routing.document(body, content_type=JSON), pointer=None) is None


TENANTS = {
    "acme": {"github": ["acme/api", "acme/web"], "slack": ["C1"]},
    "globex": {"github": ["globex/web"]},
    "initech": {"slack": ["C1"]},  # claims acme's Slack channel too
}


@pytest.mark.parametrize(
    ("key", "space", "tenant", "state"),
    [
        ("acme/web", "github", "acme", "routed"),
        ("globex/web", "github", "globex", "routed"),
        ("acme/web", "slack", None, "unrouted"),  # keys live in their own key space
        ("hooli/app", "github", None, "unrouted"),
        (None, "github", None, "unrouted"),
        ("C1", "slack", None, "unrouted"),  # two tenants: ambiguous, not routed
    ],
)
def test_a_key_routes_to_the_one_tenant_that_lists_it(
    key: str | None, space: str, tenant: str | None, state: str
) -> None:
    route = routing.tenant(key, key_space=space, tenants=TENANTS)
    assert (route.key, route.tenant, route.state) == (key, tenant, state)


def test_an_ambiguous_key_names_every_claimant() -> None:
    route = routing.tenant("C1", key_space="slack", tenants=TENANTS)
    assert route.claimants == ("acme", "initech")


names = st.text(alphabet="abcdefgh", min_size=1, max_size=4)


@given(
    tenants=st.dictionaries(names, st.lists(names, max_size=4, unique=True), max_size=6),
    key=names,
)
def test_routed_only_to_a_tenant_that_lists_the_key_and_no_other_does(
    tenants: dict[str, list[str]], key: str
) -> None:
    table = {name: {"space": keys} for name, keys in tenants.items()}
    route = routing.tenant(key, key_space="space", tenants=table)
    listing = [name for name, keys in tenants.items() if key in keys]
    if len(listing) == 1:
        assert route.tenant == listing[0]
    else:
        assert route.tenant is None and route.state == "unrouted"
    assert route == routing.tenant(key, key_space="space", tenants=table)  # same in, same out


@given(
    tenants=st.dictionaries(
        names,
        st.dictionaries(st.sampled_from(["space", "other"]), st.lists(names, max_size=4)),
        max_size=6,
    ),
    key=st.none() | names,
    space=st.sampled_from(["space", "other", "absent"]),
)
def test_the_index_routes_exactly_as_the_scan_does(
    tenants: dict[str, dict[str, list[str]]], key: str | None, space: str
) -> None:
    index = routing.Index(tenants)
    assert index.route(key, key_space=space) == routing.tenant(
        key, key_space=space, tenants=tenants
    )


def test_a_body_with_a_huge_integer_still_routes() -> None:
    body = b'{"repository": {"full_name": "acme/app"}, "id": 123456789012345678901234567890}'
    document = routing.document(body, content_type="application/json")
    assert routing.key("github", document, pointer=None) == "acme/app"
