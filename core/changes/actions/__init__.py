"""Every manual action, registered by name in ``ACTIONS`` (importing this package registers them)."""

from core.changes.actions import billing, lifecycle, local, tier  # noqa: F401  (registers)
from core.changes.actions.base import ACTIONS, Action, Ctx, Plan

__all__ = ["ACTIONS", "Action", "Ctx", "Plan"]
