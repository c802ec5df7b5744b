"""AGENT_ROSTER.md: parsed with a markdown parser; bad rows reported, good rows kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core import roster

ROOT = Path(__file__).resolve().parents[2]
HEADER = (
    "| Agent | GitHub | Capabilities | Transport | Endpoint | Max tasks | Backup |\n"
    "|---|---|---|---|---|---|---|\n"
)


def test_the_documented_example_parses_cleanly() -> None:
    parsed = roster.parse((ROOT / "AGENT_ROSTER.md").read_text())
    assert parsed.problems == ()
    assert [a.name for a in parsed.agents] == [
        "copilot",
        "claude",
        "openhands",
        "builder",
        "maestro-1",
    ]
    copilot = parsed.agents[0]
    assert copilot.github == "copilot-swe-agent[bot]"
    assert copilot.capabilities == {"python", "docs", "tests"}
    assert (copilot.transport, copilot.endpoint, copilot.max_tasks, copilot.backup) == (
        "github",
        "assign",
        3,
        "claude",
    )
    assert parsed.by_login("CLAUDE[bot]") == parsed.agents[1]


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        pytest.param(
            "| a | bad login! | py | github | assign | 1 | - |",
            7,
            "'bad login!' is not a GitHub login",
            id="login",
        ),
        pytest.param(
            "| a | ok | py | pigeon | assign | 1 | - |",
            17,
            "transport 'pigeon' must be one of github, webhook, maestro",
            id="transport",
        ),
        pytest.param(
            "| a | ok | py | github | ping | 1 | - |",
            26,
            "github endpoint 'ping' must be assign, label:NAME or mention:@LOGIN",
            id="github-endpoint",
        ),
        pytest.param(
            "| a | ok | py | webhook | ftp://x | 1 | - |",
            27,
            "webhook endpoint 'ftp://x' must be an http(s) URL",
            id="webhook-url",
        ),
        pytest.param(
            "| a | ok | py | github | assign | lots | - |",
            35,
            "max tasks 'lots' must be a whole number of at least 1",
            id="max-tasks",
        ),
        pytest.param(
            "| a | ok | py | github | assign | 1 | ghost |",
            39,
            "backup 'ghost' is not in the roster",
            id="unknown-backup",
        ),
        pytest.param(
            "| a | ok | py | github | assign | 1 | a |",
            39,
            "backup 'a' is the agent itself",
            id="self-backup",
        ),
    ],
)
def test_bad_row_is_reported_with_line_and_column(row: str, column: int, message: str) -> None:
    text = "# Roster\n\n" + HEADER + "| good | good-bot | py | github | assign | 2 | - |\n" + row
    parsed = roster.parse(text + "\n")
    (problem,) = parsed.problems
    assert (problem.line, problem.column, problem.message) == (6, column, message)
    assert "good" in [a.name for a in parsed.agents]  # the other rows still count


def test_duplicate_agent_and_defaults() -> None:
    text = HEADER + "| a | one | | github | assign | | |\n| a | two | | github | assign | | |\n"
    parsed = roster.parse(text)
    (agent,) = parsed.agents
    assert (agent.github, agent.max_tasks, agent.backup, agent.capabilities) == (
        "one",
        3,
        None,
        frozenset(),
    )
    assert [str(p) for p in parsed.problems] == ["line 4, column 3: agent 'a' is already on line 3"]


def test_code_cells_and_prose_around_the_table() -> None:
    text = (
        "Some prose | with a pipe.\n\n```\n| Agent | GitHub |\n```\n\n"
        + HEADER
        + "| `a` | `one` | py | github | `mention:@claude` | 2 | - |\n"
    )
    parsed = roster.parse(text)
    assert parsed.problems == ()
    assert parsed.agents[0].endpoint == "mention:@claude"


def test_no_table_or_missing_columns() -> None:
    assert [str(p) for p in roster.parse("# nothing here\n").problems] == [
        "line 1, column 1: no agent table: need columns agent, github, capabilities, "
        "transport, endpoint, max tasks, backup"
    ]
    parsed = roster.parse("| Agent | GitHub |\n|---|---|\n| a | b |\n")
    assert [str(p) for p in parsed.problems] == [
        "line 1, column 1: missing column(s): transport, endpoint"
    ]


def test_secret_names_come_from_the_environment_not_the_markdown() -> None:
    assert roster.secret_env_name("maestro-1", "TOKEN") == "NIGHTSHIFT_AGENT_MAESTRO_1_TOKEN"
    assert roster.secret_env_name("builder", "SECRET") == "NIGHTSHIFT_AGENT_BUILDER_SECRET"
