"""What the effects layer gathers for a review, as plain data the gates judge.

The git port produces the `Diff`, the sandbox produces `CommandRun`s, the secret scanner
`SecretFinding`s, the GitHub port `CheckResult`s; `app.core.gates` turns them into
verdicts. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FileStatus = Literal["added", "modified", "deleted", "renamed"]


@dataclass(frozen=True)
class AddedLine:
    """One line the pull request adds: its number in the new file and its text."""

    line: int
    text: str


@dataclass(frozen=True)
class ChangedFile:
    path: str
    status: FileStatus
    additions: int
    deletions: int
    added: tuple[AddedLine, ...] = ()
    old_path: str | None = None  # for renames
    binary: bool = False


@dataclass(frozen=True)
class Diff:
    """The pull request's change: from the merge base with the base branch to the head."""

    base: str  # the merge-base commit
    head: str  # the head commit reviewed
    files: tuple[ChangedFile, ...] = ()

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(f.path for f in self.files)

    @property
    def changed_lines(self) -> int:
        return sum(f.additions + f.deletions for f in self.files)


@dataclass(frozen=True)
class CommandRun:
    """One configured command run in the sandbox, and how it ended.

    `exit_code` is None when the command did not end by itself: `killed` then says why
    (timeout, output limit, memory, ...). `output_tail` is the last part of its combined
    output, for the check run and the fix instructions.
    """

    name: str
    command: str
    exit_code: int | None
    duration_seconds: float
    output_tail: str = ""
    killed: str | None = None

    @property
    def passed(self) -> bool:
        return self.exit_code == 0 and self.killed is None


@dataclass(frozen=True)
class SecretFinding:
    """A likely secret on an added line. Never carries the secret itself."""

    path: str
    line: int
    kind: str  # the scanner's name for it, like "AWS Access Key"


@dataclass(frozen=True)
class CheckResult:
    """A check run or commit status GitHub reports for a commit."""

    name: str
    head_sha: str
    status: str  # queued, in_progress, completed (statuses: completed)
    conclusion: str | None  # success, failure, neutral, cancelled, skipped, timed_out, ...
    details_url: str | None = None


@dataclass(frozen=True)
class JudgeFinding:
    path: str
    line: int | None
    message: str


@dataclass(frozen=True)
class JudgeVerdict:
    """The optional judge command's answer, or why its output was not usable."""

    passed: bool
    findings: tuple[JudgeFinding, ...] = ()
    error: str | None = None  # invalid output, timeout, ...


@dataclass(frozen=True)
class LogExcerpt:
    """Why a CI job (or another CI app's check run) failed, in its own words: the part of
    its log the agent needs to fix it (app.core.ci_log), or why it could not be read.

    `text` is cut already, with GitHub-shaped tokens masked and lines the secret scanner
    flags withheld; `error` is set instead when GitHub did not give the log (it expired,
    404, a server error), so a block still says what it could not show.
    """

    name: str  # the job's or check run's name
    url: str | None = None  # its page on GitHub
    step: str | None = None  # a job's first failed step
    text: str = ""
    error: str | None = None
