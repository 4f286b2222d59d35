"""The budget of request body bytes in flight, and the settings that size it."""

from __future__ import annotations

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from armillary.api.limits import Budget
from armillary.config import Settings

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("held", "asked", "granted"),
    [
        ([], 10, True),
        ([], 11, False),
        ([4], 6, True),
        ([4], 7, False),
        ([10], 0, True),
        ([10], 1, False),
    ],
)
def test_take_grants_what_fits(held: list[int], asked: int, granted: bool) -> None:
    budget = Budget(max_bytes=10)
    for size in held:
        assert budget.take(size)
    assert budget.take(asked) is granted
    assert budget.held_bytes == sum(held) + (asked if granted else 0)


@given(st.lists(st.integers(min_value=0, max_value=50), max_size=30))
def test_never_overcommitted_and_all_given_back(sizes: list[int]) -> None:
    budget = Budget(max_bytes=100)
    taken = [size for size in sizes if budget.take(size)]
    assert budget.held_bytes == sum(taken) <= 100
    for size in taken:
        budget.give_back(size)
    assert budget.held_bytes == 0


def test_the_budget_defaults_to_eight_bodies_and_must_hold_one() -> None:
    assert Settings().body_budget_bytes() == 8 * Settings().max_body_bytes
    assert Settings(max_body_bytes=MiB).body_budget_bytes() == 8 * MiB
    budget = Settings(max_body_bytes=MiB, max_body_bytes_in_flight=3 * MiB).body_budget_bytes()
    assert budget == 3 * MiB
    with pytest.raises(pydantic.ValidationError, match="ARMILLARY_MAX_BODY_BYTES_IN_FLIGHT"):
        Settings(max_body_bytes=2 * MiB, max_body_bytes_in_flight=MiB)
