"""The four demo staff accounts (one per role) from ``demo.accounts``, created once."""

from __future__ import annotations

from sqlalchemy import Engine

from core import staff
from core.permissions import Actor
from demo.accounts import DEMO_ACCOUNTS


def create_demo_staff(engine: Engine, *, bcrypt_rounds: int = 12) -> list[str]:
    """Create the demo accounts that do not exist yet; returns the usernames created."""
    existing = {view.username for view, _failures in staff.accounts(engine)}
    created = []
    for username, name, roles, password in DEMO_ACCOUNTS:
        if username in existing:
            continue
        staff.add_account(engine, actor=Actor.system("demo"), username=username, name=name, email=f"{username}@memberdesk.example",
                          roles=roles, password=password, bcrypt_rounds=bcrypt_rounds)
        created.append(username)
    return created
