"""A member's name keeps Stripe's full length (256 characters) and is never cut in silence; a
longer one is refused by Stripe (and by the sandbox, which follows Stripe's published limits) and
by the Edit contact form, each with a sentence."""

from __future__ import annotations

import logging

import pytest
import stripe
from sqlalchemy import select

from core.changes import REASONS, Actor, ChangeInput, ChangeRefused, submit
from core.db import session_scope
from core.models import Member
from core.stripe_mapping import map_customer
from tests.support.changes_world import mirror
from tests.support.factories import make_member


def test_a_10000_character_name_is_refused_by_stripe_with_a_sentence(stripe_env):
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_env.client.v1.customers.create({"email": "long@example.com", "name": "N" * 10_000})
    assert refused.value.param == "name" and "must be at most 256 characters" in str(refused.value)


def test_a_256_character_name_is_mirrored_whole(engine, stripe_env):
    name = "Ana " + "de la Fuente " * 19 + "y Ortega"
    name = name[:256]
    cus = stripe_env.client.v1.customers.create({"email": "ana@example.com", "name": name})
    mirror(engine, stripe_env.client, cus.id)
    with session_scope(engine) as s:
        assert s.scalar(select(Member.name).where(Member.stripe_customer_id == cus.id)) == name


def test_a_name_longer_than_stripe_allows_is_logged_not_cut_in_silence(caplog):
    with caplog.at_level(logging.WARNING, logger="core.stripe_mapping"):
        row = map_customer({"id": "cus_x", "email": "x@example.com", "name": "Z" * 300, "created": 1})
    assert len(row["name"]) == 256
    assert "customer cus_x: name of 300 characters kept to the first 256" in caplog.text


def test_edit_contact_refuses_a_name_stripe_would_refuse(engine, session):
    member = make_member(session, name="Ann Lee")
    session.commit()
    change = ChangeInput("edit_contact", member.id, member.version, REASONS["edit_contact"][0], "new name",
                         {"name": "Y" * 10_000})
    with pytest.raises(ChangeRefused, match=r"^The name is too long \(at most 256 characters\)\.$"):
        submit(engine, change, Actor.of("sam", "support"))
    session.expire_all()
    assert session.get(Member, member.id).name == "Ann Lee"
    ok = ChangeInput("edit_contact", member.id, member.version, REASONS["edit_contact"][0], "new name",
                     {"name": "Y" * 256})
    assert submit(engine, ok, Actor.of("sam", "support")).status == "applied"
