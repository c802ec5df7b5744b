"""Routing deliveries to rules, and combining the rules' decisions.

Each concern (rules/intake.py, ...) exports a `router`; they are combined once, in a fixed
order (CPython's bedevere does the same). A rule that raises does not stop the others: its
failure is part of the decision, recorded in the audit log (Prow's hook isolates plugins
the same way).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from app.core.actions import Action
from app.core.config import Config
from app.core.envelope import Envelope
from app.core.state import RepoState

Rule = Callable[[Envelope, RepoState, Config], Sequence[Action]]


@dataclass(frozen=True)
class RuleFailure:
    rule: str
    error: str


@dataclass(frozen=True)
class Decision:
    """The outcome of routing one delivery: `handled` is false when no rule listens."""

    handled: bool
    actions: tuple[Action, ...] = ()
    rules: tuple[str, ...] = ()
    failures: tuple[RuleFailure, ...] = ()


@dataclass
class Router:
    """Rules keyed by event name, optionally narrowed to one action."""

    _rules: dict[tuple[str, str | None], list[Rule]] = field(default_factory=dict)

    def on(self, event: str, action: str | None = None) -> Callable[[Rule], Rule]:
        def register(rule: Rule) -> Rule:
            self._rules.setdefault((event, action), []).append(rule)
            return rule

        return register

    def rules_for(self, event: str, action: str | None) -> list[Rule]:
        found = list(self._rules.get((event, None), []))
        if action is not None:
            found += self._rules.get((event, action), [])
        return found

    def events(self) -> set[str]:
        return {event for event, _ in self._rules}

    @classmethod
    def combine(cls, *routers: Router) -> Router:
        combined = cls()
        for router in routers:
            for key, rules in router._rules.items():
                combined._rules.setdefault(key, []).extend(rules)
        return combined

    def decide(self, env: Envelope, state: RepoState, config: Config) -> Decision:
        rules = self.rules_for(env.event, env.action)
        if not rules:
            return Decision(handled=False)
        actions: list[Action] = []
        failures: list[RuleFailure] = []
        for rule in rules:
            try:
                actions.extend(rule(env, state, config))
            except Exception as exc:  # isolate: one rule's bug must not stop the others
                failures.append(RuleFailure(_name(rule), f"{type(exc).__name__}: {exc}"))
        return Decision(
            handled=True,
            actions=tuple(actions),
            rules=tuple(_name(rule) for rule in rules),
            failures=tuple(failures),
        )


def _name(rule: Rule) -> str:
    return f"{rule.__module__.rsplit('.', 1)[-1]}.{getattr(rule, '__name__', repr(rule))}"
