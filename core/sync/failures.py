"""What a failed event or object leaves in ``stripe_events.last_error``, the sync's errors and the logs.

A database error's text is SQLAlchemy's: the statement with its bound values (``[parameters:
('ann@example.com', ...)]``), and on PostgreSQL a ``DETAIL`` line naming the clashing value. Those
values are members' personal data, so only the driver's first line is kept (``IntegrityError:
UNIQUE constraint failed: members.email``): it still says which table and rule failed.
"""

from __future__ import annotations

from sqlalchemy.exc import StatementError

from core.log_privacy import first_line
from core.stripe_gateway import GatewayError

LIMIT = 2000


def failure_text(exc: BaseException) -> str:
    """One line for people and logs, without the values a statement carried."""
    if isinstance(exc, GatewayError):
        return exc.sentence
    if isinstance(exc, StatementError) and exc.orig is not None:
        return first_line(exc)[:LIMIT]
    return f"{type(exc).__name__}: {exc}"[:LIMIT]
