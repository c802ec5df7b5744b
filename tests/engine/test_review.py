"""The review, end to end: a pull_request delivery, the durable review workflow on the real
engine, a real git repository fetched into a real mirror, the commands in the real sandbox,
and the shared fake GitHub receiving the check runs, the review and the merge."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pygit2
import pytest
import sqlalchemy as sa
import yaml
from dbos import DBOS

from app.core import ci_log, gates, labels, roster
from app.core import revert as rules_revert
from app.core.rules import review as rules
from app.effects.store import NewDelivery
from app.effects.tables import pulls, tasks
from app.engine.runtime import Runtime
from app.settings import Settings
from tests.effects.gitrepos import commit
from tests.fakes.github import FakeGitHub
from tests.helpers import (
    app_client,
    body_of,
    command_comment,
    pull_request_event,
    workflow_run_event,
)

REPO = "octo/repo"
TASK = 5
AGENT = "agent-bot"
ISSUE_BODY = """Make the greeting friendlier.

## Acceptance criteria
- [ ] greet says hello

## Scope
- `src/**`
- `tests/**`
"""
PR_BODY = "Closes #5\n\n- [x] greet says hello\n"
BASE_FILES = {
    "README.md": b"# repo\n",
    "src/greet.txt": b"hi\n",
    "tests/check.sh": b'grep -q hello src/greet.txt || { echo "greeting is not hello"; exit 1; }\n',
}
GOOD_CHANGE = {
    "src/greet.txt": b"hello\n",
    "tests/check.sh": BASE_FILES["tests/check.sh"] + b"# checks the greeting\n",
}
CONFIG: dict[str, Any] = {
    "review": {
        "commands": [{"name": "tests", "run": "sh tests/check.sh", "timeout_seconds": 60}],
        "required_checks": ["ci/test"],
        "code_paths": ["src/**"],
        "test_paths": ["tests/**"],
    }
}
needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap missing")


@dataclass
class Scene:
    runtime: Runtime
    fake: FakeGitHub
    origin: pygit2.Repository
    base: str
    deliveries: Iterator[int]

    def push(
        self, number: int, change: Mapping[str, bytes | None], *, parent: str | None = None
    ) -> str:
        """A commit of the base with `change` (None deletes), as the PR's head on "GitHub"."""
        files = dict(BASE_FILES)
        for path, data in change.items():
            if data is None:
                files.pop(path, None)
            else:
                files[path] = data
        sha = commit(
            self.origin, files, parents=(parent or self.base,), ref=f"refs/pull/{number}/head"
        )
        if (REPO, number) in self.fake.pulls:
            self.fake.push(REPO, number, sha)
        return sha

    def open(
        self,
        number: int,
        change: Mapping[str, bytes | None],
        *,
        author: str = AGENT,
        fork: bool = False,
        body: str = PR_BODY,
        ci: str | None = "success",
        action: str = "opened",
    ) -> str:
        sha = self.push(number, change)
        self.fake.pull(
            REPO,
            number,
            title="Friendlier greeting",
            body=body,
            head_ref=f"nightshift/issue-{TASK}-greeting",
            head_sha=sha,
            base_sha=self.base,
            author=author,
            fork=fork,
        )
        if ci is not None:
            self.fake.add_check(REPO, sha, "ci/test", conclusion=ci)
        self.deliver("pull_request", self.pr_event(number, sha, action, author, fork, body))
        return sha

    def pr_event(
        self,
        number: int,
        sha: str,
        action: str,
        author: str = AGENT,
        fork: bool = False,
        body: str = PR_BODY,
    ) -> dict[str, Any]:
        return pull_request_event(
            action,
            number=number,
            head_sha=sha,
            body=body,
            head_ref=f"nightshift/issue-{TASK}-greeting",
            author=author,
            fork=fork,
        )

    def deliver(self, event: str, data: Mapping[str, Any]) -> str:
        delivery_id = f"d{next(self.deliveries)}"
        action = data.get("action")
        item = NewDelivery(
            delivery_id, event, action if isinstance(action, str) else None, REPO, 77, body_of(data)
        )
        assert self.runtime.store.insert_deliveries([item]) == {delivery_id}
        self.runtime.wake()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = {r.id: r for r in self.runtime.store.list_deliveries(limit=1000)}
            row = rows.get(delivery_id)
            if row is not None and row.status not in ("queued",):
                assert row.status in ("done", "ignored"), row.error
                return row.status
            time.sleep(0.05)
        raise AssertionError(f"delivery {delivery_id} not processed")

    def review(self, number: int, sha: str, attempt: str = "push") -> str:
        """Wait for the review of that head (the attempt's id starts with `attempt`) and
        return how it ended."""
        prefix = f"review:{REPO}#{number}@{sha}:{attempt}"
        deadline = time.monotonic() + 60
        while not (found := DBOS.list_workflows(workflow_id_prefix=prefix, load_input=False)):
            assert time.monotonic() < deadline, f"{prefix} never started"
            time.sleep(0.05)
        return str(DBOS.retrieve_workflow(found[0].workflow_id).get_result())

    def state(self) -> str:
        task = self.runtime.store.task(REPO, TASK)
        assert task is not None
        return task.state.value

    def checks(self, sha: str) -> dict[str, tuple[str | None, str]]:
        """Nightshift's check runs on the head: name -> (conclusion, output title)."""
        return {
            run["name"]: (run["conclusion"], (run.get("output") or {}).get("title", ""))
            for run in self.fake.check_runs.values()
            if run["head_sha"] == sha and run["name"].startswith(rules.CHECK_PREFIX)
        }


@pytest.fixture
def scene(settings: Settings, fake_github: FakeGitHub, tmp_path: Path) -> Iterator[Scene]:
    origin_path = tmp_path / "origin.git"
    origin = pygit2.init_repository(str(origin_path), bare=True)
    base = commit(origin, BASE_FILES, ref="refs/heads/main")
    fake_github.files[(REPO, ".github/nightshift.yml")] = yaml.safe_dump(CONFIG)
    issue = fake_github.issue(REPO, TASK)
    issue.title, issue.body = "Friendlier greeting", ISSUE_BODY
    fast = settings.model_copy(update={"ci_poll_seconds": 0.05})
    runtime = Runtime(fast, github=app_client(fake_github), clone_url=lambda repo: str(origin_path))
    runtime.launch(workers=True)
    runtime.store.transition(REPO, TASK, None, "in_progress", None)
    runtime.store.set_task_agent(REPO, TASK, AGENT)
    try:
        yield Scene(runtime, fake_github, origin, base, itertools.count(1))
    finally:
        runtime.shutdown()


SPEC, QUALITY = rules.SPEC_CHECK, rules.QUALITY_CHECK


@needs_bwrap
def test_a_pr_that_passes_both_gates_is_merged_at_the_reviewed_head(scene: Scene) -> None:
    sha = scene.open(7, GOOD_CHANGE)
    assert scene.review(7, sha) == "merged"
    short = sha[:7]
    assert scene.fake.effects == [
        f"{REPO}@{short}:check:{SPEC}:in_progress",
        f"{REPO}@{short}:check:{QUALITY}:in_progress",
        f"{REPO}@{short}:check:{SPEC}:success",
        f"{REPO}@{short}:check:{QUALITY}:success",
        f"{REPO}#7:review:APPROVE",
        f"{REPO}#7:merged@{short}:squash",
        f"{REPO}#{TASK}:comment:{rules.MERGED.format(pull=7, sha=short)}",
    ]
    merges = [r for r in scene.fake.requests if r.method == "PUT"]
    assert [r.json for r in merges] == [{"sha": sha, "merge_method": "squash"}]
    assert scene.state() == "done"


@needs_bwrap
def test_scope_creep_gets_fix_instructions_listing_each_path_outside(scene: Scene) -> None:
    sha = scene.open(8, {**GOOD_CHANGE, "docs/extra.md": b"more\n", "setup.cfg": b"[x]\n"})
    assert scene.review(8, sha) == "fix"
    assert scene.checks(sha)[SPEC][0] == "failure"
    review = scene.fake.pulls[(REPO, 8)].reviews[-1]
    assert review["state"] == "CHANGES_REQUESTED"
    assert "`docs/extra.md`" in review["body"] and "`setup.cfg`" in review["body"]
    assert f"@{AGENT}" in review["body"]
    assert not any(":merged@" in e for e in scene.fake.effects)
    assert scene.state() == "changes_requested"
    pull = scene.runtime.store.pull(REPO, 8)
    assert pull is not None and pull.fix_rounds == 1


@needs_bwrap
def test_failing_tests_get_fix_instructions_then_the_fix_is_merged(scene: Scene) -> None:
    bad = scene.open(9, {**GOOD_CHANGE, "src/greet.txt": b"hey\n"})
    assert scene.review(9, bad) == "fix"
    assert scene.checks(bad) == {
        SPEC: ("success", scene.checks(bad)[SPEC][1]),
        QUALITY: ("failure", scene.checks(bad)[QUALITY][1]),
    }
    body = scene.fake.pulls[(REPO, 9)].reviews[-1]["body"]
    assert "greeting is not hello" in body  # the log excerpt of the failing command
    assert gates.FIX_HEADING.format(task=TASK, round=1, max_rounds=5) in body
    assert scene.state() == "changes_requested"

    good = scene.push(9, GOOD_CHANGE, parent=bad)
    scene.fake.add_check(REPO, good, "ci/test")
    scene.deliver("pull_request", scene.pr_event(9, good, "synchronize"))
    assert scene.review(9, good) == "merged"
    assert scene.state() == "done"
    assert f"{REPO}#9:merged@{good[:7]}:squash" in scene.fake.effects
    pull = scene.runtime.store.pull(REPO, 9)
    assert pull is not None and pull.fix_rounds == 1


# the repository's test command writes a JUnit report, as pytest --junitxml would
JUNIT_SCRIPT = b"""mkdir -p reports
if grep -q hello src/greet.txt; then failure=''; else failure='<failure message="no"/>'; fi
printf '<?xml version="1.0"?><testsuites><testsuite name="greet">\
<testcase classname="tests.greet" name="test_says_hello">%s</testcase>\
<testcase classname="tests.greet" name="test_is_short"/>\
<testcase classname="tests.greet" name="test_in_french"><skipped/></testcase>\
</testsuite></testsuites>' "$failure" > reports/junit.xml
[ -z "$failure" ] || { echo "greeting is not hello"; exit 1; }
"""
REPORTED = {
    "review": {
        **CONFIG["review"],
        "commands": [{"name": "tests", "run": "sh tests/junit.sh", "timeout_seconds": 60}],
        "tests_report": "reports/junit.xml",
    }
}


@needs_bwrap
def test_the_test_report_is_summarized_named_in_the_fix_and_kept_for_the_report(
    scene: Scene,
) -> None:
    scene.fake.files[(REPO, ".github/nightshift.yml")] = yaml.safe_dump(REPORTED)
    scene.runtime.configs.forget(REPO)
    change = {**GOOD_CHANGE, "tests/junit.sh": JUNIT_SCRIPT}

    def summary(sha: str) -> str:
        (run,) = [
            r
            for r in scene.fake.check_runs.values()
            if r["head_sha"] == sha and r["name"] == QUALITY
        ]
        return str(run["output"]["summary"])

    def counts() -> tuple[int | None, int | None]:
        with scene.runtime.store.engine.connect() as connection:
            row = connection.execute(
                sa.select(pulls.c.tests_passed, pulls.c.tests_failed).where(pulls.c.number == 11)
            ).one()
        return row.tests_passed, row.tests_failed

    bad = scene.open(11, {**change, "src/greet.txt": b"hey\n"})
    assert scene.review(11, bad) == "fix"
    assert gates.TESTS_COUNTED.format(passed=1, failed=1) in summary(bad).splitlines()
    body = scene.fake.pulls[(REPO, 11)].reviews[-1]["body"]
    failed = gates.TESTS_FAILED.format(
        count=1, s="", path="`reports/junit.xml`", names="`tests.greet.test_says_hello`"
    )
    assert f"- {failed}" in body
    assert counts() == (1, 1)

    good = scene.push(11, change, parent=bad)
    scene.fake.add_check(REPO, good, "ci/test")
    scene.deliver("pull_request", scene.pr_event(11, good, "synchronize"))
    assert scene.review(11, good) == "merged"
    assert summary(good).endswith("\nTests: 2 passed, 0 failed.")
    assert counts() == (2, 0)


@needs_bwrap
def test_five_failed_rounds_block_the_task_with_a_deferred_escalation(scene: Scene) -> None:
    head = scene.open(10, {**GOOD_CHANGE, "src/greet.txt": b"hey\n"})
    assert scene.review(10, head) == "fix"
    for attempt in range(1, 6):
        head = scene.push(10, {**GOOD_CHANGE, "src/greet.txt": f"hey {attempt}\n".encode()})
        scene.fake.add_check(REPO, head, "ci/test")
        scene.deliver("pull_request", scene.pr_event(10, head, "synchronize"))
        assert scene.review(10, head) == ("fix" if attempt < 5 else "blocked")
    assert scene.state() == "blocked"
    assert f"{REPO}#10:+{rules.BLOCKED_LABEL}" in scene.fake.effects
    assert not any(":merged@" in e for e in scene.fake.effects)
    escalations = scene.runtime.store.escalations(REPO)
    assert [(e["level"], e["category"]) for e in escalations] == [("deferred", "fix-rounds")]


@needs_bwrap
def test_a_protected_path_fails_gate_one_and_opens_one_urgent_issue(scene: Scene) -> None:
    change = {**GOOD_CHANGE, ".github/workflows/ci.yml": b"on: push\n"}
    sha = scene.open(11, change)
    assert scene.review(11, sha) == "fix"
    assert scene.checks(sha)[SPEC][0] == "failure"
    opened = [e for e in scene.fake.effects if ":opened:" in e]
    assert len(opened) == 1 and "#11" in opened[0]
    urgent = [i for i in scene.fake.issues.values() if labels.URGENT_LABEL in i.labels]
    assert len(urgent) == 1 and "`.github/workflows/ci.yml`" in urgent[0].body
    # the same head reviewed again (ok-to-test by a maintainer) raises no second issue
    scene.fake.permissions[(REPO, "maintainer")] = "write"
    scene.deliver("issue_comment", _comment("/nightshift ok-to-test", 11))
    assert scene.review(11, sha, "ok-to-test") == "fix"
    assert len([e for e in scene.fake.effects if ":opened:" in e]) == 1


@needs_bwrap
def test_a_leaked_secret_fails_gate_two_without_echoing_it(scene: Scene) -> None:
    key = "AKIA" + "Q7X3M2N4P5R6S7T8"
    sha = scene.open(12, {**GOOD_CHANGE, "src/config.txt": f"aws_key = {key}\n".encode()})
    assert scene.review(12, sha) == "fix"
    assert scene.checks(sha)[QUALITY][0] == "failure"
    sent = [str(r.json) for r in scene.fake.requests if r.json is not None]
    assert not any(key in text for text in sent)
    assert any(e["category"] == "security" for e in scene.runtime.store.escalations(REPO))


@needs_bwrap
def test_a_fork_waits_for_ok_to_test_before_its_code_runs_and_is_never_merged(scene: Scene) -> None:
    sha = scene.open(
        13, {**GOOD_CHANGE, "tests/check.sh": b"touch /workspace/ran; exit 0\n"}, fork=True
    )
    assert scene.review(13, sha) == "wait"
    assert scene.checks(sha)[QUALITY][0] == "action_required"
    assert f"{REPO}#13:comment:" + rules.WAITING_COMMENT.format(pull=13, who="a fork") in (
        scene.fake.effects
    )
    assert not any(":merged@" in e for e in scene.fake.effects)
    # a reader cannot let it run
    scene.deliver("issue_comment", _comment("/nightshift ok-to-test", 13, login="reader"))
    assert not DBOS.list_workflows(workflow_id_prefix=f"review:{REPO}#13@{sha}:ok-to-test")
    scene.fake.permissions[(REPO, "maintainer")] = "write"
    scene.deliver("issue_comment", _comment("/nightshift ok-to-test", 13))
    assert scene.review(13, sha, "ok-to-test") == "passed"
    # its code ran and passed; a fork's PR is still never merged by Nightshift
    assert scene.checks(sha)[QUALITY][0] == "success"
    assert not [r for r in scene.fake.requests if r.method == "PUT"]
    assert any(
        e.startswith(f"{REPO}#13:comment:Both gates passed on {sha[:7]}")
        for e in scene.fake.effects
    )


ROSTER = f"""| Agent | GitHub | Capabilities | Transport | Endpoint | Max tasks | Backup |
|---|---|---|---|---|---|---|
| bot | {AGENT} | python | github | mention:@{AGENT} | 3 | - |
"""
# the last attempt's log of the failing job, as Actions writes it
CI_LOG = "".join(
    f"2024-05-01T02:03:{n:02}.0000000Z {line}\n"
    for n, line in enumerate(
        [
            "##[group]Run sh tests/check.sh",
            "sh tests/check.sh",
            "##[endgroup]",
            "greeting is not hello ``` @acme/security",
            "##[error]Process completed with exit code 1.",
            "Cleaning up orphan processes",
        ]
    )
)
CI_EXCERPT = (
    "````text\n##[group]Run sh tests/check.sh\nsh tests/check.sh\n##[endgroup]\n"
    "greeting is not hello ``` @acme/security\n##[error]Process completed with exit code 1.\n"
    "Cleaning up orphan processes\n````"
)


def rostered(scene: Scene) -> None:
    """The task's agent is `bot` of the roster, told through a mention on the task's issue."""
    scene.fake.files[(REPO, "AGENT_ROSTER.md")] = ROSTER  # what a dispatch pass reads again
    scene.runtime.store.remember_roster(REPO, roster.parse(ROSTER).agents)
    with scene.runtime.store.engine.begin() as connection:
        connection.execute(sa.update(tasks).where(tasks.c.number == TASK).values(agent_name="bot"))


def ci_comment(scene: Scene, number: int) -> str:
    (body,) = [
        str(c["body"])
        for c in scene.fake.issue(REPO, number).comments
        if str(c["body"]).startswith("CI still fails")
    ]
    return body


@needs_bwrap
def test_ci_failures_are_rerun_three_times_then_the_task_is_blocked(scene: Scene) -> None:
    rostered(scene)
    sha = scene.open(14, GOOD_CHANGE, ci="failure")
    assert scene.review(14, sha) == "fix"
    scene.fake.add_job(REPO, 900, "lint", "success", attempt=4)
    job = scene.fake.add_job(REPO, 900, "test", attempt=4, log=CI_LOG, failed_step="Run tests")
    for attempt in range(1, 5):
        scene.deliver("workflow_run", workflow_run_event(run_id=900, head_sha=sha, attempt=attempt))
    assert [e for e in scene.fake.effects if "rerun-failed-jobs" in e] == [
        f"{REPO}:rerun-failed-jobs:900"
    ] * 3
    assert scene.state() == "blocked"
    assert f"{REPO}#14:+{rules.BLOCKED_LABEL}" in scene.fake.effects
    # the pull request says why, in CI's words, and so does the message the agent gets
    heading = (
        f"#### `test`, step `Run tests` (https://github.com/{REPO}/actions/runs/900/job/{job})"
    )
    comment = ci_comment(scene, 14)
    assert f"\n\n{ci_log.LOG_INTRO}\n\n{heading}\n\n{CI_EXCERPT}\n\n" in comment
    told = [
        str(c["body"])
        for c in scene.fake.issue(REPO, TASK).comments
        if str(c["body"]).startswith(f"@{AGENT} ") and CI_EXCERPT in str(c["body"])
    ]
    assert len(told) == 1
    assert f"pull request #14 (`{REPO}#{TASK}`)" in told[0]
    assert f"{heading}\n\n{CI_EXCERPT}" in told[0]
    # the log was read once, when the head was blocked, and without the installation token
    downloads = [r for r in scene.fake.requests if r.path.endswith("/signedlogcontent")]
    assert [r.auth for r in downloads] == [""]


@needs_bwrap
def test_a_ci_log_github_no_longer_has_is_said_to_be_unreadable(scene: Scene) -> None:
    no_reruns = {**CONFIG, "limits": {"max_retry_attempts": 0}}
    scene.fake.files[(REPO, ".github/nightshift.yml")] = yaml.safe_dump(no_reruns)
    scene.runtime.configs.forget(REPO)
    sha = scene.open(15, GOOD_CHANGE, ci="failure")
    assert scene.review(15, sha) == "fix"
    job = scene.fake.add_job(REPO, 901, "test", log="expired")
    scene.fake.fail("GET", rf"/repos/{REPO}/actions/jobs/{job}/logs", 410, body={"message": "Gone"})
    assert scene.deliver("workflow_run", workflow_run_event(run_id=901, head_sha=sha)) == "done"
    assert scene.state() == "blocked"
    unreadable = ci_log.LOG_UNREADABLE.format(why="GitHub answered 410 (Gone)")
    assert f"/901/job/{job})\n\n{unreadable}\n\n<!--" in ci_comment(scene, 15)  # the marker


@needs_bwrap
def test_a_conflict_is_never_resolved_the_agent_rebases_and_the_new_head_merges(
    scene: Scene,
) -> None:
    sha = scene.push(15, GOOD_CHANGE)
    scene.fake.pull(
        REPO,
        15,
        body=PR_BODY,
        head_ref=f"nightshift/issue-{TASK}-greeting",
        head_sha=sha,
        base_sha=scene.base,
        author=AGENT,
        mergeable=[False],
    )
    scene.fake.add_check(REPO, sha, "ci/test")
    scene.deliver("pull_request", scene.pr_event(15, sha, "opened"))
    assert scene.review(15, sha) == "conflict"
    assert not any(":merged@" in e for e in scene.fake.effects)
    assert not [r for r in scene.fake.requests if r.method == "PUT"]
    rebase = rules.CONFLICT.format(mention=f"@{AGENT} ", pull=15, base="main")
    assert f"{REPO}#15:comment:{rebase}" in scene.fake.effects
    assert scene.state() == "blocked"

    # the agent rebases: the new head is reviewed, unblocks the task and merges
    scene.fake.pulls[(REPO, 15)].mergeable = [True]
    rebased = scene.push(15, {**GOOD_CHANGE, "src/greet.txt": b"hello, rebased\n"})
    scene.fake.add_check(REPO, rebased, "ci/test")
    scene.deliver("pull_request", scene.pr_event(15, rebased, "synchronize"))
    assert scene.review(15, rebased) == "merged"
    assert f"{REPO}#15:-{rules.BLOCKED_LABEL}" in scene.fake.effects
    assert scene.state() == "done"


@needs_bwrap
def test_a_head_that_moves_during_the_review_is_not_merged(scene: Scene) -> None:
    moved = "f" * 40
    seen = scene.fake.contract

    def push_while_approving(request: httpx.Request, response: httpx.Response) -> None:
        # the agent pushes right after the approval: GitHub now has another head
        if request.method == "POST" and request.url.path.endswith("/pulls/16/reviews"):
            scene.fake.pulls[(REPO, 16)].head_sha = moved
        if seen is not None:
            seen(request, response)

    scene.fake.contract = push_while_approving
    sha = scene.open(16, GOOD_CHANGE)
    assert scene.review(16, sha) == "superseded"
    assert not [r for r in scene.fake.requests if r.method == "PUT"]
    assert scene.state() == "in_review"


def _comment(body: str, number: int, login: str = "maintainer") -> dict[str, Any]:
    data = command_comment(body, login=login, number=number)
    data["issue"]["pull_request"] = {"url": f"https://api.github.com/repos/{REPO}/pulls/{number}"}
    return data


@needs_bwrap
def test_a_new_push_cancels_the_review_of_the_old_head(scene: Scene) -> None:
    engine = scene.runtime.reviews
    engine.tools = dataclasses.replace(engine.tools, poll_seconds=30)
    old = scene.open(17, GOOD_CHANGE, ci=None)  # its required check never comes: it waits
    waiting = f"review:{REPO}#17@{old}:push"
    deadline = time.monotonic() + 30
    while scene.checks(old).get(SPEC, (None, ""))[0] != "success":
        assert time.monotonic() < deadline, "the old head's review did not reach gate 2"
        time.sleep(0.05)
    new = scene.push(17, {**GOOD_CHANGE, "src/greet.txt": b"hello again\n"})
    scene.fake.add_check(REPO, new, "ci/test")
    engine.tools = dataclasses.replace(engine.tools, poll_seconds=0.05)
    scene.deliver("pull_request", scene.pr_event(17, new, "synchronize"))
    assert scene.review(17, new) == "merged"
    status = DBOS.get_workflow_status(waiting)
    assert status is not None and status.status == "CANCELLED"
    merges = [r.json for r in scene.fake.requests if r.method == "PUT"]
    assert merges == [{"sha": new, "merge_method": "squash"}]


@needs_bwrap
def test_a_merge_that_turns_main_red_is_reverted_by_a_pull_request_and_escalated_once(
    scene: Scene,
) -> None:
    # the squash commit GitHub's merge makes, real in the origin; main moves on after it
    merged_files = {**BASE_FILES, **GOOD_CHANGE}
    squash = commit(
        scene.origin, merged_files, parents=(scene.base,), message="Friendlier greeting (#7)"
    )
    scene.fake.pull(REPO, 7, merges_as=squash)
    sha = scene.open(7, GOOD_CHANGE)
    assert scene.review(7, sha) == "merged"
    later_check = b"#!/bin/sh\n" + merged_files["tests/check.sh"]
    later = commit(
        scene.origin,
        {**merged_files, "tests/check.sh": later_check},
        parents=(squash,),
        ref="refs/heads/main",
    )
    pull = scene.runtime.store.pull(REPO, 7)
    assert pull is not None and pull.merged_sha == squash
    scene.fake.add_check(REPO, squash, "ci/test", conclusion="failure")
    before = len(scene.fake.requests)

    red = workflow_run_event(run_id=901, head_sha=squash, head_branch="main")
    scene.deliver("workflow_run", red)

    sent = [r for r in scene.fake.requests[before:] if r.method == "POST"]
    by_path = {r.path.removeprefix(f"/repos/{REPO}"): r.json for r in sent}
    # only the content main has now and GitHub has not is uploaded: tests/check.sh merged
    # three-way (main's new first line kept, the PR's last line gone); src/greet.txt goes
    # back to the blob it had before the merge
    assert by_path["/git/blobs"] == {
        "content": base64.b64encode(b"#!/bin/sh\n" + BASE_FILES["tests/check.sh"]).decode(),
        "encoding": "base64",
    }
    uploaded = next(iter(k for (r, k) in scene.fake.blobs if r == REPO))
    assert by_path["/git/trees"] == {
        "base_tree": str(scene.origin[later].peel(pygit2.Commit).tree.id),
        "tree": [
            {
                "path": "src/greet.txt",
                "mode": "100644",
                "type": "blob",
                "sha": str(pygit2.hash(BASE_FILES["src/greet.txt"])),
            },
            {"path": "tests/check.sh", "mode": "100644", "type": "blob", "sha": uploaded},
        ],
    }
    (tree_sha,) = [k for (r, k) in scene.fake.trees if r == REPO]
    assert by_path["/git/commits"] == {
        "message": f'Revert "Friendlier greeting"\n\nThis reverts #7 ({squash}) because '
        "ci/test failed on main.\n",
        "tree": tree_sha,
        "parents": [later],
    }
    (commit_sha,) = [k for (r, k) in scene.fake.commits if r == REPO]
    assert by_path["/git/refs"] == {"ref": "refs/heads/nightshift/revert-7", "sha": commit_sha}
    urgent = [n for (r, n), i in scene.fake.issues.items() if labels.URGENT_LABEL in i.labels]
    assert len(urgent) == 1
    issue = scene.fake.issues[(REPO, urgent[0])]
    assert "#7" in issue.body and "`nightshift/revert-7`" in issue.body
    assert by_path["/pulls"] == {
        "title": "Revert #7: Friendlier greeting",
        "head": "nightshift/revert-7",
        "base": "main",
        "body": rules_revert.PULL_BODY.format(
            pull=7, sha=squash[:7], task=TASK, checks="`ci/test`", branch="`main`", closes=""
        )
        + rules_revert.CLOSES.format(issue=urgent[0]),
    }
    title = rules.RED_MERGE_TITLE.format(branch="main", pull=7, checks="ci/test")
    revert_pull = urgent[0] + 1
    assert scene.fake.effects[-3:] == [
        f"{REPO}#{urgent[0]}:opened:{title}",
        f"{REPO}:ref:nightshift/revert-7",
        f"{REPO}#{revert_pull}:opened-pull:Revert #7: Friendlier greeting",
    ]
    escalations = scene.runtime.store.escalations(REPO)
    assert [(e["level"], e["category"]) for e in escalations] == [("immediate", "red-merge")]

    # the same delivery again, and another red workflow on that commit: nothing more
    effects, writes = list(scene.fake.effects), len(sent)
    scene.deliver("workflow_run", red)
    scene.deliver("workflow_run", workflow_run_event(run_id=902, head_sha=squash, name="Lint"))
    assert scene.fake.effects == effects
    again = [r for r in scene.fake.requests[before:] if r.method == "POST"]
    assert [r.path for r in again[writes:]] == [
        "/app/installations/77/access_tokens" for _ in again[writes:]
    ]
    assert len(scene.runtime.store.escalations(REPO)) == 1


@needs_bwrap
def test_a_review_that_cannot_finish_says_so_on_both_checks(scene: Scene) -> None:
    sha = scene.push(18, GOOD_CHANGE)
    scene.fake.pull(REPO, 18, body=PR_BODY, head_sha=sha, base_sha=scene.base, author=AGENT)
    # the task's issue cannot be read (a 404 every time): the gather step gives up
    scene.fake.fail("GET", rf"/repos/{REPO}/issues/{TASK}", 404, times=100)
    scene.deliver("pull_request", scene.pr_event(18, sha, "opened"))
    assert scene.review(18, sha) == "error"
    assert scene.checks(sha) == {
        SPEC: ("failure", rules.REVIEW_FAILED),
        QUALITY: ("failure", rules.REVIEW_FAILED),
    }
    escalations = scene.runtime.store.escalations(REPO)
    assert [(e["level"], e["category"]) for e in escalations] == [("deferred", "review-error")]


@needs_bwrap
def test_a_merge_whose_answer_was_lost_is_still_finished(scene: Scene) -> None:
    # GitHub merges, then the answer becomes a 502 on the way back
    scene.fake.fail("PUT", rf"/repos/{REPO}/pulls/19/merge", 502, after_doing_it=True)
    sha = scene.open(19, GOOD_CHANGE)
    assert scene.review(19, sha) == "merged"
    assert scene.state() == "done"
    pull = scene.runtime.store.pull(REPO, 19)
    merged = scene.fake.pulls[(REPO, 19)].merge_commit_sha
    assert pull is not None and merged and pull.merged_sha == merged
    assert [e for e in scene.fake.effects if ":merged@" in e] == [
        f"{REPO}#19:merged@{sha[:7]}:squash"
    ]


@needs_bwrap
def test_a_late_event_for_an_older_head_does_not_cancel_the_current_review(scene: Scene) -> None:
    old = scene.open(20, GOOD_CHANGE, ci=None)
    assert scene.review(20, old) == "fix"  # its required check never reported
    engine = scene.runtime.reviews
    engine.tools = dataclasses.replace(engine.tools, poll_seconds=30)
    new = scene.push(20, {**GOOD_CHANGE, "src/greet.txt": b"hello again\n"})
    scene.deliver("pull_request", scene.pr_event(20, new, "synchronize"))
    current = f"review:{REPO}#20@{new}:push"
    deadline = time.monotonic() + 30
    while scene.checks(new).get(SPEC, (None, ""))[0] != "success":
        assert time.monotonic() < deadline, "the current head's review did not reach gate 2"
        time.sleep(0.05)
    # the old head's event arrives again, late (a redelivery under a new delivery id)
    scene.deliver("pull_request", scene.pr_event(20, old, "synchronize"))
    status = DBOS.get_workflow_status(current)
    assert status is not None and status.status == "PENDING"
    pull = scene.runtime.store.pull(REPO, 20)
    assert pull is not None
    audit = [e.detail for e in scene.runtime.store.audit_log(limit=500) if e.kind == "action"]
    assert any("stale" in str(d.get("workflow", "")) for d in audit if d)
