"""The registry: slug -> ``Metric``. Metric modules register themselves on import."""

from __future__ import annotations

import importlib
from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from core.metrics.types import Metric, MetricError, MetricResult, Query

if TYPE_CHECKING:
    import pandas as pd

_REGISTRY: dict[str, Metric] = {}
_MODULES = ("core.metrics.recurring", "core.metrics.churn", "core.metrics.cash", "core.metrics.health")
_loaded = False


def register(metric: Metric) -> Metric:
    if metric.slug in _REGISTRY:
        raise ValueError(f"metric {metric.slug!r} registered twice")
    _REGISTRY[metric.slug] = metric
    return metric


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for name in _MODULES:
            importlib.import_module(name)


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
