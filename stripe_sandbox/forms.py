"""Stripe's form encoding (``a[b][0][c]=x``, ``expand[]=y``) into nested dicts and lists, and typed reads.

Indices that are all digits become lists in index order; ``[]`` appends. An empty value is kept
as ``""`` (Stripe uses it to unset a field, e.g. ``pause_collection=``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

from stripe_sandbox.errors import invalid

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def parse(body: str) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        match = _KEY.match(key)
        if not match:
            raise invalid(f"Invalid parameter name: {key}", param=key)
        parts = [match.group(1)] + re.findall(r"\[([^\[\]]*)\]", match.group(2))
        node: Any = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                part = str(len(node))  # "[]": append
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise invalid(f"Invalid parameter: {key}", param=key)
    return _listify(root)


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        fixed = {k: _listify(v) for k, v in node.items()}
        if fixed and all(k.isdigit() for k in fixed):
            return [fixed[k] for k in sorted(fixed, key=int)]
        return fixed
    return node


def to_int(value: Any, param: str) -> int:
    if isinstance(value, bool):
        raise invalid(f"Invalid integer: {value}", param=param)
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        raise invalid(f"Invalid integer: {value}", param=param) from None


def to_bool(value: Any, param: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise invalid(f"Invalid boolean: {value}", param=param)


def as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return list(value.values())
    return [value]


def metadata_update(current: dict[str, str] | None, new: Any) -> dict[str, str]:
    """Stripe's metadata merge: keys set to "" are removed; ``metadata=""`` clears all."""
    if new == "":
        return {}
    if not isinstance(new, dict):
        raise invalid("Invalid metadata: must be a hash of keys to values.", param="metadata")
    out = dict(current or {})
    for k, v in new.items():
        if v == "":
            out.pop(k, None)
        else:
            out[k] = str(v)
    return out
