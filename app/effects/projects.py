"""The task's card on a GitHub Project (v2): put it in the column for the task's state.

Everything goes through GitHub's GraphQL API (POST /graphql, through `GitHubPort`):
https://docs.github.com/en/issues/planning-and-tracking-with-projects/automating-your-project/using-the-api-to-manage-projects

A move is four requests at most, each documented in GitHub's guide above:

1. `FindProject`: the project by its owner's login and its number, with its fields. Owners
   are organizations or users and GitHub has one root field for each: both are asked in one
   query and the one that is not the owner's kind answers NOT_FOUND, which is normal.
   Cached per (owner, number, field) for `ttl` seconds, so a busy night does not ask again
   for every move.
2. `FindCard`: the issue's node id, its project items and their value of the status field.
3. `AddCard` (`addProjectV2ItemById`) when the issue has no card on the project yet.
4. `MoveCard` (`updateProjectV2ItemFieldValue`) when the card is not in the column already.

What a maintainer set up differently (no such project, field or option, no such issue)
is an outcome, `missing`, with a one-line detail for the audit log; it never raises. The
App needs the organization permission "Projects: read and write"; users report that an
installation token does not see user-owned projects at all (GitHub answers as if there
were none), so such a project may well be `missing` too.

Errors: a 5xx or no answer raises `GitHubError` (transient: the caller's durable step runs
again). GraphQL `errors` in a 200 answer other than the expected NOT_FOUNDs raise a
`GitHubError` too, with a status saying whether trying again can help:
- FORBIDDEN, INSUFFICIENT_SCOPES: 403, not transient (the App lacks the Projects
  permission: only a human can grant it; the executor audits it as failed);
- RATE_LIMITED, and errors without a type or code (GitHub's "Something went wrong while
  executing your query. This may be the result of a timeout"): 502, transient;
- anything else (a document GitHub rejects, UNPROCESSABLE, ...): 422, not transient.
A mutation refused while the ids came from the cache (someone deleted the option, or the
project) drops the cached ids and the move is made once more from fresh look-ups.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from app.core.config import Project
from app.effects.github import GitHubError, GitHubPort, GitHubRequest

CardOutcome = Literal["moved", "unchanged", "no_project", "missing"]

# GitHub Enterprise Server serves GraphQL at /api/graphql, beside the REST API's /api/v3
GRAPHQL_PATH = "/graphql"
CACHE_SECONDS = 300.0

# -- the documents ------------------------------------------------------------------------------

FIND_PROJECT = """
query FindProject($owner: String!, $number: Int!) {
  organization(login: $owner) { projectV2(number: $number) { ...board } }
  user(login: $owner) { projectV2(number: $number) { ...board } }
}

fragment board on ProjectV2 {
  id
  title
  fields(first: 50) {
    nodes {
      __typename
      ... on ProjectV2FieldCommon { id name }
      ... on ProjectV2SingleSelectField { options { id name } }
    }
  }
}
"""

FIND_CARD = """
query FindCard($owner: String!, $name: String!, $number: Int!, $field: String!) {
  repository(owner: $owner, name: $name) {
    issue(number: $number) {
      id
      projectItems(first: 50) {
        nodes {
          id
          project { id }
          fieldValueByName(name: $field) {
            __typename
            ... on ProjectV2ItemFieldSingleSelectValue { optionId name }
          }
        }
      }
    }
  }
}
"""

ADD_CARD = """
mutation AddCard($project: ID!, $content: ID!) {
  addProjectV2ItemById(input: {projectId: $project, contentId: $content}) {
    item { id }
  }
}
"""

MOVE_CARD = """
mutation MoveCard($project: ID!, $item: ID!, $field: ID!, $option: String!) {
  updateProjectV2ItemFieldValue(
    input: {
      projectId: $project
      itemId: $item
      fieldId: $field
      value: {singleSelectOptionId: $option}
    }
  ) {
    projectV2Item { id }
  }
}
"""

# -- what the audit log says (module constants: tests assert against them) ---------------------

NO_PROJECT = "no project configured (project.number is not set)"
PROJECT_NOT_FOUND = (
    "project {project} not found: no organization or user {owner!r} has a project "
    "number {number} that Nightshift can read"
)
NO_FIELD = "project {project} has no field {field!r}"
NOT_SINGLE_SELECT = "field {field!r} of project {project} is not a single-select field"
NO_OPTION = "option {option!r} is not one of {options} (field {field!r} of project {project})"
NO_REPOSITORY = "repository {repo} not found"
NO_ISSUE = "{repo}#{number} is not an issue GitHub knows"
VANISHED = "project {project} refused the card of {repo}#{number}: {message}"
MOVED = "{repo}#{number} moved to {option!r} on project {project} ({how})"
UNCHANGED = "{repo}#{number} is already in {option!r} on project {project}"
ADDED = "added to the project"
HAD_NO_VALUE = "it had no {field!r}"
WAS = "was {previous!r}"

# the placeholders `plan` puts where `move` would use ids it looks up
PROJECT_ID = "<id of project {project}>"
ISSUE_ID = "<node id of {repo}#{number}>"
ITEM_ID = "<card of {repo}#{number} on project {project}>"
FIELD_ID = "<id of field {field!r}>"
OPTION_ID = "<id of option {option!r}>"

_PERMISSION = frozenset({"FORBIDDEN", "INSUFFICIENT_SCOPES"})
_TRANSIENT = frozenset({"RATE_LIMITED", "SERVICE_UNAVAILABLE", "INTERNAL", "TIMEOUT"})


@dataclass(frozen=True)
class CardResult:
    outcome: CardOutcome
    detail: str  # one line for the audit log
    requests: tuple[dict[str, Any], ...] = ()  # the GraphQL bodies sent, for the audit log


@dataclass(frozen=True)
class _Board:
    """What `FindProject` found: the ids a move needs, cached."""

    project_id: str
    field_id: str
    field_name: str
    options: tuple[tuple[str, str], ...]  # (id, name), in the project's order

    def option(self, column: str) -> tuple[str, str] | None:
        """The option named `column`: exactly, else ignoring case."""
        for option in self.options:
            if option[1] == column:
                return option
        folded = column.casefold()
        return next((o for o in self.options if o[1].casefold() == folded), None)


class _Refused(Exception):
    """A mutation answered GraphQL errors (handled by `move`: refresh, missing or raise)."""

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        super().__init__(_describe(errors))
        self.errors = errors


@dataclass
class _Move:
    """One move under way: where, and the requests sent so far."""

    installation_id: int
    repo: str
    number: int
    owner: str
    project: Project
    column: str
    sent: list[dict[str, Any]]

    @property
    def label(self) -> str:
        return f"{self.owner}#{self.project.number}"

    def result(self, outcome: CardOutcome, detail: str) -> CardResult:
        return CardResult(outcome, detail, tuple(self.sent))


class ProjectBoard:
    """Moves a task's card on the repository's configured Project (v2)."""

    def __init__(
        self,
        github: GitHubPort,
        *,
        clock: Callable[[], float] = time.monotonic,
        ttl: float = CACHE_SECONDS,
    ) -> None:
        self.github = github
        self.clock = clock
        self.ttl = ttl
        self._boards: dict[tuple[str, int, str], tuple[float, _Board]] = {}
        self._lock = threading.Lock()

    # -- the interface -----------------------------------------------------------------------

    def move(
        self, installation_id: int, repo: str, number: int, project: Project, column: str
    ) -> CardResult:
        """Put the card of issue `number` in `column` (an option of the status field),
        adding the issue to the project first when it is not on it."""
        if project.number is None:
            return CardResult("no_project", NO_PROJECT)
        move = _Move(installation_id, repo, number, _owner(project, repo), project, column, [])
        found = self._board(move, fresh=False)
        if isinstance(found, CardResult):
            return found
        board, cached = found
        try:
            return self._place(move, board)
        except _Refused as refused:
            if not cached or _error(refused.errors).transient:
                return self._refused(move, refused)
        # the cached ids may be stale (the option or the project deleted and made again):
        # once more, from fresh look-ups
        self._forget(move)
        found = self._board(move, fresh=True)
        if isinstance(found, CardResult):
            return found
        try:
            return self._place(move, found[0])
        except _Refused as refused:
            return self._refused(move, refused)

    def plan(self, repo: str, number: int, project: Project, column: str) -> list[dict[str, Any]]:
        """The requests a move would send, for dry-run: the ids it would look up are
        placeholders. The last two are sent only when needed: `AddCard` when the issue is
        not on the project, `MoveCard` when its card is in another column."""
        if project.number is None:
            return []
        owner, name = _owner(project, repo), repo.partition("/")[2]
        where = f"{owner}#{project.number}"
        project_id = PROJECT_ID.format(project=where)
        item = ITEM_ID.format(repo=repo, number=number, project=where)
        return [
            _body(FIND_PROJECT, "FindProject", owner=owner, number=project.number),
            _body(
                FIND_CARD,
                "FindCard",
                owner=repo.partition("/")[0],
                name=name,
                number=number,
                field=project.status_field,
            ),
            _body(
                ADD_CARD,
                "AddCard",
                project=project_id,
                content=ISSUE_ID.format(repo=repo, number=number),
            ),
            _body(
                MOVE_CARD,
                "MoveCard",
                project=project_id,
                item=item,
                field=FIELD_ID.format(field=project.status_field),
                option=OPTION_ID.format(option=column),
            ),
        ]

    # -- the steps ---------------------------------------------------------------------------

    def _board(self, move: _Move, *, fresh: bool) -> tuple[_Board, bool] | CardResult:
        """The project's ids for the status field, from the cache unless `fresh`, and
        whether they came from it; or why there are none."""
        key = _key(move)
        if not fresh:
            with self._lock:
                hit = self._boards.get(key)
            if hit is not None and hit[0] > self.clock():
                board = hit[1]
                if board.option(move.column) is not None:
                    return board, True
                # an option added since it was cached is found by looking again
        found = self._find_project(move)
        if isinstance(found, CardResult):
            return found
        with self._lock:
            self._boards[key] = (self.clock() + self.ttl, found)
        if found.option(move.column) is None:
            return move.result(
                "missing",
                NO_OPTION.format(
                    option=move.column,
                    options=", ".join(name for _, name in found.options) or "(no options)",
                    field=found.field_name,
                    project=move.label,
                ),
            )
        return found, False

    def _forget(self, move: _Move) -> None:
        with self._lock:
            self._boards.pop(_key(move), None)

    def _find_project(self, move: _Move) -> _Board | CardResult:
        assert move.project.number is not None
        data = self._query(
            move,
            _body(FIND_PROJECT, "FindProject", owner=move.owner, number=move.project.number),
        )
        # the owner is an organization or a user, not both: one of them is always null
        found = _dig(data, "organization", "projectV2") or _dig(data, "user", "projectV2")
        if not isinstance(found, Mapping):
            return move.result(
                "missing",
                PROJECT_NOT_FOUND.format(
                    project=move.label, owner=move.owner, number=move.project.number
                ),
            )
        wanted = move.project.status_field
        fields = [f for f in _nodes(found.get("fields")) if isinstance(f.get("name"), str)]
        field = next((f for f in fields if f["name"] == wanted), None) or next(
            (f for f in fields if f["name"].casefold() == wanted.casefold()), None
        )
        if field is None:
            return move.result("missing", NO_FIELD.format(project=move.label, field=wanted))
        if field.get("__typename") != "ProjectV2SingleSelectField":
            return move.result(
                "missing", NOT_SINGLE_SELECT.format(project=move.label, field=field["name"])
            )
        options = tuple(
            (str(option["id"]), str(option["name"]))
            for option in field.get("options") or ()
            if isinstance(option, Mapping)
        )
        return _Board(str(found["id"]), str(field["id"]), str(field["name"]), options)

    def _place(self, move: _Move, board: _Board) -> CardResult:
        """Find the card, add it when absent, and set its status when different."""
        option = board.option(move.column)
        assert option is not None  # checked by `_board`
        option_id, option_name = option
        owner, _, name = move.repo.partition("/")
        data = self._query(
            move,
            _body(
                FIND_CARD,
                "FindCard",
                owner=owner,
                name=name,
                number=move.number,
                field=board.field_name,
            ),
        )
        repository = data.get("repository")
        if not isinstance(repository, Mapping):
            return move.result("missing", NO_REPOSITORY.format(repo=move.repo))
        issue = repository.get("issue")
        if not isinstance(issue, Mapping):
            return move.result("missing", NO_ISSUE.format(repo=move.repo, number=move.number))
        card = next(
            (
                item
                for item in _nodes(issue.get("projectItems"))
                if _dig(item, "project", "id") == board.project_id
            ),
            None,
        )
        if card is None:
            added = self._mutate(
                move, _body(ADD_CARD, "AddCard", project=board.project_id, content=issue["id"])
            )
            item_id = _dig(added, "addProjectV2ItemById", "item", "id")
            how = ADDED
        else:
            item_id = card["id"]
            value = card.get("fieldValueByName")
            current = value if isinstance(value, Mapping) else None
            if current is not None and current.get("optionId") == option_id:
                return move.result(
                    "unchanged",
                    UNCHANGED.format(
                        repo=move.repo, number=move.number, option=option_name, project=move.label
                    ),
                )
            how = (
                WAS.format(previous=current.get("name"))
                if current is not None
                else HAD_NO_VALUE.format(field=board.field_name)
            )
        if not isinstance(item_id, str):
            raise GitHubError(502, "GraphQL: addProjectV2ItemById answered no item id")
        self._mutate(
            move,
            _body(
                MOVE_CARD,
                "MoveCard",
                project=board.project_id,
                item=item_id,
                field=board.field_id,
                option=option_id,
            ),
        )
        return move.result(
            "moved",
            MOVED.format(
                repo=move.repo, number=move.number, option=option_name, project=move.label, how=how
            ),
        )

    def _refused(self, move: _Move, refused: _Refused) -> CardResult:
        """A mutation refused with fresh ids: gone in between (NOT_FOUND) is `missing`;
        anything else raises like any other GraphQL error."""
        if refused.errors and all(e.get("type") == "NOT_FOUND" for e in refused.errors):
            return move.result(
                "missing",
                VANISHED.format(
                    project=move.label, repo=move.repo, number=move.number, message=refused
                ),
            )
        raise _error(refused.errors)

    # -- the wire ----------------------------------------------------------------------------

    def _post(
        self, move: _Move, body: dict[str, Any]
    ) -> tuple[Mapping[str, Any] | None, list[Mapping[str, Any]]]:
        """Send one document: its `data` and `errors` (HTTP errors raise `GitHubError`)."""
        move.sent.append(body)
        response = self.github.send(move.installation_id, GitHubRequest("POST", GRAPHQL_PATH, body))
        answer = response.data if isinstance(response.data, Mapping) else {}
        data = answer.get("data")
        errors = answer.get("errors")
        errors = [e for e in errors if isinstance(e, Mapping)] if isinstance(errors, list) else []
        if not isinstance(data, Mapping) and not errors:
            raise GitHubError(502, f"GraphQL: {body['operationName']} answered no data")
        return (data if isinstance(data, Mapping) else None), errors

    def _query(self, move: _Move, body: dict[str, Any]) -> Mapping[str, Any]:
        """A query's data; NOT_FOUND errors are normal (the field is then null)."""
        data, errors = self._post(move, body)
        unexpected = [e for e in errors if e.get("type") != "NOT_FOUND"]
        if unexpected or data is None:
            raise _error(unexpected or errors)
        return data

    def _mutate(self, move: _Move, body: dict[str, Any]) -> Mapping[str, Any]:
        """A mutation's data; any GraphQL error is a refusal (see `move`)."""
        data, errors = self._post(move, body)
        if errors or data is None:
            raise _Refused(errors)
        return data


# -- helpers ------------------------------------------------------------------------------------


def _owner(project: Project, repo: str) -> str:
    return project.owner or repo.partition("/")[0]


def _key(move: _Move) -> tuple[str, int, str]:
    assert move.project.number is not None
    return (move.owner.casefold(), move.project.number, move.project.status_field.casefold())


def _body(document: str, operation: str, **variables: Any) -> dict[str, Any]:
    return {"query": document.strip(), "operationName": operation, "variables": variables}


def _dig(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _nodes(connection: Any) -> list[Mapping[str, Any]]:
    nodes = _dig(connection, "nodes")
    return [n for n in nodes if isinstance(n, Mapping)] if isinstance(nodes, list) else []


def _describe(errors: Sequence[Mapping[str, Any]]) -> str:
    """GitHub's errors as one line: `TYPE at a.b: message; ...`."""
    parts = []
    for error in errors:
        kind = error.get("type") or _dig(error, "extensions", "code") or "error"
        path = ".".join(str(p) for p in error.get("path") or ())
        parts.append(f"{kind}{f' at {path}' if path else ''}: {error.get('message', '')}")
    return "; ".join(parts)


def _error(errors: Sequence[Mapping[str, Any]]) -> GitHubError:
    """GraphQL errors as a `GitHubError` whose status says whether trying again may help."""
    kinds = {error.get("type") for error in errors}
    untyped = any(
        error.get("type") is None and _dig(error, "extensions", "code") is None for error in errors
    )
    if kinds & _PERMISSION:
        status = 403
    elif kinds & _TRANSIENT or untyped:
        status = 502
    else:
        status = 422
    return GitHubError(status, f"GraphQL {_describe(errors)}")
