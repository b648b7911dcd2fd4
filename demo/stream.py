"""The demo world as a stream of Stripe-shaped dicts, for the sandbox.

``iter_stripe_objects(world)`` yields every object Stripe would hold (catalogue first, then each
paying member's customer, cards, subscriptions, invoices, payment intents, charges, refunds and
disputes, in final state); ``iter_events(world)`` yields the events that led there, each with
``data.object`` and, for subscription updates, ``data.previous_attributes``. Subscription events
carry the subscription as it was at that moment; other events carry the object's final state.
Ids are the ones the database gets from ``load_demo`` with the same seed and ``now``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from demo import objects
from demo.catalogue import CATALOGUE_CREATED
from demo.simulate import Story, simulate_member
from demo.world import World

API_VERSION = "2026-10-28.endive"  # the version the installed stripe library pins
EVENT_RETENTION = timedelta(days=30)  # what Stripe's Events API returns
Obj = dict[str, Any]


def iter_stories(world: World, start: int = 0, stop: int | None = None) -> Iterator[Story]:
    for index in range(start, world.members if stop is None else stop):
        yield simulate_member(world, index)


def catalogue_objects() -> list[Obj]:
    return objects.products() + objects.prices()


def objects_of(story: Story) -> Iterator[Obj]:
    """The Stripe objects of one member (none for a free member)."""
    if story.customer is None:
        return
    yield story.customer
    yield from story.payment_methods
    for states in story.subscriptions:
        yield states[-1].obj
    yield from story.invoices
    yield from story.payment_intents
    yield from story.charges
    yield from story.refunds
    yield from story.disputes


def _event(event_id: str, created: int, kind: str, obj: Obj, previous: Obj | None) -> Obj:
    data: Obj = {"object": obj}
    if previous:
        data["previous_attributes"] = previous
    return {"id": event_id, "object": "event", "api_version": API_VERSION, "created": created, "type": kind,
            "data": data, "livemode": False, "pending_webhooks": 0, "request": {"id": None, "idempotency_key": None}}


def events_of(story: Story, since: datetime | None = None) -> Iterator[Obj]:
    """One member's events (only those created at or after ``since``, if given); a
    subscription's carry its state at that moment."""
    floor = int(since.timestamp()) if since is not None else None
    for states in story.subscriptions:
        for state in states:
            if floor is None or state.at >= floor:
                yield _event(state.event_id, state.at, state.event_type, state.obj, state.previous or None)
    for created, event_id, kind, obj, previous in story.events:
        if floor is None or created >= floor:
            yield _event(event_id, created, kind, obj, previous)


def catalogue_events() -> list[Obj]:
    return [_event(f"evt_demo_{obj['id']}", CATALOGUE_CREATED, f"{obj['object']}.created", obj, None)
            for obj in catalogue_objects()]


def iter_stripe_objects(world: World, stories: Iterable[Story] | None = None) -> Iterator[Obj]:
    yield from catalogue_objects()
    for story in stories if stories is not None else iter_stories(world):
        yield from objects_of(story)


def iter_events(world: World, stories: Iterable[Story] | None = None,
                since: datetime | None = None) -> Iterator[Obj]:
    """All events of the world, or only those since ``since`` (Stripe keeps 30 days of events,
    so a sandbox standing in for it needs no more: ``since=world.now - EVENT_RETENTION``)."""
    if since is None:
        yield from catalogue_events()
    for story in stories if stories is not None else iter_stories(world):
        yield from events_of(story, since)
