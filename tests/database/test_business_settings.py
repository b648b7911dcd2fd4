"""Business settings: defaults, validation in sentences, audited writes, FX rates."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import delete, select

from core.metrics.rollups import refresh, state
from core.models import AuditEntry, FxRate
from core.permissions import Actor
from core.settings import business as bs


def audits(session, action):
    return session.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)).all()


class TestSettings:
    def test_defaults_when_nothing_is_stored(self, engine, session):
        s = bs.load(engine)
        assert (s.business_timezone, s.reporting_currency, s.past_due_grace_days, s.week_start) == \
            ("UTC", "USD", None, "monday")

    def test_update_writes_and_audits_before_and_after(self, engine, session):
        bs.save(engine, actor=Actor.of("alice", "admin"), reason="finance is in Berlin", business_timezone="Europe/Berlin",
                  reporting_currency="eur", past_due_grace_days="7", week_start="Sunday")
        session.commit()
        s = bs.load(engine)
        assert (s.business_timezone, s.reporting_currency, s.past_due_grace_days, s.week_start) == \
            ("Europe/Berlin", "EUR", 7, "sunday")
        entry = audits(session, "settings.update")[-1]
        assert entry.actor == "alice"
        assert entry.before["business_timezone"] == "UTC" and entry.after["business_timezone"] == "Europe/Berlin"
        assert entry.after["past_due_grace_days"] == 7

    @pytest.mark.parametrize(("change", "sentence"), [
        ({"business_timezone": "Mars/Olympus"}, "is not a time zone"),
        ({"reporting_currency": "CHF"}, "is not one of the currencies"),
        ({"reporting_currency": "US"}, "is not a currency code"),
        ({"past_due_grace_days": "-1"}, "between 0 and 365"),
        ({"past_due_grace_days": "two"}, "is not a whole number"),
        ({"week_start": "someday"}, "is not a weekday"),
        ({"colour": "blue"}, "is not a business setting"),
    ])
    def test_bad_values_are_refused_with_a_sentence_and_nothing_written(self, engine, session, change, sentence):
        with pytest.raises(bs.BusinessSettingsError, match=sentence):
            bs.save(engine, actor=Actor.of("alice", "admin"), **{"week_start": "tuesday", **change})
        session.rollback()
        assert bs.load(engine).week_start == "monday"
        assert audits(session, "settings.update") == []

    def test_grace_days_can_be_cleared(self, engine, session):
        bs.save(engine, actor=Actor.of("alice", "admin"), past_due_grace_days=10)
        bs.save(engine, actor=Actor.of("alice", "admin"), past_due_grace_days="")
        session.commit()
        assert bs.load(engine).past_due_grace_days is None

    def test_definition_change_marks_rollups_stale(self, engine, session):
        refresh(engine)
        assert state(engine) is not None
        bs.save(engine, actor=Actor.of("alice", "admin"), reporting_currency="EUR")  # not a definition setting
        session.commit()
        assert state(engine) is not None
        bs.save(engine, actor=Actor.of("alice", "admin"), past_due_grace_days=3)
        session.commit()
        assert state(engine) is None  # the next answer rebuilds with 3 grace days
        refresh(engine)
        assert state(engine).grace_days == 3


class TestFxRates:
    def test_set_rate_inserts_then_replaces_and_audits(self, engine, session):
        bs.save_rate(engine, actor=Actor.of("alice", "admin"), currency="chf", month="2026-03", usd_per_unit="1.12")
        bs.save_rate(engine, actor=Actor.of("bob", "admin"), currency="CHF", month=date(2026, 3, 17), usd_per_unit=Decimal("1.13"))
        session.commit()
        rows = [r for r in bs.list_rates(engine, "CHF")]
        assert [(r.month, r.usd_per_unit, r.updated_by) for r in rows] == [(date(2026, 3, 1), Decimal("1.13"), "bob")]
        entries = audits(session, "settings.fx_rate")
        assert entries[0].before is None and entries[0].after == {"usd_per_unit": "1.12"}
        assert entries[1].before == {"usd_per_unit": "1.1200000000"} or entries[1].before["usd_per_unit"].startswith("1.12")

    @pytest.mark.parametrize(("kw", "sentence"), [
        ({"currency": "USD", "month": "2026-01", "usd_per_unit": "1"}, "base of the rate table"),
        ({"currency": "EUR", "month": "2026-13", "usd_per_unit": "1"}, "is not a month"),
        ({"currency": "EUR", "month": "2026-01", "usd_per_unit": "-1"}, "positive number"),
        ({"currency": "EUR", "month": "2026-01", "usd_per_unit": "abc"}, "is not a number"),
        ({"currency": "EUR", "month": "2026-01", "usd_per_unit": "999999"}, "implausibly large"),
        # Only plain decimals: "1e3" was saved as 1000 ("Rate for EUR saved.").
        *(({"currency": "EUR", "month": "2026-01", "usd_per_unit": typed}, "is not a number written plainly")
          for typed in ("1e3", "1E3", "1.2e0", "1,30", "1_000", "0x1", "Infinity", "NaN", "1.2.3", "")),
        ({"currency": "EUR", "month": "2026-01", "usd_per_unit": "1.12345678901"}, "at most 10 decimals"),
    ])
    def test_bad_rates_are_refused(self, engine, session, kw, sentence):
        with pytest.raises(bs.BusinessSettingsError, match=sentence):
            bs.save_rate(engine, actor=Actor.of("alice", "admin"), **kw)
        assert audits(session, "settings.fx_rate") == []

    @pytest.mark.parametrize(("typed", "saved"), [(" 1.30 ", "1.3"), ("1.3", "1.3"), ("+1.2", "1.2"),
                                                  ("1.", "1"), ("1.0850000000", "1.085")])
    def test_plain_decimals_are_saved(self, engine, typed, saved):
        bs.save_rate(engine, actor=Actor.of("alice", "admin"), currency="EUR", month="2026-01", usd_per_unit=typed)
        (rate,) = [r for r in bs.list_rates(engine, "EUR") if r.month == date(2026, 1, 1)]
        assert rate.usd_per_unit == Decimal(saved)

    @pytest.mark.parametrize(("typed", "sentence"), [
        ("116", "would go from 1.16 (the nearest known rate, {near}) to 116, a move of +9,900%"),
        ("1160", "would go from 1.16 (the nearest known rate, {near}) to 1160, a move of +99,900%"),
        ("0.0116", "would go from 1.16 (the nearest known rate, {near}) to 0.0116, a move of -99%"),
    ])
    def test_a_rate_far_from_the_nearest_known_one_needs_the_move_confirmed(self, engine, session, typed, sentence):
        """EUR 116 for December 2026 (1.16 meant) was saved: every converted figure a hundred
        times too large. A move over 25 % from the nearest known rate needs confirming."""
        seeded = bs.list_rates(engine, "EUR")  # SQLite's template is seeded; PostgreSQL's tables start empty
        near = "2026-12" if any(r.month == date(2026, 12, 1) for r in seeded) else "the built-in default for 2026"
        admin = Actor.of("alice", "admin")
        with pytest.raises(bs.RateMoveError) as refused:
            bs.save_rate(engine, actor=admin, currency="EUR", month="2026-12", usd_per_unit=typed)
        assert sentence.format(near=near) in str(refused.value)
        assert "confirm the move" in str(refused.value)
        assert audits(session, "settings.fx_rate") == []
        bs.save_rate(engine, actor=admin, currency="EUR", month="2026-12", usd_per_unit="1.30")  # +12 %: no question
        bs.save_rate(engine, actor=admin, currency="EUR", month="2026-12", usd_per_unit="1.56", confirm_move=True)
        (rate,) = [r for r in bs.list_rates(engine, "EUR") if r.month == date(2026, 12, 1)]
        assert rate.usd_per_unit == Decimal("1.56")  # +20 % from 1.30, the month's own rate now
        bs.save_rate(engine, actor=admin, currency="EUR", month="2026-12", usd_per_unit=typed, confirm_move=True)
        session.expire_all()
        entries = audits(session, "settings.fx_rate")
        assert [e.after.get("move_confirmed", False) for e in entries] == [False, False, True]

    def test_the_nearest_known_rate_is_the_nearest_month(self, engine, session):
        admin = Actor.of("alice", "admin")
        session.execute(delete(FxRate).where(FxRate.currency == "GBP"))
        session.commit()
        bs.save_rate(engine, actor=admin, currency="GBP", month="2026-01", usd_per_unit="1.30")
        bs.save_rate(engine, actor=admin, currency="GBP", month="2026-09", usd_per_unit="2.00", confirm_move=True)
        bs.save_rate(engine, actor=admin, currency="GBP", month="2026-03", usd_per_unit="1.40")  # near January's
        with pytest.raises(bs.RateMoveError, match=r"from 2 \(the nearest known rate, 2026-09\) to 1.4,"):
            bs.save_rate(engine, actor=admin, currency="GBP", month="2026-07", usd_per_unit="1.40")
        # A currency with no rate and no built-in default has nothing to be far from.
        bs.save_rate(engine, actor=admin, currency="CHF", month="2026-03", usd_per_unit="1.12")

    def test_edited_rate_changes_the_reporting_figure(self, engine, session):
        from core.metrics import Query, compute
        from tests.support.factories import at, make_member, make_payment

        member = make_member(session)
        make_payment(session, member=member, amount=1000, currency="EUR", created_at=at("2026-03-03 10:00"))
        session.commit()
        q = Query.make(engine, start=date(2026, 3, 1), end=date(2026, 4, 1), now=at("2026-04-01 00:00"))
        before = compute(engine, "gross_revenue", q).value
        bs.save_rate(engine, actor=Actor.of("alice", "admin"), currency="EUR", month="2026-03", usd_per_unit="2",
                     confirm_move=True)
        session.commit()
        assert compute(engine, "gross_revenue", q).value == 2000
        assert before != 2000

    def test_migration_seeds_default_rates(self, session):
        seeded = session.scalars(select(FxRate).where(FxRate.currency == "JPY")).all()
        # PostgreSQL test databases are emptied between tests; SQLite copies the migrated template.
        assert seeded == [] or any(r.month == date(2026, 1, 1) for r in seeded)
