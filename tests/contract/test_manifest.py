"""The App manifest subscribes to exactly the events the router handles, each one a webhook
event GitHub documents, and asks for permissions GitHub knows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS30Validator

from app.core.rules import ROUTER
from tests.contract.contract import Descriptions

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "github-app.yml"


@pytest.fixture(scope="module")
def manifest() -> Any:
    return yaml.safe_load(MANIFEST.read_text())


def test_manifest_events_match_the_router(manifest: Any) -> None:
    subscribed = set(manifest["default_events"])
    handled = ROUTER.events()
    assert handled - subscribed == set(), "the router handles events the App never receives"
    assert subscribed - handled == set(), "the App subscribes to events no rule handles"


@pytest.mark.parametrize("description", ["dotcom", "ghes"])
def test_events_and_actions_are_documented_webhooks(
    github_descriptions: Descriptions, manifest: Any, description: str
) -> None:
    documented = getattr(github_descriptions, description).webhook_events()
    assert documented, "the description has no x-webhooks"
    for event in manifest["default_events"]:
        assert event in documented, f"{event} is not a webhook event GitHub documents"
    for event, action in ROUTER._rules:
        if action is not None:
            assert action in documented[event], f"{event}.{action} is not a documented action"


def test_permissions_are_documented_app_permissions(
    github_descriptions: Descriptions, manifest: Any
) -> None:
    permissions = manifest["default_permissions"]
    assert permissions["metadata"] == "read"  # GitHub requires it of every App
    schema = github_descriptions.dotcom.at("/components/schemas/app-permissions")
    assert set(permissions) <= set(schema["properties"]), "unknown permission names"
    problems = github_descriptions.dotcom.validate(
        "default_permissions", permissions, "/components/schemas/app-permissions", OAS30Validator
    )
    assert problems == []
