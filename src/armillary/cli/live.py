"""How a `-w` shows what `watching.updates` yields: the three ways, one per kind of reader.

- `Lines`, as `kubectl get -w`: the table once, then one line per change with the same
  columns, aligned with it, so a log of changes stays readable and greppable; a change
  that leaves the row as it was printed (a heartbeat under the same numbers) prints
  nothing. `--output-watch-events` adds an EVENT column (ADDED, MODIFIED, DELETED).
- `Documents`, as `kubectl get -w -o json|yaml|name`: one document per item of the list,
  then one per change (`{"type", "object"}` with `--output-watch-events`); YAML
  documents start with `---`, so the stream is one YAML stream.
- `Redraw`, as `pm2 monit` or `watch`: the whole table redrawn in place (Rich Live) on
  every change and every second (ages, uptimes) — for the views that are a picture of
  now (`ps`, `nodes`) — when stdout is a terminal; elsewhere those views print
  `Lines`, as no pipe wants cursor moves.

`pick` chooses one; `show` drives it. Rendering is `output`'s, so columns, `-o` and
widths are those of the command without `-w`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import Annotated, Any, Protocol

import typer
from rich.live import Live
from rich.text import Text

from armillary.cli import output
from armillary.cli.console import out
from armillary.cli.watching import Doc, Update

View = Callable[[list[Doc]], output.Listing]
"""The command's listing of some items (its columns, its order)."""
TABLES = (output.Format.table, output.Format.wide)
TICK_S = 1.0

WatchOption = Annotated[
    bool,
    typer.Option("--watch", "-w", help="After the list, show each change until Ctrl-C."),
]
EventsOption = Annotated[
    bool,
    typer.Option(
        "--output-watch-events",
        help="With -w: say ADDED, MODIFIED or DELETED for each change (json/yaml: "
        '{"type", "object"}).',
    ),
]


class Renderer(Protocol):
    def update(self, update: Update) -> None: ...

    def tick(self) -> None:
        """Once a second: what the clock changes (ages, uptimes), redrawn."""

    def close(self) -> None: ...


def _write(text: str) -> None:
    out.print(text, markup=False)
    out.file.flush()  # a pipe reader sees each change when it happens


def aligned(cells: Sequence[str], widths: Sequence[int]) -> tuple[str, list[int]]:
    """Pure: `cells` padded to `widths` (grown where a cell is wider), and the widths."""
    grown = [max(len(c), w) for c, w in zip(cells, [*widths, *[0] * len(cells)], strict=False)]
    text = "   ".join(c.ljust(w) for c, w in zip(cells, grown, strict=True)).rstrip()
    return text, grown


class Lines:
    """The table, then a line per change; see the module docstring."""

    def __init__(
        self, view: View, fmt: output.Format, *, events: bool = False, write: Any = _write
    ) -> None:
        self.view, self.fmt, self.events, self.write = view, fmt, events, write
        self.widths: list[int] = []
        self.header_shown = False
        self.last: dict[str, list[str]] = {}  # key → the cells last printed

    def _cells(self, doc: Doc, kind: str) -> tuple[str, list[str]]:
        listing = self.view([doc])
        cells = output.row(listing, self.fmt, doc)
        return listing.name(doc), ([kind, *cells] if self.events else cells)

    def _header(self) -> list[str]:
        titles = output.header(self.view([]), self.fmt)
        return ["EVENT", *titles] if self.events else titles

    def update(self, update: Update) -> None:
        if update.change is None:
            self._start(self.view(list(update.items)).items)
            return
        change = update.change
        name, cells = self._cells(change.item, change.type)
        shown = cells[1:] if self.events else cells
        if change.type != "DELETED" and self.last.get(name) == shown:
            return  # nothing a reader can see changed
        if change.type == "DELETED":
            self.last.pop(name, None)
        else:
            self.last[name] = shown
        self._line(cells)

    def _start(self, items: Sequence[Doc]) -> None:
        rows = [self._cells(doc, "ADDED") for doc in items]
        if not rows:
            return  # as kubectl: nothing until the first item (then the header)
        table = [self._header(), *(cells for _, cells in rows)]
        self.widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        for name, cells in rows:
            self.last[name] = cells[1:] if self.events else cells
        self.header_shown = True
        self.write("\n".join(aligned(r, self.widths)[0] for r in table))

    def _line(self, cells: list[str]) -> None:
        lines = []
        if not self.header_shown:
            _, self.widths = aligned(self._header(), self.widths)
            _, self.widths = aligned(cells, self.widths)
            lines.append(aligned(self._header(), self.widths)[0])
            self.header_shown = True
        text, self.widths = aligned(cells, self.widths)
        self.write("\n".join([*lines, text]))

    def tick(self) -> None:
        return None  # a line printed stays as it was

    def close(self) -> None:
        return None


class Documents:
    """One document per item, then per change; see the module docstring."""

    def __init__(
        self, view: View, fmt: output.Format, *, events: bool = False, write: Any = _write
    ) -> None:
        self.view, self.fmt, self.events, self.write = view, fmt, events, write

    def update(self, update: Update) -> None:
        if update.change is None:
            for doc in self.view(list(update.items)).items:
                self._one("ADDED", doc)
            return
        self._one(update.change.type, update.change.item)

    def _one(self, kind: str, doc: Doc) -> None:
        if self.fmt is output.Format.name:
            name = self.view([doc]).name(doc)
            self.write(f"{kind} {name}" if self.events else name)
            return
        value: Any = {"type": kind, "object": doc} if self.events else doc
        if self.fmt is output.Format.json:
            self.write(output.to_json(value))
        else:
            self.write("---\n" + output.to_yaml(value).rstrip("\n"))

    def tick(self) -> None:
        return None

    def close(self) -> None:
        return None


class Redraw:
    """The whole table, redrawn in place on each change and each second, for its ages
    and uptimes (a terminal only)."""

    def __init__(self, view: View, fmt: output.Format) -> None:
        self.view, self.fmt = view, fmt
        self.items: list[Doc] | None = None
        self.live = Live(Text(""), console=out, auto_refresh=False)
        self.live.start()

    def update(self, update: Update) -> None:
        self.items = list(update.items)
        self.tick()

    def tick(self) -> None:
        if self.items is not None:
            text = output.render(self.view(self.items), self.fmt)
            self.live.update(Text(text), refresh=True)

    def close(self) -> None:
        self.live.stop()


def pick(view: View, fmt: output.Format, *, redraw: bool = False, events: bool = False) -> Renderer:
    """`Redraw` for a redrawn view on a terminal, `Lines` for the other tables,
    `Documents` for json, yaml and name."""
    if fmt not in TABLES:
        return Documents(view, fmt, events=events)
    if redraw and out.is_terminal and not events:
        return Redraw(view, fmt)
    return Lines(view, fmt, events=events)


async def show(updates: AsyncGenerator[Update, None], renderer: Renderer) -> None:
    """Feed every update to `renderer` until the watch ends (Ctrl-C, or an error),
    and tick it every `TICK_S`."""
    ticker = asyncio.create_task(_tick(renderer), name="watch-ticker")
    try:
        async with contextlib.aclosing(updates) as feed:
            async for update in feed:
                renderer.update(update)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        renderer.close()


async def _tick(renderer: Renderer) -> None:
    while True:
        await asyncio.sleep(TICK_S)
        renderer.tick()
