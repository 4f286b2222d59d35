"""`Schedule`: a cron expression (with time zone) that runs a tenant component's job.

Cron takes the classic five fields or one of the @-macros; time zones are IANA names.
The same spec, minus `tenant`, is written inline under `Tenant.spec.schedules`.
"""

from __future__ import annotations

import zoneinfo
from typing import Annotated, Literal

from croniter import croniter
from pydantic import AfterValidator, Field

from armillary.resources.meta import Document, Model, Name
from armillary.resources.stack import ComponentName

MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_FIELDS = (
    "minute 0-59",
    "hour 0-23",
    "day of month 1-31",
    "month 1-12 or JAN-DEC",
    "day of week 0-7 or SUN-SAT",
)


def check_cron(value: str) -> str:
    """Five cron fields (minute hour day-of-month month day-of-week) or an @-macro."""
    text = value.strip()
    if text.startswith("@"):
        if text not in MACROS:
            raise ValueError(f"expected one of {', '.join(sorted(MACROS))}, got {value!r}")
        return value
    fields = text.split()
    if len(fields) != 5:
        raise ValueError(
            f"expected 5 cron fields ({'; '.join(_FIELDS)}) or an @-macro, "
            f"got {len(fields)} field(s) in {value!r}"
        )
    if not croniter.is_valid(text):
        raise ValueError(f"expected a valid cron expression ({'; '.join(_FIELDS)}), got {value!r}")
    return value


def check_time_zone(value: str) -> str:
    """An IANA time zone name such as UTC or Europe/Paris."""
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # 'Europe' is a directory
        raise ValueError(
            f"expected an IANA time zone such as 'UTC' or 'Europe/Paris', got {value!r}"
        ) from None
    return value


Cron = Annotated[str, AfterValidator(check_cron)]
TimeZone = Annotated[str, AfterValidator(check_time_zone)]


class ScheduleTiming(Model):
    """What every schedule says: which job, when, and what to do about overlaps."""

    component: ComponentName
    cron: Cron
    time_zone: TimeZone = "UTC"
    concurrency_policy: Literal["Forbid", "Allow", "Replace"] = "Forbid"
    starting_deadline_s: Annotated[int, Field(ge=1)] | None = None
    history_limit: Annotated[int, Field(ge=0, le=1000)] = 10
    suspend: bool = False


class ScheduleSpec(ScheduleTiming):
    tenant: Name


class Schedule(Document[ScheduleSpec]):
    kind: Literal["Schedule"]
