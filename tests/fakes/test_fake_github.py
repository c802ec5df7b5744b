"""The fake GitHub's issues, pull requests, checks and statuses, driven over HTTP.

Every request and answer here passes the `github_contract` check: the fake answers in
GitHub's documented shapes, on api.github.com and on the newest Enterprise Server.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from tests.contract.contract import Contract
from tests.fakes.github import (
    MERGE_DRAFT,
    MERGE_HEAD_MODIFIED,
    MERGE_NOT_MERGEABLE,
    MERGED,
    FakeGitHub,
)
from tests.fakes.shapes import example, examples, names

API = "https://api.github.com"
REPO = "octo/repo"
SHA = "a" * 40


@pytest.fixture
def fake(github_contract: Contract) -> FakeGitHub:
    return FakeGitHub(contract=github_contract)


@pytest.fixture
def gh(fake: FakeGitHub) -> Iterator[httpx.Client]:
    """A client with an installation token, as Nightshift's adapter has."""
    now = int(time.time())
    app_jwt = jwt.encode(
        {"iat": now - 60, "exp": now + 540, "iss": str(fake.app_id)},
        fake.private_key,
        algorithm="RS256",
    )
    with httpx.Client(transport=fake.transport(), base_url=API) as client:
        answer = client.post(
            "/app/installations/1/access_tokens", headers={"authorization": f"Bearer {app_jwt}"}
        )
        client.headers["authorization"] = f"token {answer.json()['token']}"
        yield client


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


# -- shapes ------------------------------------------------------------------------------------


def test_examples_are_deep_copies_of_githubs_own() -> None:
    pull = example("pull-request")
    pull["head"]["repo"]["name"] = "changed"
    assert example("pull-request")["head"]["repo"]["name"] == "Hello-World"
    assert examples("issue-items")[0]["number"] == example("issue")["number"]
    assert {"check-run", "combined-commit-status", "pull-request-review"} <= set(names())
    with pytest.raises(TypeError, match="use examples"):
        example("issue-items")


# -- issues ------------------------------------------------------------------------------------


def test_an_issue_is_answered_with_what_the_test_set_up(fake: FakeGitHub, gh: httpx.Client) -> None:
    issue = fake.issue(REPO, 3)
    issue.title, issue.body, issue.user = "Add a parser", "## Acceptance criteria", "mona"
    issue.labels.append("autonomous")
    answer = ok(gh.get(f"/repos/{REPO}/issues/3"))
    assert (answer["number"], answer["title"], answer["body"]) == (
        3,
        "Add a parser",
        "## Acceptance criteria",
    )
    assert (answer["state"], answer["user"]["login"]) == ("open", "mona")
    assert [label["name"] for label in answer["labels"]] == ["autonomous"]
    assert "pull_request" not in answer
    assert gh.get(f"/repos/{REPO}/issues/4").status_code == 404
    # the routes below /issues/{n} still match
    ok(gh.post(f"/repos/{REPO}/issues/3/labels", json={"labels": ["x"]}))
    ok(gh.post(f"/repos/{REPO}/issues/3/comments", json={"body": "Hi"}), 201)
    assert len(ok(gh.get(f"/repos/{REPO}/issues/3/comments"))) == 1
    assert fake.effects == [f"{REPO}#3:+x", f"{REPO}#3:comment:Hi"]


def test_issues_are_opened_with_the_next_number_and_listed_by_labels(
    fake: FakeGitHub, gh: httpx.Client
) -> None:
    fake.issue(REPO, 1).title = "Old"
    fake.pull(REPO, 2, title="A pull request")  # issues and pull requests share numbers
    created = ok(
        gh.post(
            f"/repos/{REPO}/issues",
            json={"title": "Nightly report", "body": "All done", "labels": ["nightshift:report"]},
        ),
        201,
    )
    assert (created["number"], created["title"], created["user"]["login"]) == (
        3,
        "Nightly report",
        "nightshift[bot]",
    )
    ok(gh.post(f"/repos/{REPO}/issues", json={"title": "Other", "labels": [{"name": "x"}]}), 201)
    assert fake.effects == [f"{REPO}#3:opened:Nightly report", f"{REPO}#4:opened:Other"]
    assert fake.issues[(REPO, 4)].labels == ["x"]

    def numbers(**params: Any) -> list[int]:
        return [i["number"] for i in ok(gh.get(f"/repos/{REPO}/issues", params=params))]

    assert numbers() == [4, 3, 2, 1]  # newest first; a pull request is an issue too
    assert numbers(labels="nightshift:report") == [3]
    assert numbers(labels="nightshift:report,x") == []  # every label must match
    assert numbers(per_page=1, page=2) == [3]
    fake.issue(REPO, 1).state = "closed"
    assert numbers(state="closed") == [1]
    assert numbers(state="all", labels="NightShift:Report") == [3]  # as GitHub: any case
    listed = ok(gh.get(f"/repos/{REPO}/issues", params={"per_page": 100}))
    assert [("pull_request" in i) for i in listed] == [False, False, True]


# -- pull requests -----------------------------------------------------------------------------


def test_a_pull_request_is_answered_with_its_heads_and_the_mergeable_queue(
    fake: FakeGitHub, gh: httpx.Client
) -> None:
    fake.pull(
        REPO,
        5,
        title="Fix #3",
        body="Closes #3",
        head_ref="nightshift/3",
        head_sha=SHA,
        author="agent[bot]",
        mergeable=[None, False, True],
    )
    fake.issue(REPO, 5).labels.append("nightshift:review")
    first = ok(gh.get(f"/repos/{REPO}/pulls/5"))
    assert (first["number"], first["title"], first["body"], first["state"]) == (
        5,
        "Fix #3",
        "Closes #3",
        "open",
    )
    assert (first["draft"], first["merged"], first["merge_commit_sha"]) == (False, False, None)
    assert first["user"]["login"] == "agent[bot]"
    assert first["head"]["ref"] == "nightshift/3"
    assert first["head"]["sha"] == SHA
    assert first["head"]["repo"]["full_name"] == REPO
    assert first["base"]["ref"] == "main"
    assert first["base"]["repo"]["full_name"] == REPO
    assert [label["name"] for label in first["labels"]] == ["nightshift:review"]
    mergeable = [first["mergeable"]] + [
        ok(gh.get(f"/repos/{REPO}/pulls/5"))["mergeable"] for _ in range(3)
    ]
    assert mergeable == [None, False, True, True]  # the last answer stays
    assert gh.get(f"/repos/{REPO}/pulls/6").status_code == 404

    fake.pull(REPO, 7, fork=True)
    forked = ok(gh.get(f"/repos/{REPO}/pulls/7"))
    assert forked["head"]["repo"]["full_name"] == "fork-owner/repo"
    assert forked["head"]["repo"]["fork"] is True
    assert forked["base"]["repo"]["full_name"] == REPO
    with pytest.raises(TypeError, match="no field colour"):
        fake.pull(REPO, 7, colour="red")


def test_merge_is_refused_on_a_moved_head_and_when_not_mergeable(
    fake: FakeGitHub, gh: httpx.Client
) -> None:
    fake.pull(REPO, 5, head_sha=SHA, mergeable=[False])
    merge = {"sha": SHA, "merge_method": "squash", "commit_title": "Fix #3 (#5)"}
    refused = gh.put(f"/repos/{REPO}/pulls/5/merge", json=merge)
    assert (refused.status_code, refused.json()["message"]) == (405, MERGE_NOT_MERGEABLE)
    fake.pull(REPO, 5, mergeable=[True])
    fake.push(REPO, 5, "b" * 40)
    moved = gh.put(f"/repos/{REPO}/pulls/5/merge", json=merge)
    assert (moved.status_code, moved.json()["message"]) == (409, MERGE_HEAD_MODIFIED)
    assert fake.effects == []

    merged = ok(gh.put(f"/repos/{REPO}/pulls/5/merge", json=merge | {"sha": "b" * 40}))
    assert (merged["merged"], merged["message"]) == (True, MERGED)
    assert fake.effects == [f"{REPO}#5:merged@bbbbbbb:squash"]
    pull = fake.pulls[(REPO, 5)]
    assert (pull.merged, pull.state, pull.merge_commit_sha) == (True, "closed", merged["sha"])
    answer = ok(gh.get(f"/repos/{REPO}/pulls/5"))
    assert (answer["merged"], answer["state"], answer["merge_commit_sha"]) == (
        True,
        "closed",
        merged["sha"],
    )
    again = gh.put(f"/repos/{REPO}/pulls/5/merge", json={"sha": "b" * 40})
    assert again.status_code == 405
    fake.pull(REPO, 6, draft=True)
    draft = gh.put(f"/repos/{REPO}/pulls/6/merge", json={})
    assert (draft.status_code, draft.json()["message"]) == (405, MERGE_DRAFT)
    assert gh.put(f"/repos/{REPO}/pulls/8/merge", json={}).status_code == 404


def test_a_programmed_failure_after_the_merge_loses_only_the_answer(
    fake: FakeGitHub, gh: httpx.Client
) -> None:
    fake.pull(REPO, 5, head_sha=SHA)
    fake.fail("PUT", rf"/repos/{REPO}/pulls/5/merge", 502, after_doing_it=True)
    assert gh.put(f"/repos/{REPO}/pulls/5/merge", json={"sha": SHA}).status_code == 502
    assert fake.effects == [f"{REPO}#5:merged@aaaaaaa:merge"]
    assert gh.put(f"/repos/{REPO}/pulls/5/merge", json={"sha": SHA}).status_code == 405


def test_reviews_are_stored_and_listed(fake: FakeGitHub, gh: httpx.Client) -> None:
    fake.pull(REPO, 5, head_sha=SHA, reviews=[{"user": "mona", "state": "APPROVED"}])
    review = ok(
        gh.post(
            f"/repos/{REPO}/pulls/5/reviews",
            json={"commit_id": SHA, "event": "REQUEST_CHANGES", "body": "Please add a test"},
        )
    )
    assert (review["state"], review["commit_id"], review["user"]["login"]) == (
        "CHANGES_REQUESTED",
        SHA,
        "nightshift[bot]",
    )
    ok(gh.post(f"/repos/{REPO}/pulls/5/reviews", json={"event": "APPROVE", "body": "LGTM"}))
    assert fake.effects == [f"{REPO}#5:review:REQUEST_CHANGES", f"{REPO}#5:review:APPROVE"]
    listed = ok(gh.get(f"/repos/{REPO}/pulls/5/reviews", params={"per_page": 100, "page": 1}))
    assert [(r["user"]["login"], r["state"]) for r in listed] == [
        ("mona", "APPROVED"),
        ("nightshift[bot]", "CHANGES_REQUESTED"),
        ("nightshift[bot]", "APPROVED"),
    ]
    assert ok(gh.get(f"/repos/{REPO}/pulls/5/reviews", params={"per_page": 2, "page": 2})) == [
        listed[2]
    ]


# -- checks and statuses -----------------------------------------------------------------------


def test_check_runs_are_created_updated_and_listed_by_name(
    fake: FakeGitHub, gh: httpx.Client
) -> None:
    fake.pull(REPO, 5, head_sha=SHA)
    ci = fake.add_check(REPO, SHA, "test", conclusion="failure")
    fake.add_check(REPO, "c" * 40, "test")  # another commit
    created = ok(
        gh.post(
            f"/repos/{REPO}/check-runs",
            json={
                "name": "nightshift",
                "head_sha": SHA,
                "status": "completed",
                "conclusion": "action_required",
                "external_id": "key-1",
            },
        ),
        201,
    )
    assert (created["status"], created["conclusion"], created["app"]["id"]) == (
        "completed",
        "action_required",
        fake.app_id,
    )
    assert [p["number"] for p in created["pull_requests"]] == [5]
    output = {"title": "Reviewed", "summary": "All good"}
    patched = ok(
        gh.patch(
            f"/repos/{REPO}/check-runs/{created['id']}",
            json={"conclusion": "success", "output": output},
        )
    )
    assert (patched["status"], patched["conclusion"]) == ("completed", "success")
    assert patched["output"]["summary"] == "All good"
    assert fake.effects == [
        f"{REPO}@aaaaaaa:check:nightshift:action_required",
        f"{REPO}@aaaaaaa:check:nightshift:success",
    ]

    def runs(**params: Any) -> list[tuple[str, str | None]]:
        listed = ok(gh.get(f"/repos/{REPO}/commits/{SHA}/check-runs", params=params))
        if "page" not in params:
            assert listed["total_count"] == len(listed["check_runs"])
        return [(r["name"], r["conclusion"]) for r in listed["check_runs"]]

    by_name = ok(
        gh.get(
            f"/repos/{REPO}/commits/{SHA}/check-runs",
            params={"check_name": "nightshift", "filter": "all", "per_page": 100},
        )
    )
    assert [(r["id"], r["external_id"]) for r in by_name["check_runs"]] == [
        (created["id"], "key-1")
    ]
    assert runs() == [("nightshift", "success"), ("test", "failure")]  # newest first
    # CI ran the test again: `latest` shows the newest run of each name, `all` every run
    fake.add_check(REPO, SHA, "test", conclusion="success")
    assert runs(check_name="test") == [("test", "success")]
    assert runs(check_name="test", filter="all") == [("test", "success"), ("test", "failure")]
    assert runs() == [("test", "success"), ("nightshift", "success")]
    assert runs(status="completed", per_page=1, page=2) == [("nightshift", "success")]
    assert fake.check_runs[ci]["app"] == "github-actions"
    elsewhere = gh.patch(f"/repos/other/repo/check-runs/{ci}", json={"conclusion": "success"})
    assert elsewhere.status_code == 404


def test_an_unfinished_check_run_has_a_null_conclusion(fake: FakeGitHub, gh: httpx.Client) -> None:
    """GitHub answers `conclusion: null` until a run completes (nullable in the description,
    whose enum lists no null: the contract's validator admits null there)."""
    run = fake.add_check(REPO, SHA, "test", status="in_progress")
    answer = ok(gh.get(f"/repos/{REPO}/commits/{SHA}/check-runs"))
    assert [(r["id"], r["status"], r["conclusion"]) for r in answer["check_runs"]] == [
        (run, "in_progress", None)
    ]


def test_the_combined_status_of_a_commit(fake: FakeGitHub, gh: httpx.Client) -> None:
    def combined() -> tuple[str, list[tuple[str, str]]]:
        answer = ok(gh.get(f"/repos/{REPO}/commits/{SHA}/status"))
        assert answer["repository"]["full_name"] == REPO
        return answer["state"], [(s["context"], s["state"]) for s in answer["statuses"]]

    assert combined() == ("pending", [])
    fake.add_status(REPO, SHA, "ci/lint")
    fake.add_status(REPO, SHA, "ci/test", "pending")
    assert combined() == ("pending", [("ci/lint", "success"), ("ci/test", "pending")])
    fake.add_status(REPO, SHA, "ci/test", "failure")
    assert combined() == ("failure", [("ci/lint", "success"), ("ci/test", "failure")])
    fake.statuses[(REPO, SHA)].append(("ci/test", "success"))
    assert combined()[0] == "success"


def test_ci_is_asked_to_run_again(fake: FakeGitHub, gh: httpx.Client) -> None:
    assert ok(gh.post(f"/repos/{REPO}/actions/runs/42/rerun-failed-jobs"), 201) == {}
    assert ok(gh.post(f"/repos/{REPO}/check-suites/7/rerequest"), 201) == {}
    assert fake.effects == [
        f"{REPO}:rerun-failed-jobs:42",
        f"{REPO}:rerequest-check-suite:7",
    ]
    fake.fail("POST", r"/repos/.+/check-suites/\d+/rerequest", 502)
    assert gh.post(f"/repos/{REPO}/check-suites/7/rerequest").status_code == 502
    assert len(fake.effects) == 2


def test_a_run_attempts_jobs_are_listed_and_a_log_is_a_signed_download(
    fake: FakeGitHub, gh: httpx.Client
) -> None:
    failed = fake.add_job(REPO, 42, "test", attempt=2, log="boom\n", failed_step="Run tests")
    fake.add_job(REPO, 42, "lint", "success", attempt=2)
    fake.add_job(REPO, 42, "test", attempt=1)
    jobs = ok(gh.get(f"/repos/{REPO}/actions/runs/42/attempts/2/jobs"))["jobs"]
    assert [(j["name"], j["conclusion"], j["run_attempt"]) for j in jobs] == [
        ("test", "failure", 2),
        ("lint", "success", 2),
    ]
    assert [(s["name"], s["conclusion"]) for s in jobs[0]["steps"]] == [
        ("Set up job", "success"),
        ("Run tests", "failure"),
    ]
    assert jobs[0]["html_url"] == f"https://github.com/{REPO}/actions/runs/42/job/{failed}"

    redirect = gh.get(f"/repos/{REPO}/actions/jobs/{failed}/logs")
    assert redirect.status_code == 302 and not redirect.content
    location = redirect.headers["location"]
    assert location.startswith(fake.downloads + "/")
    # the storage host takes the signed URL alone: a token sent along is refused
    assert gh.get(location).status_code == 400
    with httpx.Client(transport=fake.transport()) as anonymous:
        download = anonymous.get(location)
        assert (download.status_code, download.text) == (200, "boom\n")
        assert anonymous.get(location.replace("urlSignature=", "urlSignature=x")).status_code == 403
    assert gh.get(f"/repos/{REPO}/actions/jobs/999/logs").status_code == 404


def test_a_check_suites_runs_are_one_apps_runs_on_one_commit(
    fake: FakeGitHub, gh: httpx.Client
) -> None:
    output = {"title": "2 tests failed", "summary": "see below", "text": "test_a\ntest_b"}
    mine = fake.add_check(REPO, SHA, "ci/test", conclusion="failure", app="circleci", output=output)
    fake.add_check(REPO, SHA, "ci/lint", app="circleci")
    fake.add_check(REPO, SHA, "build")  # GitHub Actions' suite
    fake.add_check(REPO, "b" * 40, "ci/test", app="circleci")  # another commit
    suite = fake.check_suite_id(REPO, SHA, "circleci")
    runs = ok(gh.get(f"/repos/{REPO}/check-suites/{suite}/check-runs"))["check_runs"]
    assert [(r["name"], r["conclusion"]) for r in runs] == [
        ("ci/lint", "success"),
        ("ci/test", "failure"),
    ]
    assert runs[1]["id"] == mine and runs[1]["check_suite"]["id"] == suite
    assert {k: runs[1]["output"][k] for k in output} == output


# -- the Git Data API and new pull requests ----------------------------------------------------


def test_a_branch_is_made_of_blobs_a_tree_and_a_commit_then_proposed(
    fake: FakeGitHub, gh: httpx.Client
) -> None:
    content = base64.b64encode(b"hi\n").decode()
    blob = ok(
        gh.post(f"/repos/{REPO}/git/blobs", json={"content": content, "encoding": "base64"}), 201
    )
    assert blob["sha"] == "45b983be36b73c0788dc9cbcb76cbb80fc7bb057"  # git hash-object
    assert fake.blobs[(REPO, blob["sha"])] == b"hi\n"
    entries = [
        {"path": "a.txt", "mode": "100644", "type": "blob", "sha": blob["sha"]},
        {"path": "gone.txt", "mode": "100644", "type": "blob", "sha": None},
    ]
    tree = ok(gh.post(f"/repos/{REPO}/git/trees", json={"base_tree": SHA, "tree": entries}), 201)
    assert [e["path"] for e in tree["tree"]] == ["a.txt"]  # a deletion leaves no entry
    assert fake.trees[(REPO, tree["sha"])]["tree"] == entries
    made = {"message": "Revert", "tree": tree["sha"], "parents": [SHA]}
    commit = ok(gh.post(f"/repos/{REPO}/git/commits", json=made), 201)
    assert (commit["tree"]["sha"], [p["sha"] for p in commit["parents"]]) == (tree["sha"], [SHA])
    assert fake.commits[(REPO, commit["sha"])] == made

    ref = {"ref": "refs/heads/nightshift/revert-5", "sha": commit["sha"]}
    assert ok(gh.post(f"/repos/{REPO}/git/refs", json=ref), 201)["object"]["sha"] == commit["sha"]
    again = gh.post(f"/repos/{REPO}/git/refs", json=ref)
    assert (again.status_code, again.json()["message"]) == (422, "Reference already exists")
    found = ok(gh.get(f"/repos/{REPO}/git/ref/heads/nightshift/revert-5"))
    assert found["ref"] == "refs/heads/nightshift/revert-5"
    assert gh.get(f"/repos/{REPO}/git/ref/heads/nightshift/revert-6").status_code == 404
    assert fake.effects == [f"{REPO}:ref:nightshift/revert-5"]

    fake.pull(REPO, 5, state="closed", merged=True)
    proposed = {"title": "Revert #5", "head": "nightshift/revert-5", "base": "main", "body": "b"}
    opened = ok(gh.post(f"/repos/{REPO}/pulls", json=proposed), 201)
    assert (opened["number"], opened["head"]["sha"], opened["base"]["ref"]) == (
        6,
        commit["sha"],
        "main",
    )
    assert fake.effects[-1] == f"{REPO}#6:opened-pull:Revert #5"
    twice = gh.post(f"/repos/{REPO}/pulls", json=proposed)
    assert twice.status_code == 422
    assert "already exists" in twice.json()["errors"][0]["message"]
    no_branch = gh.post(f"/repos/{REPO}/pulls", json=proposed | {"head": "nowhere"})
    assert no_branch.status_code == 422

    def listed(**params: str) -> list[int]:
        return [p["number"] for p in ok(gh.get(f"/repos/{REPO}/pulls", params=params))]

    assert listed() == [6]
    assert listed(state="all") == [6, 5]
    assert listed(state="closed") == [5]
    assert listed(head="octo:nightshift/revert-5", state="all") == [6]
    assert listed(head="octo:topic-5", state="all") == [5]
    assert listed(head="octo:nightshift/revert-9") == []


def test_a_merge_can_create_the_commit_a_test_names(fake: FakeGitHub, gh: httpx.Client) -> None:
    fake.pull(REPO, 5, head_sha=SHA, merges_as="c" * 40)
    assert ok(gh.put(f"/repos/{REPO}/pulls/5/merge", json={"sha": SHA}))["sha"] == "c" * 40
    assert fake.pulls[(REPO, 5)].merge_commit_sha == "c" * 40
