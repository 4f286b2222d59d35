"""Fire times of a cron expression in an IANA time zone: pure, no clock.

Called by `control.firing` (what is due, what comes next) and by the schedule
controller for status. Cron fields name wall-clock times in the schedule's zone;
every wall-clock time they name fires exactly once, as ISC cron does across
daylight-saving changes:

- a time skipped when the clocks go forward (02:30 on the night Europe/Paris moves
  from 02:00 to 03:00) fires at the first instant after the gap (03:00 local);
- a time the clocks pass twice when they go back (02:30 on the night 03:00 becomes
  02:00 again) fires once, at its first occurrence;
- several wall-clock times that fall on one instant (02:00, 02:15, … in a gap) fire
  once.

So the fire times, as instants, strictly increase. Instants in and out are aware
datetimes; results are in UTC. A cron that can never match (`0 0 30 2 *`) has no
fire time: the functions return None.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator

from croniter import CroniterBadDateError, croniter

_TICK = dt.timedelta(microseconds=1)


def following(cron: str, time_zone: str, after: dt.datetime) -> dt.datetime | None:
    """The first fire time strictly after `after`, or None if there is none."""
    zone = zoneinfo.ZoneInfo(time_zone)
    # Every wall time up to `after`'s own fires at or before `after` (the mapping from
    # wall times to instants never goes backwards), so start there.
    start = _wall(after, zone)
    for wall in _walk(cron, start, forward=True):
        instant = _instant(wall, zone)
        if instant > after:
            return instant
    return None


def latest(cron: str, time_zone: str, at_or_before: dt.datetime) -> dt.datetime | None:
    """The last fire time at or before `at_or_before`, or None if there is none."""
    zone = zoneinfo.ZoneInfo(time_zone)
    wall = _wall(at_or_before, zone)
    # In a repeated hour, wall times after this one may still have fired already (at
    # their first occurrence): start the walk back from the end of the repetition.
    start = wall + _repeat(wall, zone) + _TICK
    for candidate in _walk(cron, start, forward=False):
        instant = _instant(candidate, zone)
        if instant <= at_or_before:
            return instant
    return None


def _walk(cron: str, start: dt.datetime, *, forward: bool) -> Iterator[dt.datetime]:
    """Naive wall times matching `cron`, strictly after (or before) naive `start`."""
    times = croniter(cron, start)
    try:
        while True:
            yield times.get_next(dt.datetime) if forward else times.get_prev(dt.datetime)
    except CroniterBadDateError:  # no match within croniter's horizon: it never fires
        return


def _wall(instant: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    if instant.tzinfo is None:
        raise ValueError(f"expected an aware datetime, got {instant!r}")
    return instant.astimezone(zone).replace(tzinfo=None, fold=0)


def _repeat(wall: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.timedelta:
    """How long the clocks repeat around `wall` (zero outside a fall-back overlap)."""
    first = wall.replace(tzinfo=zone, fold=0).utcoffset() or dt.timedelta()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset() or dt.timedelta()
    return max(first - second, dt.timedelta())


def _instant(wall: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The instant naive wall time `wall` fires at: its first occurrence, or the end of
    the gap it falls in."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(dt.UTC)
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    return _gap_end(wall, zone)


def _gap_end(wall: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The instant the clocks jumped over `wall`, which does not exist in `zone`.

    Read with the offset after the jump, `wall` is an instant before it; read with the
    offset before the jump, one after it. Between the two, the jump is the first
    instant whose wall time is later than `wall`: bisect for it, to the second (the
    time zone database has no finer transitions).
    """
    before = int(wall.replace(tzinfo=zone, fold=1).astimezone(dt.UTC).timestamp())
    after = int(wall.replace(tzinfo=zone, fold=0).astimezone(dt.UTC).timestamp())
    before, after = min(before, after), max(before, after)
    while after - before > 1:
        middle = (before + after) // 2
        if _wall(dt.datetime.fromtimestamp(middle, dt.UTC), zone) > wall:
            after = middle
        else:
            before = middle
    return dt.datetime.fromtimestamp(after, dt.UTC)
