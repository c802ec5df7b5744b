"""Git port benchmark: worktrees from the warm mirror, and fetching, against the git CLI.

Builds a repository of --files files (nested directories, text of realistic sizes, a few
binary files, some history) as a bare "GitHub" in a temporary directory, then measures in
the same run, --runs times each, and prints the medians and ratios:

- checkout for a review, from a warm bare mirror:
  `Mirrors.worktree` taking a spare (what a review waits for when the spare was prepared
  at the head, as the fetch of that head does, and when it is 40 files behind, as after
  a review of another head) / the background preparation of that spare /
  `Mirrors.worktree` with spares off (a whole checkout, which `Mirrors` has git's command
  line make) / libgit2's checkout of a new worktree (`Repository.add_worktree`, the way
  `Mirrors` took before) / `git worktree add --detach` run by hand on the same mirror /
  a fresh `git clone` of the "GitHub" repository over smart HTTP (`git http-backend` on
  127.0.0.1 with the token: as from GitHub, minus the network's latency and bandwidth)
  and with `--no-local` from disk (no hardlinks: objects go through pack-objects and
  index-pack, minus HTTP);
- fetch over smart HTTP (the same server): the whole history into an empty mirror, then
  one new push, with pygit2 (`Remote.fetch`, credentials from `RemoteCallbacks`) and with
  the git CLI (`Mirrors.fetch`, which runs `git fetch`).

    python bench/worktree.py [--files 3000] [--runs 7] [--json] [--dir /dev/shm]

Each checkout starts after a `sync`, in an order varied per run. On a disk, creating the
files dominates every whole checkout; `--dir /dev/shm` (tmpfs) shows the CPU cost of each.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root

import pygit2
from pygit2.enums import FileMode

from app.effects.git import PULL_REF, TOKEN_USER, Mirrors
from tests.effects.gitrepos import GitHttpServer, basic_auth, commit

REPO = "bench/widget"
TOKEN = "ghs_BenchToken0000000000000000000000000"  # noqa: S105 (the test server's)
PYGIT2_VERSION = getattr(pygit2, "__version__", "?")
EXAMPLE = "module0.py"  # a file every checkout must have
# Words and symbols of Python-like source, so blobs compress and delta as code does.
VOCABULARY = (
    "def return self import from class if else for while in not and or None True False "
    "value result config request response handler error items index count name path "
    "data user token cache mirror worktree review commit branch fetch = == ( ) [ ] : ,"
)
WORDS = VOCABULARY.split()


def text_file(rng: random.Random, size: int) -> bytes:
    lines = []
    total = 0
    while total < size:
        indent = "    " * rng.randint(0, 3)
        line = indent + " ".join(rng.choices(WORDS, k=rng.randint(3, 12)))
        lines.append(line)
        total += len(line) + 1
    return ("\n".join(lines) + "\n").encode()


def build(repo: pygit2.Repository, files: int, seed: int = 7) -> tuple[str, dict[str, bytes]]:
    """Commit `files` files with some history; return the tip and its snapshot."""
    rng = random.Random(seed)  # noqa: S311 (a reproducible workload, not a secret)
    directories = [""]
    for n in range(150):
        parent = rng.choice(directories)
        if parent.count("/") < 4:
            directories.append(f"{parent}pkg{n}/")
    snapshot: dict[str, bytes] = {EXAMPLE: text_file(rng, 3_000)}
    for n in range(1, files):
        directory = rng.choice(directories)
        if rng.random() < 0.02:
            snapshot[f"{directory}asset{n}.png"] = rng.randbytes(rng.randint(2_000, 60_000))
        else:
            size = int(min(120_000, rng.lognormvariate(8, 1)))  # median about 3 KB
            snapshot[f"{directory}module{n}.py"] = text_file(rng, size)
    tip = commit(repo, snapshot, message="initial import")
    for round_ in range(10):
        for path in rng.sample(sorted(p for p in snapshot if p.endswith(".py")), 40):
            snapshot[path] = snapshot[path] + text_file(rng, 300)
        tip = commit(repo, snapshot, parents=(tip,), message=f"change {round_}")
    repo.references.create("refs/heads/main", tip, force=True)
    repo.set_head("refs/heads/main")  # what a clone checks out
    repo.references.create("refs/pull/1/head", tip, force=True)
    return tip, snapshot


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def git(*args: str | Path) -> None:
    subprocess.run(["git", *map(str, args)], check=True, capture_output=True)


def measure_worktrees(
    mirrors: Mirrors,
    spares: Mirrors,
    mirror: Path,
    remote: Path,
    url: str,
    sha: str,
    work: Path,
    runs: int,
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {
        "worktree, spare at the head": [],
        "worktree, spare 40 files behind": [],
        "spare preparation (background)": [],
        "worktree, no spare": [],
        "worktree removal": [],
        "libgit2 add_worktree": [],
        "git worktree add": [],
        "git worktree remove": [],
        "git clone over smart HTTP": [],
        "git clone --no-local": [],
    }
    rng = random.Random(5)  # noqa: S311 (the order of the measures, varied per run)
    parent = str(pygit2.Repository(str(mirror))[sha].peel(pygit2.Commit).parents[0].id)

    def take(name: str) -> None:
        subprocess.run(["sync"], check=True)
        context = spares.worktree(REPO, sha, label="bench")
        started = time.perf_counter()
        path = context.__enter__()
        times[name].append(time.perf_counter() - started)
        assert path.name.startswith("spare-") and (path / EXAMPLE).is_file()
        context.__exit__(None, None, None)
        spares.settle()  # the next spare, which taking this one started

    def spared(run: int) -> None:
        spares.cleanup()  # no spare left from the run before
        started = time.perf_counter()
        spares.prepare(REPO, parent)
        spares.settle()
        times["spare preparation (background)"].append(time.perf_counter() - started)
        take("worktree, spare 40 files behind")
        take("worktree, spare at the head")  # the one prepared at the head by the take
        spares.cleanup()

    def ours(run: int) -> None:
        context = mirrors.worktree(REPO, sha, label="bench")
        started = time.perf_counter()
        path = context.__enter__()
        times["worktree, no spare"].append(time.perf_counter() - started)
        assert (path / EXAMPLE).is_file()
        times["worktree removal"].append(timed(lambda: context.__exit__(None, None, None)))

    def libgit2(run: int) -> None:
        repository = pygit2.Repository(str(mirror))
        path = work / f"libgit2-{run}"
        started = time.perf_counter()
        branch = repository.branches.local.create(
            f"bench-{run}", repository[sha].peel(pygit2.Commit)
        )
        repository.add_worktree(f"libgit2-{run}", str(path), branch)
        pygit2.Repository(str(path)).set_head(pygit2.Oid(hex=sha))
        times["libgit2 add_worktree"].append(time.perf_counter() - started)
        assert (path / EXAMPLE).is_file()
        shutil.rmtree(path)
        repository.lookup_worktree(f"libgit2-{run}").prune(True)
        branch.delete()

    def cli(run: int) -> None:
        path = work / f"cli-{run}"
        times["git worktree add"].append(
            timed(lambda: git(f"--git-dir={mirror}", "worktree", "add", "--detach", path, sha))
        )
        assert (path / EXAMPLE).is_file()
        times["git worktree remove"].append(
            timed(lambda: git(f"--git-dir={mirror}", "worktree", "remove", "--force", path))
        )

    def clone(run: int) -> None:
        path = work / f"clone-{run}"
        times["git clone --no-local"].append(
            timed(lambda: git("clone", "--quiet", "--no-local", remote, path))
        )
        assert (path / EXAMPLE).is_file()  # checked out, not only fetched
        shutil.rmtree(path)

    def http_clone(run: int) -> None:
        path = work / f"http-clone-{run}"
        header = f"http.extraHeader=Authorization: {basic_auth(TOKEN)}"
        times["git clone over smart HTTP"].append(
            timed(lambda: git("-c", header, "clone", "--quiet", url, path))
        )
        assert (path / EXAMPLE).is_file()
        shutil.rmtree(path)

    measures: list[Callable[[int], None]] = [spared, ours, libgit2, cli, clone, http_clone]
    for run in range(runs):
        for measure in rng.sample(measures, len(measures)):
            subprocess.run(["sync"], check=True)  # no write-back left from the one before
            measure(run)
    return times


def pygit2_fetch(mirror: Path, url: str, refspecs: list[str]) -> None:
    """The pygit2 way: an anonymous remote, the token from a credentials callback."""
    repo = pygit2.Repository(str(mirror))
    callbacks = pygit2.RemoteCallbacks(credentials=pygit2.UserPass(TOKEN_USER, TOKEN))
    repo.remotes.create_anonymous(url).fetch(refspecs, callbacks=callbacks)


def measure_fetches(
    remote_repo: pygit2.Repository, root: Path, work: Path, runs: int
) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {
        "pygit2 fetch, full": [],
        "git fetch, full": [],
        "pygit2 fetch, one push": [],
        "git fetch, one push": [],
    }
    refspecs = ["+refs/pull/1/head:" + PULL_REF.format(pull=1), "+refs/heads/main:refs/heads/main"]
    rng = random.Random(11)  # noqa: S311 (the order of the two, varied per run)
    head = remote_repo.lookup_reference("refs/heads/main").peel(pygit2.Commit)

    def race(actions: dict[str, Callable[[], object]]) -> None:
        for name in rng.sample(sorted(actions), len(actions)):
            times[name].append(timed(actions[name]))

    with GitHttpServer(root, token=TOKEN) as server:
        url = server.url(REPO)
        for run in range(runs):
            cli = Mirrors(work / f"fetch-cli-{run}", clone_url=server.url)
            native = work / f"fetch-pygit2-{run}.git"
            pygit2.init_repository(str(native), bare=True)
            race(
                {
                    "git fetch, full": partial(cli.fetch, REPO, TOKEN, pull=1, branches=["main"]),
                    "pygit2 fetch, full": partial(pygit2_fetch, native, url, refspecs),
                }
            )
            tree = _with_file(remote_repo, head.tree, "pushed.txt", text_file(rng, 5_000))
            pushed = remote_repo.create_commit(
                None, head.author, head.committer, f"push {run}", tree, [head.id]
            )
            remote_repo.references.create("refs/pull/1/head", pushed, force=True)
            race(
                {
                    "git fetch, one push": partial(cli.fetch, REPO, TOKEN, pull=1),
                    "pygit2 fetch, one push": partial(pygit2_fetch, native, url, refspecs[:1]),
                }
            )
            assert cli.head_of_pull(REPO, 1) == str(pushed)
    return times


def _with_file(repo: pygit2.Repository, tree: pygit2.Tree, name: str, data: bytes) -> pygit2.Oid:
    builder = repo.TreeBuilder(tree)
    builder.insert(name, repo.create_blob(data), FileMode.BLOB)
    return builder.write()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--dir", type=Path, default=None, help="where to work (default: the system temp dir)"
    )
    options = parser.parse_args()
    # each run's spares.cleanup() removes the spare left by the run before, on purpose
    logging.getLogger("app.effects.git").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory(prefix="nightshift-bench-", dir=options.dir) as temporary:
        work = Path(temporary)
        root = work / "github"
        remote_path = root / f"{REPO}.git"
        remote_repo = pygit2.init_repository(str(remote_path), bare=True)
        sha, snapshot = build(remote_repo, options.files)
        git(f"--git-dir={remote_path}", "gc", "--quiet")  # packed, as a server's would be
        size = sum(len(data) for data in snapshot.values())

        mirrors = Mirrors(work / "cache", clone_url=lambda repo: str(root / f"{repo}.git"))
        mirrors.fetch(REPO, None, pull=1, branches=["main"])
        spares = Mirrors(work / "cache", spares=True)  # the same cache: the same mirror
        mirror = work / "cache" / "mirrors" / "bench" / "widget.git"
        with GitHttpServer(root, token=TOKEN) as server:
            worktrees = measure_worktrees(
                mirrors, spares, mirror, remote_path, server.url(REPO), sha, work, options.runs
            )
        fetches = measure_fetches(remote_repo, root, work, options.runs)

    medians = {name: statistics.median(values) for name, values in {**worktrees, **fetches}.items()}
    ratios = {
        "worktree, spare at the head / git worktree add": medians["worktree, spare at the head"]
        / medians["git worktree add"],
        "worktree, spare 40 files behind / git worktree add": medians[
            "worktree, spare 40 files behind"
        ]
        / medians["git worktree add"],
        "worktree, no spare / git worktree add": medians["worktree, no spare"]
        / medians["git worktree add"],
        "libgit2 add_worktree / git worktree add": medians["libgit2 add_worktree"]
        / medians["git worktree add"],
        "git clone over smart HTTP / worktree, spare 40 files behind": medians[
            "git clone over smart HTTP"
        ]
        / medians["worktree, spare 40 files behind"],
        "git clone over smart HTTP / worktree, no spare": medians["git clone over smart HTTP"]
        / medians["worktree, no spare"],
        "git clone --no-local / worktree, no spare": medians["git clone --no-local"]
        / medians["worktree, no spare"],
        "pygit2 fetch / git fetch, full": medians["pygit2 fetch, full"]
        / medians["git fetch, full"],
        "pygit2 fetch / git fetch, one push": medians["pygit2 fetch, one push"]
        / medians["git fetch, one push"],
    }
    workload = {
        "files": len(snapshot),
        "bytes": size,
        "commits": 11,
        "runs": options.runs,
        "git": subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip(),
        "pygit2": PYGIT2_VERSION,
        "libgit2": pygit2.LIBGIT2_VERSION,
        "cpus": os.cpu_count(),
    }
    if options.json:
        print(json.dumps({"workload": workload, "medians": medians, "ratios": ratios}, indent=2))
        return
    print(
        f"{workload['files']} files, {size / 1e6:.1f} MB, 11 commits; median of {options.runs}"
        f" runs; {workload['git']}, pygit2 {PYGIT2_VERSION} (libgit2"
        f" {pygit2.LIBGIT2_VERSION}), {workload['cpus']} CPUs"
    )
    for name, value in medians.items():
        spread = {**worktrees, **fetches}[name]
        print(
            f"  {name:<33} {value * 1000:8.1f} ms  (min {min(spread) * 1000:.1f}, max"
            f" {max(spread) * 1000:.1f})"
        )
    for name, value in ratios.items():
        print(f"  {name:<60} {value:6.2f}x")


if __name__ == "__main__":
    main()
