"""The Starlette application: webhooks, health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.core.router import Router
from app.engine.inbox import Inbox
from app.metrics import Metrics
from app.web.ingress import WebhookEndpoint


def create_app(
    *, secrets: Sequence[bytes], inbox: Inbox, router: Router, metrics: Metrics
) -> Starlette:
    webhook = WebhookEndpoint(secrets, inbox, router, metrics)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        inbox.start()
        try:
            yield
        finally:
            inbox.stop()

    return Starlette(
        routes=[
            Route("/webhooks", webhook, methods=None),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
