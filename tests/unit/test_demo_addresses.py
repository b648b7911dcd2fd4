"""Demo members' e-mail addresses fold the accents of their names (Fernández -> fernandez), as a
person would type them, instead of dropping the letters (fernndez)."""

from __future__ import annotations

from datetime import UTC, datetime

from demo.simulate import simulate_member
from demo.world import World

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def test_addresses_fold_accents():
    world = World(seed=11, members=400, now=NOW)
    members = [s.member for s in (simulate_member(world, i) for i in range(400)) if s.member]
    accented = [m for m in members if any(ord(ch) > 127 for ch in m["name"])]
    assert accented, "the demo names include accented ones (Fernández, López, Müller)"
    for m in accented:
        local = m["email"].split("@")[0]
        assert local.isascii(), m
        first, last = (part.lower() for part in m["name"].split(" ", 1))
        folded = last.replace("á", "a").replace("ó", "o").replace("ü", "u").replace(" ", "")
        assert local.startswith(f"{first}.{folded}."), m
