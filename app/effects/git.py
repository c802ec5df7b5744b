"""The git port: a bare mirror per repository, ephemeral worktrees, and the review's diff.

Layout under the cache directory (created owner-only, 0700: it holds private code):

    mirrors/<owner>/<name>.git       bare mirror, fetched incrementally
    locks/<owner>/<name>.lock        flock held while the mirror's refs or worktrees change
    worktrees/<owner>/<name>/<wt>    one review's checkout, detached at the reviewed commit
    worktrees/<owner>/<name>/<wt>.lock  flock held for the worktree's whole life
    worktrees/<owner>/<name>/spare-<hex>.ready  a spare worktree, complete and never used

A spare is a worktree checked out in the background (when a pull request's head has been
fetched, and again each time a spare is taken) so that the next review of the repository
waits only for the files that differ from the spare's commit, not for a whole checkout.
It is never shown to any code before it is taken, and once taken it is a review's own
worktree, removed when that review ends, like any other: no checkout is used twice.

Owner and name are lower-cased in paths (GitHub names are case-insensitive).

The installation token exists only in memory and in the environment of the `git fetch`
child (`GIT_CONFIG_*`, readable by the same user only): never in a config file, a remote
URL on disk, FETCH_HEAD, a reflog, a command line or a log line. Mirrors have no stored
remotes; every fetch names the URL.

Nothing here trusts what a pull request put in the worktree: paths to remove are computed
from our own names, never read back from the mirror's worktree metadata. The worktree's
`.git` file points into the mirror, so the sandbox must not mount the mirror writable
(`git fetch` reads the mirror's config and hooks).
"""

from __future__ import annotations

import base64
import fcntl
import logging
import os
import re
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pygit2
from pygit2.enums import (
    CheckoutStrategy,
    DeltaStatus,
    DiffFind,
    FileMode,
    Option,
    RepositoryOpenFlag,
)

from app.core.review_facts import AddedLine, ChangedFile, Diff, FileStatus

logger = logging.getLogger(__name__)

PULL_REF = "refs/nightshift/pull/{pull}"
TEMP_BRANCH_PREFIX = "nightshift-worktree-"  # branches of worktrees made by earlier versions
SPARE_PREFIX = "spare-"
READY_SUFFIX = ".ready"
FETCH_TIMEOUT_SECONDS = 600.0
TOKEN_USER = "x-access-token"  # noqa: S105 (GitHub's user name for installation tokens)

# The secret scanner reads AddedLine.text; these bound the memory a huge generated file or
# a huge pull request can take. A file kept fewer added lines than its `additions` when
# len(added) < additions (and it is not binary): the gates can tell it was not all scanned.
MAX_ADDED_LINES_PER_FILE = 10_000
MAX_ADDED_LINE_CHARS = 4_096  # longer lines (minified code) are cut
MAX_ADDED_CHARS_TOTAL = 16 * 1024 * 1024  # over the whole diff; later files keep no lines
# libgit2 holds a whole file's diff in memory (about 150 bytes per line): a blob over this
# is reported as binary, without line counts, as git does above core.bigFileThreshold.
MAX_DIFF_FILE_BYTES = 8 * 1024 * 1024

BAD_REPO = "not a GitHub repository name (owner/name): {repo!r}"
BAD_PULL = "not a pull request number: {pull!r}"
BAD_BRANCH = "not a branch name: {branch!r}"
BAD_REVISION = "{repo} has no commit {revision!r} (fetch it first)"
NO_GIT = "the git command line is not installed"
NO_MIRROR = "there is no mirror of {repo} yet (fetch it first)"
NO_PULL = "pull request #{pull} of {repo} has not been fetched"
NO_MERGE_BASE = "{base} and {head} of {repo} have no common history"
FETCH_FAILED = "fetching {refs} of {repo} failed (git exit {code}): {detail}"
FETCH_TIMED_OUT = "fetching {refs} of {repo} took more than {seconds:g} s and was stopped"
WORKTREE_FAILED = "could not check out {commit} of {repo}: {detail}"
WORKTREE_TIMED_OUT = "checking out {commit} took more than {seconds:g} s and was stopped"
FETCHED = "fetched %s of %s in %.2f s"
WORKTREE_REMOVED = "removed worktree %s of %s left behind by an earlier run"
SPARE_FAILED = "could not prepare a spare worktree of %s/%s at %s: %s"
SPARE_UNUSABLE = "spare worktree %s of %s/%s could not be switched to %s (%s): removed"

# GitHub: owners are letters, digits and hyphens (not first), at most 39; repository names
# letters, digits, '.', '_', '-', at most 100, and never '.' or '..'.
_OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,38}")
_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
_SHA = re.compile(r"[0-9a-fA-F]{40}|[0-9a-fA-F]{64}")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_STATUSES: dict[DeltaStatus, FileStatus] = {
    DeltaStatus.ADDED: "added",
    DeltaStatus.DELETED: "deleted",
    DeltaStatus.RENAMED: "renamed",
}
# Variables git would take from our own environment that must not steer the child: where
# the repository is, extra config, tracing (GIT_TRACE_CURL can dump headers), askpass
# programs; and the App's own settings, which are no business of git.
_KEPT_GIT_VARIABLES = frozenset({"GIT_SSL_CAINFO", "GIT_SSL_CAPATH", "GIT_EXEC_PATH"})
_DROPPED_PREFIXES = ("GIT_", "NIGHTSHIFT_")
_DROPPED_VARIABLES = frozenset({"SSH_ASKPASS"})


class GitError(Exception):
    """A git operation failed or was refused. The message never contains a token."""


class Mirrors:
    """Bare mirrors of the repositories under review, and worktrees checked out of them."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        clone_url: Callable[[str], str] = lambda repo: f"https://github.com/{repo}.git",
        fetch_timeout: float = FETCH_TIMEOUT_SECONDS,
        spares: bool = False,
    ) -> None:
        self.cache_dir = cache_dir
        self.clone_url = clone_url
        self.fetch_timeout = fetch_timeout
        # Spare worktrees (see the module's docstring): one per repository, prepared by a
        # thread of this process; `_preparing` holds the thread preparing each.
        self.spares = spares
        self._preparing: dict[tuple[str, str], threading.Thread] = {}
        self._guard = threading.Lock()
        # libgit2 re-hashes (SHA-1DC) every object it reads; git does not: `git fetch`'s
        # index-pack hashed each one, with collision detection, when it arrived. A whole
        # checkout of 3,000 files with libgit2 (bench/worktree.py on tmpfs) took 312 ms
        # with it, 241 ms without; it still weighs on the diffs and the spares' switches.
        # The setting is libgit2's, for the whole process.
        pygit2.option(Option.ENABLE_STRICT_HASH_VERIFICATION, False)

    def fetch(
        self,
        repo: str,
        token: str | None,
        *,
        pull: int | None = None,
        branches: Sequence[str] = (),
    ) -> None:
        """Create the mirror if absent; fetch the pull request's head and the branches.

        The head of pull request N lands in `refs/nightshift/pull/N`, branch B in
        `refs/heads/B`; both are forced (pull request heads are force-pushed).
        """
        owner, name = _split(repo)
        refspecs: list[str] = []
        if pull is not None:
            refspecs.append(f"+refs/pull/{_pull_number(pull)}/head:{_pull_ref(pull)}")
        for branch in branches:
            ref = _branch_ref(branch)
            refspecs.append(f"+{ref}:{ref}")
        with _locked(self._repo_lock(owner, name)):
            mirror = self._ensure_mirror(owner, name)
            if refspecs:
                self._git_fetch(repo, mirror, token, refspecs)
        if pull is not None and self.spares:
            # the review that fetched it checks this head out next: start on it now
            self.prepare(repo, self.head_of_pull(repo, pull))

    def head_of_pull(self, repo: str, pull: int) -> str:
        """The commit last fetched as the pull request's head."""
        mirror = self._open(repo)
        try:
            return str(mirror.lookup_reference(_pull_ref(_pull_number(pull))).target)
        except (KeyError, pygit2.GitError) as exc:
            raise GitError(NO_PULL.format(pull=pull, repo=repo)) from exc

    @contextmanager
    def worktree(self, repo: str, commit: str, *, label: str) -> Iterator[Path]:
        """A worktree detached at `commit`, removed when the block ends, however it ends.

        With spares on, a spare worktree is taken and switched to `commit` if one is ready
        (one being prepared by this process is waited for), and another is prepared in
        the background for the next review; else the whole tree is checked out here.
        """
        owner, name = _split(repo)
        target = _commit_of(self._open(repo), commit, repo)
        worktrees = self._dir("worktrees", owner, name)
        spare = self._take_spare(owner, name, target) if self.spares else None
        if spare is not None:
            worktree, held = spare
        else:
            worktree = f"{_safe_label(label)}-{secrets.token_hex(4)}"
            lock = _try_lock(worktrees / f"{worktree}.lock")
            if lock is None:  # the name is random: someone else has it only by a fluke
                raise GitError(
                    WORKTREE_FAILED.format(commit=commit, repo=repo, detail="name taken")
                )
            held = lock
        path = worktrees / worktree
        try:
            if spare is None:
                self._add_worktree(owner, name, worktree, path, target.id)
            if self.spares:
                self.prepare(repo, str(target.id))
            yield path
        finally:
            try:
                _remove_worktree(self._mirror_path(owner, name), path, worktree)
            finally:
                _release(worktrees / f"{worktree}.lock", held)

    def prepare(self, repo: str, commit: str) -> None:
        """Start preparing a spare worktree of `repo` at `commit` in the background, unless
        one is ready or being prepared by this process. Failures are logged, not raised:
        a review without a spare checks its tree out itself."""
        owner, name = _split(repo)
        with self._guard:
            if (owner, name) in self._preparing:
                return
            thread = threading.Thread(
                target=self._prepare_spare,
                args=(owner, name, commit),
                name=f"nightshift-spare-{owner}/{name}",
                daemon=True,  # a spare cut short by exit is removed at the next start
            )
            self._preparing[owner, name] = thread
        thread.start()

    def settle(self, timeout: float | None = None) -> None:
        """Wait for the spares being prepared (tests, benchmarks, an orderly stop)."""
        with self._guard:
            threads = list(self._preparing.values())
        for thread in threads:
            thread.join(timeout)

    def diff(self, repo: str, base: str, head: str) -> Diff:
        """What `head` changes since its merge base with `base` (a commit or a branch).

        Renames are detected (50% similarity, git's default). Binary files, and files over
        MAX_DIFF_FILE_BYTES, have no line counts. Added lines are kept up to the
        MAX_ADDED_* limits above.
        """
        mirror = self._open(repo)
        base_commit = _commit_of(mirror, base, repo)
        head_commit = _commit_of(mirror, head, repo)
        merge_base = mirror.merge_base(base_commit.id, head_commit.id)
        if merge_base is None:
            raise GitError(NO_MERGE_BASE.format(base=base, head=head, repo=repo))
        changes = mirror.diff(merge_base, head_commit.id, context_lines=0)
        changes.find_similar(flags=DiffFind.FIND_RENAMES)
        files: list[ChangedFile] = []
        room = MAX_ADDED_CHARS_TOTAL
        for index, delta in enumerate(changes.deltas):
            changed = _changed_file(mirror, changes, index, delta, room)
            room -= sum(len(line.text) for line in changed.added)
            files.append(changed)
        return Diff(base=str(merge_base), head=str(head_commit.id), files=tuple(files))

    def cleanup(self) -> int:
        """Remove the worktrees earlier runs left behind; return how many.

        A worktree whose lock is held belongs to a live review (in this or another
        process sharing the cache) and is left alone, as is a repository being fetched.
        """
        removed = 0
        for owner, name in self._repositories():
            repo_lock = _try_lock(self._repo_lock(owner, name))
            if repo_lock is None:
                continue
            try:
                removed += self._cleanup_repository(owner, name)
            finally:
                os.close(repo_lock)
        return removed

    def evict_spares(self, idle_for: float) -> int:
        """Remove the ready spares nobody took in `idle_for` seconds; return how many.

        A spare is a whole checkout on disk: a repository reviewed once would otherwise
        keep one until the next start. One being taken (its lock held) is left alone.
        """
        cutoff = time.time() - idle_for
        removed = 0
        for owner, name in sorted(self._repositories()):
            worktrees = self.cache_dir / "worktrees" / owner / name
            while True:
                # claimed under the repository lock, as a review claims one
                with _locked(self._repo_lock(owner, name)):
                    claimed = _claim_spare(worktrees, ready_before=cutoff)
                if claimed is None:
                    break
                _discard(self._mirror_path(owner, name), worktrees, *claimed)
                removed += 1
        return removed

    # -- internals -----------------------------------------------------------------------

    def _prepare_spare(self, owner: str, name: str, commit: str) -> None:
        try:
            worktrees = self._dir("worktrees", owner, name)
            if any(worktrees.glob(f"{SPARE_PREFIX}*{READY_SUFFIX}")):
                return  # one is enough
            mirror = _open_repository(self._mirror_path(owner, name))
            target = _commit_of(mirror, commit, f"{owner}/{name}")
            worktree = f"{SPARE_PREFIX}{secrets.token_hex(4)}"
            held = _try_lock(worktrees / f"{worktree}.lock")
            if held is None:
                return
            ready = False
            try:
                self._add_worktree(owner, name, worktree, worktrees / worktree, target.id)
                (worktrees / f"{worktree}{READY_SUFFIX}").touch(mode=0o600)
                ready = True
            finally:
                if ready:
                    os.close(held)  # the lock file stays: whoever takes the spare locks it
                else:
                    try:
                        _remove_worktree(
                            self._mirror_path(owner, name), worktrees / worktree, worktree
                        )
                    finally:
                        _release(worktrees / f"{worktree}.lock", held)
        except Exception as exc:  # a thread of its own: nobody to raise to
            logger.warning(SPARE_FAILED, owner, name, commit, exc)
        finally:
            with self._guard:
                self._preparing.pop((owner, name), None)

    def _take_spare(self, owner: str, name: str, target: pygit2.Commit) -> tuple[str, int] | None:
        """Claim a ready spare and switch it to `target`: its name and the held lock."""
        with self._guard:
            preparing = self._preparing.get((owner, name))
        if preparing is not None:
            preparing.join()  # sooner than a checkout of our own, which would wait for it
        worktrees = self._dir("worktrees", owner, name)
        mirror_path = self._mirror_path(owner, name)
        while True:
            # Claimed under the repository lock, so a cleanup cannot remove it meanwhile;
            # the marker goes first, so nobody else claims it once the lock is ours.
            with _locked(self._repo_lock(owner, name)):
                claimed = _claim_spare(worktrees)
            if claimed is None:
                return None
            worktree, held = claimed
            try:
                _switch(worktrees / worktree, target)
            except (pygit2.GitError, OSError, KeyError, ValueError) as exc:
                logger.warning(SPARE_UNUSABLE, worktree, owner, name, target.id, exc)
                _discard(mirror_path, worktrees, worktree, held)
                continue
            return worktree, held

    def _dir(self, *parts: str) -> Path:
        # mkdir(parents=True) gives the parents default permissions: the root first.
        self.cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.cache_dir.joinpath(*parts)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def _mirror_path(self, owner: str, name: str) -> Path:
        return self.cache_dir / "mirrors" / owner / f"{name}.git"

    def _repo_lock(self, owner: str, name: str) -> Path:
        return self._dir("locks", owner) / f"{name}.lock"

    def _open(self, repo: str) -> pygit2.Repository:
        path = self._mirror_path(*_split(repo))
        if not path.is_dir():
            raise GitError(NO_MIRROR.format(repo=repo))
        return _open_repository(path)

    def _ensure_mirror(self, owner: str, name: str) -> Path:
        """The mirror's path, after creating it if needed (the repository lock is held)."""
        path = self._mirror_path(owner, name)
        if path.is_dir():
            return path
        parent = self._dir("mirrors", owner)
        for stale in parent.glob(f"{name}.git.init-*"):  # a crash in the middle of an init
            _remove_tree(stale)
        # Initialised aside and renamed, so a mirror that exists is a complete repository.
        fresh = parent / f"{name}.git.init-{secrets.token_hex(4)}"
        pygit2.init_repository(str(fresh), bare=True)
        fresh.rename(path)
        return path

    def _git_fetch(self, repo: str, mirror: Path, token: str | None, refspecs: list[str]) -> None:
        # The git command line fetches, not pygit2, though it is not faster here: over
        # smart HTTP on 2 CPUs (bench/worktree.py) a first fetch of 17 MB took 410-480 ms
        # with git, 390-430 ms with pygit2 (of 109 MB: 1.99 s and 1.97 s); one new push
        # 60-80 ms against 25-35 ms (git starts three processes). What git buys: a hard
        # deadline (its process group is killed; a stalled libgit2 call cannot be stopped
        # from Python) and auto-gc, where libgit2 adds a pack per fetch and never repacks.
        refs = ", ".join(spec.partition(":")[0].lstrip("+") for spec in refspecs)
        args = ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--"]
        started = time.monotonic()
        code, output = self._run_git(
            mirror,
            [*args, self.clone_url(repo), *refspecs],
            _git_environment(token),
            FETCH_TIMED_OUT.format(refs=refs, repo=repo, seconds=self.fetch_timeout),
        )
        if code != 0:
            detail = _redact(output, token).strip()[-1000:]
            raise GitError(FETCH_FAILED.format(refs=refs, repo=repo, code=code, detail=detail))
        logger.info(FETCHED, refs, repo, time.monotonic() - started)

    def _run_git(
        self, mirror: Path, args: list[str], env: dict[str, str], timed_out: str
    ) -> tuple[int, str]:
        """Run git on the mirror within the deadline: its exit code and its output."""
        git = shutil.which("git")
        if git is None:
            raise GitError(NO_GIT)
        process = subprocess.Popen(
            [git, f"--git-dir={mirror}", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # so a timeout stops git's helpers too
        )
        try:
            output, _ = process.communicate(timeout=self.fetch_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            raise GitError(timed_out) from None
        return process.returncode, output.decode("utf-8", "replace")

    def _add_worktree(
        self, owner: str, name: str, worktree: str, path: Path, commit: pygit2.Oid
    ) -> None:
        # The git command line checks the tree out, not pygit2: for 3,000 files (17 MB,
        # bench/worktree.py, 2 CPUs) `git worktree add` took 126 ms on tmpfs where
        # libgit2's checkout took 274 ms (2.2x); on a disk both take 2.5-2.8 s, creating
        # the files. With no system or global config, hooks pointed at nothing, and no
        # filter driver defined, nothing but git itself runs; the PR's .gitattributes can
        # ask for eol conversions only, as with libgit2. Under the repository lock, like
        # every change to the mirror's worktree list.
        mirror_path = self._mirror_path(owner, name)
        args = ["worktree", "add", "--detach", "--quiet", "--", str(path), str(commit)]
        timed_out = WORKTREE_TIMED_OUT.format(commit=commit, seconds=self.fetch_timeout)
        with _locked(self._repo_lock(owner, name)):
            try:
                code, output = self._run_git(mirror_path, args, _checkout_environment(), timed_out)
            except BaseException:
                _remove_worktree(mirror_path, path, worktree)
                raise
            if code != 0:
                _remove_worktree(mirror_path, path, worktree)
                raise GitError(
                    WORKTREE_FAILED.format(
                        commit=commit, repo=f"{owner}/{name}", detail=output.strip()[-1000:]
                    )
                )

    def _repositories(self) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for owner_dir in _subdirectories(self.cache_dir / "mirrors"):
            for mirror in _subdirectories(owner_dir):
                if mirror.name.endswith(".git"):
                    found.add((owner_dir.name, mirror.name.removesuffix(".git")))
        for owner_dir in _subdirectories(self.cache_dir / "worktrees"):
            found.update((owner_dir.name, d.name) for d in _subdirectories(owner_dir))
        return {(owner, name) for owner, name in found if _valid(owner, name)}

    def _cleanup_repository(self, owner: str, name: str) -> int:
        worktrees = self._dir("worktrees", owner, name)
        mirror_path = self._mirror_path(owner, name)
        candidates = {d.name for d in _subdirectories(worktrees)}
        mirror = _open_repository(mirror_path) if mirror_path.is_dir() else None
        if mirror is not None:
            candidates.update(mirror.list_worktrees())
            candidates.update(
                branch.removeprefix(TEMP_BRANCH_PREFIX)
                for branch in mirror.listall_branches()
                if branch.startswith(TEMP_BRANCH_PREFIX)
            )
        removed = 0
        for worktree in sorted(candidates):
            if _LABEL_UNSAFE.search(worktree) or worktree.startswith("-"):
                continue  # not a name this module made
            lock = worktrees / f"{worktree}.lock"
            held = _try_lock(lock)
            if held is None:
                continue
            try:
                path = worktrees / worktree
                (worktrees / f"{worktree}{READY_SUFFIX}").unlink(missing_ok=True)
                if _remove_worktree(mirror_path, path, worktree):
                    logger.warning(WORKTREE_REMOVED, worktree, f"{owner}/{name}")
                    removed += 1
                if mirror is not None:
                    _delete_branch(mirror, TEMP_BRANCH_PREFIX + worktree)
            finally:
                _release(lock, held)
        return removed


def _split(repo: str) -> tuple[str, str]:
    """Validate `owner/name` (untrusted input) and return it lower-cased for paths."""
    owner, slash, name = repo.partition("/")
    if not slash or not _valid(owner, name):
        raise GitError(BAD_REPO.format(repo=repo[:200]))
    return owner.lower(), name.lower()


def _valid(owner: str, name: str) -> bool:
    return (
        _OWNER.fullmatch(owner) is not None
        and _NAME.fullmatch(name) is not None
        and name not in {".", ".."}
    )


def _pull_number(pull: int) -> int:
    if isinstance(pull, bool) or not isinstance(pull, int) or pull <= 0:
        raise GitError(BAD_PULL.format(pull=pull))
    return pull


def _pull_ref(pull: int) -> str:
    return PULL_REF.format(pull=_pull_number(pull))


def _branch_ref(branch: str) -> str:
    ref = f"refs/heads/{branch}" if isinstance(branch, str) else ""
    if not ref or branch.startswith("-") or not pygit2.reference_is_valid_name(ref):
        raise GitError(BAD_BRANCH.format(branch=branch))
    return ref


def _safe_label(label: str) -> str:
    return _LABEL_UNSAFE.sub("-", label)[:40].strip("-") or "review"


def _open_repository(path: Path) -> pygit2.Repository:
    # NO_SEARCH: a missing or broken mirror must fail, not find a repository further up.
    return pygit2.Repository(str(path), RepositoryOpenFlag.NO_SEARCH)


def _commit_of(mirror: pygit2.Repository, revision: str, repo: str) -> pygit2.Commit:
    """A full commit id, a full ref name, or a branch name; never revparse syntax."""
    unknown = GitError(BAD_REVISION.format(repo=repo, revision=revision))
    try:
        if _SHA.fullmatch(revision):
            found: pygit2.Object | None = mirror.get(revision.lower())
        else:
            ref = revision if revision.startswith("refs/") else f"refs/heads/{revision}"
            if not pygit2.reference_is_valid_name(ref):
                raise unknown
            found = mirror.get(mirror.lookup_reference(ref).resolve().target)
        commit = found.peel(pygit2.Commit) if found is not None else None
    except (KeyError, ValueError, pygit2.GitError) as exc:
        raise unknown from exc
    if not isinstance(commit, pygit2.Commit):
        raise unknown
    return commit


def _changed_file(
    mirror: pygit2.Repository, changes: pygit2.Diff, index: int, delta: pygit2.DiffDelta, room: int
) -> ChangedFile:
    status = _STATUSES.get(delta.status, "modified")
    path = _path_of(delta.new_file)
    old_path = _path_of(delta.old_file) if status == "renamed" else None
    if max(_size(mirror, delta.old_file), _size(mirror, delta.new_file)) > MAX_DIFF_FILE_BYTES:
        return ChangedFile(path, status, 0, 0, old_path=old_path, binary=True)
    patch = changes[index]
    if patch is None:  # libgit2 found nothing to show (a mode change, say)
        return ChangedFile(path, status, 0, 0, old_path=old_path)
    if patch.delta.is_binary:
        return ChangedFile(path, status, 0, 0, old_path=old_path, binary=True)
    _, additions, deletions = patch.line_stats
    added = _added_lines(patch, room)
    return ChangedFile(path, status, additions, deletions, added=added, old_path=old_path)


def _added_lines(patch: pygit2.Patch, room: int) -> tuple[AddedLine, ...]:
    kept: list[AddedLine] = []
    for hunk in patch.hunks:
        for line in hunk.lines:
            if line.origin != "+":
                continue
            if len(kept) >= MAX_ADDED_LINES_PER_FILE or room <= 0:
                return tuple(kept)
            raw = line.raw_content[: MAX_ADDED_LINE_CHARS * 4]  # 4 bytes per char at most
            text = raw.decode("utf-8", "replace").rstrip("\r\n")[:MAX_ADDED_LINE_CHARS]
            kept.append(AddedLine(line.new_lineno, text))
            room -= len(text)
    return tuple(kept)


def _path_of(file: pygit2.DiffFile) -> str:
    return file.raw_path.decode("utf-8", "replace")


def _size(mirror: pygit2.Repository, file: pygit2.DiffFile) -> int:
    if not file.id or file.mode == FileMode.COMMIT:  # absent, or a submodule's commit
        return 0
    return mirror.odb.read_header(file.id)[1]


def _git_environment(token: str | None) -> dict[str, str]:
    """The `git fetch` child's environment: ours, cleaned, plus config for this fetch."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key in _KEPT_GIT_VARIABLES
        or not (key.startswith(_DROPPED_PREFIXES) or key in _DROPPED_VARIABLES)
    }
    config = [
        # No credential helper may answer for us (nor store what we send), and no prompt.
        ("credential.helper", ""),
        ("core.askPass", ""),
        # An empty value first clears any extra header from the operator's config.
        ("http.extraHeader", ""),
        # Auto-gc in the foreground, inside our lock and our timeout, not detached.
        ("gc.autoDetach", "false"),
    ]
    if token is not None:
        config.append(("http.extraHeader", f"Authorization: {_basic_auth(token)}"))
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for number, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{number}"] = key
        env[f"GIT_CONFIG_VALUE_{number}"] = value
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


def _checkout_environment() -> dict[str, str]:
    """A checkout's git: no config but the mirror's own and ours (no system or global
    file, so no filter driver, fsmonitor or hook path of the operator's), no hooks."""
    env = _git_environment(None)
    count = int(env["GIT_CONFIG_COUNT"])
    env[f"GIT_CONFIG_KEY_{count}"] = "core.hooksPath"
    env[f"GIT_CONFIG_VALUE_{count}"] = os.devnull
    env["GIT_CONFIG_COUNT"] = str(count + 1)
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_CONFIG_GLOBAL"] = os.devnull
    return env


def _basic_auth(token: str) -> str:
    return "Basic " + base64.b64encode(f"{TOKEN_USER}:{token}".encode()).decode()


def _redact(text: str, token: str | None) -> str:
    if token:
        for secret in (_basic_auth(token), token):
            text = text.replace(secret, "***")
    return text


def _remove_worktree(mirror_path: Path, path: Path, worktree: str) -> bool:
    """Remove a worktree's directory and its metadata in the mirror; True if either was."""
    removed = False
    if path.is_symlink() or path.exists():
        _remove_tree(path)
        removed = True
    if mirror_path.is_dir():
        mirror = _open_repository(mirror_path)
        # Prunable: its directory is gone. A valid one lives elsewhere: not ours to prune.
        if worktree in mirror.list_worktrees() and mirror.lookup_worktree(worktree).is_prunable:
            mirror.lookup_worktree(worktree).prune(True)
            removed = True
    return removed


def _claim_spare(worktrees: Path, ready_before: float | None = None) -> tuple[str, int] | None:
    """A ready spare's name and its lock, now held, with its marker gone; or None.

    With `ready_before` (a time), only a spare that has been ready since before then.
    """
    for ready in sorted(worktrees.glob(f"{SPARE_PREFIX}*{READY_SUFFIX}")):
        worktree = ready.name.removesuffix(READY_SUFFIX)
        if _LABEL_UNSAFE.search(worktree):
            continue  # not a name this module made
        if ready_before is not None:
            try:
                if ready.stat().st_mtime >= ready_before:
                    continue
            except FileNotFoundError:
                continue  # taken meanwhile
        held = _try_lock(worktrees / f"{worktree}.lock")
        if held is None:
            continue
        if not ready.exists():  # taken and finished between the glob and the lock
            os.close(held)
            continue
        ready.unlink()
        return worktree, held
    return None


def _discard(mirror_path: Path, worktrees: Path, worktree: str, held: int) -> None:
    """Remove a claimed spare, then its lock."""
    try:
        _remove_worktree(mirror_path, worktrees / worktree, worktree)
    finally:
        _release(worktrees / f"{worktree}.lock", held)


def _switch(path: Path, target: pygit2.Commit) -> None:
    """Check a spare out at `target`: only the files that differ are written (libgit2
    compares the index's stat data with the tree), then its HEAD is detached there."""
    tree = _open_repository(path)
    if not tree.head_is_detached or tree.is_bare:
        raise ValueError("not a detached worktree")
    tree.checkout_tree(  # type: ignore[no-untyped-call]  # pygit2 leaves it untyped
        tree[target.id].peel(pygit2.Tree),
        strategy=CheckoutStrategy.FORCE | CheckoutStrategy.REMOVE_UNTRACKED,
    )
    tree.set_head(target.id)


def _delete_branch(mirror: pygit2.Repository, name: str) -> None:
    branch = mirror.branches.local.get(name)
    if branch is not None:
        branch.delete()


def _remove_tree(path: Path) -> None:
    """Remove a directory, also when the code run in it took away write permissions."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
        return
    try:
        shutil.rmtree(path)
        return
    except PermissionError:
        pass
    path.chmod(0o700)
    for root, dirs, _ in os.walk(path):  # top-down: a directory is opened after its chmod
        for child in dirs:
            child_path = os.path.join(root, child)
            if not os.path.islink(child_path):  # chmod would follow the link
                os.chmod(child_path, 0o700)
    shutil.rmtree(path)


def _subdirectories(path: Path) -> list[Path]:
    if not path.is_dir():
        return []
    return [entry for entry in path.iterdir() if entry.is_dir() and not entry.is_symlink()]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path`, waiting for it.

    Each holder opens the file itself, so the lock excludes other threads of this process
    as well as other processes (flock belongs to the open file description).
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def _try_lock(path: Path) -> int | None:
    """The descriptor holding an exclusive flock on `path`, or None if someone holds it."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor


def _release(path: Path, descriptor: int) -> None:
    """Drop a worktree's lock file (its worktree is gone), then the lock itself."""
    path.unlink(missing_ok=True)
    os.close(descriptor)
