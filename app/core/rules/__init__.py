"""The rules, one module per concern, combined once in a fixed order."""

from __future__ import annotations

from app.core.cards import with_cards
from app.core.config import Config
from app.core.envelope import Envelope
from app.core.router import Decision, Router
from app.core.rules import commands, configuration, escalation, intake, review
from app.core.state import RepoState

ROUTER = Router.combine(intake.router, commands.router, review.router, escalation.router)


def decide(env: Envelope, state: RepoState, config: Config) -> Decision:
    """What Nightshift should do about one delivery. Pure: no I/O, no clock."""
    if state.paused and not commands.resumes_repository(env):
        return Decision(handled=True, rules=("paused",))
    if state.config_error is not None:
        actions = configuration.on_invalid_config(env, state, config)
        return Decision(handled=True, actions=tuple(actions), rules=("invalid-config",))
    decision = ROUTER.decide(env, state, config)
    decision = Decision(
        handled=decision.handled,
        actions=tuple(with_cards(decision.actions, config)),
        rules=decision.rules,
        failures=decision.failures,
    )
    cleared = configuration.on_valid_config(env, state)
    if not cleared:
        return decision
    return Decision(
        handled=True,
        actions=(*cleared, *decision.actions),
        rules=("configuration", *decision.rules),
        failures=decision.failures,
    )
