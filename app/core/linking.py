"""Which task a pull request is for: a closing keyword in its description, or its branch.

A pull request is linked to issue N of the same repository by

- a closing keyword in its description, as GitHub reads them (any case, an optional colon):
  `close`, `closes`, `closed`, `fix`, `fixes`, `fixed`, `resolve`, `resolves`, `resolved`,
  followed by `#N`, `owner/repo#N` or `https://github.com/owner/repo/issues/N`, where
  `owner/repo` must be the pull request's own repository (compared without case);
- else its head branch, named by the assignment's convention: `nightshift/issue-N`, with or
  without a `-slug` after the number.

The description is read with the markdown parser, so a keyword inside inline code, a code
block or an HTML comment (a pull-request template's hint, say) does not count.

References: https://docs.github.com/en/issues/tracking-your-work-with-issues/using-issues/linking-a-pull-request-to-an-issue
"""

from __future__ import annotations

import re
import unicodedata

from app.core.markdown import prose

BRANCH_PREFIX = "nightshift/issue-"
SLUG_MAX_CHARS = 40
GITHUB_HOST = "github.com"

_NUMBER = r"[1-9][0-9]{0,9}"  # no leading zero: `#007` is not `#7`; ten digits at most
_REPO = r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+"
_CLOSING = re.compile(
    r"(?<![\w/-])(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?):?[ \t]+"
    rf"(?:(?:(?P<repo>{_REPO}))?#(?P<number>{_NUMBER})"
    rf"|https?://(?P<host>[A-Za-z0-9.:-]+)/(?P<url_repo>{_REPO})/issues/(?P<url_number>{_NUMBER}))"
    r"(?!\w)",
    re.IGNORECASE,
)
_BRANCH = re.compile(rf"{re.escape(BRANCH_PREFIX)}(?P<number>{_NUMBER})(?:-[^/]+)?")
_WORD = re.compile(r"[a-z0-9]+")


def branch_for(number: int, title: str) -> str:
    """The branch an agent is asked to use for issue `number`: `nightshift/issue-N-slug`.

    The slug is the title's words in lowercase ASCII (accents dropped, anything else left
    out), joined by `-`, at most 40 characters, cut between words; no words, no slug.
    """
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    slug = ""
    for word in _WORD.findall(ascii_title.lower()):
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > SLUG_MAX_CHARS:
            slug = slug or word[:SLUG_MAX_CHARS]
            break
        slug = candidate
    return f"{BRANCH_PREFIX}{number}-{slug}" if slug else f"{BRANCH_PREFIX}{number}"


def branch_issue(head_ref: str | None) -> int | None:
    """The issue number a branch named `nightshift/issue-N[-slug]` is for."""
    ref = (head_ref or "").removeprefix("refs/heads/")
    match = _BRANCH.fullmatch(ref)
    return int(match["number"]) if match else None


def closing_references(repo: str, body: str | None, *, host: str = GITHUB_HOST) -> list[int]:
    """The issues of `repo` a description closes, in the order it names them, once each.

    References to other repositories, and keywords in code or HTML, are left out.
    """
    found: list[int] = []
    same_repo = repo.casefold()
    for text in prose(body):
        for match in _CLOSING.finditer(text):
            if match["number"] is not None:
                target = match["repo"]
                number = int(match["number"])
            else:
                if match["host"].casefold() != host.casefold():
                    continue
                target = match["url_repo"]
                number = int(match["url_number"])
            if target is not None and target.casefold() != same_repo:
                continue
            if number not in found:
                found.append(number)
    return found


def linked_issue(
    repo: str, body: str | None, head_ref: str | None, *, host: str = GITHUB_HOST
) -> int | None:
    """The task a pull request is for, or None.

    A closing keyword wins over the branch name; when the description closes several
    issues, the first it names is the task (the gates then hold the pull request to that
    one issue's scope and criteria).
    """
    closed = closing_references(repo, body, host=host)
    return closed[0] if closed else branch_issue(head_ref)
