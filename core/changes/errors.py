"""What a refused change looks like: one sentence a support agent can act on.

``ChangeRefused`` is raised before anything is written (bad input, no permission, nonsense for
the member's state, Stripe declining). ``StaleMember`` is a refusal because the member changed
after the form was loaded; it carries the fresh state so the form can show it.
"""

from __future__ import annotations

from typing import Any

LIMIT = "limit"  # the code of a refusal by the admin-set limits: audited, like a refusal by role


class ChangeRefused(Exception):
    """The change was not made; ``str(error)`` is the sentence to show."""

    def __init__(self, sentence: str, *, code: str = "refused"):
        super().__init__(sentence)
        self.sentence = sentence
        self.code = code


class StaleMember(ChangeRefused):
    """The member changed since the form was loaded (another agent, the sync)."""

    def __init__(self, fresh_state: dict[str, Any], fresh_version: int):
        super().__init__(
            "This member changed after you opened the form (another agent or the Stripe sync); "
            "nothing was changed. Check the current state below and submit again if it still "
            "makes sense.",
            code="stale",
        )
        self.fresh_state = fresh_state
        self.fresh_version = fresh_version


class RepeatSuspected(ChangeRefused):
    """A change like one made on the same object a few minutes ago: it goes ahead only when the
    form sends back ``repeat_of`` = the earlier request's id, i.e. the agent has read which one."""

    def __init__(self, sentence: str, earlier: dict[str, Any]):
        super().__init__(sentence, code="repeat")
        self.earlier = earlier
