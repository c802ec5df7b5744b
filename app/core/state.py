"""What the core knows about a repository when it decides: read by the effects layer."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RepoState:
    """The state the rules may consult; gathered before deciding, never fetched by a rule."""

    paused: bool = False


EMPTY_STATE = RepoState()
