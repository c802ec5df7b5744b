"""Reading .github/nightshift.yml and what it `_extends` through the GitHub adapter."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from app.core.config import DEFAULT_CONFIG
from app.effects.github import GitHubError
from app.effects.repo_config import ConfigSource
from tests.fakes.github import FakeGitHub
from tests.helpers import app_client

REPO = "acme/widgets"


def source(
    fake: FakeGitHub, cache_seconds: float = 60, clock: Callable[[], float] = time.monotonic
) -> ConfigSource:
    github = app_client(fake, server_error_retries=0)
    return ConfigSource(github, cache_seconds=cache_seconds, clock=clock)


def test_no_file_means_defaults(fake_github: FakeGitHub) -> None:
    loaded = source(fake_github).load(1, REPO)
    assert (loaded.config, loaded.error) == (DEFAULT_CONFIG, None)
    assert [f"{r.method} {r.path}" for r in fake_github.requests][-1] == (
        "GET /repos/acme/widgets/contents/.github/nightshift.yml"
    )


def test_extends_the_org_defaults(fake_github: FakeGitHub) -> None:
    fake_github.files[("acme/.github", ".github/nightshift.yml")] = (
        "maintainers: [lead]\nlimits:\n  max_fix_rounds: 2\n  max_retry_attempts: 1\n"
    )
    fake_github.files[(REPO, ".github/nightshift.yml")] = (
        "_extends: .github\nlimits:\n  max_fix_rounds: 4\n"
    )
    loaded = source(fake_github).load(1, REPO)
    assert loaded.error is None
    assert loaded.config.maintainers == ["lead"]
    assert (loaded.config.limits.max_fix_rounds, loaded.config.limits.max_retry_attempts) == (4, 1)


def test_invalid_file_is_an_error_naming_file_key_problem(fake_github: FakeGitHub) -> None:
    fake_github.files[(REPO, ".github/nightshift.yml")] = (
        "trigger_label: overnight\nlimits:\n  max_fix_rounds: lots\n"
    )
    loaded = source(fake_github).load(1, REPO)
    assert loaded.error is not None
    assert str(loaded.error).startswith(
        ".github/nightshift.yml: limits.max_fix_rounds: Input should be a valid integer"
    )
    assert loaded.config.trigger_label == "overnight"  # so the right issue hears about it


def test_missing_extended_file_is_an_error(fake_github: FakeGitHub) -> None:
    fake_github.files[(REPO, ".github/nightshift.yml")] = "_extends: acme/settings\n"
    loaded = source(fake_github).load(1, REPO)
    assert str(loaded.error) == (
        ".github/nightshift.yml: _extends: acme/settings:.github/nightshift.yml does not exist"
    )


def test_result_is_kept_for_a_minute(fake_github: FakeGitHub) -> None:
    now = [0.0]
    configs = source(fake_github, cache_seconds=60, clock=lambda: now[0])
    configs.load(1, REPO)
    configs.load(1, REPO)
    now[0] = 61.0
    configs.load(1, REPO)
    reads = [r for r in fake_github.requests if r.path.endswith("/contents/.github/nightshift.yml")]
    assert len(reads) == 2
    configs.forget(REPO)
    configs.load(1, REPO)
    assert len([r for r in fake_github.requests if "/contents/" in r.path]) == 3


def test_github_failure_is_raised_not_mistaken_for_no_file(fake_github: FakeGitHub) -> None:
    fake_github.fail("GET", r"/repos/acme/widgets/contents/.*", 502)
    with pytest.raises(GitHubError):
        source(fake_github).load(1, REPO)


def test_without_credentials_the_defaults_apply() -> None:
    assert ConfigSource(None).load(1, REPO).config == DEFAULT_CONFIG
