"""The deployment manifests parse, and agree with the settings' names and the commands."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import yaml

from app.__main__ import _parser
from app.settings import ENV_PREFIX, Settings

DEPLOY = Path(__file__).resolve().parents[1] / "manifests" / "deploy"
SETTING_NAMES = {ENV_PREFIX + name.upper() for name in Settings.model_fields}


def documents(name: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


def containers() -> list[dict[str, Any]]:
    return [
        container
        for doc in documents("kubernetes.yml")
        if doc["kind"] == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
    ]


def test_every_setting_named_exists() -> None:
    secret = documents("secret.example.yml")[0]
    named = set(secret["stringData"])
    for container in containers():
        named |= {env["name"] for env in container.get("env", [])}
    assert named <= SETTING_NAMES, named - SETTING_NAMES
    assert {"NIGHTSHIFT_DATABASE_URL", "NIGHTSHIFT_WEBHOOK_SECRET"} <= named
    assert secret["stringData"]["NIGHTSHIFT_DATABASE_URL"].startswith("postgresql://")


def test_commands_are_real_and_probes_hit_healthz_on_the_served_port() -> None:
    seen = set()
    for container in containers():
        args = _parser().parse_args(container["args"])  # exits on an unknown command or flag
        seen.add(args.command)
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert args.port in ports.values()
        assert args.host == "0.0.0.0"  # noqa: S104 (reachable by the kubelet's probes)
        for probe in ("livenessProbe", "readinessProbe"):
            if probe in container:
                check = container[probe]["httpGet"]
                assert check["path"] == "/healthz"
                assert ports[check["port"]] == args.port
        assert container["envFrom"] == [{"secretRef": {"name": "nightshift"}}]
    assert seen == {"serve", "worker"}
    ingress = next(c for c in containers() if c["name"] == "ingress")
    assert "--no-workers" in ingress["args"]


def test_the_image_runs_the_nightshift_command() -> None:
    lines = (DEPLOY / "Containerfile").read_text().splitlines()
    entrypoint = next(line for line in lines if line.startswith("ENTRYPOINT"))
    assert yaml.safe_load(entrypoint.removeprefix("ENTRYPOINT ")) == ["nightshift"]
    cmd = yaml.safe_load(
        next(line for line in lines if line.startswith("CMD")).removeprefix("CMD ")
    )
    assert _parser().parse_args(cmd).command == "serve"
    assert shlex.join(cmd) == shlex.join(containers()[0]["args"])
