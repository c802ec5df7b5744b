"""Repository configuration: `.github/nightshift.yml`, validated, every key with a default.

Org-wide defaults come through `_extends` (the Probot convention): the repository's file
names another repository's file, whose settings the repository's own override. Mappings
merge key by key; a list or a value in the repository's file replaces the inherited one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONFIG_PATH = ".github/nightshift.yml"
EXTENDS_KEY = "_extends"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Limits(_Model):
    """The limits table users expect (DESIGN.md §4)."""

    heartbeat_missed_threshold: int = Field(default=3, ge=1)
    ci_poll_attempts: int = Field(default=5, ge=1)
    max_concurrent_tasks: int = Field(default=3, ge=1)
    max_retry_attempts: int = Field(default=3, ge=0)
    max_fix_rounds: int = Field(default=5, ge=1)


class Columns(_Model):
    """The project's Status options for each task state."""

    todo: str = "Todo"
    in_progress: str = "In Progress"
    in_review: str = "In Review"
    blocked: str = "Blocked"
    done: str = "Done"


class Project(_Model):
    """The GitHub Project (v2) whose cards follow the tasks; no number, no project sync."""

    owner: str | None = Field(default=None, description="org or user; default: repo owner")
    number: int | None = Field(default=None, ge=1)
    status_field: str = "Status"
    columns: Columns = Field(default_factory=Columns)


class Config(_Model):
    """What a repository can configure; every key has a default."""

    trigger_label: str = Field(default="autonomous", min_length=1)
    approval: Literal["none", "plan"] = "none"
    require_acceptance_criteria: bool = True
    limits: Limits = Field(default_factory=Limits)
    ack_timeout_minutes: float = Field(default=10, gt=0)
    heartbeat_interval_seconds: float = Field(default=60, gt=0)
    capabilities: dict[str, list[str]] = Field(
        default_factory=dict, description="issue label -> capabilities an agent needs"
    )
    priority_labels: list[str] = Field(
        default_factory=lambda: [
            "priority:critical",
            "priority:high",
            "priority:medium",
            "priority:low",
        ],
        description="highest first; unlabelled issues come after all of them",
    )
    protected_paths: list[str] = Field(
        default_factory=lambda: [".github/workflows/**", "CODEOWNERS", ".github/CODEOWNERS"]
    )
    destructive_keywords: list[str] = Field(
        default_factory=lambda: [
            "drop table",
            "drop database",
            "truncate table",
            "delete data",
            "delete all",
            "force push",
            "rm -rf",
        ],
        description="phrases in an issue that make it need approval",
    )
    size_labels: list[str] = Field(
        default_factory=lambda: ["size:XS", "size:S", "size:M", "size:L", "size:XL"],
        description="smallest first",
    )
    max_size: str | None = Field(default="size:L", description="larger size labels are rejected")
    roster_path: str = "AGENT_ROSTER.md"
    escalation: Literal["all", "security-only"] = "all"
    maintainers: list[str] = Field(default_factory=list, description="logins to mention")
    project: Project = Field(default_factory=Project)


DEFAULT_CONFIG = Config()


@dataclass(frozen=True)
class ConfigError(Exception):
    """An invalid configuration file: which file, which key, what is wrong."""

    file: str
    key: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.problem}"


@dataclass(frozen=True)
class Extends:
    """Where `_extends` points: a repository (default: the same owner's) and a file."""

    repo: str
    path: str = CONFIG_PATH


def load_yaml(text: str, file: str = CONFIG_PATH) -> dict[str, Any]:
    """The file's mapping; an empty file is an empty mapping."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(yaml)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(file, where, f"not valid YAML: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(file, "(top level)", "must be a mapping of settings")
    return data


def extends_of(raw: Mapping[str, Any], owner: str, file: str = CONFIG_PATH) -> Extends | None:
    """Read `_extends`: `.github`, `repo`, `owner/repo` or any of those with `:path`."""
    value = raw.get(EXTENDS_KEY)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(file, EXTENDS_KEY, "must name a repository, like `.github`")
    target, _, path = value.strip().partition(":")
    repo = target if "/" in target else f"{owner}/{target}"
    return Extends(repo=repo, path=path or CONFIG_PATH)


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge mappings; anything else in `override` replaces what `base` had."""
    merged = dict(base)
    for key, value in override.items():
        inherited = merged.get(key)
        if isinstance(inherited, Mapping) and isinstance(value, Mapping):
            merged[key] = merge(inherited, value)
        else:
            merged[key] = value
    merged.pop(EXTENDS_KEY, None)
    return merged


def validate(raw: Mapping[str, Any], file: str = CONFIG_PATH) -> Config:
    """The validated configuration, or ConfigError naming the first bad key."""
    data = {key: value for key, value in raw.items() if key != EXTENDS_KEY}
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(part) for part in error["loc"]) or "(top level)"
        problem = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
        raise ConfigError(file, key, problem) from None
    if config.max_size is not None and config.max_size not in config.size_labels:
        raise ConfigError(file, "max_size", f"must be one of size_labels {config.size_labels}")
    return config


def parse(text: str, file: str = CONFIG_PATH) -> Config:
    """Parse and validate one file on its own (`nightshift config check`)."""
    return validate(load_yaml(text, file), file)
