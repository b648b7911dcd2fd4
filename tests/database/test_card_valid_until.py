"""``subscriptions.card_valid_until``: kept by the database whoever writes the rows (migration
0009), on both databases. Each case writes plain rows and reads the column back."""

from __future__ import annotations

from datetime import date

from sqlalchemy import text

from core.metrics import Query, page_bundle
from core.models import PaymentMethod, Subscription
from tests.support.factories import at, make_card, make_member, make_price, make_subscription, make_tier


def valid_until(session, sub):
    session.commit()
    return session.execute(text("SELECT card_valid_until FROM subscriptions WHERE id = :i"),
                           {"i": sub.id}).scalar()


def same_instant(stored, expected) -> bool:
    """SQLite hands the stored text back; PostgreSQL an aware datetime."""
    if isinstance(stored, str):
        return stored == expected.strftime("%Y-%m-%d %H:%M:%S.%f")
    return stored == expected


def world(session):
    price = make_price(session, tier=make_tier(session, code="premium"), unit_amount=1000)
    member = make_member(session)
    return member, price


def test_own_card_gives_the_first_instant_after_its_expiry_month(session):
    member, price = world(session)
    card = make_card(session, member=member, exp_month=3, exp_year=2027)
    sub = make_subscription(session, member=member, price=price, default_payment_method_id=card.id)
    assert same_instant(valid_until(session, sub), at("2027-04-01 00:00"))


def test_december_rolls_into_january(session):
    member, price = world(session)
    card = make_card(session, member=member, exp_month=12, exp_year=2026)
    sub = make_subscription(session, member=member, price=price, default_payment_method_id=card.id)
    assert same_instant(valid_until(session, sub), at("2027-01-01 00:00"))


def test_without_its_own_card_the_members_default_card_is_charged(session):
    member, price = world(session)
    sub = make_subscription(session, member=member, price=price)
    assert valid_until(session, sub) is None  # no card at all yet
    make_card(session, member=member, exp_month=5, exp_year=2027)  # attached later as the default
    assert same_instant(valid_until(session, sub), at("2027-06-01 00:00"))


def test_a_new_expiry_from_the_card_updater_follows(session):
    member, price = world(session)
    card = make_card(session, member=member, exp_month=1, exp_year=2027)
    sub = make_subscription(session, member=member, price=price, default_payment_method_id=card.id)
    session.get(PaymentMethod, card.id).exp_year = 2031
    assert same_instant(valid_until(session, sub), at("2031-02-01 00:00"))


def test_switching_or_detaching_the_card_follows(session):
    member, price = world(session)
    old = make_card(session, member=member, exp_month=1, exp_year=2027)
    new = make_card(session, member=member, exp_month=8, exp_year=2029)
    session.get(PaymentMethod, new.id).is_default = False
    sub = make_subscription(session, member=member, price=price, default_payment_method_id=old.id)
    session.get(Subscription, sub.id).default_payment_method_id = new.id
    assert same_instant(valid_until(session, sub), at("2029-09-01 00:00"))
    # The subscription's own card is detached: the member's default (the old card) is charged.
    session.get(PaymentMethod, new.id).detached_at = at("2026-06-01 00:00")
    assert same_instant(valid_until(session, sub), at("2027-02-01 00:00"))
    # And with no default card either, nothing is charged and nothing expires.
    session.get(PaymentMethod, old.id).is_default = False
    assert valid_until(session, sub) is None


def test_a_card_without_an_expiry_has_none(session):
    member, price = world(session)
    card = make_card(session, member=member, exp_month=None, exp_year=None)
    sub = make_subscription(session, member=member, price=price, default_payment_method_id=card.id)
    assert valid_until(session, sub) is None


def test_the_members_default_card_expiring_puts_the_subscription_on_the_worklist(engine, session):
    member, price = world(session)
    make_card(session, member=member, exp_month=6, exp_year=2026, last4="1881")
    sub = make_subscription(session, member=member, price=price, mrr_minor=1000,
                            current_period_end=at("2026-07-05 00:00"))
    session.commit()
    q = Query.make(engine, start=date(2026, 6, 1), end=date(2026, 7, 1), now=at("2026-07-01 00:00"))
    cards = page_bundle(engine, "failed_payments", q).tables["expiring_cards"]
    assert list(cards["subscription_id"]) == [sub.id]
    assert list(cards["last4"]) == ["1881"]
