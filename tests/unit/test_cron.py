"""cron.following / cron.latest: fire times in a time zone, daylight-saving changes
included (a skipped wall time fires at the end of the gap, a repeated one once)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st

from armillary.control import cron


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


# (cron, zone, after, the next fire time in UTC)
FOLLOWING = [
    pytest.param("0 * * * *", "UTC", "2026-01-01T10:00:00", "2026-01-01T11:00:00", id="hourly"),
    pytest.param("@hourly", "UTC", "2026-01-01T10:59:59", "2026-01-01T11:00:00", id="macro"),
    pytest.param(
        "@daily", "America/New_York", "2026-01-01T10:00:00", "2026-01-02T05:00:00", id="ny"
    ),
    pytest.param(
        "0 9 * * 1-5", "Europe/Paris", "2026-11-20T09:00:00", "2026-11-23T08:00:00", id="weekdays"
    ),
    pytest.param("0 0 29 2 *", "UTC", "2026-03-01T00:00:00", "2028-02-29T00:00:00", id="leap-day"),
    pytest.param(
        "0 0 * * 7", "UTC", "2026-03-29T10:00:00", "2026-04-05T00:00:00", id="sunday-is-7"
    ),
    # Europe/Paris goes 02:00 CET → 03:00 CEST on 2026-03-29 (01:00 UTC).
    pytest.param(
        "30 2 * * *",
        "Europe/Paris",
        "2026-03-28T23:00:00",
        "2026-03-29T01:00:00",
        id="gap-fires-at-its-end",
    ),
    pytest.param(
        "30 2 * * *",
        "Europe/Paris",
        "2026-03-29T01:00:00",
        "2026-03-30T00:30:00",
        id="after-the-gap",
    ),
    pytest.param(
        "*/15 * * * *",
        "Europe/Paris",
        "2026-03-29T00:45:00",
        "2026-03-29T01:00:00",
        id="gap-fires-once",
    ),
    pytest.param(
        "*/15 * * * *",
        "Europe/Paris",
        "2026-03-29T01:00:00",
        "2026-03-29T01:15:00",
        id="gap-then-on",
    ),
    # Europe/Paris goes 03:00 CEST → 02:00 CET on 2026-10-25 (01:00 UTC).
    pytest.param(
        "30 2 * * *",
        "Europe/Paris",
        "2026-10-24T23:00:00",
        "2026-10-25T00:30:00",
        id="repeat-first",
    ),
    pytest.param(
        "30 2 * * *", "Europe/Paris", "2026-10-25T00:30:00", "2026-10-26T01:30:00", id="repeat-once"
    ),
    pytest.param(
        "30 * * * *",
        "Europe/Paris",
        "2026-10-25T00:30:00",
        "2026-10-25T02:30:00",
        id="repeat-hourly",
    ),
    # Lord Howe moves by half an hour: 02:00 → 02:30 on 2026-10-04 (15:30 UTC the day before).
    pytest.param(
        "15 2 * * *",
        "Australia/Lord_Howe",
        "2026-10-03T12:00:00",
        "2026-10-03T15:30:00",
        id="half-hour-gap",
    ),
    # New York: 02:00 EST → 03:00 EDT on 2026-03-08 (07:00 UTC).
    pytest.param(
        "0 2 * * *", "America/New_York", "2026-03-08T05:00:00", "2026-03-08T07:00:00", id="ny-gap"
    ),
]


@pytest.mark.parametrize(("expression", "zone", "after", "expected"), FOLLOWING)
def test_following(expression: str, zone: str, after: str, expected: str) -> None:
    assert cron.following(expression, zone, utc(after)) == utc(expected)


# (cron, zone, at or before, the last fire time in UTC)
LATEST = [
    pytest.param("0 * * * *", "UTC", "2026-01-01T10:00:00", "2026-01-01T10:00:00", id="exactly-on"),
    pytest.param(
        "0 * * * *", "UTC", "2026-01-01T10:59:59", "2026-01-01T10:00:00", id="just-before-next"
    ),
    pytest.param("0 3 * * *", "UTC", "2026-01-05T02:00:00", "2026-01-04T03:00:00", id="yesterday"),
    # 02:40 CET on the second pass through 02:xx: 02:45 already fired, on the first pass.
    pytest.param(
        "45 * * * *", "Europe/Paris", "2026-10-25T01:40:00", "2026-10-25T00:45:00", id="second-pass"
    ),
    pytest.param(
        "30 2 * * *", "Europe/Paris", "2026-03-29T01:30:00", "2026-03-29T01:00:00", id="gap"
    ),
]


@pytest.mark.parametrize(("expression", "zone", "at", "expected"), LATEST)
def test_latest(expression: str, zone: str, at: str, expected: str) -> None:
    assert cron.latest(expression, zone, utc(at)) == utc(expected)


def test_a_cron_that_never_matches_has_no_fire_time() -> None:
    now = utc("2026-01-01T00:00:00")
    assert cron.following("0 0 30 2 *", "UTC", now) is None
    assert cron.latest("0 0 30 2 *", "UTC", now) is None


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        cron.following("* * * * *", "UTC", dt.datetime(2026, 1, 1))


def test_a_daily_job_fires_once_every_local_day_across_both_changes() -> None:
    moment = utc("2026-01-01T00:00:00")
    zone = zoneinfo.ZoneInfo("Europe/Paris")
    days = []
    end = utc("2027-01-01T00:00:00")
    while (nxt := cron.following("30 2 * * *", "Europe/Paris", moment)) is not None and nxt < end:
        assert nxt > moment
        days.append(nxt.astimezone(zone).date())
        moment = nxt
    assert len(days) == len(set(days)) == 365


EXPRESSIONS = [
    "* * * * *",
    "*/7 * * * *",
    "30 2 * * *",
    "0 */3 * * *",
    "15,45 1-3 * * *",
    "0 9 * * 1-5",
    "@hourly",
    "@daily",
    "0 0 1 * *",
]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
instants = st.datetimes(
    min_value=dt.datetime(2024, 1, 1),
    max_value=dt.datetime(2030, 12, 31),
    timezones=st.just(dt.UTC),
)


def _named_or_gap_end(expression: str, zone: str, fire: dt.datetime) -> bool:
    """A fire time is a wall time the cron names, or the instant the clocks jumped."""
    tz = zoneinfo.ZoneInfo(zone)
    wall = fire.astimezone(tz).replace(tzinfo=None)
    jumped = (fire - dt.timedelta(seconds=1)).astimezone(tz).utcoffset() != fire.astimezone(
        tz
    ).utcoffset()
    return bool(croniter.match(expression, wall)) or jumped


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(EXPRESSIONS), st.sampled_from(ZONES), instants)
def test_fire_times_bracket_every_instant(expression: str, zone: str, moment: dt.datetime) -> None:
    nxt = cron.following(expression, zone, moment)
    last = cron.latest(expression, zone, moment)
    assert nxt is not None and last is not None
    assert last <= moment < nxt
    # Nothing fires in between: the last fire time before `nxt` is `last`.
    assert cron.latest(expression, zone, nxt - dt.timedelta(microseconds=1)) == last
    assert cron.following(expression, zone, last) == nxt
    assert cron.latest(expression, zone, nxt) == nxt
    assert _named_or_gap_end(expression, zone, nxt)
    assert _named_or_gap_end(expression, zone, last)
    assert nxt.tzinfo == dt.UTC and nxt.second == 0


@settings(max_examples=50, deadline=None)
@given(st.sampled_from(EXPRESSIONS), st.sampled_from(ZONES), instants)
def test_fire_times_strictly_increase(expression: str, zone: str, moment: dt.datetime) -> None:
    fires = []
    for _ in range(30):
        nxt = cron.following(expression, zone, moment)
        assert nxt is not None
        fires.append(nxt)
        moment = nxt
    assert fires == sorted(set(fires))
