"""The demo world: three years of a plausible membership business, deterministic per seed and day.

Public entry points:
- ``World(seed, members, now)``, ``default_now()``, ``incidents(now) -> list[Incident]``;
- ``simulate_member(world, index) -> Story`` (one member's Stripe objects and history);
- ``iter_stripe_objects(world)`` / ``iter_events(world)`` (the sandbox's import streams);
- ``load_demo(engine, members=, seed=, now=, progress=, workers=, on_chunk=) -> LoadStats``;
- ``clear_demo_tables(engine)``; ``create_demo_staff(engine)``.
"""

from demo.load import LoadStats, load_demo
from demo.reset import clear_demo_tables
from demo.simulate import Story, simulate_member
from demo.staff import create_demo_staff
from demo.stream import events_of, iter_events, iter_stories, iter_stripe_objects, objects_of
from demo.world import Incident, World, default_now, incidents

__all__ = [
    "Incident", "LoadStats", "Story", "World", "clear_demo_tables", "create_demo_staff", "default_now",
    "events_of", "incidents", "iter_events", "iter_stories", "iter_stripe_objects", "load_demo", "objects_of",
    "simulate_member",
]
