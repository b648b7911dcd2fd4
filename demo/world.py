"""The demo world's frame: seed, size, the fixed ``now``, the profile, its days, planted incidents.

A world is fully described by (seed, members, now, profile): every member's story is drawn from
its own ``random.Random`` seeded by (seed, member index), so members can be generated in any
chunking, streamed, or regenerated one at a time, and always come out the same.

Profiles: ``default`` is the demo a person looks at (three years, a third free, ~3.4% monthly
churn: ~5.5 payment attempts per member). ``benchmark`` is the world the benchmarks load: an
older, stickier business (six years, mostly monthly payers, lower voluntary churn) with ~20
payment attempts per member, the density a 1M-member customer has. Same rules, other rates.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import accumulate
from typing import Any

YEARS = 3
DAYS = 365 * YEARS  # the default profile's history


@dataclass(frozen=True)
class Profile:
    """The rates that differ between the demo a person looks at and the benchmark world."""

    name: str
    years: int = YEARS
    growth: float = 3.0  # sign-ups per day at the end / at the start
    paying_share: float = 0.66  # the rest are free app users Stripe never sees
    yearly_share: float = 0.22  # of subscriptions
    churn: float = 1.0  # factor on the voluntary cancellation rates of paying periods


PROFILES = {
    "default": Profile("default"),
    "benchmark": Profile("benchmark", years=6, growth=1.3, paying_share=0.93, yearly_share=0.04, churn=0.25),
}


def default_now(today: date | None = None) -> datetime:
    """Today 00:00 UTC: the same seed on the same day gives the same database."""
    today = today or datetime.now(UTC).date()
    return datetime.combine(today, time(0), tzinfo=UTC)


@dataclass(frozen=True)
class Incident:
    """Something planted in the world that alerts should catch on ``day`` (a UTC date)."""

    kind: str  # decline_spike, refund_burst
    day: date
    scope: dict[str, Any]
    description: str


DECLINE_SPIKE_DAYS_AGO = 12
REFUND_BURST_DAYS_AGO = 26


def incidents(now: datetime) -> list[Incident]:
    """The incidents planted in every world generated with this ``now``."""
    today = now.astimezone(UTC).date()
    return [
        Incident("decline_spike", today - timedelta(days=DECLINE_SPIKE_DAYS_AGO),
                 {"decline_code": "insufficient_funds", "card_brand": "mastercard"},
                 "An issuer-side problem: most renewals on Mastercard cards fail with insufficient_funds "
                 "for one day."),
        Incident("refund_burst", today - timedelta(days=REFUND_BURST_DAYS_AGO),
                 {"reason": "duplicate"},
                 "A billing bug double-charged members; support refunds many recent payments in one day."),
    ]


@dataclass
class World:
    seed: int
    members: int
    now: datetime
    profile: Profile = PROFILES["default"]
    days: int = field(init=False)
    start: datetime = field(init=False)
    _cum: list[float] = field(init=False, repr=False)
    spike_day: date = field(init=False)
    burst_day: date = field(init=False)
    spike_at: int = field(init=False)  # the incident days' 00:00 UTC, epoch seconds
    burst_at: int = field(init=False)

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("the demo world's now must be timezone-aware")
        if isinstance(self.profile, str):
            self.profile = PROFILES[self.profile]
        self.now = self.now.astimezone(UTC)
        self.days = days = 365 * self.profile.years
        self.start = self.now - timedelta(days=days)
        weights = []
        for d in range(days):
            day = (self.start + timedelta(days=d)).date()
            growth = math.exp(math.log(self.profile.growth) * d / days)  # e.g. three times the sign-ups at the end
            season = 1 + 0.25 * math.cos(2 * math.pi * (day.timetuple().tm_yday - 10) / 365)  # January peak
            weekday = 0.9 if day.weekday() >= 5 else 1.04
            weights.append(growth * season * weekday)
        self._cum = list(accumulate(weights))
        planted = {i.kind: i.day for i in incidents(self.now)}
        self.spike_day = planted["decline_spike"]
        self.burst_day = planted["refund_burst"]
        self.spike_at, self.burst_at = (int(datetime.combine(d, time(0), tzinfo=UTC).timestamp())
                                        for d in (self.spike_day, self.burst_day))

    def rng(self, index: int) -> random.Random:
        return random.Random(self.seed * 10_000_019 + index)

    def signup_at(self, rng: random.Random) -> datetime:
        day = bisect_right(self._cum, rng.random() * self._cum[-1])
        return self.start + timedelta(days=min(day, self.days - 1), seconds=rng.randrange(86400))
