"""A rule's form: every threshold shown in the units people read, and back to stored values exactly."""

from __future__ import annotations

import pytest

from core.alerts import rule_form, rules


@pytest.mark.parametrize("rule", rules.all_rules(), ids=lambda r: r.slug)
def test_an_untouched_form_changes_nothing(rule):
    shown = {f.name: f.value for f in rule_form.fields(rule, rule.defaults)}
    assert set(shown) and rule_form.params_from_form(rule, rule.defaults, shown) == {}


def test_shares_and_points_are_typed_as_percentages():
    rule = rules.get("failure_rate_hour")
    by_name = {f.name: f for f in rule_form.fields(rule, rule.defaults)}
    assert (by_name["min_increase"].label, by_name["min_increase"].value) == ("Minimum rise (percentage points)", 10.0)
    assert (by_name["baseline_floor"].label, by_name["baseline_floor"].value) == ("Baseline floor (%)", 2.0)
    assert rule_form.params_from_form(rule, rule.defaults, {"min_increase": 7, "baseline_floor": 3.5}) == {
        "min_increase": 0.07, "baseline_floor": 0.035}


def test_amounts_are_typed_in_major_units_and_stored_in_minor_units():
    rule = rules.get("large_refund")
    labels = {f.name: (f.label, f.value, f.decimals) for f in rule_form.fields(rule, rule.defaults)}
    assert labels["max_amount.USD"] == ("Refunds above (USD)", 250.0, 2)
    assert labels["max_amount.JPY"] == ("Refunds above (JPY)", 40000, 0)
    assert rule_form.params_from_form(rule, rule.defaults, {"max_amount.USD": 499.99, "max_amount.JPY": 50000}) == {
        "max_amount": {"USD": 49999, "EUR": 25000, "GBP": 20000, "JPY": 50000}}
    with pytest.raises(ValueError, match="JPY amounts take whole units"):
        rule_form.params_from_form(rule, rule.defaults, {"max_amount.JPY": 100.5})


def test_switches_and_dimensions_round_trip():
    rule = rules.get("failure_concentration")
    changed = rule_form.params_from_form(rule, rule.defaults, {"first_attempts_only": False,
                                                                "dimensions.card_brand": False})
    assert changed == {"first_attempts_only": False,
                       "dimensions": {"decline_code": 1, "card_brand": 0, "card_country": 1, "currency": 1}}
    assert rules.validate_params(rule, changed)["first_attempts_only"] is False


def test_a_count_rule_floor_is_per_day_and_a_step_per_severity():
    rule = rules.get("refund_spike")
    by_name = {f.name: f.label for f in rule_form.fields(rule, rule.defaults)}
    assert by_name["baseline_floor"] == "Baseline floor (per day)"
    assert [by_name[f"severity_steps.{s}"] for s in ("medium", "high", "critical")] == [
        "Medium from (× the baseline)", "High from (× the baseline)", "Critical from (× the baseline)"]


def test_a_refused_threshold_is_named_as_the_form_names_it():
    rule = rules.get("large_refund")
    with pytest.raises(ValueError, match="“Refunds above \\(USD\\)” takes a number above zero"):
        rule_form.params_from_form(rule, rule.defaults, {"max_amount.USD": 0})
    with pytest.raises(ValueError, match="“Looks back \\(hours\\)” takes a number above zero"):
        rule_form.params_from_form(rule, rule.defaults, {"lookback_hours": 0})


def test_severity_multiplies_what_the_rule_compares_with():
    # "A single large refund" and "Stripe data stale" have no baseline: their steps multiply the
    # amount set and the hours allowed.
    from core.labels import thresholds_text

    labels = {r.slug: {f.name: f.label for f in rule_form.fields(r, r.defaults)} for r in rules.all_rules()}
    assert labels["large_refund"]["severity_steps.high"] == "High from (× the amount set)"
    assert labels["stripe_stale"]["severity_steps.high"] == "High from (× the limit)"
    assert labels["refund_spike"]["severity_steps.high"] == "High from (× the baseline)"
    stale = rules.get("stripe_stale")
    assert "critical from 6× the limit" in thresholds_text(stale.defaults, stale.unit)
    spike = rules.get("refund_spike")
    assert "Baseline floor: 0.5 a day" in thresholds_text(spike.defaults, spike.unit)


def test_a_negative_value_is_answered_in_a_sentence():
    rule = rules.get("refund_spike")
    with pytest.raises(ValueError, match="“Minimum count” takes a number zero or above, not “-5”"):
        rule_form.params_from_form(rule, rule.defaults, {"min_count": -5})
