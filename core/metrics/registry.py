"""The registry: slug -> ``Metric``. Metric modules register themselves on import."""

from __future__ import annotations

import importlib
import threading
from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from core.metrics.types import Metric, MetricError, MetricResult, Query

if TYPE_CHECKING:
    import pandas as pd

_REGISTRY: dict[str, Metric] = {}
_MODULES = ("core.metrics.recurring", "core.metrics.churn", "core.metrics.cash", "core.metrics.health")
_loaded = False
_loading = threading.RLock()  # re-entrant: a metric module being imported may ask for the registry


def register(metric: Metric) -> Metric:
    if metric.slug in _REGISTRY:
        raise ValueError(f"metric {metric.slug!r} registered twice")
    _REGISTRY[metric.slug] = metric
    return metric


def _load() -> None:
    """Import the metric modules once. Under a lock, marked loaded only after every import: two
    threads asking at once (a page's worklists beside its numbers, two sessions after a restart)
    found the flag set and the registry still half full ("“failure_rate” is not a metric")."""
    global _loaded
    if _loaded:
        return
    with _loading:
        if not _loaded:
            for name in _MODULES:
                importlib.import_module(name)
            _loaded = True


def list_metrics() -> list[Metric]:
    """Every metric, in the order the pages show them."""
    _load()
    return list(_REGISTRY.values())


def get(slug: str) -> Metric:
    _load()
    try:
        return _REGISTRY[slug]
    except KeyError:
        raise MetricError(f"“{slug}” is not a metric; `python -m cli metrics --list` shows them.") from None


def compute(engine: Engine, slug: str, query: Query) -> MetricResult:
    return get(slug).compute(engine, query)


def drill(engine: Engine, slug: str, query: Query, *, period: date | None = None, key: str | None = None,
          limit: int | None = 10_000) -> pd.DataFrame:
    return get(slug).drill(engine, query, period=period, key=key, limit=limit)
