"""The run's own token never survives into a stored agent answer (ingress.runner.redact)."""

from __future__ import annotations

import pytest

from armillary.ingress.runner import REDACTED, redact

TOKEN = "armt_eyJhbGciOiJIUzI1NiJ9.eyJ0ZW5hbnQiOiJhY21lIn0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("nothing secret here", "nothing secret here"),
        (f'{{"token": "{TOKEN}"}}', f'{{"token": "{REDACTED}"}}'),
        (
            f"handled {{'token': '{TOKEN}'}} and again {TOKEN}",
            f"handled {{'token': '{REDACTED}'}} and again {REDACTED}",
        ),
        # The answer was clipped in the middle of the token: its start goes too.
        (f'{{"token": "{TOKEN[:40]}', f'{{"token": "{REDACTED}'),
        # Too short a tail to be a token's start worth hiding: kept as it was.
        ('{"prefix": "armt_eyJ', '{"prefix": "armt_eyJ'),
        ("", ""),
    ],
)
def test_the_runs_token_is_cut_out_of_the_answer(answer: str, expected: str) -> None:
    assert redact(answer, TOKEN) == expected
    assert TOKEN[:20] not in redact(answer, TOKEN)


def test_another_token_is_left_alone_and_no_token_changes_nothing() -> None:
    other = "armt_" + "x" * 60  # another run's token
    assert redact(f"token {other}", TOKEN) == f"token {other}"
    assert redact(f"token {TOKEN}", "") == f"token {TOKEN}"
