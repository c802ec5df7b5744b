"""The rules, one module per concern, combined once in a fixed order."""

from __future__ import annotations

from app.core.config import Config
from app.core.envelope import Envelope
from app.core.router import Decision, Router
from app.core.rules import intake
from app.core.state import RepoState

ROUTER = Router.combine(intake.router)


def decide(env: Envelope, state: RepoState, config: Config) -> Decision:
    """What Nightshift should do about one delivery. Pure: no I/O, no clock."""
    if state.paused:
        return Decision(handled=True, rules=("paused",))
    return ROUTER.decide(env, state, config)
