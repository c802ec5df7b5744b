"""The REST judge: GitHub's OpenAPI descriptions accept what Nightshift sends, and say what
is wrong with anything else."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from app.core.actions import AddLabels, Comment, RemoveLabel
from app.effects.github import GitHubApp, GitHubError, GitHubRequest, request_for
from tests.contract.contract import (
    ENV,
    GHES_DIFFERENCES,
    Contract,
    ContractViolation,
    Descriptions,
    MissingDescriptions,
    locate,
)
from tests.contract.openapi import Description
from tests.fakes.github import FakeGitHub, serve

README = Path(__file__).resolve().parents[2] / "README.md"
JSON = "application/json"

# Every request Nightshift's adapter makes today (the token exchange is githubkit's own).
NIGHTSHIFT_REQUESTS = [
    request_for(AddLabels(repo="octo/repo", number=3, labels=("a", "b"), reason="r")),
    request_for(RemoveLabel(repo="octo/repo", number=3, label="nightshift:queued", reason="r")),
    request_for(Comment(repo="octo/repo", number=3, body="Hi", key="k", reason="r")),
    GitHubRequest("GET", "/repos/octo/repo/issues/3/comments", params={"per_page": 100, "page": 2}),
]


def app_for(fake: FakeGitHub, base_url: str = "https://api.github.com") -> GitHubApp:
    transport = fake.transport()
    return GitHubApp(fake.app_id, fake.private_key, base_url, write_interval=0, transport=transport)


@pytest.mark.parametrize("base_url", ["https://api.github.com", "https://ghe.example/api/v3"])
def test_nightshift_requests_are_documented_on_github_and_enterprise_server(
    github_contract: Contract, base_url: str
) -> None:
    prefix = "/api/v3" if base_url.endswith("/api/v3") else ""
    fake = FakeGitHub(path_prefix=prefix, contract=github_contract)
    fake.issue("octo/repo", 3).labels.append("nightshift:queued")
    delivery = fake.add_hook_delivery("g", 500, datetime.now(UTC))
    github = app_for(fake, base_url)
    for request in NIGHTSHIFT_REQUESTS:
        github.send(7, request)
    github.send_as_app(GitHubRequest("GET", "/app/hook/deliveries", params={"per_page": 100}))
    github.send_as_app(GitHubRequest("POST", f"/app/hook/deliveries/{delivery}/attempts"))
    checked = [f"{r.method} {r.path}" for r in fake.requests]
    assert len(checked) == len(NIGHTSHIFT_REQUESTS) + 3, checked  # + the token exchange
    assert github_contract.violations == []


@pytest.mark.parametrize(
    "path",
    [
        "/repos/octo/repo/contents/.github/nightshift.yml",  # app/effects/repo_config.py
        "/repos/octo/repo/collaborators/mona/permission",  # app/effects/facts.py
        # a blocking CI failure's log (app/effects/facts.py: failing_log)
        "/repos/octo/repo/actions/runs/30433642/attempts/4/jobs",
        "/repos/octo/repo/actions/jobs/399444496/logs",
        "/repos/octo/repo/check-suites/5604373/check-runs",
    ],
)
def test_reads_with_an_installation_token_are_documented_on_both(
    github_descriptions: Descriptions, path: str
) -> None:
    for description in github_descriptions.rest:
        assert description.check_request("GET", path, [], "", b"", installation=True) == []


def test_an_undocumented_call_fails_with_method_path_and_what_is_wrong(
    github_descriptions: Descriptions,
) -> None:
    contract = Contract(github_descriptions)  # not the test's own: this test expects failures
    fake = FakeGitHub(contract=contract)
    github = app_for(fake)
    both = f"[api.github.com, {github_descriptions.ghes.name}]"
    # in-process, the violation is raised into the sender (githubkit wraps it) ...
    with pytest.raises(GitHubError, match="is not of type 'array'"):
        github.send(1, GitHubRequest("POST", "/repos/o/r/issues/1/labels", {"labels": "x"}))
    with pytest.raises(GitHubError, match="documented for DELETE only"):
        github.send(1, GitHubRequest("PATCH", "/repos/o/r/issues/1/labels/x"))
    with pytest.raises(
        GitHubError, match=r"at .labels\[0\]: 1 is not valid"
    ):  # the fake chokes too
        github.send(1, GitHubRequest("POST", "/repos/o/r/issues/1/labels", {"labels": [1]}))
    # ... and always collected, for the github_contract fixture to fail the test at teardown
    assert contract.violations[:2] == [
        "POST /repos/o/r/issues/1/labels: "
        f"request body at .labels: 'x' is not of type 'array' {both}",
        "PATCH /repos/o/r/issues/1/labels/x: /repos/{owner}/{repo}/issues/{issue_number}/labels/"
        f"{{name}} is documented for DELETE only {both}",
    ]
    with pytest.raises(ContractViolation, match=r"3 request\(s\) .*\n  POST /repos/o/r/issues/1"):
        contract.assert_clean()
    assert contract.violations == []


def test_violations_from_a_served_fake_are_collected_not_lost(
    github_descriptions: Descriptions,
) -> None:
    contract = Contract(github_descriptions)
    fake = FakeGitHub(contract=contract)
    with serve(fake) as url:
        response = httpx.get(f"{url}/repos/o/r/issues/1/labelz", timeout=10)
    assert response.status_code == 500  # the subprocess sees an error ...
    assert contract.violations == [  # ... and the test that served it fails at teardown
        "GET /repos/o/r/issues/1/labelz: no documented path matches "
        f"[api.github.com, {github_descriptions.ghes.name}]"
    ]


# -- the validator on its own ------------------------------------------------------------------


@pytest.fixture
def dotcom(github_descriptions: Descriptions) -> Description:
    return github_descriptions.dotcom


@pytest.mark.parametrize(
    ("method", "path", "query", "body", "problem"),
    [
        ("GET", "/repos/o/r/issuez", [], b"", "no documented path matches"),
        ("PUT", "/app/hook/deliveries", [], b"", "/app/hook/deliveries is documented for GET only"),
        ("GET", "/search/issues", [], b"", "required query parameter q is missing"),
        (
            "GET",
            "/app/hook/deliveries",
            [("per_page", "many")],
            b"",
            "query parameter per_page: 'many' is not integer",
        ),
        ("GET", "/app/hook/deliveries", [("since", "x")], b"", "query parameter since is not"),
        ("GET", "/repos/o/r/issues/x/comments", [], b"", "path parameter issue_number: 'x'"),
        ("POST", "/repos/o/r/issues/1/comments", [], b"", "the documented request body is requ"),
        ("POST", "/repos/o/r/issues/1/comments", [], b"{}", "'body' is a required property"),
        ("POST", "/repos/o/r/issues/1/labels", [], b'{"labels": []}', "at .labels: [] should be"),
        ("POST", "/repos/o/r/issues/1/comments", [], b'{"body": 1', "request body is not JSON"),
        ("DELETE", "/repos/o/r/issues/1/labels/x", [], b"{}", "none is documented"),
    ],
)
def test_what_is_wrong_with_a_request(
    dotcom: Description,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    body: bytes,
    problem: str,
) -> None:
    problems = dotcom.check_request(method, path, query, JSON, body)
    assert any(p.startswith(problem) or problem in p for p in problems), problems


def test_documented_requests_pass(dotcom: Description) -> None:
    ok = [
        ("GET", "/app/hook/deliveries", [("per_page", "100"), ("cursor", "v1_1")], b""),
        ("DELETE", "/repos/o/r/issues/1/labels/nightshift%3Aqueued", [], b""),
        ("DELETE", "/repos/o/r/issues/1/labels/area%2Fdocs", [], b""),  # / in a label
        ("GET", "/repos/o/r/contents/.github/nightshift.yml", [("ref", "main")], b""),
        ("GET", "/repos/o/r/issues/comments", [], b""),  # not /issues/{issue_number}
    ]
    for method, path, query, body in ok:
        assert dotcom.check_request(method, path, query, JSON, body) == [], path


def test_enterprise_server_paths_are_read_under_api_v3(github_descriptions: Descriptions) -> None:
    ghes = github_descriptions.ghes
    assert ghes.base_path == "/api/v3"
    assert ghes.check_request("GET", "/api/v3/app/hook/deliveries", [], "", b"") == []
    assert ghes.check_request("GET", "/app/hook/deliveries", [], "", b"") == []


def test_the_newest_enterprise_server_description_is_used(
    github_descriptions: Descriptions,
) -> None:
    generated = locate() / "@octokit/openapi/generated"
    releases = [
        tuple(int(n) for n in re.findall(r"\d+", p.name)) for p in generated.glob("ghes-*.json")
    ]
    newest = max(releases)
    assert github_descriptions.ghes.name == f"ghes-{newest[0]}.{newest[1]}"


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        (200, b'[{"name": "a"}]', "response 200 at [0]: 'id' is a required property"),
        (201, b"[]", "answered 201; documented: 200, 301, 404, 410, 422"),
        (404, b'{"message": 1}', "response 404 at .message: 1 is not of type 'string'"),
    ],
)
def test_what_is_wrong_with_an_answer(
    dotcom: Description, status: int, body: bytes, problem: str
) -> None:
    problems = dotcom.check_response("POST", "/repos/o/r/issues/1/labels", status, JSON, body)
    assert problem in problems


def test_installation_tokens_reach_only_endpoints_enabled_for_apps(dotcom: Description) -> None:
    path = "/app/hook/deliveries"
    assert dotcom.check_request("GET", path, [], "", b"") == []  # with the App's JWT
    assert dotcom.check_request("GET", path, [], "", b"", installation=True) == [
        "not available with a GitHub App installation token"
    ]


def test_undocumented_error_answers_are_not_judged(dotcom: Description) -> None:
    # programmed failures (fake.fail): a 502 or a 403 rate limit is not in the description
    for status in (403, 502):
        assert (
            dotcom.check_response("POST", "/repos/o/r/issues/1/labels", status, JSON, b"{}") == []
        )


def test_missing_descriptions_fail_with_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ENV, str(tmp_path))
    with pytest.raises(MissingDescriptions, match=r"make descriptions"):
        locate()
    package = tmp_path / "@octokit" / "openapi"
    package.mkdir(parents=True)
    (package / "package.json").write_text(json.dumps({"version": "0.0.1"}))
    graphql = tmp_path / "@octokit" / "graphql-schema"
    graphql.mkdir(parents=True)
    (graphql / "package.json").write_text(json.dumps({"version": "0.0.1"}))
    with pytest.raises(MissingDescriptions, match=r"0\.0\.1 is installed .* pins"):
        locate()


def test_enterprise_server_differences_are_listed_in_the_readme() -> None:
    section = README.read_text().partition("### GitHub Enterprise Server")[2].partition("\n#")[0]
    assert section, "README.md has no 'GitHub Enterprise Server' section"
    for operation in GHES_DIFFERENCES:
        assert operation in section, operation
