"""`-l/--selector` for `get`, `ps`, `logs` and `delete`: the option, and its text
checked here before anything is sent, so a typo is answered at once with the
character where it goes wrong (exit 4, invalid input) and nothing is changed.

The server parses the same text with the same parser (`resources.selectors`) and
does the filtering, so the CLI and the API select the same things.
"""

from __future__ import annotations

from typing import Annotated

import typer

from armillary.cli.console import fail
from armillary.errors import Invalid, Issue
from armillary.resources import selectors

Option = Annotated[
    str | None,
    typer.Option(
        "--selector",
        "-l",
        help="Label selector: k=v, k!=v, 'k in (a,b)', 'k notin (a,b)', k, !k; ',' = and.",
    ),
]


def check(text: str | None, *, refuse_empty: str | None = None) -> selectors.Selector:
    """`text` parsed; on a mistake, print where and exit 4 (invalid input). With
    `refuse_empty` (what the empty selector would do), one that selects everything
    is refused too."""
    try:
        chosen = selectors.parse(text)
        if refuse_empty and not chosen:
            raise Invalid(
                [Issue(path="selector", message=f"an empty selector would {refuse_empty}")]
            )
        return chosen
    except Invalid as exc:
        fail(exc)  # exit 4, invalid input
