"""Reverting a red merge: the revert computed on real git repositories, created on the shared
fake GitHub through the Git Data API, and never made twice."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pygit2
import pytest

from app.core import revert as texts
from app.core.actions import RevertMerge
from app.effects.git import Mirrors
from app.effects.github import GitHubError
from app.effects.revert import (
    Change,
    NotReverted,
    Plan,
    Refusal,
    Reverted,
    Reverts,
    plan_revert,
)
from tests.effects.gitrepos import commit
from tests.fakes.github import FakeGitHub
from tests.helpers import app_client

REPO = "octo/repo"
BASE = {
    "README.md": b"# repo\n",
    "src/app.py": b"one\ntwo\nthree\nfour\nfive\nsix\nseven\n",
    "src/old.py": b"old\n",
}
CHANGE = {  # what the merged pull request did: edit, delete, add
    "README.md": b"# repo\n",
    "src/app.py": b"ONE\ntwo\nthree\nfour\nfive\nsix\nseven\n",
    "src/new.py": b"new\n",
}


def blob_id(data: bytes) -> str:
    return str(pygit2.hash(data))


@pytest.fixture
def origin(tmp_path: Path) -> pygit2.Repository:
    return pygit2.init_repository(str(tmp_path / "origin.git"), bare=True)


# -- the revert, computed ------------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    base: str
    merge: str
    head: str


def history(
    origin: pygit2.Repository, after: Mapping[str, bytes] | None, *, merge_commit: bool
) -> History:
    """base -> the merge of CHANGE (a merge commit or a squash) -> `after` (if any) on main."""
    base = commit(origin, BASE, ref="refs/heads/main")
    if merge_commit:
        side = commit(origin, CHANGE, parents=(base,), message="the pull request")
        merge = commit(origin, CHANGE, parents=(base, side), message="Merge #7")
    else:
        merge = commit(origin, CHANGE, parents=(base,), message="Change (#7)")
    head = commit(origin, after, parents=(merge,), message="later") if after else merge
    origin.references.create("refs/heads/main", pygit2.Oid(hex=head), force=True)
    return History(base, merge, head)


def tree_of(origin: pygit2.Repository, sha: str) -> str:
    return str(origin[sha].peel(pygit2.Commit).tree.id)


@pytest.mark.parametrize("merge_commit", [True, False], ids=["merge-commit", "squash"])
def test_the_revert_of_the_head_restores_what_the_parent_had(
    origin: pygit2.Repository, merge_commit: bool
) -> None:
    made = history(origin, None, merge_commit=merge_commit)
    assert plan_revert(origin, made.head, made.merge) == Plan(
        made.head,
        tree_of(origin, made.head),
        (
            # all three are blobs of the parent: GitHub has them, nothing to upload
            Change("src/app.py", 0o100644, blob_id(BASE["src/app.py"])),
            Change("src/new.py", 0o100644, None),
            Change("src/old.py", 0o100644, blob_id(BASE["src/old.py"])),
        ),
    )


def test_a_path_changed_since_is_merged_three_way_and_its_new_content_uploaded(
    origin: pygit2.Repository,
) -> None:
    later = {**CHANGE, "src/app.py": b"ONE\ntwo\nthree\nfour\nfive\nsix\nSEVEN\n"}
    made = history(origin, {**later, "docs/later.md": b"kept\n"}, merge_commit=True)
    merged = b"one\ntwo\nthree\nfour\nfive\nsix\nSEVEN\n"
    assert plan_revert(origin, made.head, made.merge) == Plan(
        made.head,
        tree_of(origin, made.head),
        (
            Change("src/app.py", 0o100644, blob_id(merged), merged),
            Change("src/new.py", 0o100644, None),
            Change("src/old.py", 0o100644, blob_id(BASE["src/old.py"])),
        ),
    )


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        pytest.param(
            {**CHANGE, "src/app.py": b"Won\ntwo\nthree\nfour\nfive\nsix\nseven\n"},
            Refusal("conflicts", ("src/app.py",)),
            id="the-same-lines-changed-since",
        ),
        pytest.param(
            BASE,  # someone reverted it by hand already
            Refusal("nothing-to-revert"),
            id="already-reverted",
        ),
    ],
)
def test_what_cannot_be_reverted(
    origin: pygit2.Repository, after: Mapping[str, bytes], expected: Refusal
) -> None:
    made = history(origin, after, merge_commit=False)
    assert plan_revert(origin, made.head, made.merge) == expected


def test_a_commit_outside_the_branch_is_not_reverted(origin: pygit2.Repository) -> None:
    made = history(origin, None, merge_commit=False)
    elsewhere = commit(origin, {**BASE, "x": b"x\n"}, parents=(made.base,))
    assert plan_revert(origin, made.head, elsewhere) == Refusal("not-on-branch")
    assert plan_revert(origin, made.head, "f" * 40) == Refusal("not-on-branch")


def test_tree_entries_delete_with_a_null_sha() -> None:
    assert Change("a", 0o100755, "1" * 40).entry("2" * 40) == {
        "path": "a",
        "mode": "100755",
        "type": "blob",
        "sha": "2" * 40,
    }
    assert Change("m", 0o160000, None).entry(None) == {
        "path": "m",
        "mode": "160000",
        "type": "commit",
        "sha": None,
    }


# -- the revert, created on GitHub ---------------------------------------------------------------


@dataclass
class Setup:
    fake: FakeGitHub
    reverts: Reverts
    made: History
    action: RevertMerge


@pytest.fixture
def setup(fake_github: FakeGitHub, origin: pygit2.Repository, tmp_path: Path) -> Setup:
    later = {**CHANGE, "src/app.py": b"ONE\ntwo\nthree\nfour\nfive\nsix\nSEVEN\n"}
    made = history(origin, later, merge_commit=False)
    fake_github.pull(
        REPO,
        7,
        title="Shout the first line",
        state="closed",
        merged=True,
        merge_commit_sha=made.merge,
    )
    mirrors = Mirrors(tmp_path / "cache", clone_url=lambda repo: origin.path)
    action = RevertMerge(
        repo=REPO,
        number=7,
        task=5,
        merge_sha=made.merge,
        branch="main",
        checks=("ci/test",),
        key=f"revert:{REPO}@{made.merge}",
        reason="red",
    )
    return Setup(fake_github, Reverts(app_client(fake_github), mirrors), made, action)


def posts(fake: FakeGitHub) -> list[str]:
    return [r.path for r in fake.requests if r.method == "POST" and "/access_tokens" not in r.path]


def test_a_revert_is_blobs_a_tree_a_commit_a_branch_and_a_pull_request(
    setup: Setup, origin: pygit2.Repository
) -> None:
    fake, made = setup.fake, setup.made
    assert setup.reverts.revert(77, setup.action, closes=12) == Reverted(8, created=True)
    assert posts(fake) == [
        f"/repos/{REPO}/git/blobs",
        f"/repos/{REPO}/git/trees",
        f"/repos/{REPO}/git/commits",
        f"/repos/{REPO}/git/refs",
        f"/repos/{REPO}/pulls",
    ]
    sent = {r.path: r.json for r in fake.requests if r.method == "POST"}
    merged = b"one\ntwo\nthree\nfour\nfive\nsix\nSEVEN\n"
    assert sent[f"/repos/{REPO}/git/blobs"] == {
        "content": base64.b64encode(merged).decode(),
        "encoding": "base64",
    }
    (tree,) = fake.trees
    assert sent[f"/repos/{REPO}/git/trees"] == {
        "base_tree": tree_of(origin, made.head),
        "tree": [
            {"path": "src/app.py", "mode": "100644", "type": "blob", "sha": blob_id(merged)},
            {"path": "src/new.py", "mode": "100644", "type": "blob", "sha": None},
            {
                "path": "src/old.py",
                "mode": "100644",
                "type": "blob",
                "sha": blob_id(BASE["src/old.py"]),
            },
        ],
    }
    (created,) = fake.commits
    assert sent[f"/repos/{REPO}/git/commits"] == {
        "message": texts.commit_message(setup.action, "Shout the first line"),
        "tree": tree[1],
        "parents": [made.head],
    }
    assert fake.refs[(REPO, "refs/heads/nightshift/revert-7")] == created[1]
    assert sent[f"/repos/{REPO}/pulls"] == {
        "title": "Revert #7: Shout the first line",
        "head": "nightshift/revert-7",
        "base": "main",
        "body": texts.pull_body(setup.action, 12),
    }
    assert fake.effects == [
        f"{REPO}:ref:nightshift/revert-7",
        f"{REPO}#8:opened-pull:Revert #7: Shout the first line",
    ]

    # made again (a step re-run after its answer was lost): the pull request is found
    assert setup.reverts.revert(77, setup.action, closes=12) == Reverted(8, created=False)
    assert len(posts(fake)) == 5


def test_a_branch_left_by_a_crashed_attempt_is_used_as_it_is(setup: Setup) -> None:
    setup.fake.refs[(REPO, "refs/heads/nightshift/revert-7")] = "c" * 40
    assert setup.reverts.revert(77, setup.action, closes=None) == Reverted(8, created=True)
    assert posts(setup.fake) == [f"/repos/{REPO}/pulls"]
    assert setup.fake.pulls[(REPO, 8)].head_sha == "c" * 40


@pytest.mark.parametrize(
    "path", ["git/refs", "pulls"], ids=["branch-created", "pull-request-opened"]
)
def test_a_lost_answer_is_retried_without_making_anything_twice(setup: Setup, path: str) -> None:
    setup.fake.fail("POST", rf"/repos/{REPO}/{path}", 502, after_doing_it=True)
    with pytest.raises(GitHubError) as raised:
        setup.reverts.revert(77, setup.action, closes=None)
    assert raised.value.transient  # the workflow step runs again
    assert setup.reverts.revert(77, setup.action, closes=None) == Reverted(
        8, created=path == "git/refs"
    )
    assert [e for e in setup.fake.effects if "revert-7" in e] == [f"{REPO}:ref:nightshift/revert-7"]
    assert len([e for e in setup.fake.effects if ":opened-pull:" in e]) == 1
    assert posts(setup.fake).count(f"/repos/{REPO}/git/commits") == 1


def test_a_pull_request_not_merged_as_that_commit_is_not_reverted(setup: Setup) -> None:
    setup.fake.pull(REPO, 7, merge_commit_sha="d" * 40)
    assert setup.reverts.revert(77, setup.action, closes=None) == NotReverted(
        texts.not_merged(setup.action)
    )
    assert posts(setup.fake) == []


def test_a_conflicting_revert_creates_nothing(
    fake_github: FakeGitHub, origin: pygit2.Repository, tmp_path: Path
) -> None:
    after = {**CHANGE, "src/app.py": b"Won\ntwo\nthree\nfour\nfive\nsix\nseven\n"}
    made = history(origin, after, merge_commit=True)
    fake_github.pull(REPO, 7, state="closed", merged=True, merge_commit_sha=made.merge)
    action = RevertMerge(
        repo=REPO,
        number=7,
        task=5,
        merge_sha=made.merge,
        branch="main",
        checks=("ci/test",),
        key="k",
        reason="red",
    )
    reverts = Reverts(
        app_client(fake_github), Mirrors(tmp_path / "cache", clone_url=lambda _: origin.path)
    )
    assert reverts.revert(77, action, closes=None) == NotReverted(
        texts.conflicts(action, ("src/app.py",))
    )
    assert posts(fake_github) == []
    assert not list((tmp_path / "cache" / "worktrees").rglob("*.py"))  # the worktree is gone
