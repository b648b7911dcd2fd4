"""Manual membership changes: the one service every form (and any future API) calls.

Use ``preview`` to show what a change will do, ``submit`` to make it, ``decide`` to approve or
reject a queued one, ``resume`` to finish one interrupted between Stripe and our database. Every
refusal is a ``ChangeRefused`` whose ``str()`` is the sentence to show. See ``service`` for the
guarantees.
"""

from core.changes.actions import ACTIONS
from core.changes.approvals import decide, resume, withdraw
from core.changes.errors import ChangeRefused, RepeatSuspected, StaleMember
from core.changes.limits import Limits, load_limits, save_limits
from core.changes.model import Actor, ChangeInput, Outcome, Preview
from core.changes.reasons import REASONS, label
from core.changes.service import derive_key, execute, preview, submit

__all__ = [
    "ACTIONS", "REASONS", "Actor", "ChangeInput", "ChangeRefused", "Limits", "Outcome", "Preview", "RepeatSuspected",
    "StaleMember",
    "decide", "derive_key", "execute", "label", "load_limits", "preview", "resume", "save_limits", "submit",
    "withdraw",
]
