"""Repository configuration: `.github/nightshift.yml`, validated, every key with a default.

Org-wide defaults come through `_extends` (the Probot convention): the repository's file
names another repository's file, whose settings the repository's own override. Mappings
merge key by key; a list or a value in the repository's file replaces the inherited one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pathspec
import yaml
from croniter import croniter  # type: ignore[import-untyped]
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

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


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Nightshift's own settings (webhook secrets, the App's private key) never reach PR code.
_OWN_ENV_PREFIX = "NIGHTSHIFT_"


def _env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not an environment variable name")
    if name.upper().startswith(_OWN_ENV_PREFIX):
        raise ValueError(f"{name!r}: Nightshift's own settings are never passed to PR code")
    return name


def _glob(pattern: str) -> str:
    try:
        pathspec.PathSpec.from_lines("gitignore", [pattern])
    except ValueError as exc:
        raise ValueError(f"{pattern!r} is not a gitignore-style glob ({exc})") from None
    return pattern


def _relative_path(path: str | None) -> str | None:
    if path is not None and (
        not path.strip() or path.startswith("/") or ".." in path.replace("\\", "/").split("/")
    ):
        raise ValueError(f"{path!r} must be a path inside the repository, like `coverage.xml`")
    return path


EnvName = Annotated[str, AfterValidator(_env_name)]
Glob = Annotated[str, AfterValidator(_glob)]

DEFAULT_TEST_PATHS = (
    # directories, at any depth (gitignore: a pattern without a slash matches anywhere);
    # `test/` also covers Java's and Kotlin's `src/test/`
    "tests/",
    "test/",
    "__tests__/",
    "spec/",
    # Python
    "test_*.py",
    "*_test.py",
    "conftest.py",
    # JavaScript and TypeScript
    "*.test.*",
    "*.spec.*",
    # Go
    "*_test.go",
    # Java and Kotlin
    "*Test.java",
    "*Tests.java",
    "*IT.java",
    "*Test.kt",
    "*Tests.kt",
)
# Rust's unit tests live inside the source file they test: a Rust change with only unit
# tests reads as code without tests; list `src/**/*.rs` in test_paths or turn
# require_tests off for such repositories.
DEFAULT_CODE_PATHS = tuple(
    f"*.{ext}"
    for ext in (
        "py", "pyx", "js", "jsx", "mjs", "cjs", "ts", "tsx", "go", "rs", "java", "kt", "kts",
        "scala", "c", "h", "cc", "cpp", "hpp", "cs", "rb", "php", "swift", "m", "ex", "exs",
        "erl", "hs", "ml", "lua", "dart", "sh", "sql", "vue", "svelte",
    )
)  # fmt: skip


class Command(_Model):
    """One command run in the sandbox on the pull request's worktree (gate 2)."""

    name: str = Field(min_length=1, max_length=100, description="shown in the check run")
    run: str = Field(min_length=1, description="run by `sh -c` in the worktree")
    timeout_seconds: float = Field(default=600, gt=0, le=3600)
    env: list[EnvName] = Field(
        default_factory=list,
        description="names of variables passed from Nightshift's environment into the "
        "sandbox, which otherwise starts empty; never `NIGHTSHIFT_*`",
    )


class Coverage(_Model):
    """A coverage report the commands write, and the percentage of lines it must reach."""

    report: Annotated[str | None, AfterValidator(_relative_path)] = Field(
        default=None,
        description="path in the worktree of a Cobertura XML (`.xml`) or coverage.py JSON "
        "(`.json`) report; none: coverage is not read",
    )
    minimum: float | None = Field(
        default=None, ge=0, le=100, description="percent of lines covered; none: no minimum"
    )


class Judge(_Model):
    """An optional command that reviews the diff against the task and answers in JSON."""

    command: str = Field(min_length=1)
    timeout_seconds: float = Field(default=300, gt=0, le=3600)


class Review(_Model):
    """How pull requests are reviewed (gate 1: spec compliance, gate 2: quality) and merged."""

    scope: list[Glob] = Field(
        default_factory=list,
        description="gitignore-style globs a change must stay within, unless the issue has "
        "its own `Scope` section; empty: no restriction",
    )
    max_changed_files: int = Field(default=50, ge=1)
    max_changed_lines: int = Field(default=2000, ge=1, description="added plus deleted lines")
    required_checks: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="check runs or statuses that must succeed on the reviewed head commit",
    )
    commands: list[Command] = Field(
        default_factory=list, description="run in the sandbox, in order (tests, linters)"
    )
    coverage: Coverage = Field(default_factory=Coverage)
    tests_report: Annotated[str | None, AfterValidator(_relative_path)] = Field(
        default=None,
        description="path in the worktree of a JUnit XML report the commands write (pytest "
        "`--junitxml`, jest-junit, go-junit-report, Maven Surefire): its passed and failed "
        "tests are shown and failing ones named; none: not read",
    )
    require_tests: bool = Field(
        default=True, description="a change to code (code_paths) must also change tests"
    )
    test_paths: list[Glob] = Field(
        default_factory=lambda: list(DEFAULT_TEST_PATHS),
        description="gitignore-style globs of test files (Python, JS/TS, Go, Rust, Java)",
    )
    code_paths: list[Glob] = Field(
        default_factory=lambda: list(DEFAULT_CODE_PATHS),
        description="what counts as code for require_tests: source files by extension; "
        "docs, configuration and data need no tests",
    )
    judge: Judge | None = Field(default=None, description="none: no judge")
    merge_method: Literal["merge", "squash", "rebase"] = "squash"
    revert_on_red: bool = Field(
        default=True, description="revert a merge when the base branch's checks then fail"
    )
    mergeable_poll_attempts: int = Field(
        default=5, ge=1, description="looks at a PR whose mergeability GitHub is computing"
    )

    @field_validator("commands")
    @classmethod
    def _unique_names(cls, commands: list[Command]) -> list[Command]:
        names = [command.name for command in commands]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"command names must be unique; repeated: {', '.join(repeated)}")
        return commands


def _cron(expression: str) -> str:
    fields = expression.split()
    if len(fields) != 5 or not croniter.is_valid(" ".join(fields)):
        raise ValueError(
            f"{expression!r} is not a cron expression of five fields "
            "(minute hour day-of-month month day-of-week), like `0 6 * * *`"
        )
    return " ".join(fields)


def _timezone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: `Europe` is a directory
        raise ValueError(
            f"{name!r} is not a known time zone, like `UTC` or `Europe/Berlin`"
        ) from None
    return name


class Report(_Model):
    """When the morning report (one rolling issue) is published."""

    schedule: Annotated[str, AfterValidator(_cron)] = Field(
        default="0 6 * * *", description="cron expression, read in `timezone`"
    )
    timezone: Annotated[str, AfterValidator(_timezone)] = Field(
        default="UTC", description="IANA time zone of the schedule and of the report's dates"
    )


class EscalationLevels(_Model):
    """How long a task may stay blocked before the escalation path's next level (the
    matrix of the seed: a peer after 30 minutes, the lead after 2 hours, a human at once
    after 4 hours)."""

    peer_minutes: float = Field(
        default=30, gt=0, description="blocked this long: the task goes to a peer or its backup"
    )
    lead_minutes: float = Field(default=120, gt=0, description="then: the lead is asked")
    immediate_minutes: float = Field(
        default=240, gt=0, description="then: an immediate escalation (an urgent issue)"
    )
    lead: str | None = Field(
        default=None,
        min_length=1,
        description="a roster agent's name (told through its transport) or a GitHub login",
    )

    @model_validator(mode="after")
    def _ordered(self) -> EscalationLevels:
        if not self.peer_minutes < self.lead_minutes < self.immediate_minutes:
            raise ValueError(
                "peer_minutes < lead_minutes < immediate_minutes must hold "
                f"(got {self.peer_minutes:g}, {self.lead_minutes:g}, {self.immediate_minutes:g})"
            )
        return self


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
    escalation_levels: EscalationLevels = Field(default_factory=EscalationLevels)
    maintainers: list[str] = Field(default_factory=list, description="logins to mention")
    project: Project = Field(default_factory=Project)
    review: Review = Field(default_factory=Review)
    report: Report = Field(default_factory=Report)


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
        if error["type"] == "extra_forbidden":
            problem = "unknown setting"
        elif error["type"] == "value_error" and "error" in error.get("ctx", {}):
            problem = str(error["ctx"]["error"])  # a validator's own words, without pydantic's
        else:
            problem = error["msg"]
        raise ConfigError(file, key, problem) from None
    if config.max_size is not None and config.max_size not in config.size_labels:
        raise ConfigError(file, "max_size", f"must be one of size_labels {config.size_labels}")
    coverage = config.review.coverage
    if coverage.minimum is not None and coverage.report is None:
        raise ConfigError(
            file, "review.coverage.report", "must name the report when a minimum is set"
        )
    return config


def parse(text: str, file: str = CONFIG_PATH) -> Config:
    """Parse and validate one file on its own (`nightshift config check`)."""
    return validate(load_yaml(text, file), file)
