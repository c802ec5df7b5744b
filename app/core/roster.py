"""`AGENT_ROSTER.md`: the agents a repository offers, read from a markdown table.

The table is found with a markdown parser (markdown-it-py), so prose, code blocks and other
tables around it do not confuse it. A bad row is reported with its line and column and the
other rows still count. Secrets never live in the markdown: an agent's token and signing
secret come from the environment under the names `secret_env_name` gives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from markdown_it import MarkdownIt
from markdown_it.token import Token

_PARSER = MarkdownIt("commonmark").enable("table")

COLUMNS = ("agent", "github", "capabilities", "transport", "endpoint", "max tasks", "backup")
REQUIRED = ("agent", "github", "transport", "endpoint")
TRANSPORTS = ("github", "webhook", "maestro")
DEFAULT_MAX_TASKS = 3
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_NONE = ("", "-", "none", "—")

Transport = Literal["github", "webhook", "maestro"]


@dataclass(frozen=True)
class Agent:
    name: str
    github: str
    capabilities: frozenset[str]
    transport: Transport
    endpoint: str
    max_tasks: int
    backup: str | None
    line: int


@dataclass(frozen=True)
class Problem:
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


@dataclass(frozen=True)
class Roster:
    agents: tuple[Agent, ...]
    problems: tuple[Problem, ...]

    def agent(self, name: str) -> Agent | None:
        return next((a for a in self.agents if a.name == name), None)

    def by_login(self, login: str) -> Agent | None:
        return next((a for a in self.agents if a.github.lower() == login.lower()), None)


def secret_env_name(agent: str, kind: Literal["TOKEN", "SECRET"]) -> str:
    """`NIGHTSHIFT_AGENT_<AGENT>_TOKEN` (heartbeats) or `..._SECRET` (webhook signing)."""
    return f"NIGHTSHIFT_AGENT_{re.sub(r'[^A-Za-z0-9]', '_', agent).upper()}_{kind}"


def parse(text: str) -> Roster:
    """Every valid agent of the first table that has the roster's columns, and every problem."""
    tokens = _PARSER.parse(text)
    lines = text.splitlines()
    for table in _tables(tokens):
        header, rows = table[0], table[1:]
        names = [cell.strip().lower() for _, cell in header[1]]
        if "agent" in names and "github" in names:
            return _read_table(header, rows, names, lines)
    return Roster((), (Problem(1, 1, "no agent table: need columns " + ", ".join(COLUMNS)),))


Row = tuple[int, list[tuple[int, str]]]  # (line, [(column, cell text)])


def _tables(tokens: list[Token]) -> list[list[Row]]:
    tables: list[list[Row]] = []
    current: list[Row] | None = None
    for token in tokens:
        if token.type == "table_open":
            current = []
        elif token.type == "table_close" and current is not None:
            tables.append(current)
            current = None
        elif token.type == "tr_open" and current is not None and token.map:
            current.append((token.map[0] + 1, []))
        elif token.type == "inline" and current is not None and current:
            current[-1][1].append((0, token.content))
    return tables


def _columns_of(source_line: str) -> list[int]:
    """1-based column where each cell's text starts in a `| a | b |` line."""
    starts: list[int] = []
    stripped = source_line.lstrip()
    offset = len(source_line) - len(stripped)
    escaped = False
    boundaries = [offset - 1] if not stripped.startswith("|") else []
    for index, char in enumerate(source_line):
        if char == "|" and not escaped:
            boundaries.append(index)
        escaped = char == "\\" and not escaped
    for boundary in boundaries:
        rest = source_line[boundary + 1 :]
        starts.append(boundary + 2 + (len(rest) - len(rest.lstrip())))
    return starts


def _read_table(header: Row, rows: list[Row], names: list[str], lines: list[str]) -> Roster:
    problems: list[Problem] = []
    header_line = header[0]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        problems.append(Problem(header_line, 1, "missing column(s): " + ", ".join(missing)))
        return Roster((), tuple(problems))
    agents: list[Agent] = []
    seen: dict[str, int] = {}
    for line, cells in rows:
        columns = _columns_of(lines[line - 1]) if line - 1 < len(lines) else []
        values = {
            name: (_clean(cells[i][1]) if i < len(cells) else "", _col(columns, i))
            for i, name in enumerate(names)
        }
        agent, row_problems = _read_row(line, values)
        if agent is not None and agent.name in seen:
            column = values["agent"][1]
            row_problems.append(
                Problem(line, column, f"agent {agent.name!r} is already on line {seen[agent.name]}")
            )
            agent = None
        problems += row_problems
        if agent is not None:
            seen[agent.name] = line
            agents.append(agent)
    known = {agent.name for agent in agents}
    checked: list[Agent] = []
    for agent in agents:
        if agent.backup is not None and (agent.backup not in known or agent.backup == agent.name):
            column = _col(_columns_of(lines[agent.line - 1]), names.index("backup"))
            why = "is the agent itself" if agent.backup == agent.name else "is not in the roster"
            problems.append(Problem(agent.line, column, f"backup {agent.backup!r} {why}"))
            agent = Agent(**{**agent.__dict__, "backup": None})
        checked.append(agent)
    return Roster(tuple(checked), tuple(problems))


def _read_row(line: int, values: dict[str, tuple[str, int]]) -> tuple[Agent | None, list[Problem]]:
    problems: list[Problem] = []

    def bad(column_name: str, message: str) -> None:
        problems.append(Problem(line, values[column_name][1], message))

    name, _ = values["agent"]
    login, _ = values["github"]
    transport, _ = values["transport"]
    endpoint, _ = values["endpoint"]
    if not _NAME.match(name):
        bad("agent", f"agent name {name!r} must be letters, digits, '-', '_' or '.'")
    if not _LOGIN.match(login):
        bad("github", f"{login!r} is not a GitHub login")
    if transport not in TRANSPORTS:
        bad("transport", f"transport {transport!r} must be one of {', '.join(TRANSPORTS)}")
    else:
        endpoint_problem = _endpoint_problem(transport, endpoint)
        if endpoint_problem:
            bad("endpoint", endpoint_problem)
    max_tasks = DEFAULT_MAX_TASKS
    raw_max, _ = values.get("max tasks", ("", 0))
    if raw_max.lower() not in _NONE:
        if raw_max.isdigit() and int(raw_max) >= 1:
            max_tasks = int(raw_max)
        else:
            bad("max tasks", f"max tasks {raw_max!r} must be a whole number of at least 1")
    raw_backup, _ = values.get("backup", ("", 0))
    backup = None if raw_backup.lower() in _NONE else raw_backup
    capabilities = frozenset(
        part.strip().lower() for part in values.get("capabilities", ("", 0))[0].split(",")
    ) - {""}
    if problems:
        return None, problems
    return (
        Agent(
            name=name,
            github=login,
            capabilities=capabilities,
            transport=transport,  # type: ignore[arg-type]
            endpoint=endpoint,
            max_tasks=max_tasks,
            backup=backup,
            line=line,
        ),
        problems,
    )


def _endpoint_problem(transport: str, endpoint: str) -> str | None:
    if transport == "github":
        if endpoint == "assign":
            return None
        if endpoint.startswith("label:") and endpoint.removeprefix("label:").strip():
            return None
        if endpoint.startswith("mention:@") and _LOGIN.match(endpoint.removeprefix("mention:@")):
            return None
        return f"github endpoint {endpoint!r} must be assign, label:NAME or mention:@LOGIN"
    if not endpoint.startswith(("https://", "http://")) or len(endpoint.split("//", 1)[1]) < 1:
        return f"{transport} endpoint {endpoint!r} must be an http(s) URL"
    return None


def _clean(cell: str) -> str:
    text = cell.strip()
    if len(text) >= 2 and text.startswith("`") and text.endswith("`"):
        text = text[1:-1].strip()
    return text


def _col(columns: list[int], index: int) -> int:
    return columns[index] if index < len(columns) else 1
