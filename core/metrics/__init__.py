"""Metrics you can reconcile: every number defined once, computed once, shown everywhere.

Public API (the dashboard and ``python -m cli metrics`` both call only this):

- ``Query``, ``Filters``: the question (local dates ``[start, end)``, granularity, tz, now,
  filters, reporting currency or None for per original currency, business settings).
  ``Query.make(engine, start=..., end=..., now=..., ...)`` fills tz/currency from the settings.
- ``MetricResult``: ``value``, ``series``, ``breakdown``, ``by_currency``, ``settings_used``,
  ``definition``.
- ``list_metrics()``, ``get(slug)``, ``compute(engine, slug, query)``,
  ``drill(engine, slug, query, period=None, key=None, limit=10000)``.
- ``page_bundle(engine, page, query)``: every number of one dashboard page
  (``overview``, ``revenue``, ``churn``, ``failed_payments``) in one call.
- ``MetricError``: a sentence for people.

Definitions live next to each metric (``Metric.definition``) and in docs/metrics.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Engine

from core.metrics.registry import compute, drill, get, list_metrics
from core.metrics.types import Filters, Metric, MetricError, MetricResult, Query

if TYPE_CHECKING:
    from core.metrics.bundles import PageBundle

__all__ = ["Filters", "Metric", "MetricError", "MetricResult", "Query", "compute", "drill", "get",
           "list_metrics", "page_bundle"]


def page_bundle(engine: Engine, page: str, query: Query) -> PageBundle:
    """All the numbers one dashboard page needs (see ``core.metrics.bundles``)."""
    from core.metrics.bundles import page_bundle as _bundle

    return _bundle(engine, page, query)
