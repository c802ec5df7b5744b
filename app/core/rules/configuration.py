"""An invalid `.github/nightshift.yml` stops all automatic action in its repository.

The maintainer hears about it once, on the issue that tried to trigger Nightshift, with the
file, the key and the problem; nothing else happens until the file is fixed.
"""

from __future__ import annotations

from app.core.actions import Action, Comment, ForgetConfigError, RememberConfigError
from app.core.config import Config
from app.core.envelope import Envelope, IssueView, ViewError, view
from app.core.state import RepoState

INVALID_CONFIG_COMMENT = (
    "Nightshift can't work in this repository until its configuration is fixed:\n\n"
    "> {problem}\n\n"
    "Nothing else will happen here until then. "
    "`nightshift config check .github/nightshift.yml` checks the file locally."
)


def on_invalid_config(env: Envelope, state: RepoState, config: Config) -> list[Action]:
    """Tell the maintainer once, on a triggering issue; otherwise do nothing."""
    assert state.config_error is not None
    if env.repository is None or state.reported_config_error == state.config_error:
        return []
    if env.event != "issues" or env.action not in ("labeled", "opened"):
        return []
    try:
        issue = view(IssueView, env.payload, "issue")
    except ViewError:
        return []
    label = env.payload.get("label")
    labelled = isinstance(label, dict) and label.get("name") == config.trigger_label
    opened_with = env.action == "opened" and config.trigger_label in issue.label_names
    if not (labelled or opened_with):
        return []
    return [
        Comment(
            repo=env.repository,
            number=issue.number,
            body=INVALID_CONFIG_COMMENT.format(problem=state.config_error),
            key=f"config-error:{env.delivery_id}",
            reason="configuration: the file is invalid",
        ),
        RememberConfigError(
            repo=env.repository,
            problem=state.config_error,
            reason="configuration: tell the maintainers once",
        ),
    ]


def on_valid_config(env: Envelope, state: RepoState) -> list[Action]:
    """The file was fixed: forget the old problem, so a new one is reported again."""
    if env.repository is None or state.reported_config_error is None:
        return []
    return [ForgetConfigError(repo=env.repository, reason="configuration: the file is valid")]
