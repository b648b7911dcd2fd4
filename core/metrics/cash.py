"""Cash metrics: gross billed, gross revenue, refunds, disputes lost, net revenue, Stripe fees."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from core.metrics import drills
from core.metrics.common import flow_result
from core.metrics.registry import register
from core.metrics.types import ComputeFn, DrillFn, Metric, MetricResult, Query

if TYPE_CHECKING:
    import pandas as pd

GROUP = "cash"


def _flow(slug: str, measure: str) -> ComputeFn:
    def compute(engine: Engine, query: Query) -> MetricResult:
        # Every measure read: the flows of a page (Revenue shows them all) share one read and one conversion.
        return flow_result(engine, query, slug, "cash", lambda r: int(r[measure]))
    return compute


NET_MEASURES = ("gross", "refunds", "disputes_lost")


def net_amount(row: dict[str, Any]) -> int:
    """Net revenue of a daily cash row (original or converted: each measure converted alone, so
    net = gross - refunds - disputes lost in every currency)."""
    return int(row["gross"]) - int(row["refunds"]) - int(row["disputes_lost"])


def _net(engine: Engine, query: Query) -> MetricResult:
    return flow_result(engine, query, "net_revenue", "cash", net_amount, NET_MEASURES)


def _drill(kind: str) -> DrillFn:
    def drill(engine: Engine, query: Query, *, period: date | None = None, key: str | None = None,
              limit: int | None = 10_000) -> pd.DataFrame:
        import pandas as pd

        if kind == "gross":
            return drills.rows(engine, query, period=period, limit=limit, source="payments",
                               where="AND p.status = 'succeeded'")
        if kind == "billed":
            return drills.rows(engine, query, period=period, limit=limit, source="invoices")
        if kind == "fees":
            return drills.rows(engine, query, period=period, limit=limit, source="payments",
                               where="AND p.status = 'succeeded' AND p.fee IS NOT NULL")
        if kind == "refunds":
            return drills.rows(engine, query, period=period, limit=limit, source="refunds",
                               where="AND r.status NOT IN ('failed', 'canceled')")
        if kind == "disputes":
            return drills.rows(engine, query, period=period, limit=limit, source="disputes",
                               where="AND d.status = 'lost'")
        parts = [_drill(k)(engine, query, period=period, limit=limit).assign(entry=k)
                 for k in ("gross", "refunds", "disputes")]
        for part in parts[1:]:
            if not part.empty:
                part["amount_minor"] = -part["amount_minor"]
        parts = [p for p in parts if not p.empty]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return drill


register(Metric("billed", "Gross billed", "money",
                "Totals of the invoices finalized in the period (tax included; drafts and voided invoices left out), "
                "counted at the time each was finalized, whether paid yet or not.",
                _flow("billed", "billed"), _drill("billed"), GROUP))
register(Metric("gross_revenue", "Gross revenue", "money",
                "Succeeded payments, counted at the time of payment, tax included, before refunds, disputes "
                "and Stripe fees.", _flow("gross_revenue", "gross"), _drill("gross"), GROUP))
register(Metric("refunds", "Refunds", "money",
                "Refunds counted at the time of the refund (pending and succeeded; failed and canceled "
                "refunds excluded).", _flow("refunds", "refunds"), _drill("refunds"), GROUP))
register(Metric("disputes_lost", "Disputes lost", "money",
                "Amount of disputes lost, counted at the time the dispute closed.",
                _flow("disputes_lost", "disputes_lost"), _drill("disputes"), GROUP))
register(Metric("net_revenue", "Net revenue", "money",
                "Gross revenue minus refunds minus disputes lost, each by its own date; Stripe fees are shown "
                "separately.", _net, _drill("net"), GROUP))
register(Metric("stripe_fees", "Stripe fees", "money",
                "Stripe's fees on succeeded payments, where Stripe reported them (payments without a known fee "
                "count as zero).", _flow("stripe_fees", "fees"), _drill("fees"), GROUP))
