"""The webhook ingress, through a real ASGI client: every status code, one case each."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from githubkit.webhooks import sign

from app.core.rules import ROUTER
from app.effects.journal import Journal
from app.effects.store import NewDelivery, Store
from app.engine import inbox as inbox_module
from app.engine.inbox import Inbox
from app.metrics import Metrics
from app.web.app import FastPath, create_app
from app.web.ingress import signature_matches
from tests.conftest import SECRET
from tests.helpers import PAYLOADS, body_of, eventually, labeled_issue, payload, signed_headers

URL = "/webhooks"
FRONTS = ["asgi", "http"]  # an ASGI client, and a socket to `serve`'s own HTTP protocol


class Harness:
    def __init__(
        self,
        client: httpx.AsyncClient,
        store: Store,
        dispatched: list[str],
        app: FastPath,
        address: tuple[str, int] | None,
    ) -> None:
        self.client = client
        self.store = store
        self.dispatched = dispatched
        self.app = app
        self.address = address  # the server's, when the front end is a real socket

    async def post(
        self,
        body: bytes,
        event: str = "issues",
        delivery: str | None = None,
        secret: str = SECRET,
        **headers: str,
    ) -> httpx.Response:
        sent = {**signed_headers(body, secret, event, delivery), **headers}
        return await self.client.post(URL, content=body, headers=sent)


@asynccontextmanager
async def serving(app: FastPath) -> AsyncIterator[tuple[str, int]]:
    """`app` on an ephemeral port, with the HTTP protocol `nightshift serve` runs."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=app.protocol(), lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    host, port = server.servers[0].sockets[0].getsockname()[:2]
    try:
        yield host, port
    finally:
        server.should_exit = True
        await task


async def _harness(store: Store, secrets: Sequence[str], front: str) -> AsyncIterator[Harness]:
    dispatched: list[str] = []

    def on_stored(items: Sequence[NewDelivery]) -> None:
        dispatched.extend(item.id for item in items)

    inbox = Inbox(store, on_stored=on_stored)
    app = create_app(
        secrets=[s.encode() for s in secrets], inbox=inbox, router=ROUTER, metrics=Metrics(store)
    )
    inbox.start()
    try:
        if front == "asgi":
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://nightshift.test"
            ) as client:
                yield Harness(client, store, dispatched, app, None)
        else:
            async with (
                serving(app) as (host, port),
                httpx.AsyncClient(base_url=f"http://{host}:{port}") as client,
            ):
                yield Harness(client, store, dispatched, app, (host, port))
    finally:
        inbox.stop()


@pytest.fixture(params=FRONTS)
def front(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def ingress(store: Store, front: str) -> AsyncIterator[Harness]:
    async for harness in _harness(store, [SECRET], front):
        yield harness


LABELED = body_of(labeled_issue())


async def test_stores_a_verified_delivery_then_answers_202(ingress: Harness) -> None:
    response = await ingress.post(LABELED, delivery="d-202")
    assert response.status_code == 202
    assert response.json() == {"delivery": "d-202", "status": "queued"}
    stored = ingress.store.delivery("d-202")
    assert stored is not None
    row, body = stored
    assert (row.event, row.action, row.repository, row.status) == (
        "issues",
        "labeled",
        "octo/repo",
        "queued",
    )
    assert body == LABELED  # the raw bytes, exactly as signed
    assert ingress.dispatched == ["d-202"]


async def test_a_real_payload_without_installation_is_stored(ingress: Harness) -> None:
    raw = (PAYLOADS / "issues.labeled.json").read_bytes()
    response = await ingress.post(raw, delivery="real")
    assert response.status_code == 202
    stored = ingress.store.delivery("real")
    assert stored is not None
    assert stored[0].installation_id is None


async def test_ping_is_answered_200(ingress: Harness) -> None:
    response = await ingress.post(body_of(payload("ping")), event="ping")
    assert response.status_code == 200
    assert response.json()["status"] == "pong"


@pytest.mark.parametrize(
    ("event", "data", "status"),
    [
        pytest.param("deployment_status", {"action": "created"}, "ignored", id="unknown-event"),
        pytest.param("issues", {"action": "transferred"}, "ignored", id="unknown-action"),
        pytest.param("star", {}, "ignored", id="no-action"),
        # a handled event whose payload lacks what the rule reads is stored, and the
        # workflow records the rule's failure (tests/engine/test_workflow.py)
        pytest.param(
            "issues",
            {"action": "labeled", "issue": "not an object"},
            "queued",
            id="odd-shape-is-still-stored",
        ),
    ],
)
async def test_every_verified_delivery_is_stored_and_answered_2xx(
    ingress: Harness, event: str, data: dict[str, object], status: str
) -> None:
    response = await ingress.post(body_of(data), event=event, delivery=f"x-{event}")
    assert response.status_code == 202
    assert response.json()["status"] == status
    stored = ingress.store.delivery(f"x-{event}")
    assert stored is not None
    assert stored[0].status == status


async def test_unknown_event_is_ignored_not_processed(ingress: Harness) -> None:
    response = await ingress.post(
        body_of({"action": "created"}), event="deployment_status", delivery="unk"
    )
    assert response.json()["status"] == "ignored"
    assert [row.status for row in ingress.store.list_deliveries()] == ["ignored"]
    assert ingress.dispatched == ["unk"]  # handed over; the engine skips non-queued rows


async def test_duplicate_guid_is_answered_2xx_and_not_stored_again(ingress: Harness) -> None:
    first = await ingress.post(LABELED, delivery="same")
    second = await ingress.post(LABELED, delivery="same")
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json()["status"] == "duplicate"
    assert ingress.dispatched == ["same"]


async def test_concurrent_duplicates_are_stored_once(ingress: Harness) -> None:
    responses = await asyncio.gather(*[ingress.post(LABELED, delivery="burst") for _ in range(25)])
    assert sorted(r.status_code for r in responses) == [200] * 24 + [202]
    assert ingress.dispatched == ["burst"]


async def test_wrong_method_is_405(ingress: Harness) -> None:
    response = await ingress.client.get(URL)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize("missing", ["x-github-event", "x-github-delivery"])
async def test_missing_github_headers_are_400(ingress: Harness, missing: str) -> None:
    headers = signed_headers(LABELED, SECRET, "issues")
    del headers[missing]
    response = await ingress.client.post(URL, content=LABELED, headers=headers)
    assert response.status_code == 400
    assert ingress.store.list_deliveries() == []


async def test_invalid_json_is_400(ingress: Harness) -> None:
    response = await ingress.post(b"{not json", delivery="bad-json")
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]
    assert ingress.store.delivery("bad-json") is None


async def test_missing_signature_is_401(ingress: Harness) -> None:
    headers = signed_headers(LABELED, SECRET, "issues")
    del headers["x-hub-signature-256"]
    response = await ingress.client.post(URL, content=LABELED, headers=headers)
    assert response.status_code == 401


async def test_wrong_signature_is_401_and_nothing_is_stored(ingress: Harness) -> None:
    response = await ingress.post(LABELED, secret="not-the-secret", delivery="forged")
    assert response.status_code == 401
    assert ingress.store.delivery("forged") is None


async def test_signature_over_other_bytes_is_401(ingress: Harness) -> None:
    headers = signed_headers(LABELED, SECRET, "issues")
    response = await ingress.client.post(URL, content=LABELED + b" ", headers=headers)
    assert response.status_code == 401


async def test_other_content_type_is_415(ingress: Harness) -> None:
    response = await ingress.post(LABELED, **{"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 415


async def raw_exchange(address: tuple[str, int], head: bytes, body_chunks: int = 0) -> bytes:
    """Send a request head, then up to `body_chunks` MiB of body while the server reads it,
    and return what the server answered (it may answer and close before the body ends)."""
    reader, writer = await asyncio.open_connection(*address)
    writer.write(head)
    await writer.drain()
    try:
        for _ in range(body_chunks):
            writer.write(b" " * (1024 * 1024))
            await asyncio.wait_for(writer.drain(), 5)
    except (ConnectionError, TimeoutError):
        pass  # refused part-way: the answer is already waiting
    answer = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return answer


def request_head(content_length: int | None, chunked: bool = False) -> bytes:
    headers = signed_headers(b"{}", SECRET, "issues")
    lines = [b"POST /webhooks HTTP/1.1", b"host: nightshift.test"]
    lines += [f"{name}: {value}".encode() for name, value in headers.items()]
    if content_length is not None:
        lines.append(f"content-length: {content_length}".encode())
    if chunked:
        lines.append(b"transfer-encoding: chunked")
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def test_declared_oversize_body_is_413_without_reading_it(ingress: Harness) -> None:
    if ingress.address is not None:
        answer = await raw_exchange(ingress.address, request_head(26 * 1024 * 1024))
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"connection: close" in answer
        return
    headers = {**signed_headers(b"{}", SECRET, "issues"), "content-length": str(26 * 1024 * 1024)}

    async def never_sent() -> AsyncIterator[bytes]:
        raise AssertionError("the body was read")
        yield b""

    response = await ingress.client.post(URL, content=never_sent(), headers=headers)
    assert response.status_code == 413


async def test_streamed_oversize_body_is_413(ingress: Harness) -> None:
    if ingress.address is not None:
        # a body of unknown size (chunked), refused once it is over the limit: the answer
        # arrives while the client is still sending
        reader, writer = await asyncio.open_connection(*ingress.address)
        answer = asyncio.create_task(reader.read(65536))
        writer.write(request_head(None, chunked=True))
        sent = 0
        while sent < 60 and not answer.done():
            writer.write(b"100000\r\n" + b" " * (1024 * 1024) + b"\r\n")
            await asyncio.wait_for(writer.drain(), 5)
            sent += 1
        assert (await asyncio.wait_for(answer, 5)).startswith(b"HTTP/1.1 413 ")
        writer.close()
        assert sent < 60
        assert ingress.app.endpoint.checks.buffered == 0
        return
    chunk = b" " * (1024 * 1024)
    sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(30):
            sent += 1
            yield chunk

    headers = signed_headers(b"{}", SECRET, "issues")
    response = await ingress.client.post(URL, content=stream(), headers=headers)
    assert response.status_code == 413
    assert sent <= 26  # refused as soon as it went over, not after reading it all


async def test_secret_rotation_accepts_any_listed_secret(store: Store, front: str) -> None:
    async for harness in _harness(store, ["old-secret", "new-secret"], front):
        old = await harness.post(LABELED, secret="old-secret", delivery="by-old")
        new = await harness.post(LABELED, secret="new-secret", delivery="by-new")
        assert (old.status_code, new.status_code) == (202, 202)
    async for harness in _harness(store, ["new-secret"], front):
        removed = await harness.post(LABELED, secret="old-secret", delivery="after-removal")
        assert removed.status_code == 401


def test_githubs_published_signature_test_vector() -> None:
    # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature_matches(b"Hello, World!", header, [b"It's a Secret to Everybody"])
    assert not signature_matches(b"Hello, World!", header, [b"It's a secret to everybody"])
    assert not signature_matches(
        b"Hello, World!", header.replace("sha256=", "sha1="), [b"It's a Secret to Everybody"]
    )
    assert sign("It's a Secret to Everybody", "Hello, World!") == header


async def test_database_down_is_503_so_github_marks_it_failed(ingress: Harness) -> None:
    ingress.store.engine.dispose()
    ingress.store.insert_deliveries = _broken  # type: ignore[method-assign]
    response = await ingress.post(LABELED, delivery="while-down")
    assert response.status_code == 503


def _broken(batch: Sequence[NewDelivery]) -> set[str]:
    raise ConnectionError("database is down")


async def test_health_and_metrics(ingress: Harness) -> None:
    await ingress.post(LABELED, delivery="m1")
    await ingress.post(body_of({"action": "created"}), event="deployment_status", delivery="m2")
    assert (await ingress.client.get("/healthz")).json() == {"ok": True}
    text = (await ingress.client.get("/metrics")).text
    assert 'nightshift_deliveries_stored{event="issues",outcome="queued"} 1.0' in text
    assert 'nightshift_deliveries_stored{event="deployment_status",outcome="ignored"} 1.0' in text
    assert "nightshift_queue_depth 1.0" in text
    assert 'nightshift_ingress_requests_total{status="202"} 2.0' in text
    assert "nightshift_ingress_seconds_bucket" in text


async def test_unverified_bodies_in_memory_are_capped(ingress: Harness) -> None:
    checks = ingress.app.endpoint.checks
    checks.max_buffered = 1024
    big = b'{"a": "' + b"x" * 4096 + b'"}'
    response = await ingress.post(big)
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    small = await ingress.post(LABELED)
    assert small.status_code == 503  # 12 KB is over this tiny budget too
    checks.max_buffered = 1 << 20
    ok = await ingress.post(LABELED)
    assert ok.status_code == 202  # the budget was given back
    assert checks.buffered == 0


async def test_a_store_that_hangs_is_answered_before_githubs_timeout_each_at_its_deadline(
    store: Store, monkeypatch: pytest.MonkeyPatch, front: str
) -> None:
    import threading

    release = threading.Event()

    def hang(batch: Sequence[NewDelivery]) -> set[str]:
        release.wait(5)
        return set()

    monkeypatch.setattr(store, "insert_deliveries", hang)
    monkeypatch.setattr("app.engine.inbox.PUT_TIMEOUT", 0.3)

    async def timed(harness: Harness, delivery: str) -> tuple[int, float]:
        sent = time.monotonic()
        response = await harness.post(LABELED, delivery=delivery)
        return response.status_code, time.monotonic() - sent

    async for harness in _harness(store, [SECRET], front):
        first = asyncio.create_task(timed(harness, "slow-1"))
        await asyncio.sleep(0.15)  # the second one's time runs out after the first one's
        second = await timed(harness, "slow-2")
        answers = [await first, second]
        release.set()
        assert [status for status, _ in answers] == [503, 503]
        # each at its own deadline: not before it, and not at the store's 5 s
        assert all(0.3 <= waited < 2.5 for _, waited in answers), answers


async def test_one_bad_row_does_not_fail_the_rest_of_its_batch(store: Store, front: str) -> None:
    original = store.insert_deliveries

    def picky(batch: Sequence[NewDelivery]) -> set[str]:
        if any(item.id == "poison" for item in batch):
            raise ValueError("row rejected by the database")
        return original(batch)

    store.insert_deliveries = picky  # type: ignore[method-assign]
    async for harness in _harness(store, [SECRET], front):
        responses = await asyncio.gather(
            *[harness.post(LABELED, delivery=d) for d in ("good-1", "poison", "good-2")]
        )
        by_id = {r.json().get("delivery", "poison"): r.status_code for r in responses}
        assert by_id == {"good-1": 202, "poison": 503, "good-2": 202}


async def test_metrics_count_the_deliveries_waiting_in_the_journal(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inbox_module, "IDLE_AFTER", 60.0)  # a burst that has not paused yet
    inbox = Inbox(store, journal=Journal(tmp_path / "nightshift.db-inbox"))
    app = create_app(secrets=[SECRET.encode()], inbox=inbox, router=ROUTER, metrics=Metrics(store))
    inbox.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://nightshift.test"
        ) as client:
            for n in range(2):
                response = await client.post(
                    "/webhooks",
                    content=LABELED,
                    headers=signed_headers(LABELED, SECRET, "issues", f"j-{n}"),
                )
                assert response.status_code == 202
            text = (await client.get("/metrics")).text
    finally:
        inbox.stop()
    assert "nightshift_inbox_journaled 2.0" in text
    assert "nightshift_queue_depth 0.0" in text  # not in the table yet
    assert {row.id for row in store.list_deliveries()} == {"j-0", "j-1"}  # moved at the stop


async def test_healthz_fails_when_the_inbox_is_not_running(store: Store) -> None:
    inbox = Inbox(store)
    app = create_app(secrets=[b"s"], inbox=inbox, router=ROUTER, metrics=Metrics(store))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        response = await client.get("http://nightshift.test/healthz")
    assert response.status_code == 503


async def test_a_worker_serves_health_and_metrics(store: Store) -> None:
    from app.web.app import create_worker_app

    state = {"alive": True}
    app = create_worker_app(metrics=Metrics(store), alive=lambda: state["alive"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        assert (await client.get("http://worker.test/healthz")).status_code == 200
        assert "nightshift_queue_depth" in (await client.get("http://worker.test/metrics")).text
        state["alive"] = False
        assert (await client.get("http://worker.test/healthz")).status_code == 503


async def test_metrics_can_require_a_bearer_token(store: Store) -> None:
    inbox = Inbox(store)
    app = create_app(
        secrets=[b"s"],
        inbox=inbox,
        router=ROUTER,
        metrics=Metrics(store),
        metrics_token="scrape-me",
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
        url = "http://nightshift.test/metrics"
        assert (await client.get(url)).status_code == 401
        wrong = await client.get(url, headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await client.get(url, headers={"authorization": "Bearer scrape-me"})
        assert right.status_code == 200
        assert "nightshift_queue_depth" in right.text


def _request(body: bytes, delivery: str, version: bytes = b"1.1") -> bytes:
    headers = signed_headers(body, SECRET, "issues", delivery)
    lines = [b"POST /webhooks HTTP/" + version, b"host: nightshift.test"]
    lines += [f"{name}: {value}".encode() for name, value in headers.items()]
    lines.append(f"content-length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def test_pipelined_requests_are_answered_in_order(store: Store) -> None:
    async for harness in _harness(store, [SECRET], "http"):
        assert harness.address is not None
        reader, writer = await asyncio.open_connection(*harness.address)
        writer.write(
            _request(LABELED, "pipe-1")
            + b"GET /healthz HTTP/1.1\r\nhost: nightshift.test\r\n\r\n"
            + _request(LABELED, "pipe-2")
            + _request(LABELED, "pipe-1")
        )
        await writer.drain()
        seen = b""
        while seen.count(b"HTTP/1.1 ") < 4:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk, f"closed after {seen!r}"
            seen += chunk
        writer.close()
        statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", seen)
        assert statuses == [b"202", b"200", b"202", b"200"]
        assert b'"delivery":"pipe-1","status":"duplicate"' in seen
        assert sorted(row.id for row in store.list_deliveries()) == ["pipe-1", "pipe-2"]


@asynccontextmanager
async def _storing_slowly(
    store: Store, monkeypatch: pytest.MonkeyPatch, delivery: str
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A connection to `serve`'s protocol whose first webhook (`delivery`) takes 0.3 s to
    store: sent, and being stored, when this yields."""
    insert = store.insert_deliveries

    def slow(batch: Sequence[NewDelivery]) -> set[str]:
        time.sleep(0.3)
        return insert(batch)

    monkeypatch.setattr(store, "insert_deliveries", slow)
    async for harness in _harness(store, [SECRET], "http"):
        assert harness.address is not None
        reader, writer = await asyncio.open_connection(*harness.address)
        writer.write(_request(LABELED, delivery))
        await writer.drain()
        try:
            yield reader, writer
        finally:
            writer.close()


async def test_a_client_that_stops_sending_still_gets_its_answer(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _storing_slowly(store, monkeypatch, "half-closed") as (reader, writer):
        writer.write_eof()  # a half-close while the delivery is being stored
        answer = await asyncio.wait_for(reader.read(), 5)  # read() returns at the close
    assert answer.startswith(b"HTTP/1.1 202 ")
    assert b"connection: close" in answer
    assert [row.id for row in store.list_deliveries()] == ["half-closed"]


async def test_what_a_client_sends_while_its_delivery_is_stored_waits_for_the_answer(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _storing_slowly(store, monkeypatch, "first") as (reader, writer):
        await asyncio.sleep(0.1)  # the first is being stored
        writer.write(b"not http at all\r\n\r\n")
        await writer.drain()
        answers = await asyncio.wait_for(reader.read(), 5)  # the bad request closes it
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answers) == [b"202", b"400"]


async def test_an_http_1_0_client_gets_its_answer_and_the_connection_closes(store: Store) -> None:
    async for harness in _harness(store, [SECRET], "http"):
        assert harness.address is not None
        reader, writer = await asyncio.open_connection(*harness.address)
        writer.write(_request(LABELED, "old-client", version=b"1.0"))
        answer = await asyncio.wait_for(reader.read(), 5)  # read() returns at the close
        writer.close()
        assert answer.startswith(b"HTTP/1.1 202 ")
        assert b"connection: close" in answer
        assert answer.endswith(b'{"delivery":"old-client","status":"queued"}')


@pytest.fixture
async def on_a_socket(store: Store) -> AsyncIterator[Harness]:
    async for harness in _harness(store, [SECRET], "http"):
        yield harness


async def test_a_client_gone_in_the_middle_of_a_body_gives_its_bytes_back(
    on_a_socket: Harness,
) -> None:
    assert on_a_socket.address is not None
    checks = on_a_socket.app.endpoint.checks
    _, writer = await asyncio.open_connection(*on_a_socket.address)
    writer.write(request_head(1024 * 1024) + b" " * 100_000)  # a tenth of what it said
    await writer.drain()
    await eventually(lambda: checks.buffered > 0)
    writer.close()  # and gone
    await eventually(lambda: checks.buffered == 0)
    assert (await on_a_socket.post(LABELED)).status_code == 202
