"""What a revert of a red merge says: its branch, commit, pull request, and why it was not made.

Pure texts for app/effects/revert.py and the executor, which know the merged pull
request's title and the revert's outcome only when they carry it out.
"""

from __future__ import annotations

from collections.abc import Sequence

from app.core.actions import RevertMerge
from app.core.gates import code

REVERT_BRANCH = "nightshift/revert-{pull}"
COMMIT_MESSAGE = (
    'Revert "{title}"\n\nThis reverts #{pull} ({sha}) because {checks} failed on {branch}.\n'
)
PULL_TITLE = "Revert #{pull}: {title}"
PULL_BODY = (
    "Reverts #{pull} (merged as {sha}, task #{task}): {checks} failed on {branch} after it "
    "was merged.\n\nNightshift opened this revert and does not merge it: a human decides."
    "{closes}"
)
CLOSES = "\n\nCloses #{issue}."
NOT_REVERTED = (
    "{mentions}Nightshift did not revert #{pull}: {why}. A human must revert #{pull} or fix "
    "{branch}."
)
CONFLICTS = "reverting {sha} onto the head of {branch} conflicts in {paths}"
NOT_MERGED = "GitHub does not say #{pull} was merged as {sha}"
NOT_ON_BRANCH = "{sha} is not in the history of {branch}"
NOTHING_TO_REVERT = "{branch} no longer has its change (was it reverted already?)"
TITLE_CHARS = 200
NAME_CHARS = 100
LISTED_PATHS = 10


def branch_for(pull: int) -> str:
    """The branch the revert of pull request `pull` is created on: one per merged PR."""
    return REVERT_BRANCH.format(pull=pull)


def _checks(action: RevertMerge, *, markdown: bool) -> str:
    names = action.checks or ("CI",)
    if markdown:
        return ", ".join(code(name, NAME_CHARS) for name in names)
    return ", ".join(" ".join(name.split())[:NAME_CHARS] for name in names)


def commit_message(action: RevertMerge, title: str) -> str:
    return COMMIT_MESSAGE.format(
        title=" ".join(title.split())[:TITLE_CHARS],
        pull=action.number,
        sha=action.merge_sha,
        checks=_checks(action, markdown=False),
        branch=action.branch,
    )


def pull_title(action: RevertMerge, title: str) -> str:
    return PULL_TITLE.format(pull=action.number, title=" ".join(title.split())[:TITLE_CHARS])


def pull_body(action: RevertMerge, issue: int | None) -> str:
    return PULL_BODY.format(
        pull=action.number,
        sha=action.merge_sha[:7],
        task=action.task,
        checks=_checks(action, markdown=True),
        branch=code(action.branch),
        closes=CLOSES.format(issue=issue) if issue is not None else "",
    )


def conflicts(action: RevertMerge, paths: Sequence[str]) -> str:
    """Why not: the revert conflicts with what `branch` has now."""
    listed = ", ".join(code(path) for path in paths[:LISTED_PATHS])
    more = len(paths) - LISTED_PATHS
    return CONFLICTS.format(
        sha=action.merge_sha[:7],
        branch=code(action.branch),
        paths=listed + (f" and {more} more" if more > 0 else ""),
    )


def not_reverted(action: RevertMerge, why: str) -> str:
    """The comment saying the revert was not made, and that a human must act."""
    mentions = "".join(f"@{login} " for login in action.mentions)
    return NOT_REVERTED.format(
        mentions=mentions, pull=action.number, why=why, branch=code(action.branch)
    )


def not_merged(action: RevertMerge) -> str:
    return NOT_MERGED.format(pull=action.number, sha=action.merge_sha[:7])


def not_on_branch(action: RevertMerge) -> str:
    return NOT_ON_BRANCH.format(sha=action.merge_sha[:7], branch=code(action.branch))


def nothing_to_revert(action: RevertMerge) -> str:
    return NOTHING_TO_REVERT.format(branch=code(action.branch))
