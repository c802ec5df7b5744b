"""Commands in comments: `/nightshift <command>` on the first line of a comment.

Commands act only for users with write access, which the effects layer looks up through
GitHub's collaborator-permission API before deciding (never from a login's look). The
rest of the comment is data, never instructions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.core.actions import (
    Action,
    AddLabels,
    AllowTests,
    ClearExclusions,
    Comment,
    Dispatch,
    OpenIssue,
    PauseRepository,
    PublishReport,
    RecordEscalation,
    RemoveLabel,
    StartReview,
)
from app.core.config import Config
from app.core.dispatch import withdraw
from app.core.envelope import Envelope, IssueView, UserView, view
from app.core.labels import NEEDS_APPROVAL_LABEL, QUEUED_LABEL, REPORT_LABEL, URGENT_LABEL
from app.core.router import Router
from app.core.rules import escalation
from app.core.rules.intake import queue
from app.core.state import RepoState
from app.core.tasks import Event, Task, as_action, move
from app.core.tasks import State as TaskState

router = Router()

PREFIX = "/nightshift"
WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})
# for users with write access
MAINTAINER_COMMANDS = (
    "approve",
    "ok-to-test",
    "pause",
    "resume",
    "retry",
    "release",
    "status",
    "report",
    "resolve",
)
# for the agent a task is assigned to, on that task's issue
AGENT_COMMANDS = ("ack", "blocked", "escalate", "done")
KNOWN = MAINTAINER_COMMANDS + AGENT_COMMANDS

REFUSED = "@{login} only people with write access to this repository can use `/nightshift`."
NOT_YOUR_TASK = (
    "@{login} only the agent this task is assigned to can say `/nightshift {command}` here."
)
APPROVED = "Approved by @{login}: queued for an agent."
NOTHING_TO_APPROVE = "@{login} there is nothing waiting for approval on this issue."
OK_TO_TEST = (
    "@{login} allowed the tests of {sha} to run; a new push needs a new `/nightshift ok-to-test`."
)
NOTHING_TO_TEST = "@{login} this is not a pull request Nightshift is reviewing."
UNKNOWN = "@{login} that is not a command Nightshift knows. Known commands: {known}."
NO_TASK = "@{login} this issue is not a Nightshift task."
PAUSED_TASK = "Paused by @{login}: no automatic action on this task until `/nightshift resume`."
RESUMED_TASK = "Resumed by @{login}."
PAUSED_REPO = (
    "Paused by @{login}: no automatic action in this repository until `/nightshift resume` "
    "here (or `nightshift resume`)."
)
NOTHING_TO_RESOLVE = "@{login} this is not an open escalation of Nightshift's."
RESOLVED = "Resolved by @{login}: what this escalation stopped goes on."
REPORT_COMING = "@{login} the report is on its way (a new report issue, or today's updated)."
RESUMED_REPO = "Resumed by @{login}: automatic action in this repository starts again."
CANNOT = "@{login} `/nightshift {command}` does nothing while the task is `{state}`."
RETRIED = "Retried by @{login}: the task is back in the queue; any agent may take it."
RELEASED = "Released by @{login}: taken from **{agent}** and back in the queue for another agent."
STATUS = "Task status: `{state}`{agent}{detour}."
ACKNOWLEDGED = "Acknowledged by **{agent}**: in progress."
BLOCKED = (
    "Blocked, says **{agent}**: {reason}\n\nThe maintainers see it in the morning report; "
    "`/nightshift retry` puts the task back to work when it is unblocked."
)
ESCALATED_SECURITY_PENDING = (
    "Escalated as a security matter by **{agent}**: work on the task stops; an urgent issue "
    "is opened for the maintainers."
)
DEFERRED = (
    "Noted for the maintainers' review in the morning report (an architecture question does "
    "not stop the work: make the best judgement, and document it in the pull request)."
)
DONE = "Noted, **{agent}**: Nightshift finishes the task when its pull request is merged."
ESCALATE_USAGE = (
    "@{login} say `/nightshift escalate security <what>` or "
    "`/nightshift escalate architecture <what>`."
)
URGENT_TITLE = "Security: {summary}"
URGENT_BODY = """\
**Risk**: a security concern, raised by the agent **{agent}** working on #{number}.
**What it says**: {text}
**Blocking**: yes: work on #{number} stops until a maintainer decides.
**Action required**: look at #{number}; when it is handled, close this issue (or say
`/nightshift resume` on #{number}).
{mentions}"""


@dataclass(frozen=True)
class Command:
    name: str
    argument: str


def parse(body: str | None) -> Command | None:
    """The command on the comment's first line, or None."""
    first = (body or "").strip().splitlines()[0] if (body or "").strip() else ""
    parts = first.split(maxsplit=2)
    if not parts or parts[0].lower() != PREFIX or len(parts) < 2:
        return None
    return Command(parts[1].lower(), parts[2] if len(parts) > 2 else "")


def needs_permission(env: Envelope) -> str | None:
    """The login whose permission the effects layer must look up before deciding, if any."""
    command = command_of(env)
    return env.sender if command is not None else None


def command_of(env: Envelope) -> Command | None:
    if env.event != "issue_comment" or env.action != "created":
        return None
    comment = env.payload.get("comment")
    if not isinstance(comment, dict):
        return None
    return parse(str(comment.get("body") or ""))


def resumes_repository(env: Envelope) -> bool:
    """`/nightshift resume` on the report issue: the one command a paused repository hears."""
    command = command_of(env)
    if command is None or command.name != "resume":
        return False
    issue = env.payload.get("issue")
    labels = issue.get("labels") if isinstance(issue, dict) else None
    return isinstance(labels, list) and any(
        isinstance(label, dict) and label.get("name") == REPORT_LABEL for label in labels
    )


@router.on("issue_comment", "created")
def on_comment(env: Envelope, state: RepoState, config: Config) -> Sequence[Action]:
    comment = env.payload.get("comment")
    body = comment.get("body") if isinstance(comment, dict) else None
    command = parse(body if isinstance(body, str) else None)
    if command is None or env.repository is None or env.sender is None:
        return []
    sender = view(UserView, env.payload, "sender")
    task = state.task
    is_agent = (
        task is not None and task.agent is not None and task.agent.lower() == env.sender.lower()
    )
    if sender.type == "Bot" and not is_agent:
        return []  # never act on bots' comments (our own included) but a task's agent's
    issue = view(IssueView, env.payload, "issue")
    repo, number, login = env.repository, issue.number, env.sender

    def reply(text: str, reason: str) -> Comment:
        key = f"command:{env.delivery_id}"
        return Comment(repo=repo, number=number, body=text, key=key, reason=reason)

    if command.name in AGENT_COMMANDS:
        if not is_agent or task is None:
            # the command's text is never echoed (it could carry @-mentions)
            return [
                reply(
                    NOT_YOUR_TASK.format(login=login, command=command.name),
                    f"commands: @{login} is not the task's agent",
                )
            ]
        return agent_command(env, command, task, config, reply)
    # permission first: nobody without write access gets the bot to say anything chosen by
    # them, and the command's text is never echoed (it could carry @-mentions)
    if state.sender_permission not in WRITE_PERMISSIONS:
        return [
            reply(
                REFUSED.format(login=login),
                f"commands: @{login} has {state.sender_permission or 'no'} permission",
            )
        ]
    if command.name not in KNOWN:
        known = ", ".join(f"`{name}`" for name in KNOWN)
        return [reply(UNKNOWN.format(login=login, known=known), "commands: unknown command")]
    if command.name == "ok-to-test":
        return ok_to_test(repo, number, login, state, reply, env.delivery_id)
    if command.name == "resolve":
        if state.escalation is None:
            return [reply(NOTHING_TO_RESOLVE.format(login=login), "commands: no open escalation")]
        why = f"commands: @{login} resolved the escalation"
        return [
            *escalation.resolve(repo, state.escalation, login, env.delivery_id),
            reply(RESOLVED.format(login=login), why),
        ]
    if command.name == "report":
        why = f"commands: @{login} asked for the report"
        return [
            PublishReport(repo=repo, run_key=f"command:{env.delivery_id}", reason=why),
            reply(REPORT_COMING.format(login=login), why),
        ]
    if command.name in ("pause", "resume") and REPORT_LABEL in issue.label_names:
        resume = command.name == "resume"
        text = (RESUMED_REPO if resume else PAUSED_REPO).format(login=login)
        why = f"commands: @{login} said {command.name} on the report issue"
        actions: list[Action] = [PauseRepository(repo=repo, by=login, resume=resume, reason=why)]
        if resume:
            actions.append(Dispatch(repo=repo, cause=env.delivery_id, reason=why))
        return [*actions, reply(text, why)]
    if task is None:
        if command.name == "approve":
            return [reply(NOTHING_TO_APPROVE.format(login=login), "commands: nothing to approve")]
        return [reply(NO_TASK.format(login=login), "commands: not a task")]
    handler = MAINTAINER[command.name]
    return handler(env, task, login, reply)


Reply = Callable[[str, str], Comment]


def _approve(env: Envelope, task: Task, login: str, reply: Reply) -> list[Action]:
    repo, number = task.repo, task.number
    step = move(task, Event.APPROVE)
    if step is None:
        return [reply(NOTHING_TO_APPROVE.format(login=login), "commands: nothing to approve")]
    reason = f"commands: approved by @{login}"
    return [
        as_action(repo, number, step, Event.APPROVE, reason),
        RemoveLabel(repo=repo, number=number, label=NEEDS_APPROVAL_LABEL, reason=reason),
        queue(repo, number, reason),
        reply(APPROVED.format(login=login), "commands: confirm the approval"),
        Dispatch(repo=repo, cause=env.delivery_id, reason=reason),
    ]


def _pause(env: Envelope, task: Task, login: str, reply: Reply) -> list[Action]:
    step = move(task, Event.PAUSE)
    if step is None:
        return [_cannot(reply, login, "pause", task)]
    reason = f"commands: paused by @{login}"
    return [
        as_action(task.repo, task.number, step, Event.PAUSE, reason),
        reply(PAUSED_TASK.format(login=login), reason),
        Dispatch(repo=task.repo, cause=env.delivery_id, reason=reason),
    ]


def _resume(env: Envelope, task: Task, login: str, reply: Reply) -> list[Action]:
    step = move(task, Event.RESUME)
    if step is None:
        return [_cannot(reply, login, "resume", task)]
    reason = f"commands: resumed by @{login}"
    return [
        as_action(task.repo, task.number, step, Event.RESUME, reason),
        reply(RESUMED_TASK.format(login=login), reason),
        Dispatch(repo=task.repo, cause=env.delivery_id, reason=reason),
    ]


def _retry(env: Envelope, task: Task, login: str, reply: Reply) -> list[Action]:
    """A blocked or escalated task goes back to where it was; a queued one may go to any
    agent again (also those that lost it before)."""
    reason = f"commands: retried by @{login}"
    actions: list[Action] = []
    if task.state is TaskState.BLOCKED:
        step = move(task, Event.UNBLOCK)
        assert step is not None
        actions.append(as_action(task.repo, task.number, step, Event.UNBLOCK, reason))
    elif task.state is TaskState.ESCALATED:
        step = move(task, Event.DEESCALATE)
        assert step is not None
        actions.append(as_action(task.repo, task.number, step, Event.DEESCALATE, reason))
    elif task.state is not TaskState.QUEUED:
        return [_cannot(reply, login, "retry", task)]
    return [
        *actions,
        ClearExclusions(repo=task.repo, number=task.number, reason=reason),
        reply(RETRIED.format(login=login), reason),
        Dispatch(repo=task.repo, cause=env.delivery_id, reason=reason),
    ]


def _release(env: Envelope, task: Task, login: str, reply: Reply) -> list[Action]:
    """Take the task from its agent (who is told) and put it back in the queue."""
    step = move(task, Event.REQUEUE)
    if step is None or task.agent_name is None:
        return [_cannot(reply, login, "release", task)]
    reason = f"commands: released by @{login}"
    return [
        as_action(
            task.repo,
            task.number,
            step,
            Event.REQUEUE,
            reason,
            expect_assignment=task.assignment,
            exclude=task.agent_name,
        ),
        withdraw(task.repo, task, f"@{login} released it", reason),
        AddLabels(repo=task.repo, number=task.number, labels=(QUEUED_LABEL,), reason=reason),
        reply(RELEASED.format(login=login, agent=task.agent_name), reason),
        Dispatch(repo=task.repo, cause=env.delivery_id, reason=reason),
    ]


def _status(env: Envelope, task: Task, login: str, reply: Reply) -> list[Action]:
    agent = f", agent **{task.agent_name}**" if task.agent_name else ""
    detour = f" (returns to `{task.previous[-1].value}`)" if task.previous else ""
    text = STATUS.format(state=task.state.value, agent=agent, detour=detour)
    return [reply(text, f"commands: status asked by @{login}")]


def _cannot(reply: Reply, login: str, command: str, task: Task) -> Comment:
    return reply(
        CANNOT.format(login=login, command=command, state=task.state.value),
        f"commands: {command} not possible from {task.state.value}",
    )


# what goes on while a deferred decision waits for the report (its "done meanwhile")
BLOCKER_MEANWHILE = (
    "the task is blocked; {agent} moved on to its next task; after the escalation levels' "
    "thresholds it goes to a peer, then the lead"
)
ARCHITECTURE_MEANWHILE = (
    "{agent} keeps working with its own best judgment, documented in the pull request; "
    "nothing is merged without passing review"
)

MAINTAINER: dict[str, Callable[[Envelope, Task, str, Reply], list[Action]]] = {
    "approve": _approve,
    "pause": _pause,
    "resume": _resume,
    "retry": _retry,
    "release": _release,
    "status": _status,
}


def agent_command(
    env: Envelope, command: Command, task: Task, config: Config, reply: Reply
) -> list[Action]:
    """What the task's own agent may say: ack, blocked, escalate, done."""
    repo, number = task.repo, task.number
    agent = task.agent_name or task.agent or "the agent"
    login = env.sender or ""
    if command.name == "ack":
        step = move(task, Event.ACKNOWLEDGE)
        if step is None:
            return [_cannot(reply, login, "ack", task)]
        reason = f"commands: {agent} acknowledged"
        return [
            as_action(
                repo, number, step, Event.ACKNOWLEDGE, reason, expect_assignment=task.assignment
            ),
            reply(ACKNOWLEDGED.format(agent=agent), reason),
        ]
    if command.name == "done":
        return [reply(DONE.format(agent=agent), f"commands: {agent} says it is done")]
    text = _one_line(command.argument)
    if command.name == "blocked":
        step = move(task, Event.BLOCK)
        if step is None:
            return [_cannot(reply, login, "blocked", task)]
        reason = f"commands: {agent} is blocked: {text or 'no reason given'}"
        key = f"blocked:{repo}#{number}:{env.delivery_id}"
        return [
            as_action(repo, number, step, Event.BLOCK, reason),
            RecordEscalation(
                repo=repo,
                number=number,
                level="deferred",
                category="blocker",
                summary=f"#{number}: {text or 'no reason given'}",
                key=key,
                meanwhile=BLOCKER_MEANWHILE.format(agent=agent),
                reversible=True,
                reason=reason,
            ),
            reply(BLOCKED.format(agent=agent, reason=_quoted(text)), reason),
            # "on blocked: report and move to the next available task"
            Dispatch(repo=repo, cause=env.delivery_id, reason=reason),
        ]
    topic, _, rest = text.partition(" ")
    topic = topic.lower()
    if topic not in ("security", "architecture"):
        return [reply(ESCALATE_USAGE.format(login=login), "commands: escalate needs a topic")]
    key = f"{topic}:{repo}#{number}:{env.delivery_id}"
    summary = f"#{number}: {rest.strip() or topic}"
    if topic == "architecture":  # deferred under either escalation policy
        return [
            RecordEscalation(
                repo=repo,
                number=number,
                level="deferred",
                category="architecture",
                summary=summary,
                key=key,
                meanwhile=ARCHITECTURE_MEANWHILE.format(agent=agent),
                reversible=True,
                reason=f"commands: {agent} asks an architecture question",
            ),
            reply(DEFERRED, f"commands: {agent} asks an architecture question"),
        ]
    reason = f"commands: {agent} raised a security concern"
    actions: list[Action] = []
    step = move(task, Event.ESCALATE)
    if step is not None:
        actions.append(as_action(repo, number, step, Event.ESCALATE, reason))
    mentions = " ".join(f"@{m}" for m in config.maintainers)
    return [
        *actions,
        RecordEscalation(
            repo=repo,
            number=number,
            level="immediate",
            category="security",
            summary=summary,
            key=key,
            reason=reason,
        ),
        OpenIssue(
            repo=repo,
            title=URGENT_TITLE.format(summary=_clip(summary, 80)),
            body=URGENT_BODY.format(
                agent=agent, number=number, text=_quoted(rest.strip()), mentions=mentions
            ),
            labels=(URGENT_LABEL,),
            key=key,
            reason=reason,
        ),
        reply(ESCALATED_SECURITY_PENDING.format(agent=agent), reason),
    ]


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]


def _quoted(text: str) -> str:
    """An agent's words inside a code span: never markdown, never a mention."""
    cleaned = text.replace("`", "'")
    return f"`{cleaned}`" if cleaned else "(no reason given)"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def ok_to_test(
    repo: str,
    number: int,
    login: str,
    state: RepoState,
    reply: Callable[[str, str], Comment],
    delivery_id: str,
) -> list[Action]:
    """Prow's ok-to-test: a user with write access lets the reviewed head's code run.

    It holds for the head it was said on only: code pushed afterwards is unseen by them.
    """
    pull = state.pull
    if pull is None or pull.number != number:
        return [reply(NOTHING_TO_TEST.format(login=login), "commands: no reviewed pull request")]
    why = f"commands: @{login} allowed {pull.head_sha[:7]} to run"
    return [
        AllowTests(repo=repo, number=number, head_sha=pull.head_sha, by=login, reason=why),
        StartReview(
            repo=repo,
            number=number,
            task=pull.task,
            head_sha=pull.head_sha,
            attempt=ok_to_test_attempt(delivery_id),
            reason=why,
        ),
        reply(OK_TO_TEST.format(login=login, sha=pull.head_sha[:7]), why),
    ]


def ok_to_test_attempt(delivery_id: str) -> str:
    """Each `/nightshift ok-to-test` is a review attempt of its own (a second one, after a
    sandbox outage say, reviews again); the same comment delivered twice is one."""
    return "ok-to-test-" + hashlib.sha256(delivery_id.encode()).hexdigest()[:8]
