"""GitHub's published descriptions as the judge of every request the fake GitHub handles.

`Contract` is the fake's `contract` hook: it is called with each request and the fake's
answer, checks the request against the REST descriptions (api.github.com and the newest
GitHub Enterprise Server) or, for POST /graphql, against the GraphQL schema, and checks the
answer against the documented response. What disagrees is collected (requests reach the
fake from other threads too) and raised; the `github_contract` fixture fails the test that
sent it, at teardown at the latest.
"""

from __future__ import annotations

import json
import os
import re
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.contract.graphql import Schema
from tests.contract.openapi import Description

HERE = Path(__file__).resolve().parent
ENV = "NIGHTSHIFT_GITHUB_DESCRIPTIONS"  # a node_modules directory holding the packages
OPENAPI, GRAPHQL = "@octokit/openapi", "@octokit/graphql-schema"
INSTALL = "make descriptions  (that is: npm ci --prefix tests/contract)"

# Operations whose request GHES documents differently from api.github.com, each listed in
# README's "GitHub Enterprise Server" section (a test checks): "METHOD /template": why.
GHES_DIFFERENCES: dict[str, str] = {
    "GET /repos/{owner}/{repo}/issues/{issue_number}/sub_issues": (
        "sub-issues are not in GHES 3.19's description; Nightshift reads a 404 as none"
    ),
}


class MissingDescriptions(Exception):
    pass


class ContractViolation(AssertionError):
    pass


def pinned() -> dict[str, str]:
    manifest = json.loads((HERE / "package.json").read_text())
    return dict(manifest["dependencies"])


def locate() -> Path:
    """The node_modules directory with the pinned packages, or why it cannot be used."""
    root = Path(os.environ.get(ENV) or HERE / "node_modules")
    for package, version in pinned().items():
        found = root / package / "package.json"
        if not found.is_file():
            raise MissingDescriptions(
                f"GitHub's API descriptions are not installed: {found} is missing.\n"
                f"Install the pinned packages with `{INSTALL}`, or point {ENV} at a "
                "node_modules directory that has them."
            )
        installed = json.loads(found.read_text())["version"]
        if installed != version:
            raise MissingDescriptions(
                f"{package} {installed} is installed in {root}, tests/contract/package.json "
                f"pins {version}: reinstall with `{INSTALL}`."
            )
    return root


class Descriptions:
    """The REST descriptions (api.github.com, then the newest GHES) and the GraphQL schema."""

    def __init__(self, root: Path) -> None:
        generated = root / OPENAPI / "generated"
        ghes = max(
            generated.glob("ghes-*.json"),
            key=lambda p: tuple(int(n) for n in re.findall(r"\d+", p.name)),
        )
        self.dotcom = Description(generated / "api.github.com.json")
        self.ghes = Description(ghes)
        self._graphql_file = root / GRAPHQL / "schema.graphql"
        self._lock = threading.Lock()

    @property
    def rest(self) -> tuple[Description, Description]:
        return (self.dotcom, self.ghes)

    @cached_property
    def _graphql(self) -> Schema:
        return Schema(self._graphql_file)

    @property
    def graphql(self) -> Schema:
        """Built on first use (about a second): no GraphQL, no cost."""
        with self._lock:
            return self._graphql


def load() -> Descriptions:
    return Descriptions(locate())


class Contract:
    """The fake GitHub's `contract` hook; collects violations as `METHOD path: problems`."""

    def __init__(self, descriptions: Descriptions) -> None:
        self.descriptions = descriptions
        self.violations: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request, response: httpx.Response) -> None:
        problems = self.problems(request, response)
        if problems:
            message = f"{request.method} {_raw_path(request)}: " + "; ".join(problems)
            with self._lock:
                self.violations.append(message)
            raise ContractViolation(message)

    def problems(self, request: httpx.Request, response: httpx.Response) -> list[str]:
        # GHES serves the API under /api/v3 (its description says so; the paths omit it)
        path = self.descriptions.ghes.api_path(_raw_path(request))
        if request.method == "POST" and path in ("/graphql", "/api/graphql"):  # GHES: the latter
            return self._graphql(request, response)
        found: dict[str, list[str]] = {}
        content_type = request.headers.get("content-type", "")
        # an operation GHES lacks or documents differently is named by api.github.com's
        dotcom = self.descriptions.dotcom.operation(request.method, path)
        known = not isinstance(dotcom, str) and (
            f"{dotcom.method} {dotcom.template}" in GHES_DIFFERENCES
        )
        for description in self.descriptions.rest:
            problems = description.check_request(
                request.method,
                path,
                request.url.params.multi_items(),
                content_type,
                request.content,
                installation="ghs_" in request.headers.get("authorization", ""),
            ) + description.check_response(
                request.method,
                path,
                response.status_code,
                response.headers.get("content-type", ""),
                response.content,
            )
            if description is self.descriptions.ghes and known:
                continue
            for problem in problems:
                found.setdefault(problem, []).append(description.name)
        return [f"{problem} [{', '.join(names)}]" for problem, names in found.items()]

    def _graphql(self, request: httpx.Request, response: httpx.Response) -> list[str]:
        try:
            payload = orjson.loads(request.content)
        except orjson.JSONDecodeError:
            return ["GraphQL: the body is not JSON"]
        schema = self.descriptions.graphql
        problems = schema.check_request(payload)
        try:
            answer: Any = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            answer = None
        problems += schema.check_response(payload, answer)
        return [f"GraphQL: {problem}" for problem in problems]

    def report(self) -> str:
        with self._lock:
            violations = list(self.violations)
        return (
            f"{len(violations)} request(s) to the fake GitHub disagree with GitHub's "
            "published API descriptions:\n" + "\n".join(f"  {v}" for v in violations)
        )

    def assert_clean(self) -> None:
        """Raise the collected violations (and forget them)."""
        if self.violations:
            report = self.report()
            with self._lock:
                self.violations = []
            raise ContractViolation(report)


def _raw_path(request: httpx.Request) -> str:
    return request.url.raw_path.decode("ascii").partition("?")[0]
