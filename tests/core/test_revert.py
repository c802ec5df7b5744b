"""What a revert of a red merge says (app.core.revert), table-driven."""

from __future__ import annotations

import pytest

from app.core import revert
from app.core.actions import RevertMerge

SHA = "5e1ec7ed5e1ec7ed5e1ec7ed5e1ec7ed5e1ec7ed"


def action(
    checks: tuple[str, ...] = ("ci/test",),
    branch: str = "main",
    mentions: tuple[str, ...] = (),
) -> RevertMerge:
    return RevertMerge(
        repo="octo/repo",
        number=7,
        task=5,
        merge_sha=SHA,
        branch=branch,
        checks=checks,
        key=f"revert:octo/repo@{SHA}",
        mentions=mentions,
        reason="red",
    )


def test_one_branch_per_merged_pull_request() -> None:
    assert revert.branch_for(7) == "nightshift/revert-7"


@pytest.mark.parametrize(
    ("made", "title", "expected"),
    [
        pytest.param(
            action(),
            "Friendlier greeting",
            f'Revert "Friendlier greeting"\n\nThis reverts #7 ({SHA}) because ci/test failed '
            "on main.\n",
            id="one-check",
        ),
        pytest.param(
            action(("ci/test", "lint  (3.12)")),
            "A  title\nover lines",
            f'Revert "A title over lines"\n\nThis reverts #7 ({SHA}) because ci/test, '
            "lint (3.12) failed on main.\n",
            id="whitespace-flattened",
        ),
        pytest.param(
            action(()),
            "x" * 300,
            f'Revert "{"x" * revert.TITLE_CHARS}"\n\nThis reverts #7 ({SHA}) because CI failed '
            "on main.\n",
            id="long-title-cut-no-check-named",
        ),
    ],
)
def test_commit_message(made: RevertMerge, title: str, expected: str) -> None:
    assert revert.commit_message(made, title) == expected


def test_pull_title_and_body() -> None:
    assert revert.pull_title(action(), "Friendlier\ngreeting") == "Revert #7: Friendlier greeting"
    body = revert.PULL_BODY.format(
        pull=7, sha=SHA[:7], task=5, checks="`ci/test`", branch="`main`", closes=""
    )
    assert revert.pull_body(action(), None) == body
    assert revert.pull_body(action(), 12) == body + revert.CLOSES.format(issue=12)


@pytest.mark.parametrize(
    ("paths", "listed"),
    [
        pytest.param(("a.txt",), "`a.txt`", id="one"),
        pytest.param(
            tuple(f"f{n}" for n in range(12)),
            ", ".join(f"`f{n}`" for n in range(10)) + " and 2 more",
            id="more-than-listed",
        ),
    ],
)
def test_conflicts_name_the_paths(paths: tuple[str, ...], listed: str) -> None:
    expected = revert.CONFLICTS.format(sha=SHA[:7], branch="`main`", paths=listed)
    assert revert.conflicts(action(), paths) == expected


@pytest.mark.parametrize(
    ("made", "why", "expected"),
    [
        pytest.param(
            action(mentions=("lead", "ops")),
            revert.not_merged(action()),
            revert.NOT_REVERTED.format(
                mentions="@lead @ops ",
                pull=7,
                why=revert.NOT_MERGED.format(pull=7, sha=SHA[:7]),
                branch="`main`",
            ),
            id="not-merged-maintainers-told",
        ),
        pytest.param(
            action(branch="we`ird"),
            revert.nothing_to_revert(action(branch="we`ird")),
            revert.NOT_REVERTED.format(
                mentions="",
                pull=7,
                why=revert.NOTHING_TO_REVERT.format(branch="``we`ird``"),
                branch="``we`ird``",
            ),
            id="branch-as-code-span",
        ),
        pytest.param(
            action(),
            revert.not_on_branch(action()),
            revert.NOT_REVERTED.format(
                mentions="",
                pull=7,
                why=revert.NOT_ON_BRANCH.format(sha=SHA[:7], branch="`main`"),
                branch="`main`",
            ),
            id="not-on-branch",
        ),
    ],
)
def test_not_reverted(made: RevertMerge, why: str, expected: str) -> None:
    assert revert.not_reverted(made, why) == expected
