"""The four demo staff accounts (one per role) from ``demo.accounts``, created once."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core import staff
from core.permissions import Actor
from demo.accounts import DEMO_ACCOUNTS


def create_demo_staff(session: Session, *, bcrypt_rounds: int = 12) -> list[str]:
    """Create the demo accounts that do not exist yet; returns the usernames created."""
    created = []
    for username, name, roles, password in DEMO_ACCOUNTS:
        if staff.get(session, username) is not None:
            continue
        staff.create(session, actor=Actor.system("demo"), username=username, name=name, email=f"{username}@memberdesk.example",
                     roles=roles, password=password, bcrypt_rounds=bcrypt_rounds)
        created.append(username)
    return created
