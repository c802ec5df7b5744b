"""Dependencies and scheduling, table-driven."""

from __future__ import annotations

import pytest

from app.core import schedule
from app.core.schedule import AgentInfo, TaskInfo, capabilities_for, cycles, depends_on, plan


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param("Depends on #12", {12}, id="one"),
        pytest.param("Fix it.\n\ndepends on: #3, #4 and #5", {3, 4, 5}, id="several"),
        pytest.param("- Depends on #7", {7}, id="in-a-list"),
        pytest.param("```\nDepends on #9\n```", set(), id="not-in-code"),
        pytest.param("Mentions #8 but depends on nothing", set(), id="mention-is-not-a-dependency"),
        pytest.param("Depends on other/repo#3", set(), id="other-repository-not-counted"),
        pytest.param(None, set(), id="no-body"),
    ],
)
def test_depends_on(body: str | None, expected: set[int]) -> None:
    assert depends_on(body) == expected


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        pytest.param({1: {2}, 2: {3}, 3: set()}, [], id="chain"),
        pytest.param({1: {2}, 2: {1}}, [[1, 2]], id="pair"),
        pytest.param({1: {2}, 2: {3}, 3: {1}, 4: {1}}, [[1, 2, 3]], id="triangle-and-a-tail"),
        pytest.param({5: {5}}, [[5]], id="self"),
        pytest.param({1: {2}, 2: {1}, 3: {4}, 4: {3}}, [[1, 2], [3, 4]], id="two"),
        pytest.param({1: {99}}, [], id="dependency-outside-the-tasks"),
    ],
)
def test_cycles(graph: dict[int, set[int]], expected: list[list[int]]) -> None:
    assert cycles(graph) == expected


def agent(name: str, caps: str = "python", max_tasks: int = 3, **kw: object) -> AgentInfo:
    return AgentInfo(name, frozenset(caps.split(",")) if caps else frozenset(), max_tasks, **kw)  # type: ignore[arg-type]


def task(number: int, caps: str = "", created: float = 0, **kw: object) -> TaskInfo:
    needed = frozenset(caps.split(",")) if caps else frozenset()
    return TaskInfo(number, created, needed, **kw)  # type: ignore[arg-type]


def test_priority_then_age() -> None:
    unlabelled = 4
    tasks = [
        task(1, created=1, priority=unlabelled),
        task(2, created=2, priority=0),
        task(3, created=0, priority=1),
        task(4, created=1, priority=1),
    ]
    result = plan(tasks, [agent("a", max_tasks=3)])
    assert result.assignments == ((2, "a"), (3, "a"), (4, "a"))  # priority, then the oldest
    assert set(result.waiting) == {1}


def test_least_loaded_then_best_record() -> None:
    agents = [agent("busy", load=2), agent("idle-poor", record=0.2), agent("idle-good", record=0.9)]
    result = plan([task(1), task(2), task(3)], agents)
    assert result.assignments == ((1, "idle-good"), (2, "idle-poor"), (3, "idle-good"))


@pytest.mark.parametrize(
    ("agents", "reason"),
    [
        pytest.param(
            [agent("a", "docs")], schedule.NO_AGENT_WITH.format(caps="{python}"), id="nobody-can"
        ),
        pytest.param(
            [agent("a", "python", online=False)],
            schedule.ALL_OFFLINE.format(caps="{python}"),
            id="offline",
        ),
        pytest.param(
            [agent("a", "python", max_tasks=1, load=1)],
            schedule.ALL_BUSY.format(caps="{python}"),
            id="full",
        ),
    ],
)
def test_a_task_without_an_agent_says_why(agents: list[AgentInfo], reason: str) -> None:
    result = plan([task(1, "python")], agents)
    assert result.assignments == ()
    assert result.waiting == {1: reason}


def test_capabilities_must_be_covered() -> None:
    agents = [agent("py", "python"), agent("full", "python,frontend")]
    result = plan([task(1, "python,frontend"), task(2, "python")], agents)
    assert dict(result.assignments) == {1: "full", 2: "py"}


def test_dependencies_and_cycles() -> None:
    tasks = [
        task(1),
        task(2, depends_on=frozenset({1})),
        task(3, depends_on=frozenset({4})),
        task(4, depends_on=frozenset({3})),
        task(5, depends_on=frozenset({77})),
    ]
    result = plan(tasks, [agent("a", "")], finished={77})
    assert dict(result.assignments) == {1: "a", 5: "a"}
    assert result.waiting == {
        2: schedule.NOT_READY.format(deps="#1"),
        3: schedule.IN_CYCLE.format(cycle="#3 -> #4 -> #3"),
        4: schedule.IN_CYCLE.format(cycle="#3 -> #4 -> #3"),
    }


def test_an_agent_filled_through_one_capability_set_is_not_overbooked_through_another() -> None:
    agents = [agent("both", "python,docs", max_tasks=2)]
    tasks = [task(1, "python"), task(2, "docs"), task(3, "python"), task(4, "docs")]
    result = plan(tasks, agents)
    assert len(result.assignments) == 2
    assert set(result.waiting) == {3, 4}


def test_labels_map_to_capabilities() -> None:
    mapping = {"frontend": ["css", "JavaScript"], "bug": []}
    assert capabilities_for(["frontend", "bug", "other"], mapping) == {"css", "javascript"}
    assert schedule.priority_of(["priority:high"], ["priority:critical", "priority:high"]) == 1
    assert schedule.priority_of(["x"], ["priority:critical", "priority:high"]) == 2


def test_one_repository_per_pass() -> None:
    with pytest.raises(ValueError, match="unique"):
        plan([task(7), task(7)], [agent("a")])


def test_a_task_every_capable_agent_lost_says_so() -> None:
    from app.core.schedule import ALL_EXCLUDED, AgentInfo, TaskInfo, plan

    task = TaskInfo(1, 0.0, frozenset({"python"}), excluded=frozenset({"a", "b"}))
    agents = [
        AgentInfo("a", frozenset({"python"}), 3),
        AgentInfo("b", frozenset({"python"}), 3),
        AgentInfo("c", frozenset({"docs"}), 3),
    ]
    assert plan([task], agents).waiting == {1: ALL_EXCLUDED.format(caps="{python}")}
