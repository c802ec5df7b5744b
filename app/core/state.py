"""What the core knows about a repository when it decides: read by the effects layer."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.tasks import Task


@dataclass(frozen=True)
class RepoState:
    """The state the rules may consult; gathered before deciding, never fetched by a rule."""

    paused: bool = False
    # what is wrong with .github/nightshift.yml now ("file: key: problem"), if anything
    config_error: str | None = None
    # the problem a comment was already posted about, so it is posted once
    reported_config_error: str | None = None
    # the sender's permission on the repository (admin, maintain, write, triage, read, none),
    # looked up through the API when the delivery carries a command, else None
    sender_permission: str | None = None
    # the task of the issue the delivery is about, if there is one
    task: Task | None = None


EMPTY_STATE = RepoState()
