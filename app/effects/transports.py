"""Delivering a `Message` to an agent through its roster transport: github, webhook, maestro.

github (the roster endpoint says how):
  - `assign`: a comment with the message (`as_markdown`), then
    `POST /repos/{repo}/issues/{n}/assignees`, the way GitHub's Copilot coding agent is given
    an issue. The comment goes first because Copilot reads the issue's comments when it is
    assigned and not after:
    https://docs.github.com/en/copilot/how-tos/use-copilot-agents/coding-agent/create-a-pr
    A withdrawal comments, then removes the assignee (`DELETE .../assignees`).
  - `label:NAME`: the comment, then the label added (an agent watching for it starts with
    the instructions already on the issue); a withdrawal removes the label.
  - `mention:@LOGIN`: one comment that starts with `@LOGIN `.
  Every comment ends with the hidden `marker(key)`; an earlier attempt's comment, found by
  that marker on a comment written by a bot, is not posted again. GitHub's server errors
  (and no answer) are raised for the caller's durable step to retry; other errors are
  `not_delivered`.

webhook: `POST {endpoint}` with the message's JSON, signed like GitHub signs its webhooks:
  `X-Nightshift-Signature-256: sha256=<HMAC-SHA256 of the exact body bytes, hex>` with the
  agent's secret (`NIGHTSHIFT_AGENT_<NAME>_SECRET`), `X-Nightshift-Event: <content.type>`,
  and `X-Nightshift-Delivery: <key>`, the same on every retry so the agent can drop a
  duplicate. No secret, no request.

maestro: AI Maestro's messages API, `POST {endpoint}/api/messages` with
  `{from, to, subject, priority, content: {type, message, context}}` (AI Maestro requires
  `from`, `to`, `subject`, `content.type` and `content.message`; `message` is the markdown
  rendering, `context` the message's content as JSON). It answers 201 with
  `{"message": {...}, "notified": bool}`; `notified: false` means the message sits in the
  agent's inbox but the agent was not told, which counts as not delivered. Sources:
  AI Maestro's `services/messages-service.ts` (`sendMessage`) and
  `docs/AGENT-MESSAGING-GUIDE.md` ("Using the API"), github.com/23blocks-OS/ai-maestro.
  Assumption: AI Maestro documents no authentication for `/api/messages` (its dashboard API
  is meant for the local host or a private network; only its AMP routes under `/api/v1`
  take a bearer key). When the agent has a secret configured, it is sent as
  `Authorization: Bearer <secret>` for a proxy in front of AI Maestro to check.

Both HTTP transports: a 2xx is delivered; a 5xx, 408, 425 or 429, a timeout or a connection
error is tried again after `backoff_seconds * 2**i` seconds, `attempts` times in all, then
the agent is `unreachable`; any other answer (a redirect, which is never followed, or a 4xx)
is `not_delivered` at once.

Nothing returned (`Sent.detail`, `Sent.request`) holds a secret: signatures and tokens are
`<redacted>`, a URL's credentials and query are left out, and an answer's text is quoted
only after any secret in it is replaced.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

import httpx

from app.core.assignment import Message, as_markdown
from app.core.roster import Agent, secret_env_name
from app.effects.github import (
    GitHubError,
    GitHubPort,
    GitHubRequest,
    GitHubResponse,
    find_marked,
    marker,
)

Outcome = Literal["delivered", "not_delivered", "unreachable"]

REDACTED = "<redacted>"
USER_AGENT = "Nightshift"
DETAIL_CHARS = 300
ANSWER_MAX_BYTES = 64 * 1024  # of an agent's answer read; the rest is not needed
RETRY_STATUSES = frozenset({408, 425, 429})
# GitHub shows the Copilot coding agent as `Copilot`; it is assigned as `copilot-swe-agent`
COPILOT_LOGINS = frozenset({"copilot", "copilot-swe-agent"})

NO_SECRET = "no signing secret: set {env}"  # noqa: S105 (a message, not a password)
NO_GITHUB = "the github transport needs GitHub access, and Nightshift has none here"
NO_INSTALLATION = "the github transport needs the repository's installation, and none is known"
BAD_ENDPOINT = "github endpoint {endpoint!r} must be assign, label:NAME or mention:@LOGIN"
NOT_HTTP = "the {transport} endpoint is not an http(s) URL"
UNKNOWN_TRANSPORT = "unknown transport {transport!r}"
NOT_ASSIGNED = (
    "GitHub did not assign @{login} to {repo}#{number}: the account needs access to the "
    "repository (or, for Copilot, the coding agent enabled)"
)


@dataclass(frozen=True)
class Sent:
    """What became of one message."""

    outcome: Outcome
    detail: str  # one line for the audit log; never contains secrets
    status: int | None = None
    # what was sent (method, url or path, json) for the audit log and dry-run; secrets and
    # signatures redacted
    request: dict[str, Any] | None = None


@dataclass(frozen=True)
class _HttpCall:
    url: str
    headers: dict[str, str]
    body: bytes
    record: dict[str, Any]  # the same, redacted


class Transports:
    """Sends messages to agents; one instance serves every repository and agent."""

    def __init__(
        self,
        github: GitHubPort | None,
        *,
        secret_for: Callable[[str], str | None],
        client: httpx.Client | None = None,
        attempts: int = 4,
        backoff_seconds: float = 1.0,
        timeout_seconds: float = 10.0,
        sender: str = "nightshift",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.github = github
        self.secret_for = secret_for
        self._owns_client = client is None
        self.client = client or httpx.Client(follow_redirects=False, timeout=timeout_seconds)
        self.attempts = max(1, attempts)
        self.backoff_seconds = backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.sender = sender
        self.sleep = sleep

    def close(self) -> None:
        """Close the HTTP client, when this instance made it."""
        if self._owns_client:
            self.client.close()

    # -- the public interface ---------------------------------------------------------------

    def request_for(
        self, repo: str, number: int, agent: Agent, message: Message, key: str
    ) -> dict[str, Any]:
        """The exact request(s) `send` would make, redacted, for a dry-run record."""
        if agent.transport == "github":
            try:
                planned = _github_plan(repo, number, agent, message, key)
            except ValueError as exc:
                return {"transport": "github", "error": str(exc)}
            return {"transport": "github", "requests": [r.as_dict() for r in planned]}
        if agent.transport == "webhook":
            return self._webhook_call(agent, message, key, None).record
        if agent.transport == "maestro":
            return self._maestro_call(agent, message, None).record
        return {"transport": str(agent.transport), "error": "unknown transport"}

    def send(
        self,
        installation_id: int | None,
        repo: str,
        number: int,
        agent: Agent,
        message: Message,
        key: str,
    ) -> Sent:
        """Deliver `message` to `agent` about issue `number` of `repo`.

        `key` names the delivery across attempts: the github transport's comment carries it
        as its hidden marker (and is not posted twice), the webhook sends it as
        `X-Nightshift-Delivery` (the agent drops a duplicate).

        Raises GitHubError when GitHub had a server error or could not be reached (the
        github transport): the caller's durable step tries again.
        """
        if agent.transport == "github":
            return self._send_github(installation_id, repo, number, agent, message, key)
        if agent.transport == "webhook":
            return self._send_webhook(agent, message, key)
        if agent.transport == "maestro":
            return self._send_maestro(agent, message)
        return Sent("not_delivered", UNKNOWN_TRANSPORT.format(transport=agent.transport))

    # -- github -----------------------------------------------------------------------------

    def _send_github(
        self,
        installation_id: int | None,
        repo: str,
        number: int,
        agent: Agent,
        message: Message,
        key: str,
    ) -> Sent:
        try:
            planned = _github_plan(repo, number, agent, message, key)
        except ValueError as exc:
            return Sent("not_delivered", str(exc), request={"transport": "github"})
        record: dict[str, Any] = {"transport": "github", "requests": []}
        if self.github is None:
            return Sent("not_delivered", NO_GITHUB, request=record)
        if installation_id is None:
            return Sent("not_delivered", NO_INSTALLATION, request=record)
        done: list[str] = []
        status: int | None = None
        for request in planned:
            if _is_comment(request) and self._commented(installation_id, repo, number, key):
                done.append("comment already posted")
                continue
            record["requests"].append(request.as_dict())
            try:
                response = self.github.send(installation_id, request)
            except GitHubError as exc:
                if exc.transient:
                    raise
                if request.method == "DELETE" and exc.status == 404:
                    done.append(f"{_what(request)} (already gone)")
                    continue
                what = f"{request.method} {request.path}"
                why = _one_line(f"GitHub answered {exc.status} to {what}: {exc.message}")
                return Sent("not_delivered", why, status=exc.status, request=record)
            if _is_assignment(request) and not _assigned(response, agent.github):
                detail = NOT_ASSIGNED.format(login=agent.github, repo=repo, number=number)
                return Sent("not_delivered", detail, status=response.status, request=record)
            status = response.status
            done.append(_what(request))
        detail = _one_line(f"github {repo}#{number}: " + "; ".join(done))
        return Sent("delivered", detail, status=status, request=record)

    def _commented(self, installation_id: int, repo: str, number: int, key: str) -> bool:
        """Whether an earlier attempt posted this key's comment (a bot's, with the marker)."""
        assert self.github is not None
        path = f"/repos/{repo}/issues/{number}/comments"
        try:
            found = find_marked(self.github, installation_id, path, key, bots_only=True)
        except GitHubError as exc:
            if exc.transient:
                raise
            return False  # the comment's own request will say what is wrong
        return found is not None

    # -- webhook ----------------------------------------------------------------------------

    def _webhook_call(
        self, agent: Agent, message: Message, key: str, secret: str | None
    ) -> _HttpCall:
        body = message.model_dump_json().encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Nightshift-Event": message.content.type,
            "X-Nightshift-Delivery": key,
        }
        record_headers = dict(headers)
        record_headers["X-Nightshift-Signature-256"] = f"sha256={REDACTED}"
        if secret:
            digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Nightshift-Signature-256"] = f"sha256={digest}"
        record = {
            "transport": "webhook",
            "method": "POST",
            "url": _shown(agent.endpoint),
            "headers": record_headers,
            "json": message.model_dump(mode="json"),
        }
        return _HttpCall(agent.endpoint, headers, body, record)

    def _send_webhook(self, agent: Agent, message: Message, key: str) -> Sent:
        secret = self.secret_for(agent.name) or None
        call = self._webhook_call(agent, message, key, secret)
        if secret is None:
            env = secret_env_name(agent.name, "SECRET")
            return Sent("not_delivered", NO_SECRET.format(env=env), request=call.record)
        if not _is_http(call.url):
            return Sent("not_delivered", NOT_HTTP.format(transport="webhook"), request=call.record)
        where = f"webhook {call.record['url']}"
        answer = self._post(call)
        if isinstance(answer, str):
            return Sent("unreachable", _one_line(f"{where}: {answer}", secret), request=call.record)
        status, _ = answer
        if 200 <= status < 300:
            return Sent("delivered", f"{where} answered {status}", status, call.record)
        return Sent("not_delivered", _refused(where, status), status, call.record)

    # -- maestro ----------------------------------------------------------------------------

    def _maestro_call(self, agent: Agent, message: Message, token: str | None) -> _HttpCall:
        url = agent.endpoint.rstrip("/") + "/api/messages"
        payload = {
            "from": self.sender,
            "to": agent.name,
            "subject": message.subject,
            "priority": message.priority,
            "content": {
                "type": message.content.type,
                "message": as_markdown(message),
                "context": message.content.model_dump(mode="json"),
            },
        }
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        record_headers = dict(headers)
        if token:
            headers["Authorization"] = f"Bearer {token}"
            record_headers["Authorization"] = f"Bearer {REDACTED}"
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        record = {
            "transport": "maestro",
            "method": "POST",
            "url": _shown(url),
            "headers": record_headers,
            "json": payload,
        }
        return _HttpCall(url, headers, body, record)

    def _send_maestro(self, agent: Agent, message: Message) -> Sent:
        token = self.secret_for(agent.name) or None
        call = self._maestro_call(agent, message, token)
        if not _is_http(call.url):
            return Sent("not_delivered", NOT_HTTP.format(transport="maestro"), request=call.record)
        where = f"AI Maestro {call.record['url']}"
        answer = self._post(call)
        if isinstance(answer, str):
            return Sent("unreachable", _one_line(f"{where}: {answer}", token), request=call.record)
        status, content = answer
        data = _json(content)
        if 200 <= status < 300:
            if isinstance(data, dict) and data.get("notified") is False:
                detail = (
                    f"{where} answered {status} but did not notify {agent.name}: the message "
                    "waits in its inbox (is its session running?)"
                )
                return Sent("not_delivered", _one_line(detail, token), status, call.record)
            detail = f"{where} answered {status}"
            found = data.get("message") if isinstance(data, dict) else None
            if isinstance(found, dict) and isinstance(found.get("id"), str):
                detail += f": message {found['id'][:100]}"
            return Sent("delivered", _one_line(detail, token), status, call.record)
        why = _refused(where, status)
        if isinstance(data, dict):
            said = data.get("message") or data.get("error")
            if isinstance(said, str) and said.strip():
                why += f": {said}"
        return Sent("not_delivered", _one_line(why, token), status, call.record)

    # -- HTTP -------------------------------------------------------------------------------

    def _post(self, call: _HttpCall) -> tuple[int, bytes] | str:
        """(status, the answer's first bytes) of the first answer that is not worth trying
        again, or why every attempt failed."""
        problem = "not tried"
        for attempt in range(self.attempts):
            if attempt:
                self.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            request = self.client.build_request(
                "POST",
                call.url,
                content=call.body,
                headers=call.headers,
                timeout=self.timeout_seconds,
            )
            try:
                response = self.client.send(request, stream=True, follow_redirects=False)
                try:
                    content = _read(response)
                finally:
                    response.close()
            except httpx.TimeoutException:
                problem = f"timed out after {self.timeout_seconds:g} s"
                continue
            except httpx.TransportError as exc:
                problem = f"could not connect ({type(exc).__name__})"
                continue
            status = response.status_code
            if status >= 500 or status in RETRY_STATUSES:
                problem = f"answered {status}"
                continue
            return status, content
        tries = "attempt" if self.attempts == 1 else "attempts"
        return f"{problem} ({self.attempts} {tries})"


# -- helpers ----------------------------------------------------------------------------------


def _github_plan(
    repo: str, number: int, agent: Agent, message: Message, key: str
) -> list[GitHubRequest]:
    """The github transport's requests, in order; ValueError for an endpoint it cannot use."""
    endpoint = agent.endpoint.strip()
    kind = message.content.type
    issue = f"/repos/{repo}/issues/{number}"
    text = as_markdown(message)
    login = endpoint.removeprefix("mention:@") if endpoint.startswith("mention:@") else None
    label = endpoint.removeprefix("label:").strip() if endpoint.startswith("label:") else None
    if endpoint != "assign" and not login and not label:
        raise ValueError(BAD_ENDPOINT.format(endpoint=agent.endpoint))
    if login:
        text = f"@{login} {text}"
    planned = [GitHubRequest("POST", f"{issue}/comments", {"body": f"{text}\n\n{marker(key)}"})]
    if endpoint == "assign" and kind == "task":
        planned.append(GitHubRequest("POST", f"{issue}/assignees", {"assignees": [agent.github]}))
    elif endpoint == "assign" and kind == "task-withdrawn":
        planned.append(GitHubRequest("DELETE", f"{issue}/assignees", {"assignees": [agent.github]}))
    elif label and kind == "task":
        planned.append(GitHubRequest("POST", f"{issue}/labels", {"labels": [label]}))
    elif label and kind == "task-withdrawn":
        planned.append(GitHubRequest("DELETE", f"{issue}/labels/{quote(label, safe='')}"))
    return planned


def _is_comment(request: GitHubRequest) -> bool:
    return request.method == "POST" and request.path.endswith("/comments")


def _is_assignment(request: GitHubRequest) -> bool:
    return request.method == "POST" and request.path.endswith("/assignees")


def _what(request: GitHubRequest) -> str:
    path = request.path
    if _is_comment(request):
        return "commented"
    if path.endswith("/assignees"):
        logins = ", ".join(f"@{x}" for x in (request.json or {}).get("assignees", []))
        return f"assigned {logins}" if request.method == "POST" else f"unassigned {logins}"
    if request.method == "POST" and path.endswith("/labels"):
        return "labelled " + ", ".join((request.json or {}).get("labels", []))
    if "/labels/" in path:
        return "unlabelled " + path.rsplit("/", 1)[1]
    return f"{request.method} {path}"


def _canonical(login: str) -> str:
    bare = login.lower().removesuffix("[bot]")
    return "copilot" if bare in COPILOT_LOGINS else bare


def _assigned(response: GitHubResponse, login: str) -> bool:
    """Whether GitHub's answer lists `login` among the assignees.

    GitHub answers 201 even when it leaves out a login it cannot assign:
    https://docs.github.com/en/rest/issues/assignees#add-assignees-to-an-issue
    An answer without an assignee list is taken at its word.
    """
    data = response.data
    if not isinstance(data, dict) or not isinstance(data.get("assignees"), list):
        return True
    wanted = _canonical(login)
    return any(
        isinstance(a, dict) and _canonical(str(a.get("login", ""))) == wanted
        for a in data["assignees"]
    )


def _read(response: httpx.Response) -> bytes:
    """At most ANSWER_MAX_BYTES of the answer's body."""
    content = b""
    for chunk in response.iter_bytes():
        content += chunk
        if len(content) >= ANSWER_MAX_BYTES:
            break
    return content[:ANSWER_MAX_BYTES]


def _json(content: bytes) -> Any:
    try:
        return json.loads(content) if content else None
    except ValueError:
        return None


def _refused(where: str, status: int) -> str:
    if 300 <= status < 400:
        return f"{where} answered {status}, a redirect, which is not followed"
    return f"{where} answered {status}"


def _is_http(url: str) -> bool:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.host)


def _shown(url: str) -> str:
    """A URL as the audit log shows it: no credentials, no query, no fragment."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<invalid URL>"
    port = f":{parsed.port}" if parsed.port is not None else ""
    query = f"?{REDACTED}" if parsed.query else ""
    return f"{parsed.scheme}://{parsed.host}{port}{parsed.path}{query}"


def _one_line(text: str, secret: str | None = None) -> str:
    if secret:
        text = text.replace(secret, REDACTED)
    flat = " ".join(text.split())
    return flat if len(flat) <= DETAIL_CHARS else flat[: DETAIL_CHARS - 1] + "…"
