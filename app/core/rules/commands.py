"""Commands in comments: `/nightshift <command>` on the first line of a comment.

Commands act only for users with write access, which the effects layer looks up through
GitHub's collaborator-permission API before deciding (never from a login's look). The
rest of the comment is data, never instructions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.core.actions import Action, AllowTests, Comment, RemoveLabel, StartReview
from app.core.config import Config
from app.core.envelope import Envelope, IssueView, UserView, view
from app.core.router import Router
from app.core.rules.intake import NEEDS_APPROVAL_LABEL, queue
from app.core.state import RepoState
from app.core.tasks import Event, as_action, move

router = Router()

PREFIX = "/nightshift"
WRITE_PERMISSIONS = frozenset({"admin", "maintain", "write"})
KNOWN = ("approve", "ok-to-test")

REFUSED = "@{login} only people with write access to this repository can use `/nightshift`."
APPROVED = "Approved by @{login}: queued for an agent."
NOTHING_TO_APPROVE = "@{login} there is nothing waiting for approval on this issue."
OK_TO_TEST = (
    "@{login} allowed the tests of {sha} to run; a new push needs a new `/nightshift ok-to-test`."
)
NOTHING_TO_TEST = "@{login} this is not a pull request Nightshift is reviewing."
UNKNOWN = "@{login} that is not a command Nightshift knows. Known commands: {known}."


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
    if env.event != "issue_comment" or env.action != "created":
        return None
    comment = env.payload.get("comment")
    if not isinstance(comment, dict) or parse(str(comment.get("body") or "")) is None:
        return None
    return env.sender


@router.on("issue_comment", "created")
def on_comment(env: Envelope, state: RepoState, config: Config) -> Sequence[Action]:
    comment = env.payload.get("comment")
    body = comment.get("body") if isinstance(comment, dict) else None
    command = parse(body if isinstance(body, str) else None)
    if command is None or env.repository is None or env.sender is None:
        return []
    sender = view(UserView, env.payload, "sender")
    if sender.type == "Bot":
        return []  # never act on bots' comments, our own included
    issue = view(IssueView, env.payload, "issue")
    repo, number, login = env.repository, issue.number, env.sender

    def reply(text: str, reason: str) -> Comment:
        key = f"command:{env.delivery_id}"
        return Comment(repo=repo, number=number, body=text, key=key, reason=reason)

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
    step = move(state.task, Event.APPROVE)
    if step is None:
        return [reply(NOTHING_TO_APPROVE.format(login=login), "commands: nothing to approve")]
    reason = f"commands: approved by @{login}"
    return [
        as_action(repo, number, step, Event.APPROVE, reason),
        RemoveLabel(
            repo=repo,
            number=number,
            label=NEEDS_APPROVAL_LABEL,
            reason=f"commands: approved by @{login}",
        ),
        queue(repo, number, f"commands: approved by @{login}"),
        reply(APPROVED.format(login=login), "commands: confirm the approval"),
    ]


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
