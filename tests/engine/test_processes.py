"""Real processes: `nightshift serve` killed with SIGKILL and restarted; on PostgreSQL, an
ingress with two workers sharing the queue, and a worker that dies and never comes back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from app.effects.journal import Journal, journal_path
from app.effects.store import Store
from app.engine.runtime import engine_database_url
from app.settings import Settings
from tests.conftest import POSTGRES, SECRET
from tests.contract.contract import Contract
from tests.fakes.github import FakeGitHub, free_port, serve
from tests.helpers import body_of, labeled_issue, signed_headers

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


class Process:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.handle = subprocess.Popen(
                [sys.executable, "-m", "app", *args],
                cwd=log.parent,
                env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.handle.poll() is None:
            os.killpg(self.handle.pid, sig)
            self.handle.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def app_env(settings: Settings, fake: FakeGitHub, github_url: str, **extra: str) -> dict[str, str]:
    env = {
        "NIGHTSHIFT_WEBHOOK_SECRET": SECRET,
        "NIGHTSHIFT_DATABASE_URL": settings.database_url,
        "NIGHTSHIFT_GITHUB_API_URL": github_url,
        "NIGHTSHIFT_APP_ID": str(fake.app_id),
        "NIGHTSHIFT_PRIVATE_KEY": fake.private_key,
        "NIGHTSHIFT_WRITE_INTERVAL_SECONDS": "0",
        "NIGHTSHIFT_DRY_RUN": "false",
    }
    return {**env, **extra}


@contextmanager
def started(args: list[str], env: dict[str, str], log: Path) -> Iterator[Process]:
    process = Process(args, env, log)
    try:
        yield process
    finally:
        process.kill(signal.SIGTERM if process.handle.poll() is None else 0)


def wait_healthy(port: int, process: Process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.handle.poll() is not None:
            raise AssertionError(f"server exited:\n{process.output()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server did not become healthy:\n{process.output()}")


def wait_processed(store: Store, ids: list[str], timeout: float = 90) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    statuses: dict[str, str] = {}
    while time.monotonic() < deadline:
        statuses = {row.id: row.status for row in store.list_deliveries(limit=10_000)}
        if all(statuses.get(i) in ("done", "failed", "ignored") for i in ids):
            return statuses
        time.sleep(0.2)
    raise AssertionError(f"not all processed: {statuses}")


def send(port: int, number: int, *, rejected: bool) -> str:
    delivery = f"crash-{number}"
    data = labeled_issue(number=number, body="fix it" if rejected else "- [ ] works")
    body = body_of(data)
    response = httpx.post(
        f"http://127.0.0.1:{port}/webhooks",
        content=body,
        headers=signed_headers(body, SECRET, "issues", delivery),
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return delivery


def engine_statuses(settings: Settings) -> list[tuple[str, str, str]]:
    """(workflow id, status, executor id) of every delivery workflow, read from DBOS's tables."""
    url = engine_database_url(settings.database_url)
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    table = "dbos.workflow_status" if settings.is_postgres else "workflow_status"
    if not sa.inspect(engine).has_table(
        "workflow_status", schema="dbos" if settings.is_postgres else None
    ):
        engine.dispose()
        return []  # no worker has started the engine yet
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                f"SELECT workflow_uuid, status, executor_id FROM {table} "  # noqa: S608
                "WHERE name = 'nightshift.delivery'"
            )
        ).all()
    engine.dispose()
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def assert_processed_once(
    store: Store, fake: FakeGitHub, numbers: range, rejected: set[int]
) -> None:
    for number in numbers:
        delivery = f"crash-{number}"
        decisions = [
            e for e in store.audit_log(limit=10_000, delivery_id=delivery) if e.kind == "decision"
        ]
        assert len(decisions) == 1, delivery
        issue = fake.issue("octo/repo", number)
        comments = [
            c for c in issue.comments if f"intake-rejected:octo/repo#{number}:" in c["body"]
        ]
        if number in rejected:
            assert issue.labels == ["nightshift:rejected"]
            assert len(comments) == 1, f"{delivery}: {len(comments)} comments"
        else:
            assert issue.labels == ["nightshift:queued"]
            assert comments == []


def test_sigkill_right_after_the_2xx_loses_nothing_and_repeats_nothing(
    settings: Settings, tmp_path: Path, github_contract: Contract
) -> None:
    fake = FakeGitHub(latency=0.02, contract=github_contract)
    numbers = range(1, 41)
    rejected = {n for n in numbers if n % 3 == 0}
    with serve(fake) as github_url:
        # on PostgreSQL the restarted process has a new executor id: the old one's pending
        # workflows are recovered once it has been silent this long
        env = app_env(settings, fake, github_url, NIGHTSHIFT_DEAD_WORKER_SECONDS="4")
        port = free_port()
        with started(["serve", "--port", str(port)], env, tmp_path / "serve.log") as first:
            wait_healthy(port, first)
            sent = [send(port, n, rejected=n in rejected) for n in numbers]
            first.kill()  # SIGKILL, right after the last 2xx
        store = Store(settings.database_url)
        # on disk at the kill: in the table, or (SQLite) in the inbox journal, not yet moved
        on_disk = {r.id for r in store.list_deliveries(limit=1000)}
        path = journal_path(settings.database_url)
        if path is not None and path.exists():
            journal = Journal(path)
            on_disk |= {item.id for item in journal.read()}
            journal.close()
        assert on_disk == set(sent)
        with started(["serve", "--port", str(port)], env, tmp_path / "serve.log") as second:
            wait_healthy(port, second)
            assert {r.id for r in store.list_deliveries(limit=1000)} == set(sent)
            statuses = wait_processed(store, sent)
        assert set(statuses.values()) == {"done"}
        assert_processed_once(store, fake, numbers, rejected)
        workflows = engine_statuses(settings)
        assert sorted(w for w, _, _ in workflows) == sorted(sent)
        assert {s for _, s, _ in workflows} == {"SUCCESS"}
        store.dispose()


postgres_only = pytest.mark.skipif(
    not POSTGRES, reason="scale-out mode needs PostgreSQL: set NIGHTSHIFT_TEST_DATABASE_URL"
)


@postgres_only
def test_ingress_and_two_workers_share_the_queue(
    settings: Settings, tmp_path: Path, github_contract: Contract
) -> None:
    fake = FakeGitHub(latency=0.05, contract=github_contract)
    numbers = range(1, 61)
    with serve(fake) as github_url:
        env = app_env(settings, fake, github_url, NIGHTSHIFT_WORKER_CONCURRENCY="4")
        port = free_port()
        with started(
            ["serve", "--no-workers", "--port", str(port)], env, tmp_path / "ingress.log"
        ) as ingress:
            wait_healthy(port, ingress)
            health = [free_port(), free_port()]
            with (
                started(["worker", "--port", str(health[0])], env, tmp_path / "w1.log") as w1,
                started(["worker", "--port", str(health[1])], env, tmp_path / "w2.log") as w2,
            ):
                wait_healthy(health[0], w1)  # each worker answers its orchestrator's probes
                wait_healthy(health[1], w2)
                sent = [send(port, n, rejected=n % 4 == 0) for n in numbers]
                store = Store(settings.database_url)
                statuses = wait_processed(store, sent)
        assert set(statuses.values()) == {"done"}
        assert_processed_once(store, fake, numbers, {n for n in numbers if n % 4 == 0})
        executors = {e for _, _, e in engine_statuses(settings)}
        assert len(executors) == 2, executors  # both workers took work from the one queue
        store.dispose()


@postgres_only
def test_work_of_a_worker_that_never_comes_back_is_recovered(
    settings: Settings, tmp_path: Path, github_contract: Contract
) -> None:
    fake = FakeGitHub(latency=0.3, contract=github_contract)
    numbers = range(1, 21)
    with serve(fake) as github_url:
        env = app_env(
            settings,
            fake,
            github_url,
            NIGHTSHIFT_WORKER_CONCURRENCY="10",
            NIGHTSHIFT_DEAD_WORKER_SECONDS="3",
        )
        port = free_port()
        with started(
            ["serve", "--no-workers", "--port", str(port)], env, tmp_path / "ingress.log"
        ) as ingress:
            wait_healthy(port, ingress)
            doomed = Process(
                ["worker", "--port", "0"],
                {**env, "NIGHTSHIFT_EXECUTOR_ID": "doomed"},
                tmp_path / "doomed.log",
            )
            sent = [send(port, n, rejected=False) for n in numbers]
            store = Store(settings.database_url)
            deadline = time.monotonic() + 60
            while not any(
                e == "doomed" and s == "PENDING" for _, s, e in engine_statuses(settings)
            ):
                assert time.monotonic() < deadline, doomed.output()
                time.sleep(0.05)
            doomed.kill()  # dies mid-work, and is never restarted
            with started(["worker", "--port", "0"], env, tmp_path / "survivor.log"):
                statuses = wait_processed(store, sent)
        assert set(statuses.values()) == {"done"}
        for number in numbers:
            assert fake.issue("octo/repo", number).labels == ["nightshift:queued"]
        assert {s for _, s, _ in engine_statuses(settings)} == {"SUCCESS"}
        store.dispose()
