"""A rule's thresholds as a form shows them: one field per threshold, in the units people read.

``alert_rules.params`` stores ratios as fractions (0.05), money in minor units (25000 for
$250.00) and switches by dimension as 1/0. A manager editing a rule should type "5" into
"Minimum rise (percentage points)" and "250.00" into "Refunds above (USD)", not JSON in minor
units. ``fields`` turns a rule's effective thresholds into those fields; ``params_from_form``
turns what came back into the stored values that changed, checked by ``rules.validate_params``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from core.alerts.rules import Rule, validate_params
from core.labels import SCOPE_WORDS, SEVERITY, THRESHOLDS, code_label, severity_measure
from core.money import decimals, parse_major, to_major

# How a stored number reads in a form: the word after its label and the factor from stored to shown.
_UNITS = {"hours": ("hours", 1), "days": ("days", 1), "weeks": ("weeks", 1), "count": ("", 1), "daily": ("per day", 1),
          "number": ("", 1), "ratio": ("× the baseline", 1), "share": ("%", 100),
          "points": ("percentage points", 100)}
_SEVERITY_ORDER = ("medium", "high", "critical")


@dataclass(frozen=True, slots=True)
class Field:
    """One input of a rule's form. ``name`` is ``key`` or ``key.part`` (``max_amount.JPY``)."""

    name: str
    label: str
    kind: str  # "number" (``decimals`` places), "switch"
    value: float | int | bool
    decimals: int = 0
    help: str = ""


def _kind(key: str, rule: Rule) -> str:
    kind = THRESHOLDS.get(key, ("", "number"))[1]
    if kind == "floor":  # a rate for the rate rules, a daily count for the count rules
        return "share" if rule.unit == "percent" else "daily"
    return kind


def _words(key: str) -> str:
    return THRESHOLDS.get(key, (code_label(key), ""))[0]


def _shown(value: float, factor: int, whole: bool) -> float | int:
    shown = float(Decimal(str(value)) * factor)  # Decimal: 0.07 x 100 is 7, not 7.000000000000001
    return int(shown) if whole and shown.is_integer() else shown


def fields(rule: Rule, params: dict[str, Any]) -> list[Field]:
    """The form's fields for ``rule`` holding ``params`` (its effective thresholds), in the
    order of the rule's defaults."""
    out: list[Field] = []
    for key, default in rule.defaults.items():
        value, kind, words = params.get(key, default), _kind(key, rule), _words(key)
        if kind == "money":
            for currency, amount in value.items():
                places = decimals(currency)
                out.append(Field(f"{key}.{currency}", f"{words} ({currency})", "number",
                                 float(to_major(int(amount), currency)) if places else int(amount), places,
                                 f"In {currency}, as an amount is written (not in cents)."))
        elif kind == "steps":
            for severity in sorted(value, key=lambda s: (_SEVERITY_ORDER + (s,)).index(s)):
                measure = severity_measure(rule.unit)
                out.append(Field(f"{key}.{severity}",
                                 f"{SEVERITY.get(severity, code_label(severity))} from (× {measure})",
                                 "number", float(value[severity]), 2,
                                 f"An alert is at least this severe once its value is this many times {measure}."))
        elif kind == "dimensions":
            for dimension, on in value.items():
                out.append(Field(f"{key}.{dimension}", f"{words}: {SCOPE_WORDS.get(dimension, code_label(dimension))}",
                                 "switch", bool(on)))
        elif kind == "switch" or isinstance(default, bool):
            out.append(Field(key, words, "switch", bool(value)))
        else:
            unit, factor = _UNITS.get(kind, ("", 1))
            whole = isinstance(default, int) and factor == 1
            label = f"{words} ({unit})" if unit else words
            out.append(Field(key, label, "number", _shown(value, factor, whole), 0 if whole else 2))
    return out


def _stored(rule: Rule, field: Field, shown: Any) -> Any:
    """What the form's ``shown`` value for ``field`` is in ``alert_rules.params``."""
    key, _, part = field.name.partition(".")
    kind = _kind(key, rule)
    if field.kind == "switch":
        return (1 if shown else 0) if kind == "dimensions" else bool(shown)
    if shown is None:
        raise ValueError(f"{field.label}: fill in a number.")
    if kind == "money":
        return int(parse_major(Decimal(str(shown)), part))
    if kind == "steps":
        return float(shown)
    factor = _UNITS.get(kind, ("", 1))[1]
    value = Decimal(str(shown)) / factor
    return int(value) if value == value.to_integral_value() and isinstance(rule.defaults[key], int) else float(value)


def params_from_form(rule: Rule, params: dict[str, Any], shown: dict[str, Any], *,
                     reset: bool = False) -> dict[str, Any]:
    """The thresholds whose value in ``shown`` (by field name) differs from ``params`` (the
    effective thresholds the form was drawn from), as stored values. A threshold that is a
    mapping (an amount per currency, a step per severity) is returned whole: its untouched parts
    as they are, or with ``reset`` (back to the defaults, then these changes) as the defaults."""
    changed: dict[str, Any] = {}
    for field in fields(rule, params):
        if field.name not in shown:
            continue
        key, _, part = field.name.partition(".")
        value = _stored(rule, field, shown[field.name])
        now = params[key][part] if part else params[key]
        if _same(value, now):
            continue
        if part:
            changed.setdefault(key, dict(rule.defaults[key] if reset else params[key]))[part] = value
        else:
            changed[key] = value
    try:
        validate_params(rule, changed)
    except ValueError as exc:
        # "large_refund.max_amount.USD takes a number above zero" names the stored key; the person
        # typed into "Refunds above (USD)".
        text = str(exc)
        for field in fields(rule, params):
            text = text.replace(f"{rule.slug}.{field.name} ", f"“{field.label}” ")
        raise ValueError(text) from None
    return changed


_YES, _NO = ("yes", "true", "on", "1"), ("no", "false", "off", "0")


def params_from_text(rule: Rule, params: dict[str, Any], typed: dict[str, str], *,
                     reset: bool = False) -> dict[str, Any]:
    """``params_from_form`` for thresholds typed as text by field name (the command line's
    ``--set max_amount.USD=500``): the same names and units as the page's form, so 500 is $500.00
    there too, and a share is typed in per cent. A name that is not a field, or a value that is
    not a number (a switch: yes or no), is refused with one sentence."""
    by_name = {f.name: f for f in fields(rule, params)}
    shown: dict[str, Any] = {}
    for name, text in typed.items():
        field = by_name.get(name)
        if field is None:
            raise ValueError(f"“{name}” is not a threshold of {rule.slug}; its thresholds are "
                             f"{', '.join(by_name) or 'none'}.")
        text = text.strip()
        if field.kind == "switch":
            if text.lower() not in _YES + _NO:
                raise ValueError(f"“{field.label}” ({name}) is yes or no, not “{text}”.")
            shown[name] = text.lower() in _YES
            continue
        try:
            number = Decimal(text)
        except ArithmeticError:
            number = None
        if number is None or not number.is_finite():
            raise ValueError(f"“{field.label}” ({name}) takes a number, not “{text}”.") from None
        shown[name] = number
    return params_from_form(rule, params, shown, reset=reset)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    return abs(float(a) - float(b)) < 1e-9
