"""The App manifest subscribes to exactly the events the router handles."""

from __future__ import annotations

from pathlib import Path

import yaml

from app.core.rules import ROUTER

MANIFEST = Path(__file__).resolve().parents[1] / "manifests" / "github-app.yml"


def test_manifest_events_match_the_router() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert set(manifest["default_events"]) == ROUTER.events()
    assert manifest["default_permissions"]["metadata"] == "read"
