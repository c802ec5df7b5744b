"""The dispatch pass: one repository's tasks and agents, reconciled in one decision.

A pass is level-triggered, like a Kubernetes controller: it looks at the whole repository
(its non-final tasks, the roster, what Nightshift last heard from each agent) and decides
everything that is due now, in this order:

1. acknowledgements: an assigned task whose agent's latest heartbeat names it is in progress;
2. failover: an assigned task not acknowledged in time, or whose agent stopped sending
   heartbeats or cannot be reached, leaves that agent (who is told, when it can be) and goes
   to the agent's backup when the backup can take it, else back to the queue;
3. dependency cycles block every task in them (with a comment naming the cycle), and a task
   blocked by a cycle that is gone is unblocked;
4. ready tasks go to agents (app.core.schedule), each with its assignment message, a
   project card move and an acknowledgement deadline;
5. a task that must wait says why on its issue, once per reason;
6. every agent offline while work waits: one urgent escalation issue;
7. a task blocked too long climbs the escalation path (the seed's matrix): past
   `escalation_levels.peer_minutes` it goes to its agent's backup or a peer, past
   `lead_minutes` the lead is asked, past `immediate_minutes` it is an immediate escalation;
   a durable timer runs a pass at the next threshold.

Pure: the facts carry the time (`now`); the effects layer gathers them and runs the actions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from app.core import assignment as messages
from app.core import estimates
from app.core.actions import (
    Action,
    Comment,
    Dispatch,
    MarkAgent,
    OpenIssue,
    RecordEscalation,
    RecordLevel,
    RecordWaiting,
    RemoveLabel,
    SendToAgent,
    Transition,
)
from app.core.cards import with_cards
from app.core.config import Config
from app.core.labels import QUEUED_LABEL, URGENT_LABEL
from app.core.linking import branch_for
from app.core.report import plain_reason, safe
from app.core.roster import Agent, Roster
from app.core.schedule import (
    IN_CYCLE,
    AgentInfo,
    TaskInfo,
    capabilities_for,
    cycles,
    plan,
    priority_of,
)
from app.core.state import AgentStatus, TaskFacts
from app.core.tasks import Event, Move, State, Task, as_action, move, path

# how long an agent whose transport failed is left alone before it is tried again
UNREACHABLE_COOLDOWN_SECONDS = 15 * 60

WAITING_COMMENT = "Queued, not assigned yet: {why}."
ASSIGNED_COMMENT = (
    "Assigned to **{agent}** (`{transport}`). It has {minutes} to acknowledge "
    "(`/nightshift ack`, a heartbeat naming `{task_id}`, or a pull request that links this "
    "issue); otherwise the task goes to {fallback}.\n\nEstimate: {estimate}."
)
REASSIGNED_COMMENT = "Taken from **{agent}**: {why}. {where}"
TO_BACKUP = "It goes to **{backup}**, its backup."
TO_AGENT = "It goes to **{agent}**."
TO_QUEUE = "It is back in the queue for another agent."
CYCLE_COMMENT = (
    "Blocked: this issue is {cycle}. Nightshift cannot order these tasks; edit the "
    "`Depends on` lines (or the issues' blocked-by links) to break the cycle."
)
PLAN_COMMENT = """\
**Plan** for this task (approval mode `plan`):

- depends on: {depends}
- agent: {agent}
- estimate: {estimate}

Someone with write access starts it with `/nightshift approve`."""
PLAN_POSTED = "plan posted"
UNBLOCKED_COMMENT = "The dependency cycle is gone: back in the queue."
HANDED_OVER_COMMENT = (
    "Blocked for {duration} with **{agent}** ({why}). Escalation level 1: the task goes to "
    "**{peer}**, {relation}, on the branch {branch}.{pull}"
)
HANDED_OVER_PULL = (
    " A pull request {agent} opened stays as it is: Nightshift reviews and merges only "
    "pull requests of the task's agent."
)
NO_PEER_COMMENT = (
    "Blocked for {duration} ({why}). Escalation level 1: no peer or backup agent can take "
    "it now ({reason}). Next: the lead after {lead}."
)
LEAD_COMMENT = (
    "Blocked for {duration} ({why}). Escalation level 2: {ask} After {immediate} of being "
    "blocked it becomes an urgent issue for the maintainers."
)
ASK_LEAD = "{lead}, please decide how this task goes on."
NO_LEAD = "no lead is configured (`escalation_levels.lead`) to ask."
BLOCKED_TITLE = "Nightshift: #{number} blocked for {duration}"
BLOCKED_BODY = (
    "**Risk**: task #{number} ({title}) has been blocked for {duration} and nobody unblocked "
    "it: {why}.\n"
    "**Blocking**: yes: #{number} makes no progress{dependents}.\n"
    "**Action required**: unblock it (answer the agent, resolve the conflict, change the "
    "issue) or cancel it (remove the `{label}` label). Closing this issue, or "
    "`/nightshift resolve` on it, says the matter is handled and lets #{number} go back to "
    "where it was.\n"
    "{peer}\n"
    "{mentions}"
)
BLOCKED_MEANWHILE = (
    "#{number} stays blocked (since {since}); its agent went on with other work; "
    "nothing was merged for it"
)
ALL_OFFLINE_TITLE = "Nightshift: every agent is offline"
ALL_OFFLINE_BODY = """\
**Risk**: infrastructure failure: no agent in `{roster}` can take work.
**Blocking**: yes: {waiting} task(s) wait ({tasks}) and nothing more is assigned.
**Action required**: bring an agent back (its heartbeats resume, or fix its transport), or add
an agent to `{roster}`. Closing this issue says the matter is handled.

| Agent | Why |
|---|---|
{rows}
{mentions}"""


@dataclass(frozen=True)
class DispatchFacts:
    repo: str
    now: float
    roster: Roster | None  # None: no roster file on the default branch
    tasks: tuple[TaskFacts, ...]
    statuses: Mapping[str, AgentStatus] = field(default_factory=dict)
    loads: Mapping[str, int] = field(default_factory=dict)  # by agent name, all repositories
    finished: frozenset[int] = frozenset()  # issues done or closed
    records: Mapping[str, float] = field(default_factory=dict)  # higher is better
    all_offline_open: bool = False  # an urgent "every agent is offline" issue is open
    all_offline_count: int = 0  # how many were raised before (for a new one's key)
    web_url: str = "https://github.com"
    heartbeat_url: str | None = None  # `.../agents/{agent}/heartbeat` with {agent} left in
    roster_path: str = "AGENT_ROSTER.md"
    history: tuple[estimates.Sample, ...] = ()  # past tasks, for the estimate


task_id = messages.task_id  # how an assignment, a heartbeat and a report name a task


def online(status: AgentStatus | None, config: Config, now: float) -> bool:
    """Whether an agent can take work now.

    Never heard of: yes (agents of the `github` transport cannot send heartbeats). Its
    transport failed within the cool-down: no. It sent heartbeats: only while they keep
    coming (at most `heartbeat_missed_threshold` intervals missed).
    """
    return reachable(status, now) and not heartbeats_stopped(status, config, now)


def heartbeats_stopped(status: AgentStatus | None, config: Config, now: float) -> bool:
    if status is None or status.last_heartbeat is None:
        return False
    allowed = config.heartbeat_interval_seconds * config.limits.heartbeat_missed_threshold
    return now - status.last_heartbeat > allowed


def reachable(status: AgentStatus | None, now: float) -> bool:
    """False while the agent's transport failed within the cool-down and no heartbeat came
    since."""
    return status is None or not (
        status.unreachable_since is not None
        and now - status.unreachable_since < UNREACHABLE_COOLDOWN_SECONDS
        and (status.last_heartbeat is None or status.last_heartbeat < status.unreachable_since)
    )


def decide(facts: DispatchFacts, config: Config) -> list[Action]:
    """Everything due in the repository now (see the module docstring for the order)."""
    repo = facts.repo
    agents = facts.roster.agents if facts.roster is not None else ()
    by_name = {agent.name: agent for agent in agents}
    load = {agent.name: facts.loads.get(agent.name, 0) for agent in agents}
    alive = {a.name for a in agents if online(facts.statuses.get(a.name), config, facts.now)}
    actions: list[Action] = []

    actions += _agents_marked(facts, config, agents)
    queued: list[TaskFacts] = []
    cycle_blocked: list[TaskFacts] = []
    lost: list[tuple[TaskFacts, Agent | None, str]] = []
    for facts_of in facts.tasks:
        task = facts_of.task
        if task.state is State.QUEUED:
            queued.append(facts_of)
        elif task.state is State.BLOCKED and task.previous[-1:] == (State.QUEUED,):
            if (facts_of.waiting or "").startswith(IN_CYCLE.split("{", 1)[0]):
                cycle_blocked.append(facts_of)
        elif task.state in (State.ASSIGNED, State.IN_PROGRESS):
            agent = by_name.get(task.agent_name or "")
            why = _lost_because(facts_of, agent, facts, config)
            if why is not None:
                lost.append((facts_of, agent, why))
            elif task.state is State.ASSIGNED and _acknowledged(facts_of, facts):
                step = move(task, Event.ACKNOWLEDGE)
                assert step is not None
                reason = f"dispatch: {task.agent_name} acknowledged by heartbeat"
                actions.append(
                    as_action(
                        repo,
                        task.number,
                        step,
                        Event.ACKNOWLEDGE,
                        reason,
                        expect_assignment=task.assignment,
                    )
                )

    # failover: to the backup when it can take the task, else back to the queue
    requeued: list[TaskFacts] = []
    for facts_of, agent, why in lost:
        task = facts_of.task
        if task.agent_name in load:
            load[task.agent_name] = max(0, load[task.agent_name] - 1)
        excluded = facts_of.excluded | ({task.agent_name} if task.agent_name else set())
        backup = by_name.get(agent.backup) if agent is not None and agent.backup else None
        needs = capabilities_for(facts_of.labels, config.capabilities)
        if agent is not None and reachable(facts.statuses.get(agent.name), facts.now):
            actions.append(
                withdraw(
                    repo,
                    facts_of.task,
                    f"you {why}; the task is reassigned",
                    f"dispatch: tell {agent.name} the task is no longer theirs",
                )
            )
        if (
            backup is not None
            and backup.name in alive
            and backup.name not in excluded
            and needs <= backup.capabilities
            and load[backup.name] < backup.max_tasks
        ):
            load[backup.name] += 1
            reason = f"dispatch: {task.agent_name} {why}; to its backup {backup.name}"
            actions += [
                _comment(
                    repo,
                    task.number,
                    REASSIGNED_COMMENT.format(
                        agent=task.agent_name, why=why, where=TO_BACKUP.format(backup=backup.name)
                    ),
                    f"reassigned:{repo}#{task.number}:{task.assignment}",
                    reason,
                ),
                *_assign(
                    facts,
                    config,
                    replace(facts_of, excluded=excluded),
                    backup,
                    path(task, Event.REQUEUE, Event.ASSIGN),
                    reason,
                    queued,
                ),
            ]
            continue
        requeued.append(
            replace(
                facts_of,
                task=replace(task, state=State.QUEUED, agent=None, agent_name=None),
                excluded=excluded,
            )
        )
        # the move itself is decided with the plan below: the task may go to someone else
        # at once, or wait in the queue

    # dependency cycles among queued tasks (and those they blocked before)
    graph = {f.task.number: f.depends_on for f in (*queued, *requeued, *cycle_blocked)}
    in_cycle: dict[int, str] = {}
    for cycle in cycles(graph):
        text = " -> ".join(f"#{n}" for n in [*cycle, cycle[0]])
        for number in cycle:
            in_cycle[number] = IN_CYCLE.format(cycle=text)
    for facts_of in cycle_blocked:
        task = facts_of.task
        if task.number in in_cycle:
            continue
        step = move(task, Event.UNBLOCK)
        assert step is not None
        reason = "dispatch: the dependency cycle is gone"
        actions += [
            as_action(repo, task.number, step, Event.UNBLOCK, reason),
            RecordWaiting(repo=repo, number=task.number, waiting=None, reason=reason),
            _comment(
                repo,
                task.number,
                UNBLOCKED_COMMENT,
                f"unblocked:{repo}#{task.number}:{_digest(facts_of.waiting or '')}",
                reason,
            ),
        ]
        queued.append(replace(facts_of, task=replace(task, state=State.QUEUED, previous=())))
    for facts_of in (*queued, *requeued):
        task = facts_of.task
        if task.number not in in_cycle:
            continue
        why = in_cycle[task.number]
        reason = f"dispatch: {why}"
        original = _original(facts_of, lost)
        step = path(original, Event.REQUEUE, Event.BLOCK) if original else move(task, Event.BLOCK)
        assert step is not None
        actions += [
            as_action(
                repo,
                task.number,
                step,
                Event.BLOCK,
                reason,
                expect_assignment=task.assignment,
                exclude=original.agent_name if original else None,
            ),
            RecordWaiting(repo=repo, number=task.number, waiting=why, reason=reason),
            _comment(
                repo,
                task.number,
                CYCLE_COMMENT.format(cycle=why),
                f"cycle:{repo}#{task.number}:{_digest(why)}",
                reason,
            ),
        ]

    # assignments
    candidates = [f for f in (*queued, *requeued) if f.task.number not in in_cycle]
    infos = [_task_info(f, config) for f in candidates]
    planned = plan(infos, _pool(agents, load, alive, facts.records), facts.finished)
    by_number = {f.task.number: f for f in candidates}
    for number, name in planned.assignments:
        facts_of = by_number[number]
        original = _original(facts_of, lost)
        source = original if original is not None else facts_of.task
        step = (
            path(source, Event.REQUEUE, Event.ASSIGN)
            if original is not None
            else move(source, Event.ASSIGN)
        )
        if original is not None:
            why = next(w for f, _, w in lost if f.task.number == number)
            actions.append(
                _comment(
                    repo,
                    number,
                    REASSIGNED_COMMENT.format(
                        agent=original.agent_name, why=why, where=TO_AGENT.format(agent=name)
                    ),
                    f"reassigned:{repo}#{number}:{original.assignment}",
                    f"dispatch: {original.agent_name} {why}",
                )
            )
        actions += _assign(
            facts,
            config,
            replace(facts_of, task=source),
            by_name[name],
            step,
            f"dispatch: ready; {name} is the least loaded qualifying agent",
            candidates,
        )

    # what waits says why (once per reason); a lost task nobody can take goes back to queue
    problems = _roster_problem(facts)
    waiting_all: list[int] = []
    for facts_of in candidates:
        number = facts_of.task.number
        if number not in planned.waiting:
            continue
        why = problems or planned.waiting[number]
        original = _original(facts_of, lost)
        if original is not None:
            lost_why = next(w for f, _, w in lost if f.task.number == number)
            step = move(original, Event.REQUEUE)
            assert step is not None
            reason = f"dispatch: {original.agent_name} {lost_why}"
            actions += [
                as_action(
                    repo,
                    number,
                    step,
                    Event.REQUEUE,
                    reason,
                    expect_assignment=original.assignment,
                    exclude=original.agent_name,
                ),
                _comment(
                    repo,
                    number,
                    REASSIGNED_COMMENT.format(
                        agent=original.agent_name, why=lost_why, where=TO_QUEUE
                    ),
                    f"reassigned:{repo}#{number}:{original.assignment}",
                    reason,
                ),
            ]
        if not why.startswith("waiting for"):
            waiting_all.append(number)
        if why != facts_of.waiting:
            reason = f"dispatch: #{number} waits: {why}"
            actions += [
                RecordWaiting(repo=repo, number=number, waiting=why, reason=reason),
                _comment(
                    repo,
                    number,
                    WAITING_COMMENT.format(why=why),
                    f"waiting:{repo}#{number}:{_digest(why)}",
                    reason,
                ),
            ]

    actions += _plans(facts, config, agents, alive, load, planned.assignments)
    actions += _heartbeat_deadlines(facts, config, lost)
    unblocked = {f.task.number for f in cycle_blocked if f.task.number not in in_cycle}
    actions += _levels(facts, config, agents, alive, load, unblocked)
    for number in sorted(n for n in in_cycle if n not in {f.task.number for f in cycle_blocked}):
        # blocked by this pass: the pass at the first threshold climbs the path
        actions.append(_level_timer(facts, number, facts.now, 1, config))
    if agents and not alive and waiting_all and not facts.all_offline_open:
        actions += _all_offline(facts, config, agents, sorted(waiting_all))
    return with_cards(actions, config)


# -- pieces ---------------------------------------------------------------------------------


def _task_info(facts_of: TaskFacts, config: Config) -> TaskInfo:
    """The task as the scheduler sees it."""
    return TaskInfo(
        number=facts_of.task.number,
        created_at=facts_of.created_at,
        capabilities=capabilities_for(facts_of.labels, config.capabilities),
        priority=priority_of(facts_of.labels, config.priority_labels),
        depends_on=facts_of.depends_on,
        excluded=facts_of.excluded,
    )


def _pool(
    agents: Sequence[Agent], load: Mapping[str, int], alive: set[str], records: Mapping[str, float]
) -> list[AgentInfo]:
    """The roster as the scheduler sees it: each agent's load, whether it is online, and
    its record."""
    return [
        AgentInfo(
            name=a.name,
            capabilities=a.capabilities,
            max_tasks=a.max_tasks,
            load=load.get(a.name, 0),
            online=a.name in alive,
            record=records.get(a.name, 0.0),
        )
        for a in agents
    ]


def _lost_because(
    facts_of: TaskFacts, agent: Agent | None, facts: DispatchFacts, config: Config
) -> str | None:
    """Why the task's agent no longer has it, or None while it does."""
    task = facts_of.task
    if agent is None:
        if facts.roster is None:
            return None  # the roster could not be read: change nothing
        return "is no longer in the roster"
    status = facts.statuses.get(agent.name)
    if heartbeats_stopped(status, config, facts.now):
        assert status is not None and status.last_heartbeat is not None
        return f"stopped sending heartbeats (the last at {_clock(status.last_heartbeat)})"
    if task.state is State.ASSIGNED:
        if not reachable(status, facts.now):
            return f"could not be reached through its `{agent.transport}` transport"
        deadline = (facts_of.assigned_at or facts.now) + config.ack_timeout_minutes * 60
        if facts.now >= deadline and not _acknowledged(facts_of, facts):
            return f"did not acknowledge within {_minutes(config.ack_timeout_minutes)}"
    return None


def _acknowledged(facts_of: TaskFacts, facts: DispatchFacts) -> bool:
    task = facts_of.task
    status = facts.statuses.get(task.agent_name or "")
    return (
        status is not None
        and status.task is not None
        and status.task.strip().lower() == task_id(facts.repo, task.number).lower()
        and status.last_heartbeat is not None
        and status.last_heartbeat >= (facts_of.assigned_at or 0.0)
    )


def _agents_marked(facts: DispatchFacts, config: Config, agents: Sequence[Agent]) -> list[Action]:
    """Record agents that went offline (their heartbeats stopped) or came back."""
    marked: list[Action] = []
    for agent in agents:
        status = facts.statuses.get(agent.name)
        if status is None:
            continue
        stopped = heartbeats_stopped(status, config, facts.now)
        if stopped and status.offline_since is None:
            marked.append(
                MarkAgent(
                    repo=facts.repo,
                    agent=agent.name,
                    offline=True,
                    reason=f"dispatch: {agent.name} missed "
                    f"{config.limits.heartbeat_missed_threshold} heartbeats",
                )
            )
        elif not stopped and (
            status.offline_since is not None
            or (
                status.unreachable_since is not None
                and status.last_heartbeat is not None
                and status.last_heartbeat > status.unreachable_since
            )
        ):
            marked.append(
                MarkAgent(
                    repo=facts.repo,
                    agent=agent.name,
                    offline=False,
                    reason=f"dispatch: {agent.name} sends heartbeats again",
                )
            )
    return marked


def _assign(
    facts: DispatchFacts,
    config: Config,
    facts_of: TaskFacts,
    agent: Agent,
    step: Move | None,
    reason: str,
    others: Sequence[TaskFacts],
    *,
    event: Event = Event.ASSIGN,
    branch: str | None = None,
    taken_over: str | None = None,
) -> list[Action]:
    assert step is not None
    repo, task = facts.repo, facts_of.task
    number = task.number
    serial = task.assignment + 1
    minutes = config.ack_timeout_minutes
    fallback = f"its backup **{agent.backup}**" if agent.backup else "the queue"
    message = messages.assignment(
        repo=repo,
        number=number,
        title=facts_of.title,
        body=facts_of.body,
        labels=facts_of.labels,
        agent=agent,
        config=config,
        issue_url=f"{facts.web_url}/{repo}/issues/{number}",
        branch=branch or branch_for(number, facts_of.title),
        priority=_priority(facts_of.labels, config),
        next_task=_next_task(facts_of, agent, others, config),
        heartbeat_url=(
            facts.heartbeat_url.format(agent=agent.name) if facts.heartbeat_url else None
        ),
        ack_timeout_minutes=minutes,
        taken_over=taken_over,
    )
    actions: list[Action] = [
        as_action(
            repo,
            number,
            step,
            event,
            reason,
            agent=agent.github,
            agent_name=agent.name,
            expect_assignment=task.assignment,
            exclude=(
                task.agent_name if task.agent_name and step.from_state is not State.QUEUED else None
            ),
        ),
        RecordWaiting(repo=repo, number=number, waiting=None, reason=reason),
        RemoveLabel(repo=repo, number=number, label=QUEUED_LABEL, reason=reason),
        SendToAgent(
            repo=repo,
            number=number,
            agent=agent.name,
            message=_json(message),
            key=f"assign:{repo}#{number}:{serial}",
            reason=reason,
        ),
    ]
    if agent.transport != "github":
        # the github transport puts the assignment on the issue itself
        actions.append(
            _comment(
                repo,
                number,
                ASSIGNED_COMMENT.format(
                    agent=agent.name,
                    transport=agent.transport,
                    minutes=_minutes(minutes),
                    task_id=task_id(repo, number),
                    fallback=fallback,
                    estimate=estimates.describe(
                        estimates.estimate(
                            facts.history,
                            agent.name,
                            facts_of.labels,
                            ignore=(config.trigger_label,),
                        )
                    ),
                ),
                f"assigned:{repo}#{number}:{serial}",
                reason,
            )
        )
    actions += [
        # the acknowledgement deadline: a pass runs then (a durable timer) and fails over
        # if the agent has not acknowledged
        Dispatch(
            repo=repo,
            cause=f"ack:{number}:{serial}",
            delay_seconds=minutes * 60,
            reason=f"dispatch: {agent.name} has {_minutes(minutes)} to acknowledge #{number}",
        ),
    ]
    return actions


def _levels(
    facts: DispatchFacts,
    config: Config,
    agents: Sequence[Agent],
    alive: set[str],
    load: dict[str, int],
    skip: set[int],
) -> list[Action]:
    """The escalation path of every task blocked too long (the module docstring's step 7).

    Each level acts once per block (`RecordLevel`, compared with the block's start); a pass
    that comes late (after a restart, say) climbs every level passed since, except that a
    hand-over ends the block, and with it the path.
    """
    actions: list[Action] = []
    for facts_of in facts.tasks:
        task = facts_of.task
        since = facts_of.state_since
        if task.state is not State.BLOCKED or task.number in skip or since is None:
            continue
        reached = sum(1 for minutes in _thresholds(config) if facts.now >= since + minutes * 60)
        handed = False
        for level in range(facts_of.level + 1, reached + 1):
            climbed = _climb(facts, config, facts_of, level, agents, alive, load)
            actions += climbed
            if any(isinstance(a, Transition) for a in climbed):
                handed = True
                break
        if not handed and reached < len(_thresholds(config)):
            actions.append(_level_timer(facts, task.number, since, reached + 1, config))
    return actions


def _thresholds(config: Config) -> tuple[float, float, float]:
    levels = config.escalation_levels
    return (levels.peer_minutes, levels.lead_minutes, levels.immediate_minutes)


def _level_timer(
    facts: DispatchFacts, number: int, since: float, level: int, config: Config
) -> Dispatch:
    """A durable timer for the moment a block reaches `level`: a pass runs then."""
    at = since + _thresholds(config)[level - 1] * 60
    return Dispatch(
        repo=facts.repo,
        cause=f"level:{number}:{since:.0f}:{level}",
        delay_seconds=max(1.0, at - facts.now + 1.0),
        reason=f"dispatch: #{number} reaches escalation level {level} if still blocked then",
    )


def _climb(
    facts: DispatchFacts,
    config: Config,
    facts_of: TaskFacts,
    level: int,
    agents: Sequence[Agent],
    alive: set[str],
    load: dict[str, int],
) -> list[Action]:
    """What reaching `level` does for this blocked task."""
    repo, task = facts.repo, facts_of.task
    number = task.number
    since = facts_of.state_since or facts.now
    duration = estimates.format_duration(facts.now - since)
    why = _block_reason(facts_of)
    key = f"{repo}#{number}:{since:.0f}"
    reason = f"dispatch: #{number} blocked for {duration}: escalation level {level}"
    record = RecordLevel(repo=repo, number=number, level=level, since=since, reason=reason)
    levels = config.escalation_levels
    if level == 1:
        peer = _peer(facts, config, facts_of, agents, alive, load)
        step = move(task, Event.HAND_OVER)
        if isinstance(peer, tuple) and step is not None:
            return _hand_over(facts, config, facts_of, peer, step, load, (duration, why, reason))
        if task.agent_name is None:
            return [record]  # nobody held it (a dependency cycle): no peer can help
        return [
            record,
            _comment(
                repo,
                number,
                NO_PEER_COMMENT.format(
                    duration=duration,
                    why=why,
                    reason=peer if isinstance(peer, str) else "it cannot be handed over",
                    lead=estimates.format_duration(levels.lead_minutes * 60),
                ),
                f"level1:{key}",
                reason,
            ),
        ]
    if level == 2:
        by_name = {a.name: a for a in agents}
        lead = by_name.get(levels.lead or "")
        if lead is not None:
            ask = ASK_LEAD.format(lead=f"@{lead.github}" if lead.github else f"**{lead.name}**")
        elif levels.lead:
            ask = ASK_LEAD.format(lead=f"@{levels.lead.removeprefix('@')}")
        else:
            ask = NO_LEAD
        until = since + levels.immediate_minutes * 60
        left = estimates.format_duration(max(0.0, until - facts.now))
        actions: list[Action] = [
            record,
            _comment(
                repo,
                number,
                LEAD_COMMENT.format(
                    duration=duration,
                    why=why,
                    ask=ask,
                    immediate=estimates.format_duration(levels.immediate_minutes * 60),
                ),
                f"level2:{key}",
                reason,
            ),
        ]
        if lead is not None and lead.transport != "github":
            message = messages.help_request(
                repo=repo,
                number=number,
                lead=lead.name,
                issue_url=f"{facts.web_url}/{repo}/issues/{number}",
                duration=duration,
                why=why,
                left=left,
            )
            actions.append(
                SendToAgent(
                    repo=repo,
                    number=number,
                    agent=lead.name,
                    message=_json(message),
                    key=f"help:{key}",
                    reason=reason,
                )
            )
        return actions
    return [record, *_blocked_escalation(facts, config, facts_of, duration, why, reason)]


def _block_reason(facts_of: TaskFacts) -> str:
    """Why the task is blocked, as recorded (without the rule's name), else what it waits
    for; inert markdown (an agent's words are in it)."""
    return safe(plain_reason(facts_of.blocked_why or facts_of.waiting or "no reason recorded"), 300)


def _peer(
    facts: DispatchFacts,
    config: Config,
    facts_of: TaskFacts,
    agents: Sequence[Agent],
    alive: set[str],
    load: Mapping[str, int],
) -> tuple[Agent, str] | str:
    """The agent a blocked task goes to at level 1 and how it relates to the task's agent
    (its backup first, else the scheduler's choice among the others), or why there is none."""
    holder = facts_of.task.agent_name
    if holder is None:
        return "nobody held it"
    by_name = {a.name: a for a in agents}
    excluded = facts_of.excluded | {holder}
    needs = capabilities_for(facts_of.labels, config.capabilities)
    current = by_name.get(holder)
    backup = by_name.get(current.backup) if current is not None and current.backup else None
    if (
        backup is not None
        and backup.name in alive
        and backup.name not in excluded
        and needs <= backup.capabilities
        and load.get(backup.name, 0) < backup.max_tasks
    ):
        return backup, f"the backup of {holder}"
    info = replace(_task_info(facts_of, config), depends_on=frozenset(), excluded=excluded)
    chosen = plan([info], _pool(agents, load, alive, facts.records))
    if chosen.assignments:
        return by_name[chosen.assignments[0][1]], "a peer"
    return chosen.waiting.get(facts_of.task.number, "no agent qualifies")


def _hand_over(
    facts: DispatchFacts,
    config: Config,
    facts_of: TaskFacts,
    peer: tuple[Agent, str],
    step: Move,
    load: dict[str, int],
    texts: tuple[str, str, str],
) -> list[Action]:
    """Level 1: the blocked task leaves its agent (who is told) for `peer`, on a branch of
    its own (the blocked agent's branch and pull request stay as they are)."""
    repo, task = facts.repo, facts_of.task
    agent, relation = peer
    duration, why, reason = texts
    holder = task.agent_name or "its agent"
    branch = f"{branch_for(task.number, facts_of.title)}-take-{task.assignment + 1}"
    load[agent.name] = load.get(agent.name, 0) + 1
    if holder in load:
        load[holder] = max(0, load[holder] - 1)
    actions: list[Action] = []
    if task.agent_name is not None and reachable(facts.statuses.get(holder), facts.now):
        actions.append(
            withdraw(
                repo,
                task,
                f"the task was blocked for {duration}; it goes to {agent.name}",
                f"dispatch: tell {holder} the blocked task goes to {agent.name}",
            )
        )
    held_pull = task.previous[-1:] in ((State.IN_REVIEW,), (State.CHANGES_REQUESTED,))
    actions.append(
        _comment(
            repo,
            task.number,
            HANDED_OVER_COMMENT.format(
                duration=duration,
                agent=holder,
                why=why,
                peer=agent.name,
                relation=relation,
                branch=f"`{branch}`",
                pull=HANDED_OVER_PULL.format(agent=holder) if held_pull else "",
            ),
            f"level1:{repo}#{task.number}:{task.assignment}",
            reason,
        )
    )
    context = (
        f"{holder} was blocked on this task for {duration} ({why}). Start from the issue; "
        f"work on the branch {branch}, not on {holder}'s."
    )
    actions += _assign(
        facts,
        config,
        facts_of,
        agent,
        step,
        f"{reason}: to {agent.name}, {relation}",
        (),
        event=Event.HAND_OVER,
        branch=branch,
        taken_over=context,
    )
    return actions


def _blocked_escalation(
    facts: DispatchFacts,
    config: Config,
    facts_of: TaskFacts,
    duration: str,
    why: str,
    reason: str,
) -> list[Action]:
    """Level 3: an immediate escalation (one urgent issue per block), or under
    `escalation: security-only` a deferred one for the report."""
    repo, number = facts.repo, facts_of.task.number
    since = facts_of.state_since or facts.now
    key = f"blocked:{repo}#{number}:{since:.0f}"
    summary = f"#{number} blocked for {duration}: {why}"
    dependents = sorted(f.task.number for f in facts.tasks if number in f.depends_on)
    if config.escalation == "security-only":
        return [
            RecordEscalation(
                repo=repo,
                number=number,
                level="deferred",
                category="blocked",
                summary=summary,
                key=key,
                meanwhile=BLOCKED_MEANWHILE.format(number=number, since=_clock(since)),
                reversible=True,
                reason=f"{reason} (escalation: security-only)",
            )
        ]
    mentions = " ".join(f"@{login}" for login in config.maintainers)
    lead = config.escalation_levels.lead
    body = BLOCKED_BODY.format(
        number=number,
        title=safe(facts_of.title, 120),
        duration=duration,
        why=why,
        dependents=(
            f", nor do the tasks waiting for it ({', '.join(f'#{n}' for n in dependents[:20])})"
            if dependents
            else ""
        ),
        label=config.trigger_label,
        peer=(
            f"Asked before: a peer or backup agent (level 1), then the lead `{lead}` (level 2)."
            if lead
            else "Asked before: a peer or backup agent (level 1); no lead is configured."
        ),
        mentions=mentions,
    )
    return [
        RecordEscalation(
            repo=repo,
            number=number,
            level="immediate",
            category="blocked",
            summary=summary,
            key=key,
            reason=reason,
        ),
        OpenIssue(
            repo=repo,
            title=BLOCKED_TITLE.format(number=number, duration=duration),
            body=body.rstrip() + "\n",
            labels=(URGENT_LABEL,),
            key=key,
            reason=reason,
        ),
    ]


def withdraw(repo: str, task: Task, why: str, reason: str) -> SendToAgent:
    """Tell the task's agent to stop: `why` says what happened (cancelled, released, taken
    for not acknowledging...). Once per assignment."""
    assert task.agent_name is not None
    message = messages.withdrawal(repo=repo, number=task.number, agent=task.agent_name, reason=why)
    return SendToAgent(
        repo=repo,
        number=task.number,
        agent=task.agent_name,
        message=_json(message),
        key=f"withdraw:{repo}#{task.number}:{task.assignment}",
        reason=reason,
    )


def _next_task(
    facts_of: TaskFacts, agent: Agent, others: Sequence[TaskFacts], config: Config
) -> int | None:
    """The task this agent will likely take next: the most urgent queued one that waits for
    this one and that the agent can do (the seed's `next_task_on_complete`)."""
    number = facts_of.task.number
    following = [
        f
        for f in others
        if number in f.depends_on
        and f.task.number != number
        and capabilities_for(f.labels, config.capabilities) <= agent.capabilities
        and agent.name not in f.excluded
    ]
    if not following:
        return None
    following.sort(
        key=lambda f: (priority_of(f.labels, config.priority_labels), f.created_at, f.task.number)
    )
    return following[0].task.number


def _priority(labels: Sequence[str], config: Config) -> messages.Priority:
    """The message priority from the task's priority label: the first label is high."""
    rank = priority_of(labels, config.priority_labels)
    if rank >= len(config.priority_labels):
        return "normal"
    return "high" if rank == 0 else "normal"


def _original(
    facts_of: TaskFacts, lost: Sequence[tuple[TaskFacts, Agent | None, str]]
) -> Task | None:
    """The task as it was before this pass took it from its agent (None: it was queued)."""
    for before, _, _ in lost:
        if before.task.number == facts_of.task.number:
            return before.task
    return None


def _roster_problem(facts: DispatchFacts) -> str | None:
    if facts.roster is None:
        return f"there is no `{facts.roster_path}` on the default branch"
    if not facts.roster.agents:
        detail = "; ".join(str(p) for p in facts.roster.problems[:3])
        return f"`{facts.roster_path}` lists no usable agent" + (f" ({detail})" if detail else "")
    return None


def _heartbeat_deadlines(
    facts: DispatchFacts, config: Config, lost: Sequence[tuple[TaskFacts, Agent | None, str]]
) -> list[Action]:
    """A durable timer for the moment each agent holding a task here would count as
    offline, if no heartbeat comes before: the pass then fails its tasks over. One timer per
    agent and heartbeat (the cause names both), so passes that see the same heartbeat ask
    for it once."""
    allowed = config.heartbeat_interval_seconds * config.limits.heartbeat_missed_threshold
    gone = {f.task.number for f, _, _ in lost}
    holders = {
        f.task.agent_name
        for f in facts.tasks
        if f.task.state in (State.ASSIGNED, State.IN_PROGRESS)
        and f.task.agent_name
        and f.task.number not in gone
    }
    actions: list[Action] = []
    for name in sorted(h for h in holders if h):
        status = facts.statuses.get(name)
        if status is None or status.last_heartbeat is None:
            continue
        remaining = status.last_heartbeat + allowed - facts.now
        actions.append(
            Dispatch(
                repo=facts.repo,
                cause=f"heartbeat:{name}:{status.last_heartbeat:.0f}",
                delay_seconds=max(1.0, remaining + 1.0),
                reason=f"dispatch: {name} counts as offline if no heartbeat comes by then",
            )
        )
    return actions


def _plans(
    facts: DispatchFacts,
    config: Config,
    agents: Sequence[Agent],
    alive: set[str],
    load: Mapping[str, int],
    assigned: Sequence[tuple[int, str]],
) -> list[Action]:
    """For each task awaiting approval whose plan is not posted: what would happen if it
    were approved now (its dependencies, the agent the scheduler would choose, an
    estimate), posted once."""
    waiting = [
        f
        for f in facts.tasks
        if f.task.state is State.AWAITING_APPROVAL and not (f.waiting or "").startswith(PLAN_POSTED)
    ]
    if not waiting or config.approval != "plan":
        return []
    after = dict(load)
    for _, busy in assigned:
        after[busy] = after.get(busy, 0) + 1
    # dependencies are shown, not applied: they may be done before the approval
    infos = [replace(_task_info(f, config), depends_on=frozenset()) for f in waiting]
    would = plan(infos, _pool(agents, after, alive, facts.records))
    chosen = dict(would.assignments)
    by_name = {a.name: a for a in agents}
    actions: list[Action] = []
    for f in waiting:
        number = f.task.number
        name = chosen.get(number)
        if name is not None:
            agent_text = f"**{name}** (`{by_name[name].transport}`), if it is free then"
        else:
            agent_text = f"none now: {_roster_problem(facts) or would.waiting.get(number, '?')}"
        depends = ", ".join(f"#{n}" for n in sorted(f.depends_on)) or "nothing"
        estimate = estimates.describe(
            estimates.estimate(facts.history, name, f.labels, ignore=(config.trigger_label,))
        )
        body = PLAN_COMMENT.format(depends=depends, agent=agent_text, estimate=estimate)
        reason = f"dispatch: the plan for #{number} waits for approval"
        actions += [
            RecordWaiting(
                repo=facts.repo,
                number=number,
                waiting=f"{PLAN_POSTED}: {_digest(body)}",
                reason=reason,
            ),
            _comment(
                facts.repo, number, body, f"plan:{facts.repo}#{number}:{_digest(body)}", reason
            ),
        ]
    return actions


def _all_offline(
    facts: DispatchFacts, config: Config, agents: Sequence[Agent], waiting: Sequence[int]
) -> list[Action]:
    repo = facts.repo
    rows = []
    for agent in agents:
        status = facts.statuses.get(agent.name)
        if not reachable(status, facts.now):
            why = f"its `{agent.transport}` transport failed"
        elif status is not None and status.last_heartbeat is not None:
            why = f"no heartbeat since {_clock(status.last_heartbeat)}"
        else:
            why = "offline"
        rows.append(f"| {agent.name} | {why} |")
    mentions = " ".join(f"@{login}" for login in config.maintainers)
    key = f"all-offline:{repo}:{facts.all_offline_count + 1}"
    body = ALL_OFFLINE_BODY.format(
        roster=facts.roster_path,
        waiting=len(waiting),
        tasks=", ".join(f"#{n}" for n in waiting[:20]),
        rows="\n".join(rows),
        mentions=f"\n{mentions}" if mentions else "",
    )
    reason = "dispatch: every agent is offline while tasks wait"
    if config.escalation == "security-only":
        # not a security matter: deferred to the report, never an urgent issue
        return [
            RecordEscalation(
                repo=repo,
                number=None,
                level="deferred",
                category="infrastructure",
                summary="every agent is offline; nothing can be assigned",
                key=key,
                meanwhile=(
                    f"{len(waiting)} task(s) wait in the queue; each is assigned as soon as "
                    "an agent sends heartbeats again"
                ),
                reversible=True,
                reason=f"{reason} (escalation: security-only)",
            )
        ]
    return [
        RecordEscalation(
            repo=repo,
            number=None,
            level="immediate",
            category="infrastructure",
            summary="every agent is offline; nothing can be assigned",
            key=key,
            reason=reason,
        ),
        OpenIssue(
            repo=repo,
            title=ALL_OFFLINE_TITLE,
            body=body,
            labels=(URGENT_LABEL,),
            key=key,
            reason=reason,
        ),
    ]


def _comment(repo: str, number: int, body: str, key: str, reason: str) -> Comment:
    return Comment(repo=repo, number=number, body=body, key=key, reason=reason)


def _json(message: messages.Message) -> dict[str, Any]:
    dumped: dict[str, Any] = message.model_dump(mode="json")
    return dumped


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _clock(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _minutes(minutes: float) -> str:
    whole = int(minutes) if float(minutes).is_integer() else minutes
    return f"{whole} minute{'s' if minutes != 1 else ''}"
