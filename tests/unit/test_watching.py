"""The watch feed (cli/watching.py) on scripted frames: the first list, changes,
resuming after a drop from the last resourceVersion, relisting on Expired, HTTP
relists diffed on the other channels, server errors, and the backoff's cap."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from armillary.cli import watching
from armillary.cli.watching import Change, Dropped, Frame, Subscription, Update, Watch
from armillary.errors import Forbidden, Invalid

Script = Sequence[dict[str, Any] | BaseException]


def tenant(name: str, rv: int, **spec: Any) -> dict[str, Any]:
    return {
        "kind": "Tenant",
        "metadata": {"name": name, "resourceVersion": str(rv)},
        "spec": spec,
    }


def frame(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    rv = obj["metadata"]["resourceVersion"]
    payload = {"object": obj, "resourceVersion": rv}
    return {"channel": "resources", "type": kind, "id": "a", "payload": payload}


def synced(rv: int) -> dict[str, Any]:
    return {
        "channel": "resources",
        "type": "SYNCED",
        "id": "a",
        "payload": {"resourceVersion": str(rv)},
    }


def system(kind: str, **payload: Any) -> dict[str, Any]:
    return {"channel": "system", "type": kind, "id": "a", "payload": payload}


class Server:
    """Scripted connections: each `connect` plays the next script; an exception in a
    script is raised there (a drop); the subscriptions asked for are kept."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = list(scripts)
        self.asked: list[Subscription] = []

    async def connect(self, subscription: Subscription) -> AsyncGenerator[Frame, None]:
        self.asked.append(subscription)
        if not self.scripts:
            raise Dropped("no more scripts")
        for item in self.scripts.pop(0):
            if isinstance(item, BaseException):
                raise item
            yield item
        raise Dropped("end of script")


RESOURCES = Watch(
    subscription=Subscription(channel="resources", payload={"kinds": ["Tenant"]}),
    key=watching.resource_key,
    decode=watching.decode_resource,
)


async def take(
    server: Server,
    watch: Watch,
    count: int,
    said: list[str] | None = None,
    backoff: watching.Backoff | None = None,
) -> list[Update]:
    found: list[Update] = []

    async def no_sleep(_s: float) -> None:
        return None

    feed = watching.updates(
        server.connect,
        watch,
        said=(said.append if said is not None else lambda _: None),
        sleep=no_sleep,
        backoff=backoff,
    )
    async for update in feed:
        found.append(update)
        if len(found) == count:
            break
    await feed.aclose()
    return found


def names(update: Update) -> list[str]:
    return [d["metadata"]["name"] for d in update.items]


async def test_the_list_first_then_each_change() -> None:
    a, b = tenant("a", 1), tenant("b", 2)
    server = Server(
        [
            system("subscribed", channel="resources"),
            frame("ADDED", a),
            frame("ADDED", b),
            synced(2),
            frame("MODIFIED", tenant("a", 3, stack="s")),
            frame("DELETED", tenant("b", 4)),
        ]
    )
    first, modified, deleted = await take(server, RESOURCES, 3)
    assert first.change is None and names(first) == ["a", "b"]
    assert modified.change == Change(type="MODIFIED", item=tenant("a", 3, stack="s"))
    assert deleted.change is not None and deleted.change.type == "DELETED"
    assert names(deleted) == ["a"]
    assert server.asked[0].payload == {"kinds": ["Tenant"]}  # no resourceVersion: list


async def test_a_dropped_connection_resumes_from_the_last_resource_version() -> None:
    server = Server(
        [
            frame("ADDED", tenant("a", 1)),
            synced(5),
            frame("MODIFIED", tenant("a", 7)),
            OSError("reset"),
        ],
        [system("subscribed"), synced(8), frame("MODIFIED", tenant("a", 9))],
    )
    said: list[str] = []
    updates = await take(server, RESOURCES, 3, said)
    assert updates[2].change == Change(type="MODIFIED", item=tenant("a", 9))
    assert server.asked[1].payload == {"kinds": ["Tenant"], "resourceVersion": "7"}
    assert len(said) == 1 and "reconnecting" in said[0] and "reset" in said[0]


async def test_expired_lists_again_and_shows_only_what_changed_meanwhile() -> None:
    server = Server(
        [frame("ADDED", tenant("a", 1)), frame("ADDED", tenant("b", 2)), synced(2), Dropped("x")],
        [system("error", code="Expired", message="resourceVersion 2 is too old", field=None)],
        [frame("ADDED", tenant("a", 1)), frame("ADDED", tenant("c", 8)), synced(9)],
    )
    first, *changes = await take(server, RESOURCES, 3)
    assert names(first) == ["a", "b"]
    assert [(c.change.type, c.change.item["metadata"]["name"]) for c in changes if c.change] == [
        ("ADDED", "c"),
        ("DELETED", "b"),
    ]  # a, unchanged, is not shown again
    assert server.asked[1].payload["resourceVersion"] == "2"
    assert "resourceVersion" not in server.asked[2].payload


@pytest.mark.parametrize(("code", "error"), [("Invalid", Invalid), ("Forbidden", Forbidden)])
async def test_a_server_error_ends_the_watch_with_it(code: str, error: type[Exception]) -> None:
    refused = system("error", code=code, message="no such kind 'Tenantt'", field="payload.kinds[0]")
    with pytest.raises(error) as raised:
        await take(Server([refused]), RESOURCES, 1)
    assert "no such kind" in str(raised.value)
    if code == "Invalid":
        assert "payload.kinds[0]" in str(raised.value)


async def test_a_slow_consumer_reconnects_and_lists_again() -> None:
    slow = system("error", code="SlowConsumer", message="the queue is full", field=None)
    server = Server(
        [frame("ADDED", tenant("a", 1)), synced(1), slow],
        [system("subscribed"), frame("MODIFIED", tenant("a", 2))],
    )
    said: list[str] = []
    updates = await take(server, RESOURCES, 2, said)
    assert updates[1].change == Change(type="MODIFIED", item=tenant("a", 2))
    assert server.asked[1].payload["resourceVersion"] == "1" and "too slow" in said[0]


async def test_no_server_at_the_start_is_an_error_at_once() -> None:
    with pytest.raises(Dropped):
        await take(Server([OSError("refused")]), RESOURCES, 1)


async def test_reconnects_give_up_after_the_backoff_s_attempts() -> None:
    started = [frame("ADDED", tenant("a", 1)), synced(1)]
    server = Server(started, *[[Dropped("down")]] * 3)
    said: list[str] = []
    with pytest.raises(Dropped):
        await take(server, RESOURCES, 5, said, backoff=watching.Backoff(attempts=2))
    assert len(said) == 2 and len(server.asked) == 3


def run_watch(relist: Callable[[], Awaitable[list[dict[str, Any]]]], **kwargs: Any) -> Watch:
    return Watch(
        subscription=Subscription(channel="runs", payload={"kind": "agent"}),
        key=watching.by("id"),
        decode=watching.wrapped("run"),
        relist=relist,
        **kwargs,
    )


runs_synced = {"channel": "runs", "type": "SYNCED", "id": "a", "payload": {"resourceVersion": "1"}}


def run_frame(kind: str, **run: Any) -> dict[str, Any]:
    return {"channel": "runs", "type": kind, "id": "a", "payload": {"kind": "agent", "run": run}}


async def test_other_channels_list_over_http_once_subscribed_and_again_after_a_drop() -> None:
    lists = [
        [{"id": "1", "state": "queued"}, {"id": "2", "state": "queued"}],
        [{"id": "1", "state": "succeeded"}, {"id": "3", "state": "queued"}],
    ]

    async def relist() -> list[dict[str, Any]]:
        return lists.pop(0)

    server = Server(
        [runs_synced, run_frame("MODIFIED", id="1", state="running"), Dropped("gone")],
        [runs_synced],
    )
    first, running, *after = await take(server, run_watch(relist, forgets=False), 4)
    assert first.items == ({"id": "1", "state": "queued"}, {"id": "2", "state": "queued"})
    assert running.change == Change(type="MODIFIED", item={"id": "1", "state": "running"})
    # Run 2 left the second list (--limit): a record the list left out, not a deletion.
    assert [u.change for u in after] == [
        Change(type="MODIFIED", item={"id": "1", "state": "succeeded"}),
        Change(type="ADDED", item={"id": "3", "state": "queued"}),
    ]


async def test_an_item_that_stops_matching_a_client_side_filter_leaves() -> None:
    async def relist() -> list[dict[str, Any]]:
        return [{"id": "1", "state": "failed"}, {"id": "2", "state": "queued"}]

    server = Server(
        [
            runs_synced,
            run_frame("MODIFIED", id="2", state="failed"),
            run_frame("MODIFIED", id="1", state="queued"),
            run_frame("ADDED", id="9", state="queued"),  # never matched: not seen
            run_frame("ADDED", id="8", state="failed"),
        ]
    )
    watch = run_watch(relist, keep=watching.matching({"state": "failed", "tenant": None}))
    first, *rest = await take(server, watch, 4)
    assert first.items == ({"id": "1", "state": "failed"},)
    assert [(u.change.type, u.change.item["id"]) for u in rest if u.change] == [
        ("ADDED", "2"),
        ("DELETED", "1"),
        ("ADDED", "8"),
    ]


def test_a_heartbeat_amends_the_node_s_usage() -> None:
    node = {"name": "n1", "usage": {"cpuPercent": 1.0, "memoryUsedMb": 10}, "replicas": 2}
    beat: dict[str, Any] = {"channel": "nodes", "type": "heartbeat", "id": "a"}
    beat["payload"] = {"name": "n1", "cpu": 42.5, "memory": 3, "memoryUsedMb": 300, "at": "T"}
    change = watching.decode_node(beat, {"n1": node})
    assert change == Change(
        type="MODIFIED",
        item={
            "name": "n1",
            "usage": {"cpuPercent": 42.5, "memoryUsedMb": 300},
            "replicas": 2,
            "heartbeatAt": "T",
        },
    )
    assert watching.decode_node(beat, {}) is None  # a node not listed yet: wait for it


docs = st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 3).map(lambda n: {"v": n}))


@given(known=docs, listed=docs)
def test_the_differences_of_a_relist_turn_what_was_known_into_it(
    known: dict[str, dict[str, Any]], listed: dict[str, dict[str, Any]]
) -> None:
    now = dict(known)
    for key, change in watching.differences(known, listed):
        if change.type == "DELETED":
            del now[key]
        else:
            assert (key in known) == (change.type == "MODIFIED")
            now[key] = change.item
    assert now == listed
    assert watching.differences(listed, listed) == []


async def test_the_present_state_of_a_listing_channel_gives_way_to_its_http_list() -> None:
    async def relist() -> list[dict[str, Any]]:
        return [{"id": "1", "state": "running"}]

    old: dict[str, Any] = {"channel": "replicas", "type": "ADDED", "id": "a"}
    old["payload"] = {"run": {"id": "1", "state": "starting"}, "resourceVersion": "1"}
    server = Server(
        [
            old,
            runs_synced,
            run_frame("MODIFIED", id="1", state="running"),
            run_frame("MODIFIED", id="1", state="failed"),
        ]
    )
    first, failed = await take(server, run_watch(relist), 2)
    assert first.items == ({"id": "1", "state": "running"},)  # not the older present state
    assert failed.change == Change(type="MODIFIED", item={"id": "1", "state": "failed"})
