"""The dashboard: `/dashboard` (the board, agents, progress, escalations, audit), `/login`,
`/logout`; and the small page helpers the setup flow shares (templates, forms, headers).

Everything is rendered on the server from Jinja2 templates with autoescaping on: issue titles,
escalation summaries and audit reasons come from GitHub users and are never trusted as HTML.
The page refreshes its live part every REFRESH_SECONDS with a small script (a meta refresh
without JavaScript).

Access needs NIGHTSHIFT_DASHBOARD_TOKEN: given once in the login form (the browser then
holds a signed session cookie, HttpOnly, SameSite=Strict, Secure over https), or as
`Authorization: Bearer <token>` on every request (scripts). Without a token configured the
dashboard is disabled, never public. The token is compared in constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from app.effects.store import Store
from app.web.dashboard_data import ago, duration, iso, snapshot

log = logging.getLogger("nightshift.dashboard")

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
STATIC_PATH = "/dashboard/static"
SESSION_COOKIE = "nightshift_session"
SESSION_SECONDS = 12 * 3600
REFRESH_SECONDS = 10
MAX_FORM_BYTES = 8 * 1024  # the login and setup forms are a few short fields

DISABLED = (
    "The dashboard is disabled: no NIGHTSHIFT_DASHBOARD_TOKEN is set. Set it (at least 16 "
    "characters) in the environment or .env and restart `nightshift serve`."
)
WRONG_TOKEN = "That token is not the dashboard's token."  # noqa: S105 (a message)
BEARER_REQUIRED = "a valid `Authorization: Bearer <token>` or a login session is required"

Clock = Callable[[], float]
Endpoint = Callable[[Request], Awaitable[Response]]


# page helpers, shared with the setup flow -------------------------------------------------


@lru_cache(maxsize=1)
def templates() -> jinja2.Environment:
    """The templates in app/web/templates, autoescaped (every template is HTML)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(static=STATIC_PATH, ago=ago, duration=duration, iso=iso)
    return env


def security_headers(form_action: str = "'self'") -> dict[str, str]:
    """No inline script or style, nothing framed, no referrer, nothing cached."""
    return {
        "content-security-policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src 'self'; form-action {form_action}; base-uri 'none'; "
            "frame-ancestors 'none'"
        ),
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
    }


def page(
    template: str,
    context: Mapping[str, Any],
    status: int = 200,
    *,
    form_action: str = "'self'",
) -> HTMLResponse:
    html = templates().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=security_headers(form_action))


class FormError(Exception):
    """The request body is not a small urlencoded form."""


async def read_form(request: Request, limit: int = MAX_FORM_BYTES) -> dict[str, str]:
    """A urlencoded form's fields (the first value of each), refused above `limit` bytes."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FormError("send the form as application/x-www-form-urlencoded")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise FormError(f"the form is over {limit} bytes")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise FormError("the form is not UTF-8") from None
    return {name: values[0] for name, values in fields.items() if values}


def same_secret(given: str, expected: str) -> bool:
    """Constant time, whatever the lengths (digests of both are compared)."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def github_web_url(api_url: str) -> str:
    """github.com for api.github.com; https://HOST for GitHub Enterprise Server's API."""
    parts = urlsplit(api_url)
    if parts.netloc == "api.github.com":
        return "https://github.com"
    return f"{parts.scheme}://{parts.netloc}"


# sessions -----------------------------------------------------------------------------------


class Sessions:
    """Signed session cookies: `expiry.nonce.signature`, under a key derived from the token.

    Nothing is kept on the server, so every ingress process accepts the same cookie, and
    changing the token ends every session at once. The cookie never contains the token.
    """

    def __init__(self, token: str, clock: Clock, lifetime: float = SESSION_SECONDS) -> None:
        self._key = hmac.new(token.encode(), b"nightshift dashboard session v1", "sha256").digest()
        self._clock = clock
        self.lifetime = lifetime

    def issue(self) -> str:
        payload = f"{int(self._clock() + self.lifetime)}.{secrets.token_urlsafe(16)}"
        return f"{payload}.{self._sign(payload)}"

    def valid(self, cookie: str) -> bool:
        payload, _, signature = cookie.rpartition(".")
        expires, _, _ = payload.partition(".")
        if not hmac.compare_digest(self._sign(payload).encode(), signature.encode()):
            return False
        return expires.isdigit() and int(expires) > self._clock()

    def _sign(self, payload: str) -> str:
        return hmac.new(self._key, payload.encode(), "sha256").hexdigest()


# the dashboard ------------------------------------------------------------------------------


class Dashboard:
    """`/dashboard`, its live fragment and static files, `/login` and `/logout`."""

    def __init__(
        self,
        store: Store,
        token: str | None,
        *,
        github_web: str = "https://github.com",
        public_url: str | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.store = store
        self.token = token
        self.github_web = github_web
        self.public_url = public_url
        self.clock = clock
        self.sessions = Sessions(token, clock) if token else None

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/dashboard", self.dashboard, methods=["GET"]),
            Route("/dashboard/live", self.live, methods=["GET"]),
            Mount(STATIC_PATH, StaticFiles(directory=STATIC), name="static"),
            Route("/login", self.login, methods=["GET", "POST"]),
            Route("/logout", self.logout, methods=["POST"]),
        ]

    # access ---------------------------------------------------------------------------------

    def _access(self, request: Request) -> Literal["ok", "login", "denied"]:
        """ok; login (no credentials given: a browser is sent to the login form); denied (a
        wrong bearer token)."""
        assert self.token is not None and self.sessions is not None
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, given = header.partition(" ")
            if scheme.lower() == "bearer" and same_secret(given.strip(), self.token):
                return "ok"
            log.warning("dashboard: wrong bearer token from %s", _client(request))
            return "denied"
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie and self.sessions.valid(cookie):
            return "ok"
        return "login"

    def _secure(self, request: Request) -> bool:
        if request.url.scheme == "https":
            return True
        public = urlsplit(self.public_url or "")
        return public.scheme == "https" and public.netloc == request.url.netloc

    def _disabled(self) -> Response:
        return page("disabled.html", {"message": DISABLED}, status=403)

    # endpoints ------------------------------------------------------------------------------

    async def dashboard(self, request: Request) -> Response:
        if self.token is None:
            return self._disabled()
        access = self._access(request)
        if access == "denied":
            return page("login.html", {"error": WRONG_TOKEN}, status=401)
        if access == "login":
            return RedirectResponse("/login", status_code=303)
        return page("dashboard.html", await self._context())

    async def live(self, request: Request) -> Response:
        """The part of the page that refreshes itself."""
        if self.token is None:
            return self._disabled()
        if self._access(request) != "ok":
            return Response(
                BEARER_REQUIRED,
                status_code=401,
                headers={**security_headers(), "www-authenticate": "Bearer"},
            )
        return page("live.html", await self._context())

    async def login(self, request: Request) -> Response:
        if self.token is None or self.sessions is None:
            return self._disabled()
        if request.method == "GET":
            return page("login.html", {"error": None})
        try:
            form = await read_form(request)
        except FormError as exc:
            return page("login.html", {"error": str(exc)}, status=400)
        if not same_secret(form.get("token", "").strip(), self.token):
            log.warning("dashboard: wrong token in the login form from %s", _client(request))
            return page("login.html", {"error": WRONG_TOKEN}, status=401)
        response = RedirectResponse("/dashboard", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            self.sessions.issue(),
            max_age=int(self.sessions.lifetime),
            path="/",
            httponly=True,
            samesite="strict",
            secure=self._secure(request),
        )
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            httponly=True,
            samesite="strict",
            secure=self._secure(request),
        )
        return response

    async def _context(self) -> dict[str, Any]:
        snap = await run_in_threadpool(snapshot, self.store, self.clock())
        return {"snap": snap, "github": self.github_web, "refresh": REFRESH_SECONDS}


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "-"
