"""The Starlette application: webhooks, health and metrics; the setup flow and the dashboard."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from app.core.router import Router
from app.effects.store import Store
from app.engine.inbox import Inbox
from app.metrics import Metrics
from app.settings import Settings
from app.web.agents import heartbeat_endpoint
from app.web.dashboard import Dashboard, github_web_url
from app.web.fastpath import WebhookProtocol, protocol_for
from app.web.ingress import WebhookEndpoint
from app.web.setup import SetupFlow


def metrics_view(metrics: Metrics, token: str | None) -> Callable[[Request], Awaitable[Response]]:
    """/metrics, behind a bearer token when one is configured (it shares the webhook port)."""
    expected = f"Bearer {token}".encode() if token else None

    async def endpoint(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return JSONResponse({"error": "a bearer token is required"}, status_code=401)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return endpoint


def create_app(
    *,
    secrets: Sequence[bytes],
    inbox: Inbox,
    router: Router,
    metrics: Metrics,
    metrics_token: str | None = None,
    store: Store | None = None,
    agent_token: Callable[[str], str | None] | None = None,
    settings: Settings | None = None,
) -> FastPath:
    """The server `nightshift serve` runs; given `settings` and `store` it also serves `/`:
    the setup flow while no App credentials are configured, the dashboard once they are."""
    webhook = WebhookEndpoint(secrets, inbox, router, metrics)
    metrics.watch_inbox(lambda: inbox.unmoved)

    async def healthz(request: Request) -> Response:
        if not inbox.alive:  # nothing could be stored: let the orchestrator restart us
            return JSONResponse({"ok": False, "inbox": "stopped"}, status_code=503)
        return JSONResponse({"ok": True})

    metrics_endpoint = metrics_view(metrics, metrics_token)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        inbox.start()
        try:
            yield
        finally:
            inbox.stop()

    app = Starlette(
        routes=[
            Route("/webhooks", webhook, methods=None),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            *(
                [
                    Route(
                        "/agents/{agent}/heartbeat",
                        heartbeat_endpoint(store, agent_token),
                        methods=["POST"],
                    )
                ]
                if store is not None and agent_token is not None
                else []
            ),
            *(site_routes(settings, store) if settings is not None and store is not None else []),
        ],
        lifespan=lifespan,
    )
    return FastPath(app, "/webhooks", webhook)


def site_routes(settings: Settings, store: Store, env_file: Path | None = None) -> list[BaseRoute]:
    """`/`, `/setup/*`, `/login`, `/logout` and `/dashboard*`.

    `/` is the setup flow while no App credential at all is configured (so nobody can
    register another App over a configured install), and redirects to the dashboard once
    one is.
    """
    configured = (
        settings.app_id is not None
        or settings.private_key is not None
        or settings.private_key_path is not None
    )
    setup = SetupFlow(
        available=not configured,
        api_url=settings.github_api_url,
        public_url=settings.public_url,
        env_file=env_file or Path(str(settings.model_config.get("env_file") or ".env")),
        dry_run=settings.dry_run,
    )
    token = settings.dashboard_token
    dashboard = Dashboard(
        store,
        token.get_secret_value().strip() if token is not None else None,
        github_web=github_web_url(settings.github_api_url),
        public_url=settings.public_url,
    )

    async def home(request: Request) -> Response:
        if setup.available:
            return await setup.home(request)
        return RedirectResponse("/dashboard", status_code=303)

    return [Route("/", home, methods=["GET"]), *setup.routes(), *dashboard.routes()]


class FastPath:
    """Send the webhook path straight to its endpoint, around Starlette's middleware stack.

    The webhook endpoint handles its own errors and methods; skipping the routing and
    exception middleware for it is worth about a tenth of the ingest CPU (bench/ingest.py).
    Everything else, lifespan included, goes through the Starlette app.
    """

    def __init__(self, app: Starlette, path: str, endpoint: WebhookEndpoint) -> None:
        self.app = app
        self.path = path
        self.endpoint = endpoint

    def protocol(self) -> type[WebhookProtocol]:
        """The HTTP protocol class for uvicorn (`http=`): the same ingress, without ASGI."""
        return protocol_for(self.endpoint.checks, self.endpoint.inbox, self.path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == self.path:
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_worker_app(
    *, metrics: Metrics, alive: Callable[[], bool], metrics_token: str | None = None
) -> Starlette:
    """What a `nightshift worker` serves: /healthz for the orchestrator, /metrics."""

    async def healthz(request: Request) -> Response:
        if not alive():
            return JSONResponse({"ok": False, "pump": "stopped"}, status_code=503)
        return JSONResponse({"ok": True})

    metrics_endpoint = metrics_view(metrics, metrics_token)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ]
    )
