"""Which task a pull request is for: closing keywords, then the branch convention."""

from __future__ import annotations

import pytest

from app.core.linking import branch_for, branch_issue, closing_references, linked_issue

REPO = "octo/repo"


@pytest.mark.parametrize(
    ("body", "head_ref", "expected"),
    [
        *(
            pytest.param(f"{keyword} #7", "feature", 7, id=f"keyword-{keyword}")
            for keyword in (
                "close",
                "closes",
                "closed",
                "fix",
                "fixes",
                "fixed",
                "resolve",
                "resolves",
                "resolved",
            )
        ),
        pytest.param("CLOSES #7", None, 7, id="upper-case"),
        pytest.param("Fixes: #7", None, 7, id="colon"),
        pytest.param("This PR\n\nResolves #7.", None, 7, id="later-paragraph-full-stop"),
        pytest.param("- closes #7", None, 7, id="in-a-list"),
        pytest.param("Closes octo/repo#7", None, 7, id="same-repo-reference"),
        pytest.param("Closes Octo/Repo#7", None, 7, id="same-repo-any-case"),
        pytest.param(
            "Closes https://github.com/octo/repo/issues/7", None, 7, id="same-repo-issue-url"
        ),
        pytest.param("Closes <https://github.com/octo/repo/issues/7>", None, 7, id="autolink"),
        pytest.param("Closes other/repo#7", None, None, id="other-repo-reference"),
        pytest.param(
            "Closes https://github.com/other/repo/issues/7", None, None, id="other-repo-url"
        ),
        pytest.param(
            "Closes https://example.com/octo/repo/issues/7", None, None, id="other-host-url"
        ),
        pytest.param("Closes other/repo#3, closes #7", None, 7, id="other-repo-then-ours"),
        pytest.param("`Closes #7`", None, None, id="inline-code"),
        pytest.param("```\nCloses #7\n```", None, None, id="fenced-code"),
        pytest.param("    Closes #7", None, None, id="indented-code"),
        pytest.param("<!-- Closes #7 -->", None, None, id="html-comment"),
        pytest.param("Prefixes #7", None, None, id="keyword-inside-a-word"),
        pytest.param("Closes#7", None, None, id="no-space"),
        pytest.param("Closes #7abc", None, None, id="not-a-number"),
        pytest.param("Closes #0", None, None, id="issue-zero"),
        pytest.param("Refs #7", None, None, id="not-a-closing-keyword"),
        pytest.param("Closes #7 and fixes #9", None, 7, id="several-the-first"),
        pytest.param("Fixes #9\n\nCloses #7", "nightshift/issue-7", 9, id="keyword-wins"),
        pytest.param("", "nightshift/issue-7", 7, id="branch-without-slug"),
        pytest.param(None, "nightshift/issue-7-add-login", 7, id="branch-with-slug"),
        pytest.param("See #3", "refs/heads/nightshift/issue-7-x", 7, id="full-ref"),
        pytest.param("", "nightshift/issue-07", None, id="branch-leading-zero"),
        pytest.param("", "nightshift/issue-7/other", None, id="branch-deeper"),
        pytest.param("", "feature/nightshift/issue-7", None, id="branch-prefix-elsewhere"),
        pytest.param("", "nightshift/issue-", None, id="branch-without-number"),
        pytest.param(None, None, None, id="nothing"),
    ],
)
def test_linked_issue(body: str | None, head_ref: str | None, expected: int | None) -> None:
    assert linked_issue(REPO, body, head_ref) == expected


def test_closing_references_in_order_once_each() -> None:
    body = "Closes #4, fixes #2\n\nAlso resolves octo/repo#4 and closes other/x#1"
    assert closing_references(REPO, body) == [4, 2]


def test_enterprise_server_host() -> None:
    body = "Closes https://ghe.example.com/octo/repo/issues/5"
    assert linked_issue(REPO, body, None) is None
    assert linked_issue(REPO, body, None, host="ghe.example.com") == 5


@pytest.mark.parametrize(
    ("number", "title", "expected"),
    [
        pytest.param(12, "Add login page", "nightshift/issue-12-add-login-page", id="words"),
        pytest.param(
            3, "Fix: the `Café` crash!", "nightshift/issue-3-fix-the-cafe-crash", id="ascii"
        ),
        pytest.param(4, "!!! ???", "nightshift/issue-4", id="no-words"),
        pytest.param(5, "日本語", "nightshift/issue-5", id="no-ascii-words"),
        pytest.param(
            6,
            "Support OAuth2 login with PKCE for the mobile and desktop clients",
            "nightshift/issue-6-support-oauth2-login-with-pkce-for-the",
            id="cut-between-words",
        ),
        pytest.param(7, "x" * 60, "nightshift/issue-7-" + "x" * 40, id="one-long-word"),
    ],
)
def test_branch_for(number: int, title: str, expected: str) -> None:
    branch = branch_for(number, title)
    assert branch == expected
    assert len(branch.removeprefix(f"nightshift/issue-{number}-")) <= 40
    assert branch_issue(branch) == number
