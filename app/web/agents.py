"""The agents' API: `POST /agents/{agent}/heartbeat`.

An agent says it is alive, what it works on and how far it is. The token is the agent's own
(`NIGHTSHIFT_AGENT_<AGENT>_TOKEN`), compared in constant time; a wrong or missing token is a
401 and nothing is recorded. A heartbeat is one durable write: the dispatch watchdog reads
it (an acknowledgement when it names the assigned task, an agent back online, or heartbeats
that stopped), so the endpoint answers fast and decides nothing itself.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.effects.store import Store

log = logging.getLogger("nightshift.agents")

MAX_BODY_BYTES = 16 * 1024
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Heartbeat(BaseModel):
    """The body: {status, task, progress}; other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    status: str = Field(default="working", min_length=1, max_length=32, pattern=r"^[A-Za-z_-]+$")
    # the task worked on, as the assignment names it: `owner/repo#N`
    task: str | None = Field(default=None, max_length=300, pattern=r"^[\w.-]+/[\w.-]+#\d+$")
    progress: int | None = Field(default=None, ge=0, le=100)


def heartbeat_endpoint(
    store: Store, token_for: Callable[[str], str | None]
) -> Callable[[Request], object]:
    async def endpoint(request: Request) -> Response:
        agent = str(request.path_params.get("agent", ""))
        if request.method != "POST":
            return JSONResponse({"error": "use POST"}, status_code=405)
        expected = token_for(agent) if _NAME.match(agent) else None
        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        if (
            expected is None
            or scheme.lower() != "bearer"
            or not hmac.compare_digest(token.strip().encode(), expected.encode())
        ):
            # the token itself is never logged, right or wrong
            log.warning("heartbeat refused for agent %r: missing or wrong token", agent[:64])
            return JSONResponse(
                {"error": "a valid bearer token for this agent is required"}, status_code=401
            )
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse({"error": "the body is too large"}, status_code=413)
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_BODY_BYTES:
                return JSONResponse({"error": "the body is too large"}, status_code=413)
        try:
            body = Heartbeat.model_validate(json.loads(raw or b"{}"))
        except json.JSONDecodeError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=400)
        except ValidationError as exc:
            problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
            return JSONResponse({"error": "; ".join(problems)}, status_code=422)
        await run_in_threadpool(store.heartbeat, agent, body.status, body.task, body.progress)
        return JSONResponse({"ok": True, "agent": agent})

    return endpoint
