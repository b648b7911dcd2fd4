"""The local day the database gives a stored instant (``core.metrics.daily.Days``) is the local
date of that instant, across daylight-saving changes, in zones east and west of UTC."""

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import Column, MetaData, Table, insert, select, text

from core.db.types import UTCDateTime
from core.metrics.daily import Days, statement
from core.timeutil import zone

# Around each 2026 change of Europe/Berlin (29 March 01:00 UTC, 25 October 01:00 UTC),
# America/New_York (8 March 07:00 UTC, 1 November 06:00 UTC) and Australia/Sydney
# (5 April 16:00 UTC, 3 October 16:00 UTC), one second either side, and local midnights.
INSTANTS = [datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC),
            datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC),
            datetime(2026, 4, 5, 16, tzinfo=UTC), datetime(2026, 10, 3, 16, tzinfo=UTC),
            datetime(2026, 3, 28, 23, tzinfo=UTC), datetime(2026, 3, 29, 22, tzinfo=UTC),
            datetime(2026, 10, 31, 23, tzinfo=UTC), datetime(2026, 11, 1, 4, tzinfo=UTC),
            datetime(2026, 11, 1, 5, tzinfo=UTC), datetime(2026, 7, 1, 13, 59, 59, 999999, tzinfo=UTC)]
MOMENTS = sorted({m + timedelta(seconds=s) for m in INSTANTS for s in (-1, 0, 1)})


@pytest.mark.parametrize("tz_name", ["UTC", "Europe/Berlin", "America/New_York", "Australia/Sydney", "Asia/Tokyo"])
def test_local_day_of_each_instant(engine, tz_name):
    tz = zone(tz_name)
    table = Table("days_probe", MetaData(), Column("t", UTCDateTime(), nullable=False))
    table.create(engine)
    try:
        with engine.begin() as conn:
            conn.execute(insert(table), [{"t": m} for m in MOMENTS])
        days = Days(engine.dialect.name, tz, date(2026, 1, 1), date(2027, 1, 1))
        with engine.connect() as conn:
            rows = conn.execute(statement(f"SELECT t, {days.of('t')} FROM days_probe WHERE {days.where('t')} "
                                          "ORDER BY t"), days.params()).all()
        got = [str(day) for _, day in rows]
        assert got == [m.astimezone(tz).date().isoformat() for m in MOMENTS]
        # Only some days: the rows of those local days and no others.
        wanted = [date(2026, 3, 29), date(2026, 11, 1)]
        some = Days.listed(engine.dialect.name, tz, wanted)
        with engine.connect() as conn:
            picked = conn.execute(select(table.c.t).where(statement(some.where("t"))).order_by(table.c.t),
                                  some.params()).scalars().all()
        assert picked == [m for m in MOMENTS if m.astimezone(tz).date() in wanted]
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE days_probe"))
