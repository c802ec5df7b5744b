"""Reverting a merge whose checks went red: computed on the mirror, created through GitHub.

The revert of the merge commit is computed with pygit2 onto the default branch's current
head, in a worktree of the review's bare mirror (app.effects.git, through its public API),
then created on GitHub with the Git Data API: blobs for content GitHub may not have, a tree
on the head's tree, a commit, a branch `nightshift/revert-N`, and a pull request into the
default branch. Never `git push`: nothing reaches the default branch until a human merges
the pull request, and no token is ever handed to git for writing.

Idempotent, so a step that runs again after a crash or a lost answer makes nothing twice:
one merged pull request has one revert branch; a pull request already opened from it is
reused (open or closed: a human may have closed it on purpose), and so is the branch when an
earlier attempt created it and died before the pull request.

https://docs.github.com/en/rest/git/blobs#create-a-blob
https://docs.github.com/en/rest/git/trees#create-a-tree
https://docs.github.com/en/rest/git/commits#create-a-commit
https://docs.github.com/en/rest/git/refs#create-a-reference
https://docs.github.com/en/rest/pulls/pulls#create-a-pull-request
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

import pygit2
from pygit2.enums import FileMode, RepositoryOpenFlag

from app.core import revert as texts
from app.core.actions import RevertMerge
from app.effects import facts
from app.effects.git import Mirrors
from app.effects.github import GitHubError, GitHubPort, GitHubRequest

_ZERO = "0" * 40


@dataclass(frozen=True)
class Change:
    """One path the revert changes: its new blob (or submodule commit), or None: deleted."""

    path: str
    mode: int
    sha: str | None
    data: bytes | None = None  # content GitHub may not have yet: uploaded as a blob first

    def entry(self, sha: str | None) -> dict[str, Any]:
        """The entry of POST /git/trees for it; `sha` null deletes the path."""
        kind = "commit" if self.mode == FileMode.COMMIT else "blob"
        return {"path": self.path, "mode": f"{self.mode:06o}", "type": kind, "sha": sha}


@dataclass(frozen=True)
class Plan:
    """The revert, computed: a commit on `head` whose tree is `head_tree` with `changes`."""

    head: str
    head_tree: str
    changes: tuple[Change, ...]


@dataclass(frozen=True)
class Refusal:
    """Why there is nothing to create: the revert conflicts, the merge commit is not in the
    branch's history, or the branch no longer has its change."""

    reason: Literal["conflicts", "not-on-branch", "nothing-to-revert"]
    paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reverted:
    number: int  # the revert pull request
    created: bool  # False: an earlier attempt (or a human) opened it


@dataclass(frozen=True)
class NotReverted:
    why: str  # for the comment saying a human must revert (app.core.revert texts)


RevertOutcome = Reverted | NotReverted


def plan_revert(git: pygit2.Repository, head_sha: str, merge_sha: str) -> Plan | Refusal:
    """The revert of `merge_sha` onto `head_sha`, as the changes to the head's tree.

    A merge commit is reverted against its first parent (mainline 1: what the branch had),
    a squash or rebase commit against its only parent. A path changed since the merge is
    merged three-way, as `git revert` does; a conflict is never resolved.
    """
    head = git[head_sha].peel(pygit2.Commit)
    found = git.get(merge_sha)
    merge = found.peel(pygit2.Commit) if found is not None else None
    if not isinstance(merge, pygit2.Commit) or not (
        head.id == merge.id or git.descendant_of(head.id, merge.id)
    ):
        return Refusal("not-on-branch")
    if not merge.parents:
        return Refusal("nothing-to-revert")
    mainline = 1 if len(merge.parents) > 1 else 0
    index = git.revert_commit(merge, head, mainline)
    if index.conflicts is not None:
        paths = {entry.path for trio in index.conflicts for entry in trio if entry is not None}
        return Refusal("conflicts", tuple(sorted(paths)))
    # what GitHub surely has: every blob of the parent reverted to (it is on GitHub)
    before = merge.parents[0].tree
    changes: list[Change] = []
    for delta in index.diff_to_tree(head.tree).deltas:  # old: the head, new: the revert
        new = delta.new_file
        if str(new.id) == _ZERO:
            changes.append(Change(delta.old_file.path, int(delta.old_file.mode), None))
            continue
        known = new.mode == FileMode.COMMIT or _blob_at(before, new.path) == str(new.id)
        data = None if known else git[new.id].peel(pygit2.Blob).data
        changes.append(Change(new.path, int(new.mode), str(new.id), data))
    if not changes:
        return Refusal("nothing-to-revert")
    return Plan(str(head.id), str(head.tree.id), tuple(sorted(changes, key=lambda c: c.path)))


def _blob_at(tree: pygit2.Tree, path: str) -> str | None:
    try:
        return str(tree[path].id)
    except KeyError:
        return None


class Reverts:
    """The executor's revert port: `revert` makes the revert pull request, or says why not."""

    def __init__(self, github: GitHubPort, mirrors: Mirrors) -> None:
        self.github = github
        self.mirrors = mirrors

    def revert(
        self, installation_id: int, action: RevertMerge, closes: int | None
    ) -> RevertOutcome:
        """Open (or find) the revert pull request of `action`; `closes`: the urgent issue
        it closes when merged."""
        repo = action.repo
        branch = texts.branch_for(action.number)
        existing = self._pull_from(installation_id, repo, branch)
        if existing is not None:
            return Reverted(existing, created=False)
        merged = facts.get(self.github, installation_id, f"/repos/{repo}/pulls/{action.number}")
        if not merged.get("merged") or merged.get("merge_commit_sha") != action.merge_sha:
            return NotReverted(texts.not_merged(action))
        title = str(merged.get("title") or "")
        if not self._branch_exists(installation_id, repo, branch):
            planned = self._plan(installation_id, action)
            if isinstance(planned, Refusal):
                return NotReverted(_why(action, planned))
            commit = self._commit(installation_id, action, planned, title)
            self._create_branch(installation_id, repo, branch, commit)
        return self._open_pull(installation_id, action, branch, title, closes)

    # git -------------------------------------------------------------------------------------

    def _plan(self, installation_id: int, action: RevertMerge) -> Plan | Refusal:
        token = facts.contents_token(self.github, action.repo, installation_id)
        self.mirrors.fetch(action.repo, token, branches=[action.branch])
        head = f"refs/heads/{action.branch}"
        # the worktree is only the git port's public way to a handle on the mirror's objects;
        # nothing is written to the mirror but the blobs of paths merged three-way
        with self.mirrors.worktree(action.repo, head, label="revert") as tree:
            git = pygit2.Repository(str(tree), RepositoryOpenFlag.NO_SEARCH)
            try:
                return plan_revert(git, str(git.head.target), action.merge_sha)
            finally:
                git.free()

    # GitHub ----------------------------------------------------------------------------------

    def _send(self, installation_id: int, request: GitHubRequest) -> dict[str, Any]:
        data = self.github.send(installation_id, request).data
        return data if isinstance(data, dict) else {}

    def _commit(self, installation_id: int, action: RevertMerge, plan: Plan, title: str) -> str:
        repo = action.repo
        entries = []
        for change in plan.changes:
            sha = change.sha
            if change.data is not None:
                blob = self._send(
                    installation_id,
                    GitHubRequest(
                        "POST",
                        f"/repos/{repo}/git/blobs",
                        {"content": base64.b64encode(change.data).decode(), "encoding": "base64"},
                    ),
                )
                sha = str(blob.get("sha") or sha)
            entries.append(change.entry(sha))
        tree = self._send(
            installation_id,
            GitHubRequest(
                "POST", f"/repos/{repo}/git/trees", {"base_tree": plan.head_tree, "tree": entries}
            ),
        )
        commit = self._send(
            installation_id,
            GitHubRequest(
                "POST",
                f"/repos/{repo}/git/commits",
                {
                    "message": texts.commit_message(action, title),
                    "tree": str(tree["sha"]),
                    "parents": [plan.head],
                },
            ),
        )
        return str(commit["sha"])

    def _create_branch(self, installation_id: int, repo: str, branch: str, commit: str) -> None:
        request = GitHubRequest(
            "POST", f"/repos/{repo}/git/refs", {"ref": f"refs/heads/{branch}", "sha": commit}
        )
        try:
            self.github.send(installation_id, request)
        except GitHubError as exc:
            # 422 "Reference already exists": an earlier attempt created it and its answer
            # was lost; that one stands
            if exc.status != 422 or not self._branch_exists(installation_id, repo, branch):
                raise

    def _branch_exists(self, installation_id: int, repo: str, branch: str) -> bool:
        request = GitHubRequest("GET", f"/repos/{repo}/git/ref/heads/{branch}")
        try:
            self.github.send(installation_id, request)
        except GitHubError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _pull_from(self, installation_id: int, repo: str, branch: str) -> int | None:
        """The newest pull request (open or closed) from the revert branch, if any."""
        owner = repo.partition("/")[0]
        found = facts.get(
            self.github,
            installation_id,
            f"/repos/{repo}/pulls",
            head=f"{owner}:{branch}",
            state="all",
            per_page=100,
        )
        numbers = [
            pull["number"]
            for pull in (found if isinstance(found, list) else [])
            if isinstance(pull, dict) and isinstance(pull.get("number"), int)
        ]
        return max(numbers, default=None)

    def _open_pull(
        self,
        installation_id: int,
        action: RevertMerge,
        branch: str,
        title: str,
        closes: int | None,
    ) -> Reverted:
        request = GitHubRequest(
            "POST",
            f"/repos/{action.repo}/pulls",
            {
                "title": texts.pull_title(action, title),
                "head": branch,
                "base": action.branch,
                "body": texts.pull_body(action, closes),
            },
        )
        try:
            data = self._send(installation_id, request)
        except GitHubError as exc:
            # 422 "A pull request already exists": opened by an earlier attempt whose answer
            # was lost (GitHub puts that text in `errors`, not in `message`): find it
            existing = (
                self._pull_from(installation_id, action.repo, branch) if exc.status == 422 else None
            )
            if existing is None:
                raise
            return Reverted(existing, created=False)
        return Reverted(int(data["number"]), created=True)


def _why(action: RevertMerge, refusal: Refusal) -> str:
    if refusal.reason == "conflicts":
        return texts.conflicts(action, refusal.paths)
    if refusal.reason == "not-on-branch":
        return texts.not_on_branch(action)
    return texts.nothing_to_revert(action)
