"""Review latency: from a stored `pull_request` delivery to both check runs completed.

Runs Nightshift's real runtime in this process (DBOS on SQLite in a temporary directory,
the delivery and review workflows, the git mirror, the sandbox) against the tests' fake
GitHub (in-process, no network) and a bare "GitHub" repository of --files files served
from disk. For each of --runs pull requests (one changed file each) it measures the time
from the delivery being stored to `Nightshift / spec` and `Nightshift / quality` both
completed on the head, and prints the median and the slowest, in two configurations:

- no commands: everything but running PR code (fetch, worktree, diff, secret scan, gates,
  four check-run requests, the approval and the merge are not in the figure);
- one command `true` in the sandbox: adds the sandbox's own start-up and tear-down.

The target (issue #4): under 2 s plus the configured commands' own run time.

    python bench/review.py [--files 2000] [--runs 10] [--json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root

import pygit2
import yaml

from app.effects.store import NewDelivery
from app.engine.runtime import Runtime
from app.settings import Settings
from tests.effects.gitrepos import commit
from tests.fakes.github import FakeGitHub
from tests.helpers import app_client, body_of, pull_request_event

REPO = "octo/bench"
TASK = 1
ISSUE = "## Acceptance criteria\n- [ ] the change is made\n"
PR_BODY = "Closes #1\n\n- [x] the change is made\n"


def files(count: int) -> dict[str, bytes]:
    out = {}
    for n in range(count):
        path = f"src/pkg{n % 40}/mod{n % 7}/file{n}.py"
        out[path] = (f"# file {n}\n" + "def f():\n    return 1\n" * (n % 30 + 5)).encode()
    out["tests/test_all.py"] = b"def test():\n    assert True\n"
    return out


def measure(tmp: Path, count: int, runs: int, commands: list[dict[str, Any]]) -> list[float]:
    origin_path = tmp / "origin.git"
    shutil.rmtree(origin_path, ignore_errors=True)
    origin = pygit2.init_repository(str(origin_path), bare=True)
    snapshot = files(count)
    base = commit(origin, snapshot, ref="refs/heads/main")
    fake = FakeGitHub()
    config = {"review": {"commands": commands, "require_tests": False, "scope": []}}
    fake.files[(REPO, ".github/nightshift.yml")] = yaml.safe_dump(config)
    issue = fake.issue(REPO, TASK)
    issue.title, issue.body = "Bench", ISSUE
    database = tmp / f"bench-{len(commands)}.db"
    settings = Settings(
        _env_file=None,
        webhook_secret=("bench",),
        database_url=f"sqlite:///{database}",
        cache_dir=tmp / f"cache-{len(commands)}",
        app_id=fake.app_id,
        private_key=fake.private_key,
        write_interval_seconds=0,
    )
    runtime = Runtime(settings, github=app_client(fake), clone_url=lambda repo: str(origin_path))
    runtime.launch(workers=True)
    ids = itertools.count(1)
    timings: list[float] = []
    try:
        for run in range(runs + 1):  # the first one warms the mirror up: not counted
            number = 100 + run
            runtime.store.transition(REPO, TASK, None, "in_progress", None)
            runtime.store.set_task_agent(REPO, TASK, "agent")
            changed = {**snapshot, f"src/pkg0/mod0/file{run}.py": f"# run {run}\n".encode()}
            sha = commit(origin, changed, parents=(base,), ref=f"refs/pull/{number}/head")
            fake.pull(
                REPO,
                number,
                body=PR_BODY,
                head_ref=f"nightshift/issue-{TASK}",
                head_sha=sha,
                base_sha=base,
                author="agent",
            )
            data = pull_request_event(
                "opened",
                number=number,
                head_sha=sha,
                body=PR_BODY,
                head_ref=f"nightshift/issue-{TASK}",
                author="agent",
                repo=REPO,
            )
            started = time.perf_counter()
            runtime.store.insert_deliveries(
                [NewDelivery(f"b{next(ids)}", "pull_request", "opened", REPO, 77, body_of(data))]
            )
            runtime.wake()
            while True:
                done = [
                    check
                    for check in list(fake.check_runs.values())
                    if check["head_sha"] == sha and check["status"] == "completed"
                ]
                if len(done) >= 2:
                    break
                if time.perf_counter() - started > 120:
                    raise SystemExit(f"run {run}: the check runs did not complete in 120 s")
                time.sleep(0.005)
            elapsed = time.perf_counter() - started
            if run:
                timings.append(elapsed)
            # let this review finish (approve, merge) before the next one starts
            time.sleep(0.3)
            with runtime.store.engine.begin() as connection:
                connection.exec_driver_sql("DELETE FROM tasks")
    finally:
        runtime.shutdown()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        configurations = {
            "no commands": [],
            "one command `true` in the sandbox": [{"name": "noop", "run": "true"}],
        }
        for label, commands in configurations.items():
            print(f"measuring: {label} ...", file=sys.stderr)
            timings = measure(Path(tmp), args.files, args.runs, commands)
            results[label] = {
                "median_s": statistics.median(timings),
                "max_s": max(timings),
                "runs": len(timings),
            }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"from a stored pull_request delivery to both check runs completed ({args.files} files)")
    print(f"{'configuration':40} {'median':>8} {'slowest':>8}  target")
    for label, figures in results.items():
        print(f"{label:40} {figures['median_s']:7.2f}s {figures['max_s']:7.2f}s  < 2 s + commands")


if __name__ == "__main__":
    main()
