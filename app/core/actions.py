"""Actions: what the core decided should happen, as frozen data.

Only the executor (app.effects.executor) turns an action into a request. Every action says
why it exists (`reason`), which is what the audit log records next to it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Action(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    repo: str
    reason: str

    def describe(self) -> str:
        raise NotImplementedError


class AddLabels(_Action):
    kind: Literal["add_labels"] = "add_labels"
    number: int
    labels: tuple[str, ...]

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:+" + ",+".join(self.labels)


class RemoveLabel(_Action):
    kind: Literal["remove_label"] = "remove_label"
    number: int
    label: str

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:-{self.label}"


class Comment(_Action):
    """A comment on an issue or pull request.

    `key` identifies the comment across retries: the executor writes it as a hidden marker
    so a step re-run after a crash finds the comment it already posted instead of posting
    it twice.
    """

    kind: Literal["comment"] = "comment"
    number: int
    body: str
    key: str

    def describe(self) -> str:
        first = self.body.strip().splitlines()[0] if self.body.strip() else ""
        return f"{self.repo}#{self.number}:comment:{first}"


class RememberConfigError(_Action):
    """Record in the store that the maintainers were told about this configuration problem."""

    kind: Literal["remember_config_error"] = "remember_config_error"
    problem: str

    def describe(self) -> str:
        return f"{self.repo}:config-error-reported"


class ForgetConfigError(_Action):
    """The configuration is valid again: clear the recorded problem."""

    kind: Literal["forget_config_error"] = "forget_config_error"

    def describe(self) -> str:
        return f"{self.repo}:config-error-cleared"


class Transition(_Action):
    """Move a task from one state to another (app/core/tasks.py has the table).

    Carried out as a compare-and-set on `from_state`: a step re-run after a crash finds the
    move made and does not make it twice. Listed before the GitHub actions it justifies.
    """

    kind: Literal["transition"] = "transition"
    number: int
    event: str
    from_state: str | None
    to_state: str
    previous: str | None = None  # the detours' return stack, comma-separated

    def describe(self) -> str:
        return f"{self.repo}#{self.number}:{self.from_state or 'new'}->{self.to_state}"


GitHubAction = AddLabels | RemoveLabel | Comment
StoreAction = RememberConfigError | ForgetConfigError | Transition
Action = Annotated[GitHubAction | StoreAction, Field(discriminator="kind")]
ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)
ACTIONS_ADAPTER: TypeAdapter[list[Action]] = TypeAdapter(list[Action])
