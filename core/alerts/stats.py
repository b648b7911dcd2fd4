"""Small statistics the rules share: how surprising a count or a rate is, and the severity.

Every rule fires only when three things hold at once: enough volume (a minimum count, so small
numbers never fire), a relative change against the baseline (a ratio an admin can read), and a
z-score (so that the ordinary day-to-day wobble of a large number does not fire either).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

SEVERITIES = ("low", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
DEFAULT_STEPS = {"medium": 2.0, "high": 3.0, "critical": 5.0}


def rate_z(failures: int, attempts: int, baseline_rate: float) -> float:
    """Binomial z-score of ``failures`` out of ``attempts`` against ``baseline_rate``."""
    if attempts <= 0:
        return 0.0
    p = min(max(baseline_rate, 1e-6), 1 - 1e-6)
    return (failures - attempts * p) / math.sqrt(attempts * p * (1 - p))


def count_z(count: float, expected: float) -> float:
    """Poisson z-score of ``count`` against ``expected`` (positive when above)."""
    expected = max(expected, 0.5)  # a baseline of zero events still has some chance of one
    return (count - expected) / math.sqrt(expected)


def ratio(value: float, baseline: float) -> float:
    """value / baseline, infinite when the baseline is zero and the value is not."""
    if baseline <= 0:
        return math.inf if value > 0 else 1.0
    return value / baseline


def severity(distance: float, steps: Mapping[str, float] | None = None) -> str:
    """Severity from how far the value is from its baseline (a ratio, 1 = at the baseline)."""
    steps = {**DEFAULT_STEPS, **(steps or {})}
    for name in ("critical", "high", "medium"):
        if distance >= float(steps[name]):
            return name
    return "low"
