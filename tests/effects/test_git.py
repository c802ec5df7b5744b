"""The git port against real repositories: a bare "GitHub" in tmp_path, served from disk
or over smart HTTP with basic authentication."""

from __future__ import annotations

import base64
import fcntl
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pygit2
import pytest
from pygit2.enums import FileMode

from app.effects.git import (
    MAX_ADDED_LINE_CHARS,
    MAX_ADDED_LINES_PER_FILE,
    TEMP_BRANCH_PREFIX,
    GitError,
    Mirrors,
)
from tests.effects.gitrepos import GitHttpServer, commit

REPO = "octo/widget"
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ghs_TestInstallationToken0123456789abcdef"
BASE_FILES = {
    "README.md": b"# widget\n",
    "src/widget.py": b"def widget():\n    return 1\n",
    "src/deep/nested/data.txt": b"one\ntwo\nthree\n",
}


@dataclass
class Remote:
    """A bare repository standing in for GitHub: `main`, and pull request 7 on top of it."""

    root: Path
    repo: pygit2.Repository
    main: str
    pull: str

    def clone_url(self, repo: str) -> str:
        return str(self.root / f"{repo}.git")


def make_remote(root: Path, name: str = REPO) -> Remote:
    repo = pygit2.init_repository(str(root / f"{name}.git"), bare=True)
    main = commit(repo, BASE_FILES, ref="refs/heads/main", message="base")
    head = commit(
        repo,
        {**BASE_FILES, "src/widget.py": b"def widget():\n    return 2\n", "NEW.md": b"new\n"},
        parents=(main,),
        ref="refs/pull/7/head",
        message="pull request",
    )
    return Remote(root, repo, main, head)


@pytest.fixture
def remote(tmp_path: Path) -> Remote:
    return make_remote(tmp_path / "github")


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def mirrors(cache: Path, remote: Remote) -> Mirrors:
    return Mirrors(cache, clone_url=remote.clone_url)


def mirror_of(cache: Path, repo: str = REPO) -> pygit2.Repository:
    owner, name = repo.lower().split("/")
    return pygit2.Repository(str(cache / "mirrors" / owner / f"{name}.git"))


def worktree_count(cache: Path) -> int:
    """Worktrees the mirror knows of, and temporary branches left for them."""
    mirror = mirror_of(cache)
    temporary = [b for b in mirror.listall_branches() if b.startswith(TEMP_BRANCH_PREFIX)]
    return len(mirror.list_worktrees()) + len(temporary)


# -- fetch ------------------------------------------------------------------------------


def test_fetch_creates_a_bare_mirror_with_the_pull_head_and_the_base(
    mirrors: Mirrors, remote: Remote, cache: Path
) -> None:
    mirrors.fetch(REPO, None, pull=7, branches=["main"])

    mirror = mirror_of(cache)
    assert mirror.is_bare
    assert mirrors.head_of_pull(REPO, 7) == remote.pull
    assert str(mirror.lookup_reference("refs/nightshift/pull/7").target) == remote.pull
    assert str(mirror.lookup_reference("refs/heads/main").target) == remote.main
    assert list(mirror.remotes) == []  # every fetch names its URL; nothing is stored
    assert not (Path(mirror.path) / "FETCH_HEAD").exists()


def test_a_later_fetch_brings_new_and_force_pushed_heads(mirrors: Mirrors, remote: Remote) -> None:
    mirrors.fetch(REPO, None, pull=7)
    pushed = commit(remote.repo, {"README.md": b"more\n"}, parents=(remote.pull,), ref=None)
    remote.repo.references.create("refs/pull/7/head", pushed, force=True)
    mirrors.fetch(REPO, None, pull=7)
    assert mirrors.head_of_pull(REPO, 7) == pushed

    rewritten = commit(remote.repo, {"README.md": b"rewritten\n"}, parents=(remote.main,))
    remote.repo.references.create("refs/pull/7/head", rewritten, force=True)
    mirrors.fetch(REPO, None, pull=7)
    assert mirrors.head_of_pull(REPO, 7) == rewritten


def test_fetching_a_missing_pull_request_fails(mirrors: Mirrors) -> None:
    with pytest.raises(GitError, match="refs/pull/8/head of octo/widget failed"):
        mirrors.fetch(REPO, None, pull=8)
    with pytest.raises(GitError, match="#8 of octo/widget has not been fetched"):
        mirrors.head_of_pull(REPO, 8)


def test_a_fetch_waits_for_another_process_holding_the_repository_lock(
    mirrors: Mirrors, remote: Remote, cache: Path
) -> None:
    make_remote(remote.root, "octo/other")
    lock = cache / "locks" / "octo" / "widget.lock"
    lock.parent.mkdir(parents=True)
    hold = (
        "import fcntl, sys; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX);"
        " print('locked', flush=True); sys.stdin.read()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", hold, str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline() == "locked\n"
        errors: list[BaseException] = []

        def fetch() -> None:
            try:
                mirrors.fetch(REPO, None, pull=7)
            except BaseException as exc:
                errors.append(exc)

        waiting = threading.Thread(target=fetch)
        waiting.start()
        try:
            mirrors.fetch("octo/other", None, pull=7)  # another repository is not held up
            waiting.join(0.3)
            assert waiting.is_alive()
            assert not (cache / "mirrors" / "octo" / "widget.git").exists()
        finally:
            holder.stdin.close()  # the holder exits, and its lock goes with it
        waiting.join(20)
    assert not waiting.is_alive() and errors == []
    assert mirrors.head_of_pull(REPO, 7) == remote.pull


def test_a_fetch_that_hangs_is_stopped_at_the_deadline(cache: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        port = silent.getsockname()[1]
        mirrors = Mirrors(
            cache, clone_url=lambda repo: f"http://127.0.0.1:{port}/{repo}.git", fetch_timeout=0.5
        )
        started = time.monotonic()
        with pytest.raises(GitError, match=r"took more than 0\.5 s and was stopped"):
            mirrors.fetch(REPO, TOKEN, pull=7)
    assert time.monotonic() - started < 5


# -- authentication over smart HTTP -------------------------------------------------------


def test_an_authenticated_fetch_sends_the_token_and_stores_it_nowhere(
    tmp_path: Path,
    remote: Remote,
    cache: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Neither the operator's tracing nor a stray GIT_DIR may reach the fetch.
    monkeypatch.setenv("GIT_TRACE_CURL", str(tmp_path / "curl-trace"))
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    caplog.set_level(logging.DEBUG)
    with GitHttpServer(remote.root, token=TOKEN) as server:
        mirrors = Mirrors(cache, clone_url=server.url)
        mirrors.fetch(REPO, TOKEN, pull=7, branches=["main"])
        with mirrors.worktree(REPO, mirrors.head_of_pull(REPO, 7), label="pr-7") as path:
            assert (path / "NEW.md").read_bytes() == b"new\n"

    assert server.requests and all(request.authorized for request in server.requests)
    assert mirrors.head_of_pull(REPO, 7) == remote.pull
    assert not (tmp_path / "curl-trace").exists()
    secrets = (TOKEN.encode(), base64.b64encode(f"x-access-token:{TOKEN}".encode()))
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert files
    for file in files:
        data = file.read_bytes()
        assert not any(secret in data for secret in secrets), file
    assert TOKEN not in caplog.text


def test_a_wrong_token_fails_without_revealing_it(
    remote: Remote, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "ghs_WrongToken9876543210"
    with GitHttpServer(remote.root, token=TOKEN) as server:
        mirrors = Mirrors(cache, clone_url=server.url)
        with pytest.raises(GitError) as failure:
            mirrors.fetch(REPO, wrong, pull=7)
        with pytest.raises(GitError):
            mirrors.fetch(REPO, None, pull=7)

    assert "failed" in str(failure.value)
    assert wrong not in str(failure.value) and wrong not in caplog.text
    assert server.requests and not any(request.authorized for request in server.requests)


# -- worktrees ----------------------------------------------------------------------------


def test_a_worktree_is_checked_out_detached_at_the_head_and_removed_after(
    mirrors: Mirrors, remote: Remote, cache: Path
) -> None:
    mirrors.fetch(REPO, None, pull=7)
    with mirrors.worktree(REPO, remote.pull, label="pr 7/../x") as path:
        assert (path / "src" / "widget.py").read_bytes() == b"def widget():\n    return 2\n"
        assert (path / "src/deep/nested/data.txt").read_bytes() == b"one\ntwo\nthree\n"
        checkout = pygit2.Repository(str(path))
        assert checkout.head_is_detached
        assert str(checkout.head.target) == remote.pull
        assert checkout.status() == {}
        assert path.parent == cache / "worktrees" / "octo" / "widget"
        assert worktree_count(cache) == 1

    assert not path.exists()
    assert worktree_count(cache) == 0
    assert list(path.parent.iterdir()) == []  # the lock file went too


def test_a_worktree_is_removed_when_the_review_raises(
    mirrors: Mirrors, remote: Remote, cache: Path
) -> None:
    mirrors.fetch(REPO, None, pull=7)
    seen: list[Path] = []

    def review() -> None:
        with mirrors.worktree(REPO, remote.pull, label="pr-7") as path:
            seen.append(path)
            (path / "build").mkdir()
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        review()
    assert seen and not seen[0].exists()
    assert worktree_count(cache) == 0


def test_a_worktree_is_removed_even_when_its_code_took_write_permission_away(
    mirrors: Mirrors, remote: Remote
) -> None:
    mirrors.fetch(REPO, None, pull=7)
    with mirrors.worktree(REPO, remote.pull, label="pr-7") as path:
        (path / "src" / "deep").chmod(0o500)
        (path / "locked").mkdir()
        (path / "locked" / "inner").mkdir()
        (path / "locked").chmod(0)
    assert not path.exists()


def test_a_checkout_runs_no_hook_and_no_filter_driver_of_the_operator(
    mirrors: Mirrors,
    remote: Remote,
    cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The tree is checked out by `git worktree add`: neither a hook in the mirror nor a
    filter driver in the operator's global config, which the PR's .gitattributes names,
    may run anything."""
    ran = tmp_path / "ran"
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        f'[filter "evil"]\n\tsmudge = "touch {ran}/filter; cat"\n\trequired = true\n'
    )
    monkeypatch.setenv("HOME", str(home))
    head = commit(
        remote.repo,
        {**BASE_FILES, ".gitattributes": b"* filter=evil\n"},
        parents=(remote.main,),
        ref="refs/pull/9/head",
    )
    mirrors.fetch(REPO, None, pull=9)
    hook = cache / "mirrors" / "octo" / "widget.git" / "hooks" / "post-checkout"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(f"#!/bin/sh\ntouch {ran}/hook\n")
    hook.chmod(0o755)
    ran.mkdir()

    with mirrors.worktree(REPO, head, label="pr-9") as path:
        assert (path / "src" / "widget.py").read_bytes() == BASE_FILES["src/widget.py"]
    assert list(ran.iterdir()) == []


def test_a_worktree_needs_a_fetched_commit(mirrors: Mirrors, remote: Remote) -> None:
    with pytest.raises(GitError, match="no mirror of octo/widget"):
        mirrors.worktree(REPO, remote.pull, label="pr-7").__enter__()
    mirrors.fetch(REPO, None, branches=["main"])
    with (
        pytest.raises(GitError, match="has no commit"),
        mirrors.worktree(REPO, remote.pull, label="pr-7"),
    ):
        pass


CRASH = """
import os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from app.effects.git import Mirrors
with Mirrors(Path(sys.argv[2])).worktree(sys.argv[3], sys.argv[4], label="crash") as path:
    print(path, flush=True)
    os._exit(3)
"""


def test_cleanup_removes_worktrees_a_crashed_process_left_and_spares_live_ones(
    mirrors: Mirrors, remote: Remote, cache: Path
) -> None:
    mirrors.fetch(REPO, None, pull=7)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH, str(ROOT), str(cache), REPO, remote.pull],
        capture_output=True,
        text=True,
        check=False,
    )
    assert crashed.returncode == 3, crashed.stderr
    left = Path(crashed.stdout.strip())
    assert (left / "README.md").exists()

    with mirrors.worktree(REPO, remote.pull, label="live") as live:
        assert worktree_count(cache) == 2
        assert mirrors.cleanup() == 1
        assert not left.exists()
        assert live.exists() and (live / "README.md").exists()
        assert worktree_count(cache) == 1
    assert worktree_count(cache) == 0
    assert mirrors.cleanup() == 0


def test_cleanup_prunes_metadata_whose_directory_is_gone(
    mirrors: Mirrors, remote: Remote, cache: Path
) -> None:
    mirrors.fetch(REPO, None, pull=7)
    mirror = mirror_of(cache)
    gone = cache / "worktrees" / "octo" / "widget" / "pr-7-deadbeef"
    gone.parent.mkdir(parents=True)
    target = mirror[remote.pull].peel(pygit2.Commit)
    branch = mirror.branches.local.create(f"{TEMP_BRANCH_PREFIX}pr-7-deadbeef", target)
    mirror.add_worktree("pr-7-deadbeef", str(gone), branch)
    shutil.rmtree(gone)

    assert mirrors.cleanup() == 1
    assert worktree_count(cache) == 0


# -- spare worktrees ---------------------------------------------------------------------


def snapshot(path: Path) -> dict[str, tuple[int, bytes]]:
    """Every entry below a worktree but git's own: its mode and its content (a link's
    target), to compare a switched spare with a checkout made from nothing."""
    found: dict[str, tuple[int, bytes]] = {}
    for entry in sorted(path.rglob("*")):
        name = entry.relative_to(path).as_posix()
        if name == ".git":
            continue
        mode = entry.lstat().st_mode
        if entry.is_symlink():
            found[name] = (mode, str(entry.readlink()).encode())
        elif entry.is_file():
            found[name] = (mode, entry.read_bytes())
        else:
            found[name] = (mode, b"")
    return found


def spares_of(cache: Path) -> list[str]:
    """The spares ready for the next review."""
    worktrees = cache / "worktrees" / "octo" / "widget"
    return sorted(p.name.removesuffix(".ready") for p in worktrees.glob("spare-*.ready"))


@pytest.fixture
def with_spares(cache: Path, remote: Remote) -> Mirrors:
    return Mirrors(cache, clone_url=remote.clone_url, spares=True)


def divergent_head(remote: Remote) -> str:
    """A head far from `main`: a file changed, one added, one deleted, an executable, a
    link, and a directory that became a file."""
    repo = remote.repo
    builder = repo.TreeBuilder()
    builder.insert("README.md", repo.create_blob(b"# widget, renewed\n"), FileMode.BLOB)
    builder.insert("run.sh", repo.create_blob(b"#!/bin/sh\necho hi\n"), FileMode.BLOB_EXECUTABLE)
    builder.insert("link", repo.create_blob(b"README.md"), FileMode.LINK)
    nested = repo.TreeBuilder()
    nested.insert("inner.txt", repo.create_blob(b"inner\n"), FileMode.BLOB)
    nested.insert("deep", repo.create_blob(b"a file now\n"), FileMode.BLOB)
    builder.insert("src", nested.write(), FileMode.TREE)  # src/widget.py gone
    tree = builder.write()
    main = repo[remote.main].peel(pygit2.Commit)
    head = repo.create_commit(None, main.author, main.committer, "rewrite", tree, [main.id])
    repo.references.create("refs/pull/8/head", head, force=True)
    return str(head)


def test_a_fetched_head_is_prepared_as_a_spare_and_the_review_takes_it(
    with_spares: Mirrors, remote: Remote, cache: Path
) -> None:
    with_spares.fetch(REPO, None, pull=7)
    with_spares.settle()
    assert len(spares_of(cache)) == 1
    spare = spares_of(cache)[0]

    with with_spares.worktree(REPO, remote.pull, label="quality") as path:
        assert path.name == spare
        assert spares_of(cache) == []  # claimed: no one else gets it
        checkout = pygit2.Repository(str(path))
        assert checkout.head_is_detached and str(checkout.head.target) == remote.pull
        assert checkout.status() == {}
        assert (path / "src" / "widget.py").read_bytes() == b"def widget():\n    return 2\n"
        with_spares.settle()
        assert len(spares_of(cache)) == 1  # the next one, prepared meanwhile
        assert spares_of(cache) != [spare]

    assert not path.exists()
    assert not (path.parent / f"{spare}.lock").exists()
    assert worktree_count(cache) == 1  # only the next spare


def test_a_switched_spare_is_the_same_tree_as_a_fresh_checkout(
    with_spares: Mirrors, mirrors: Mirrors, remote: Remote, cache: Path
) -> None:
    head = divergent_head(remote)
    with_spares.fetch(REPO, None, branches=["main"])
    with_spares.prepare(REPO, remote.main)  # a spare at the base, far from the head
    with_spares.settle()
    with_spares.fetch(REPO, None, pull=8)  # one is ready: no second spare
    with_spares.settle()
    assert len(spares_of(cache)) == 1

    with mirrors.worktree(REPO, head, label="fresh") as fresh:  # no spares: from nothing
        expected = snapshot(fresh)
    with with_spares.worktree(REPO, head, label="quality") as path:
        assert path.name.startswith("spare-")
        assert snapshot(path) == expected
        assert pygit2.Repository(str(path)).status() == {}
        assert (path / "src" / "deep").read_bytes() == b"a file now\n"
        assert not (path / "src" / "widget.py").exists()


def test_a_broken_spare_is_removed_and_the_tree_checked_out_from_nothing(
    with_spares: Mirrors, remote: Remote, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with_spares.fetch(REPO, None, pull=7)
    with_spares.settle()
    spare = spares_of(cache)[0]
    (cache / "worktrees" / "octo" / "widget" / spare / ".git").unlink()  # not a worktree now

    with with_spares.worktree(REPO, remote.pull, label="quality") as path:
        assert path.name.startswith("quality-")
        assert (path / "NEW.md").read_bytes() == b"new\n"
        assert not (path.parent / spare).exists()
    assert f"spare worktree {spare} of octo/widget could not be switched" in caplog.text
    with_spares.settle()


def test_a_spare_that_cannot_be_prepared_leaves_nothing(
    with_spares: Mirrors, remote: Remote, cache: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with_spares.fetch(REPO, None, branches=["main"])
    with_spares.prepare(REPO, "0" * 40)
    with_spares.settle()
    assert "could not prepare a spare worktree of octo/widget" in caplog.text
    assert spares_of(cache) == [] and worktree_count(cache) == 0
    assert list((cache / "worktrees" / "octo" / "widget").iterdir()) == []


def test_two_reviews_at_once_never_share_a_spare(
    with_spares: Mirrors, remote: Remote, cache: Path
) -> None:
    with_spares.fetch(REPO, None, pull=7)
    with_spares.settle()
    with (
        with_spares.worktree(REPO, remote.pull, label="one") as one,
        with_spares.worktree(REPO, remote.main, label="two") as two,
    ):
        assert one != two
        assert (one / "NEW.md").exists() and not (two / "NEW.md").exists()
    with_spares.settle()
    assert not one.exists() and not two.exists()


def test_cleanup_at_start_up_removes_spares_too(
    with_spares: Mirrors, remote: Remote, cache: Path
) -> None:
    with_spares.fetch(REPO, None, pull=7)
    with_spares.settle()
    assert spares_of(cache)

    assert Mirrors(cache, clone_url=remote.clone_url).cleanup() == 1
    assert spares_of(cache) == [] and worktree_count(cache) == 0
    assert list((cache / "worktrees" / "octo" / "widget").iterdir()) == []


def ready_spare(with_spares: Mirrors, cache: Path) -> str:
    """Fetch a pull request's head and wait for the one spare it prepares."""
    with_spares.fetch(REPO, None, pull=7)
    with_spares.settle()
    [spare] = spares_of(cache)
    return spare


def ready_since(cache: Path, spare: str, when: float) -> None:
    os.utime(cache / "worktrees" / "octo" / "widget" / f"{spare}.ready", (when, when))


def test_a_spare_nobody_took_for_the_idle_time_is_removed_and_a_fresh_one_kept(
    with_spares: Mirrors, remote: Remote, cache: Path
) -> None:
    spare = ready_spare(with_spares, cache)
    worktrees = cache / "worktrees" / "octo" / "widget"

    assert with_spares.evict_spares(idle_for=3600) == 0  # made just now: kept
    assert spares_of(cache) == [spare]

    ready_since(cache, spare, time.time() - 7200)
    assert with_spares.evict_spares(idle_for=3600) == 1
    assert spares_of(cache) == [] and worktree_count(cache) == 0
    assert list(worktrees.iterdir()) == []  # directory, marker and lock file gone

    # the next review checks its tree out itself, and the next fetch prepares a spare again
    with with_spares.worktree(REPO, remote.pull, label="quality") as path:
        assert (path / "NEW.md").exists()
    with_spares.fetch(REPO, None, pull=7)
    with_spares.settle()
    assert len(spares_of(cache)) == 1


def test_a_spare_being_taken_is_not_evicted(
    with_spares: Mirrors, remote: Remote, cache: Path
) -> None:
    spare = ready_spare(with_spares, cache)
    worktrees = cache / "worktrees" / "octo" / "widget"
    ready_since(cache, spare, time.time() - 7200)
    held = os.open(worktrees / f"{spare}.lock", os.O_RDWR)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)  # what a review claiming it holds
        assert with_spares.evict_spares(idle_for=3600) == 0
        assert (worktrees / spare).is_dir()
    finally:
        os.close(held)


def test_without_spares_nothing_is_prepared(mirrors: Mirrors, remote: Remote, cache: Path) -> None:
    mirrors.fetch(REPO, None, pull=7)
    with mirrors.worktree(REPO, remote.pull, label="quality") as path:
        assert path.name.startswith("quality-")
    mirrors.settle()
    assert spares_of(cache) == [] and worktree_count(cache) == 0


# -- the diff -----------------------------------------------------------------------------


def test_the_diff_lists_each_change_since_the_merge_base(mirrors: Mirrors, remote: Remote) -> None:
    fork = {
        "keep.txt": b"a\nb\nc\n",
        "gone.txt": b"bye\n",
        "old/name.txt": b"".join(b"line %d\n" % n for n in range(1, 11)),
        "image.bin": b"\x89PNG\x00\x01\x02",
        "docs/guide.md": b"guide\n",
    }
    fork_point = commit(remote.repo, fork, parents=(remote.main,))
    pull = dict(fork)
    pull["keep.txt"] = b"a\nB\nc\nd\n"
    del pull["gone.txt"]
    renamed = pull.pop("old/name.txt").replace(b"line 5\n", b"line five\n")
    pull["new/name.txt"] = renamed
    pull["image.bin"] = b"\x89PNG\x00\x03"
    pull["app.py"] = b"import os\n\nprint(os.environ)\n"
    head = commit(remote.repo, pull, parents=(fork_point,), ref="refs/pull/7/head")
    # On the base branch after the fork point: not the pull request's change.
    later = {**fork, "docs/guide.md": b"guide, edited\n", "base-only.txt": b"x\n"}
    base = commit(remote.repo, later, parents=(fork_point,), ref="refs/heads/main")
    mirrors.fetch(REPO, None, pull=7, branches=["main"])

    diff = mirrors.diff(REPO, "main", head)

    assert (diff.base, diff.head) == (fork_point, head)
    files = {f.path: f for f in diff.files}
    assert sorted(files) == ["app.py", "gone.txt", "image.bin", "keep.txt", "new/name.txt"]
    app, gone, image, keep, moved = (files[p] for p in sorted(files))
    assert (app.status, app.additions, app.deletions) == ("added", 3, 0)
    assert [(line.line, line.text) for line in app.added] == [
        (1, "import os"),
        (2, ""),
        (3, "print(os.environ)"),
    ]
    assert (gone.status, gone.additions, gone.deletions, gone.added) == ("deleted", 0, 1, ())
    assert (image.status, image.binary, image.additions, image.added) == (
        "modified",
        True,
        0,
        (),
    )
    assert (keep.status, keep.additions, keep.deletions) == ("modified", 2, 1)
    assert [(line.line, line.text) for line in keep.added] == [(2, "B"), (4, "d")]
    assert (moved.status, moved.old_path, moved.additions, moved.deletions) == (
        "renamed",
        "old/name.txt",
        1,
        1,
    )
    assert [(line.line, line.text) for line in moved.added] == [(5, "line five")]
    assert diff.changed_lines == 3 + 1 + 3 + 2
    # A commit id for the base gives the same diff.
    assert mirrors.diff(REPO, base, head) == diff


def test_the_diff_keeps_a_bounded_number_of_added_lines(mirrors: Mirrors, remote: Remote) -> None:
    lines = MAX_ADDED_LINES_PER_FILE + 5
    generated = b"".join(b"row %d\n" % n for n in range(lines))
    head = commit(
        remote.repo,
        {**BASE_FILES, "generated.txt": generated, "min.js": b"x" * 10_000 + b"\r\n"},
        parents=(remote.main,),
        ref="refs/pull/7/head",
    )
    mirrors.fetch(REPO, None, pull=7, branches=["main"])

    files = {f.path: f for f in mirrors.diff(REPO, "main", head).files}

    assert files["generated.txt"].additions == lines
    assert len(files["generated.txt"].added) == MAX_ADDED_LINES_PER_FILE
    assert files["generated.txt"].added[-1].line == MAX_ADDED_LINES_PER_FILE
    assert [len(line.text) for line in files["min.js"].added] == [MAX_ADDED_LINE_CHARS]


def test_the_diff_refuses_unknown_revisions_and_unrelated_histories(
    mirrors: Mirrors, remote: Remote
) -> None:
    orphan = commit(remote.repo, {"other.txt": b"x\n"}, ref="refs/pull/7/head")
    mirrors.fetch(REPO, None, pull=7, branches=["main"])
    with pytest.raises(GitError, match="no common history"):
        mirrors.diff(REPO, "main", orphan)
    for revision in ("feature", "main~1", "HEAD@{1}", "0" * 40, "-x", "a..b"):
        with pytest.raises(GitError, match="has no commit"):
            mirrors.diff(REPO, revision, orphan)


# -- untrusted names ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "repo",
    [
        "",
        "octo",
        "octo/",
        "/widget",
        "../widget",
        "octo/..",
        "octo/.",
        "octo/widget/extra",
        "octo/../../etc",
        "-octo/widget",
        "octo/wid get",
        "octo/widget\n",
        "octo\\widget",
        "a" * 40 + "/widget",
        "octo/" + "w" * 101,
    ],
)
def test_bad_repository_names_are_refused(mirrors: Mirrors, cache: Path, repo: str) -> None:
    with pytest.raises(GitError, match="not a GitHub repository name"):
        mirrors.fetch(repo, None, pull=7)
    with pytest.raises(GitError, match="not a GitHub repository name"):
        mirrors.head_of_pull(repo, 7)
    with pytest.raises(GitError, match="not a GitHub repository name"):
        mirrors.diff(repo, "main", "main")
    with pytest.raises(GitError, match="not a GitHub repository name"):
        mirrors.worktree(repo, "0" * 40, label="x").__enter__()
    assert not cache.exists()


@pytest.mark.parametrize("pull", [0, -1, True])
def test_bad_pull_numbers_are_refused(mirrors: Mirrors, cache: Path, pull: int) -> None:
    with pytest.raises(GitError, match="not a pull request number"):
        mirrors.fetch(REPO, None, pull=pull)


@pytest.mark.parametrize("branch", ["-main", "a..b", "a:b", "a*", "", "a b", "refs/../x"])
def test_bad_branch_names_are_refused(mirrors: Mirrors, branch: str) -> None:
    with pytest.raises(GitError, match="not a branch name"):
        mirrors.fetch(REPO, None, branches=[branch])


def test_names_differing_in_case_share_one_mirror(mirrors: Mirrors, cache: Path) -> None:
    mirrors.fetch(REPO, None, pull=7)
    assert mirrors.head_of_pull("Octo/Widget", 7) == mirrors.head_of_pull(REPO, 7)
    assert [p.name for p in (cache / "mirrors").iterdir()] == ["octo"]
