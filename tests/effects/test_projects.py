"""The task's card on a Project (v2): moved through GraphQL on the shared fake GitHub (whose
Projects model answers, and whose contract check holds every document to GitHub's schema),
by Nightshift's real GitHub adapter."""

from __future__ import annotations

import pytest

from app.core.config import Columns, Project
from app.effects.github import GitHubError
from app.effects.projects import (
    ADDED,
    CACHE_SECONDS,
    HAD_NO_VALUE,
    MOVED,
    NO_FIELD,
    NO_ISSUE,
    NO_OPTION,
    NO_PROJECT,
    NOT_SINGLE_SELECT,
    PROJECT_NOT_FOUND,
    UNCHANGED,
    WAS,
    CardResult,
    ProjectBoard,
)
from tests.contract.contract import Descriptions
from tests.fakes.github import FakeGitHub
from tests.fakes.projects import NOT_MODELLED
from tests.helpers import app_client

REPO = "octo/repo"
ORG_PROJECT = Project(owner="octo-org", number=3)
INSTALLATION = 77


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def board(fake_github: FakeGitHub, clock: Clock) -> ProjectBoard:
    return ProjectBoard(app_client(fake_github), clock=clock)


@pytest.fixture
def fake(fake_github: FakeGitHub) -> FakeGitHub:
    """octo-org's project 3 with the default columns, and issues #12 and #13 of octo/repo."""
    fake_github.projects.add_project("octo-org", 3, title="Nightshift")
    for number in (12, 13):
        fake_github.issue(REPO, number).title = f"task {number}"
    return fake_github


def graphql(fake: FakeGitHub) -> list[str]:
    """What GraphQL did: the operations sent, and the cards' changes."""
    return [e for e in fake.effects if e.startswith("graphql:") or ":card" in e]


def operations(result: CardResult) -> list[str]:
    return [request["operationName"] for request in result.requests]


def moved(number: int, option: str, how: str, project: str = "octo-org#3") -> str:
    return MOVED.format(repo=REPO, number=number, option=option, project=project, how=how)


# -- moving -------------------------------------------------------------------------------------


def test_a_card_is_added_when_absent_then_moved(fake: FakeGitHub, board: ProjectBoard) -> None:
    result = board.move(INSTALLATION, REPO, 12, ORG_PROJECT, "In Review")

    assert result == CardResult("moved", moved(12, "In Review", ADDED), result.requests)
    assert fake.projects.column("octo-org", 3, REPO, 12) == "In Review"
    assert graphql(fake) == [
        "graphql:FindProject",
        "graphql:FindCard",
        "graphql:AddCard",
        "octo/repo#12:card+octo-org#3",
        "graphql:MoveCard",
        "octo/repo#12:card->In Review",
    ]
    # the audit log gets the exact bodies sent
    assert operations(result) == ["FindProject", "FindCard", "AddCard", "MoveCard"]
    project = fake.projects.project("octo-org", 3)
    status = project.field_named("Status")
    assert result.requests[2]["variables"] == {
        "project": project.id,
        "content": fake.projects.issue_id(REPO, 12),
    }
    assert result.requests[3]["variables"] == {
        "project": project.id,
        "item": fake.projects.put("octo-org", 3, REPO, 12).id,
        "field": status.id,
        "option": next(o.id for o in status.options or () if o.name == "In Review"),
    }


@pytest.mark.parametrize(
    ("column", "how"),
    [
        pytest.param("Todo", WAS.format(previous="Todo"), id="from-another-column"),
        pytest.param(None, HAD_NO_VALUE.format(field="Status"), id="card-without-status"),
    ],
)
def test_a_card_on_the_project_is_moved_without_adding_it(
    fake: FakeGitHub, board: ProjectBoard, column: str | None, how: str
) -> None:
    fake.projects.put("octo-org", 3, REPO, 12, column)

    result = board.move(INSTALLATION, REPO, 12, ORG_PROJECT, "In Progress")

    assert (result.outcome, result.detail) == ("moved", moved(12, "In Progress", how))
    assert fake.projects.column("octo-org", 3, REPO, 12) == "In Progress"
    assert operations(result) == ["FindProject", "FindCard", "MoveCard"]
    assert not [e for e in fake.effects if ":card+" in e]


def test_a_card_in_the_column_already_is_left_alone(fake: FakeGitHub, board: ProjectBoard) -> None:
    fake.projects.put("octo-org", 3, REPO, 12, "In Review")

    result = board.move(INSTALLATION, REPO, 12, ORG_PROJECT, "In Review")

    detail = UNCHANGED.format(repo=REPO, number=12, option="In Review", project="octo-org#3")
    assert (result.outcome, result.detail) == ("unchanged", detail)
    assert graphql(fake) == ["graphql:FindProject", "graphql:FindCard"]


def test_the_column_is_matched_ignoring_case(fake: FakeGitHub, board: ProjectBoard) -> None:
    result = board.move(INSTALLATION, REPO, 12, ORG_PROJECT, "in review")

    assert result.detail == moved(12, "In Review", ADDED)
    assert fake.projects.column("octo-org", 3, REPO, 12) == "In Review"


def test_a_user_project_of_the_repository_owner(
    fake_github: FakeGitHub, board: ProjectBoard
) -> None:
    # no owner configured: the repository's owner, here a user (`organization` is NOT_FOUND)
    fake_github.projects.add_project("octocat", 1, user=True, columns=("Backlog", "Doing"))
    fake_github.issue("octocat/hello", 5)
    project = Project(number=1, columns=Columns(in_progress="Doing"))

    result = board.move(INSTALLATION, "octocat/hello", 5, project, project.columns.in_progress)

    assert result.outcome == "moved"
    assert fake_github.projects.column("octocat", 1, "octocat/hello", 5) == "Doing"
    assert fake_github.effects[-1] == "octocat/hello#5:card->Doing"


def test_a_project_that_is_not_configured_sends_nothing(
    fake: FakeGitHub, board: ProjectBoard
) -> None:
    assert board.move(INSTALLATION, REPO, 12, Project(), "Done") == CardResult(
        "no_project", NO_PROJECT
    )
    assert fake.requests == []


# -- what is missing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("owner", "number"),
    [
        pytest.param("octo-org", 9, id="no-such-project"),
        pytest.param("nobody", 3, id="no-such-owner"),
    ],
)
def test_a_missing_project_is_named(
    fake: FakeGitHub, board: ProjectBoard, owner: str, number: int
) -> None:
    result = board.move(INSTALLATION, REPO, 12, Project(owner=owner, number=number), "Done")

    assert result.outcome == "missing"
    assert result.detail == PROJECT_NOT_FOUND.format(
        project=f"{owner}#{number}", owner=owner, number=number
    )
    assert operations(result) == ["FindProject"]


def test_a_missing_field_is_named(fake_github: FakeGitHub, board: ProjectBoard) -> None:
    fake_github.projects.add_project("octo-org", 4, status_field="Stage")
    fake_github.issue(REPO, 12)

    result = board.move(INSTALLATION, REPO, 12, Project(owner="octo-org", number=4), "Done")

    assert result == CardResult(
        "missing", NO_FIELD.format(project="octo-org#4", field="Status"), result.requests
    )
    assert result.detail == "project octo-org#4 has no field 'Status'"


def test_a_field_that_is_not_single_select_is_named(
    fake_github: FakeGitHub, board: ProjectBoard
) -> None:
    fake_github.projects.add_project("octo-org", 4, status_field=None).add_field("Status")
    fake_github.issue(REPO, 12)

    result = board.move(INSTALLATION, REPO, 12, Project(owner="octo-org", number=4), "Done")

    assert result.outcome == "missing"
    assert result.detail == NOT_SINGLE_SELECT.format(field="Status", project="octo-org#4")


def test_a_missing_option_is_named_with_the_ones_there_are(
    fake_github: FakeGitHub, board: ProjectBoard
) -> None:
    fake_github.projects.add_project("octo-org", 4, columns=("Todo", "In Progress", "Done"))
    fake_github.issue(REPO, 12)

    result = board.move(INSTALLATION, REPO, 12, Project(owner="octo-org", number=4), "In Review")

    assert result.outcome == "missing"
    assert result.detail == NO_OPTION.format(
        option="In Review", options="Todo, In Progress, Done", field="Status", project="octo-org#4"
    )
    assert result.detail.startswith("option 'In Review' is not one of Todo, In Progress, Done")
    assert not [e for e in fake_github.effects if ":card" in e]


def test_a_missing_issue_is_named(fake: FakeGitHub, board: ProjectBoard) -> None:
    result = board.move(INSTALLATION, REPO, 99, ORG_PROJECT, "Done")

    assert (result.outcome, result.detail) == ("missing", NO_ISSUE.format(repo=REPO, number=99))
    assert operations(result) == ["FindProject", "FindCard"]


# -- GitHub failing -----------------------------------------------------------------------------


def test_a_server_error_raises_for_the_step_to_run_again(
    fake: FakeGitHub, board: ProjectBoard
) -> None:
    fake.fail("POST", r"/graphql", 502)

    with pytest.raises(GitHubError) as raised:
        board.move(INSTALLATION, REPO, 12, ORG_PROJECT, "Done")

    assert raised.value.status == 502 and raised.value.transient
    # nothing was half done, and the step's next run makes the move
    assert board.move(INSTALLATION, REPO, 12, ORG_PROJECT, "Done").outcome == "moved"


def test_graphql_rate_limits_raise_as_transient(fake: FakeGitHub, board: ProjectBoard) -> None:
    limited = {"type": "RATE_LIMITED", "message": "API rate limit exceeded for installation."}
    fake.fail("POST", r"/graphql", 200, body={"data": None, "errors": [limited]})

    with pytest.raises(GitHubError) as raised:
        board.move(INSTALLATION, REPO, 12, ORG_PROJECT, "Done")

    assert raised.value.transient
    assert "RATE_LIMITED" in raised.value.message


def test_a_project_the_app_may_not_read_raises_as_permanent(
    fake: FakeGitHub, board: ProjectBoard
) -> None:
    fake.projects.unreadable.add("octo-org")

    with pytest.raises(GitHubError) as raised:
        board.move(INSTALLATION, REPO, 12, ORG_PROJECT, "Done")

    assert (raised.value.status, raised.value.transient) == (403, False)
    assert raised.value.message == (
        "GraphQL FORBIDDEN at organization.projectV2: Resource not accessible by integration"
    )


# -- the cache ----------------------------------------------------------------------------------


def test_the_project_is_looked_up_once_for_many_moves(
    fake: FakeGitHub, board: ProjectBoard, clock: Clock
) -> None:
    first = board.move(INSTALLATION, REPO, 12, ORG_PROJECT, "In Progress")
    second = board.move(INSTALLATION, REPO, 13, ORG_PROJECT, "In Progress")
    third = board.move(INSTALLATION, REPO, 12, ORG_PROJECT, "Done")

    assert operations(first) == ["FindProject", "FindCard", "AddCard", "MoveCard"]
    assert operations(second) == ["FindCard", "AddCard", "MoveCard"]
    assert operations(third) == ["FindCard", "MoveCard"]
    assert fake.projects.column("octo-org", 3, REPO, 13) == "In Progress"
    assert fake.projects.column("octo-org", 3, REPO, 12) == "Done"

    clock.now += CACHE_SECONDS + 1  # a few minutes later the project is looked up again
    later = board.move(INSTALLATION, REPO, 13, ORG_PROJECT, "Done")
    assert operations(later) == ["FindProject", "FindCard", "MoveCard"]


def test_a_stale_cached_option_is_looked_up_again(fake: FakeGitHub, board: ProjectBoard) -> None:
    board.move(INSTALLATION, REPO, 12, ORG_PROJECT, "In Review")
    # someone deleted the option and made it again: it has a new id
    project = fake.projects.project("octo-org", 3)
    project.remove_option("Status", "In Review")
    project.add_option("Status", "In Review")

    result = board.move(INSTALLATION, REPO, 13, ORG_PROJECT, "In Review")

    assert result.outcome == "moved"
    assert operations(result) == [
        "FindCard",
        "AddCard",
        "MoveCard",  # refused: the cached option id is gone
        "FindProject",
        "FindCard",
        "MoveCard",
    ]
    assert fake.projects.column("octo-org", 3, REPO, 13) == "In Review"


def test_an_option_added_since_it_was_cached_is_found(
    fake_github: FakeGitHub, board: ProjectBoard
) -> None:
    project = fake_github.projects.add_project("octo-org", 4, columns=("Todo", "Done"))
    fake_github.issue(REPO, 12)
    where = Project(owner="octo-org", number=4)
    assert board.move(INSTALLATION, REPO, 12, where, "Blocked").outcome == "missing"

    project.add_option("Status", "Blocked")

    assert board.move(INSTALLATION, REPO, 12, where, "Blocked").outcome == "moved"
    assert fake_github.projects.column("octo-org", 4, REPO, 12) == "Blocked"


# -- dry-run ------------------------------------------------------------------------------------


def test_the_plan_is_what_a_move_sends_with_placeholders(
    board: ProjectBoard, github_descriptions: Descriptions
) -> None:
    plan = board.plan(REPO, 12, ORG_PROJECT, "In Review")

    assert [body["operationName"] for body in plan] == [
        "FindProject",
        "FindCard",
        "AddCard",
        "MoveCard",
    ]
    assert plan[0]["variables"] == {"owner": "octo-org", "number": 3}
    assert plan[1]["variables"] == {
        "owner": "octo",
        "name": "repo",
        "number": 12,
        "field": "Status",
    }
    assert plan[3]["variables"] == {
        "project": "<id of project octo-org#3>",
        "item": "<card of octo/repo#12 on project octo-org#3>",
        "field": "<id of field 'Status'>",
        "option": "<id of option 'In Review'>",
    }
    for body in plan:  # what it would send is what GitHub's schema accepts
        assert github_descriptions.graphql.check_request(body) == []
    assert board.plan(REPO, 12, Project(), "Done") == []


# -- the fake -----------------------------------------------------------------------------------


def test_the_fake_answers_fields_it_does_not_model_with_an_error(fake: FakeGitHub) -> None:
    answer, effects = fake.projects.answer(
        {"query": 'query { organization(login: "octo-org") { name } }'}
    )
    assert answer == {
        "errors": [
            {
                "message": "the fake GitHub does not model Organization.name",
                "extensions": {"code": NOT_MODELLED},
            }
        ]
    }
    assert effects == []


def test_programmed_answers_come_before_the_model(fake: FakeGitHub, board: ProjectBoard) -> None:
    # a test that programs the answer (here: no project anywhere) gets it
    fake.answer_graphql({"organization": None, "user": None})

    result = board.move(INSTALLATION, REPO, 12, ORG_PROJECT, "Done")

    assert result.outcome == "missing"
    assert board.move(INSTALLATION, REPO, 12, ORG_PROJECT, "Done").outcome == "moved"
