"""How a `-w` prints (cli/live.py): kubectl's lines under the table, one document per
change for json/yaml/name, nothing for a change no column shows."""

from __future__ import annotations

import json
from typing import Any

from armillary.cli import live, output
from armillary.cli.watching import Change, Update

COLUMNS: list[output.Column] = [("NAME", lambda d: d["name"]), ("STATE", lambda d: d["state"])]


def view(items: list[dict[str, Any]]) -> output.Listing:
    return output.Listing(
        items=items,
        columns=COLUMNS,
        wide=[("ID", lambda d: d["id"])],
        name=lambda d: f"x/{d['name']}",
    )


def doc(name: str, state: str, ident: str = "1") -> dict[str, Any]:
    return {"name": name, "state": state, "id": ident}


def change(kind: str, item: dict[str, Any]) -> Update:
    return Update(items=(item,), change=Change(type=kind, item=item))  # type: ignore[arg-type]


def printed(renderer_of: Any, *updates: Update, **kwargs: Any) -> list[str]:
    written: list[str] = []
    renderer = renderer_of(view, write=written.append, **kwargs)
    for update in updates:
        renderer.update(update)
    return written


def test_lines_print_the_table_then_a_line_per_change_aligned_with_it() -> None:
    written = printed(
        lambda v, **k: live.Lines(v, output.Format.table, **k),
        Update(items=(doc("alpha", "Ready"), doc("b", "Pending"))),
        change("MODIFIED", doc("b", "Ready")),
        change("MODIFIED", doc("b", "Ready", ident="2")),  # no column shows the difference
        change("DELETED", doc("alpha", "Ready")),
        change("ADDED", doc("a-much-longer-name", "Pending")),
    )
    assert written == [
        "NAME    STATE\nalpha   Ready\nb       Pending",
        "b       Ready",
        "alpha   Ready",
        "a-much-longer-name   Pending",  # wider than the table: grows, never cut
    ]


def test_lines_of_an_empty_list_start_with_the_first_change_and_its_header() -> None:
    written = printed(
        lambda v, **k: live.Lines(v, output.Format.wide, **k),
        Update(items=()),
        change("ADDED", doc("a", "Pending", ident="7")),
    )
    assert written == ["NAME   STATE     ID\na      Pending   7"]


def test_watch_events_add_an_event_column() -> None:
    written = printed(
        lambda v, **k: live.Lines(v, output.Format.table, events=True, **k),
        Update(items=(doc("a", "Ready"),)),
        change("DELETED", doc("a", "Ready")),
    )
    assert written == ["EVENT   NAME   STATE\nADDED   a      Ready", "DELETED   a      Ready"]


def test_json_prints_one_document_per_item_then_per_change() -> None:
    written = printed(
        lambda v, **k: live.Documents(v, output.Format.json, **k),
        Update(items=(doc("a", "Ready"), doc("b", "Ready"))),
        change("MODIFIED", doc("b", "Failed")),
    )
    assert [json.loads(w) for w in written] == [
        doc("a", "Ready"),
        doc("b", "Ready"),
        doc("b", "Failed"),
    ]


def test_watch_events_wrap_each_document_as_kubectl_does() -> None:
    written = printed(
        lambda v, **k: live.Documents(v, output.Format.json, events=True, **k),
        Update(items=()),
        change("DELETED", doc("b", "Ready")),
    )
    assert [json.loads(w) for w in written] == [{"type": "DELETED", "object": doc("b", "Ready")}]


def test_yaml_is_one_stream_and_name_one_line_each() -> None:
    first = Update(items=(doc("a", "Ready"),))
    yaml = printed(lambda v, **k: live.Documents(v, output.Format.yaml, **k), first)
    assert yaml == ["---\nname: a\nstate: Ready\nid: '1'"]
    names = printed(
        lambda v, **k: live.Documents(v, output.Format.name, events=True, **k),
        first,
        change("MODIFIED", doc("a", "Failed")),
    )
    assert names == ["ADDED x/a", "MODIFIED x/a"]


def test_aligned_pads_to_the_widths_and_grows_them() -> None:
    assert live.aligned(["a", "bb"], [3, 1]) == ("a     bb", [3, 2])
    assert live.aligned(["a", ""], [1, 5]) == ("a", [1, 5])
