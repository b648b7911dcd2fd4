from decimal import Decimal

import pytest

from core.money import Money, MoneyError, convert, format_money, parse_major


class TestFormat:
    @pytest.mark.parametrize(
        ("amount", "currency", "expected"),
        [
            (123450, "USD", "$1,234.50"),
            (1200, "JPY", "¥1,200"),
            (-300, "EUR", "-€3.00"),
            (5, "GBP", "£0.05"),
            (100, "CHF", "1.00 CHF"),
            (None, "USD", "—"),
        ],
    )
    def test_format(self, amount, currency, expected):
        assert format_money(amount, currency) == expected

    def test_signed(self):
        assert format_money(250, "EUR", signed=True) == "+€2.50"


class TestParse:
    def test_two_decimals(self):
        assert parse_major("12.50", "EUR") == 1250
        assert parse_major("1,200", "USD") == 120000

    def test_jpy_has_no_minor_unit(self):
        assert parse_major("1200", "JPY") == 1200
        with pytest.raises(MoneyError, match="whole units"):
            parse_major("12.5", "JPY")

    def test_too_many_decimals(self):
        with pytest.raises(MoneyError, match="2 decimal places"):
            parse_major("1.005", "USD")

    def test_its_own_symbol_and_never_another_currency_s(self):
        assert parse_major("$5", "USD") == 500 and parse_major("€2.50", "EUR") == 250 and parse_major("¥300", "JPY") == 300
        assert parse_major("$5", "CAD") == 500 and parse_major("CA$5", "CAD") == 500  # a dollar is a dollar
        for typed, currency in (("€5", "USD"), ("£3", "USD"), ("¥3", "USD"), ("$5", "EUR"), ("CA$5", "USD")):
            with pytest.raises(MoneyError, match=f"another currency; this amount is in {currency}"):
                parse_major(typed, currency)

    @pytest.mark.parametrize("bad", ["", "abc", "NaN", "inf", "1e"])
    def test_garbage(self, bad):
        with pytest.raises(MoneyError):
            parse_major(bad, "USD")


class TestMoney:
    def test_refuses_mixed_currencies(self):
        with pytest.raises(MoneyError, match="without converting"):
            Money(100, "USD") + Money(100, "EUR")

    def test_refuses_floats(self):
        with pytest.raises(MoneyError):
            Money(1.5, "USD")

    def test_convert_to_jpy_rounds_once(self):
        # 10.00 USD at 1 JPY = 0.0067 USD -> 1492.537... -> 1493 JPY
        assert convert(1000, "USD", "JPY", Decimal(1), Decimal("0.0067")) == 1493
        assert convert(1493, "JPY", "JPY", Decimal(1), Decimal(1)) == 1493
