from decimal import Decimal

import pytest

from core.metrics.subscription_mrr import Discount, Item, subscription_mrr
from tests.support.factories import at


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (Item(999, 1, "month"), 999),
        (Item(9990, 1, "year"), 832),  # 832.5 rounds half to even
        (Item(12000, 1, "year"), 1000),
        (Item(1200, 1, "year"), 100),  # JPY yearly: 1,200 yen a year is 100 yen a month
        (Item(3000, 1, "month", 3), 1000),
        (Item(100, 1, "week"), 433),  # 100 x 52 / 12 = 433.33
        (Item(10, 1, "day"), 304),  # 10 x 365 / 12 = 304.17
        (Item(500, 3, "month"), 1500),
    ],
)
def test_normalised_to_a_month(item, expected):
    assert subscription_mrr([item], "active") == expected


@pytest.mark.parametrize("status", ["trialing", "incomplete", "incomplete_expired", "canceled", "unpaid", "paused"])
def test_statuses_without_mrr(status):
    assert subscription_mrr([Item(999, 1, "month")], status) == 0


def test_past_due_counts_and_void_pause_does_not():
    assert subscription_mrr([Item(999, 1, "month")], "past_due") == 999
    assert subscription_mrr([Item(999, 1, "month")], "active", pause_behavior="void") == 0
    assert subscription_mrr([Item(999, 1, "month")], "active", pause_behavior="keep_as_draft") == 999


def test_discounts():
    items = [Item(1000, 1, "month")]
    assert subscription_mrr(items, "active", discount=Discount(percent_off=Decimal(25))) == 750
    assert subscription_mrr(items, "active", discount=Discount(amount_off=300, duration="repeating",
                                                                end=at("2026-06-01 00:00")),
                            at=at("2026-05-01 00:00")) == 700
    assert subscription_mrr(items, "active", discount=Discount(amount_off=300, duration="repeating",
                                                                end=at("2026-06-01 00:00")),
                            at=at("2026-07-01 00:00")) == 1000
    assert subscription_mrr(items, "active", discount=Discount(percent_off=Decimal(50), duration="once")) == 1000
