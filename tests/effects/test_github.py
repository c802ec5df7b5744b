"""The GitHub adapter at the HTTP boundary: the exact requests GitHub would receive."""

from __future__ import annotations

from collections.abc import Iterator

import jwt
import pytest
import respx

from app.core.actions import AddLabels, Comment, RemoveLabel
from app.effects.github import (
    GitHubApp,
    GitHubError,
    GitHubRequest,
    SpacedWriteThrottler,
    link_next,
    request_for,
)
from tests.contract.contract import Contract
from tests.fakes.github import FakeGitHub

API = "https://api.github.com"


@pytest.fixture
def github_mock(fake_github: FakeGitHub) -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=API, assert_all_called=False) as mock:
        mock.route().mock(side_effect=fake_github.handle)
        yield mock


def app_for(fake: FakeGitHub) -> GitHubApp:
    return GitHubApp(fake.app_id, fake.private_key, API, write_interval=0, server_error_retries=1)


def test_installation_token_exchange_then_the_call(
    fake_github: FakeGitHub, github_mock: respx.MockRouter
) -> None:
    github = app_for(fake_github)
    request = request_for(
        AddLabels(repo="octo/repo", number=7, labels=("nightshift:queued",), reason="test")
    )
    response = github.send(77, request)
    assert response.status == 200
    token_call, label_call = github_mock.calls
    assert token_call.request.method == "POST"
    assert token_call.request.url == f"{API}/app/installations/77/access_tokens"
    claims = jwt.decode(
        token_call.request.headers["authorization"].removeprefix("Bearer "),
        fake_github.public_key,
        algorithms=["RS256"],
    )
    assert claims["iss"] == str(fake_github.app_id)
    assert label_call.request.url == f"{API}/repos/octo/repo/issues/7/labels"
    assert label_call.request.headers["authorization"].startswith("token ghs_")
    assert label_call.request.read() == b'{"labels":["nightshift:queued"]}'
    assert fake_github.effects == ["octo/repo#7:+nightshift:queued"]


def test_token_is_reused_then_refreshed_before_expiry(github_contract: Contract) -> None:
    fake = FakeGitHub(token_ttl=3600, contract=github_contract)
    with respx.mock(base_url=API, assert_all_called=False) as mock:
        mock.route().mock(side_effect=fake.handle)
        github = app_for(fake)
        label = request_for(AddLabels(repo="o/r", number=1, labels=("a",), reason="t"))
        github.send(1, label)
        github.send(1, label)
        assert fake.writes().count("POST /app/installations/1/access_tokens") == 1
        # a token that expires within the minute is replaced before it is used again
        fake.token_ttl = 30
        github2 = app_for(fake)
        github2.send(2, label)
        github2.send(2, label)
        assert fake.writes().count("POST /app/installations/2/access_tokens") == 2


def test_secondary_rate_limit_waits_for_retry_after_then_retries(
    fake_github: FakeGitHub, github_mock: respx.MockRouter
) -> None:
    fake_github.fail(
        "POST",
        r"/repos/o/r/issues/1/labels",
        403,
        headers={"retry-after": "1"},  # githubkit reads "0" as "wait a minute"
        body={"message": "You have exceeded a secondary rate limit"},
    )
    github = app_for(fake_github)
    response = github.send(
        1, request_for(AddLabels(repo="o/r", number=1, labels=("x",), reason="t"))
    )
    assert response.status == 200
    assert fake_github.writes().count("POST /repos/o/r/issues/1/labels") == 2


def test_server_errors_are_retried_then_reported(
    fake_github: FakeGitHub, github_mock: respx.MockRouter
) -> None:
    fake_github.fail("GET", r"/repos/o/r/issues/1/comments", 502, times=5)
    github = app_for(fake_github)
    with pytest.raises(GitHubError) as raised:
        github.send(1, GitHubRequest("GET", "/repos/o/r/issues/1/comments"))
    assert raised.value.status == 502
    assert raised.value.transient
    gets = [r for r in fake_github.requests if r.path == "/repos/o/r/issues/1/comments"]
    assert len(gets) == 2  # 1 + 1 retry


def test_a_post_is_never_retried_by_the_client(
    fake_github: FakeGitHub, github_mock: respx.MockRouter
) -> None:
    # GitHub may have created the comment before answering 502: the workflow step decides
    fake_github.fail("POST", r"/repos/o/r/issues/1/comments", 502, times=5)
    github = app_for(fake_github)
    with pytest.raises(GitHubError) as raised:
        github.send(1, GitHubRequest("POST", "/repos/o/r/issues/1/comments", {"body": "x"}))
    assert raised.value.status == 502
    assert fake_github.writes().count("POST /repos/o/r/issues/1/comments") == 1


def test_github_error_survives_pickling() -> None:
    import pickle

    error = pickle.loads(pickle.dumps(GitHubError(502, "Bad Gateway")))  # noqa: S301
    assert (error.status, str(error)) == (502, "502: Bad Gateway")


def test_client_errors_are_not_retried(
    fake_github: FakeGitHub, github_mock: respx.MockRouter
) -> None:
    github = app_for(fake_github)
    with pytest.raises(GitHubError) as raised:
        github.send(1, request_for(RemoveLabel(repo="o/r", number=1, label="absent", reason="t")))
    assert raised.value.status == 404
    assert "Label does not exist" in str(raised.value)


@pytest.mark.parametrize(
    ("action", "method", "path", "json"),
    [
        pytest.param(
            AddLabels(repo="o/r", number=3, labels=("a", "b"), reason="r"),
            "POST",
            "/repos/o/r/issues/3/labels",
            {"labels": ["a", "b"]},
            id="labels",
        ),
        pytest.param(
            RemoveLabel(repo="o/r", number=3, label="nightshift:queued", reason="r"),
            "DELETE",
            "/repos/o/r/issues/3/labels/nightshift%3Aqueued",
            None,
            id="remove-label-escaped",
        ),
        pytest.param(
            Comment(repo="o/r", number=3, body="Hi", key="k1", reason="r"),
            "POST",
            "/repos/o/r/issues/3/comments",
            {"body": "Hi\n\n<!-- nightshift:k1 -->"},
            id="comment-with-marker",
        ),
    ],
)
def test_request_for(
    action: AddLabels | RemoveLabel | Comment,
    method: str,
    path: str,
    json: dict[str, object] | None,
) -> None:
    request = request_for(action)
    assert (request.method, request.path, request.json) == (method, path, json)


def test_write_throttler_spaces_content_creating_requests() -> None:
    import httpx

    throttler = SpacedWriteThrottler(write_interval=10.0)
    post = httpx.Request("POST", f"{API}/x")
    get = httpx.Request("GET", f"{API}/x")
    delays = [throttler._wait_for_write_slot(post) for _ in range(3)]
    assert delays[0] == 0.0
    assert 9.0 < delays[1] <= 10.0 and 19.0 < delays[2] <= 20.0
    assert throttler._wait_for_write_slot(get) == 0.0


def test_link_next() -> None:
    headers = {
        "link": '<https://api.github.com/app/hook/deliveries?cursor=v1_9>; rel="next", '
        '<https://api.github.com/app/hook/deliveries>; rel="first"'
    }
    assert link_next(headers) == "https://api.github.com/app/hook/deliveries?cursor=v1_9"
    assert link_next({}) is None
