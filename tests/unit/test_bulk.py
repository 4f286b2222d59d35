"""store/bulk.py on plain SQLite with both kinds of paramstyle its drivers may use:
positional (qmark, as pysqlite and asyncpg take) and named. Rows written in bulk
read back as the values given, and a compiled SELECT finds them."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import bindparam, create_engine, select

from armillary.store import bulk
from armillary.store.tables import audit_log, metadata


@pytest.mark.parametrize("paramstyle", ["qmark", "named"])
def test_rows_go_in_and_come_back_whatever_the_paramstyle(paramstyle: str) -> None:
    engine = create_engine("sqlite://", paramstyle=paramstyle)
    metadata.create_all(engine, tables=[audit_log])
    at = dt.datetime(2026, 12, 2, 13, 14, 15, 161718)
    rows = [
        {"at": at, "verb": "receive", "outcome": "routed", "principal": f"p{n}", "detail": {"n": n}}
        for n in range(3)
    ]
    with engine.begin() as conn:
        bulk.insert_rows(conn, audit_log, rows)
        found = bulk.select_rows(
            conn,
            ("test", paramstyle),
            lambda: select(audit_log.c.principal).where(audit_log.c.verb == bindparam("verb")),
            {"verb": "receive"},
        )
        stored = conn.execute(select(audit_log.c.at, audit_log.c.detail)).all()
    assert sorted(p for (p,) in found) == ["p0", "p1", "p2"]
    assert [(r.at, r.detail) for r in stored] == [(at, {"n": n}) for n in range(3)]
