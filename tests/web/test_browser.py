"""The dashboard in a real browser: Debian's chromium, driven by Playwright for Python.

A real uvicorn server (the app `nightshift serve` runs) over a seeded SQLite store; the
browser logs in with the token, sees the seeded tasks and agents, watches the page refresh
itself, and takes a screenshot. Playwright never downloads a browser of its own here:
`.ci/run` installs Debian's `chromium`, and the test fails in CI when it is missing.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from app.core.rules import ROUTER
from app.effects.store import Store
from app.engine.inbox import Inbox
from app.metrics import Metrics
from app.settings import Settings
from app.web import dashboard
from app.web.app import create_app
from tests.web.test_dashboard import EVIL, REPO, TOKEN, seed

# Debian's chromium; NIGHTSHIFT_CHROMIUM names another Chromium-based browser (a CI runner's
# preinstalled Google Chrome, say)
CHROMIUM = Path(os.environ.get("NIGHTSHIFT_CHROMIUM") or "/usr/bin/chromium")
# what a headless chromium needs on a machine with no GPU and a closed network
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PNG = b"\x89PNG\r\n\x1a\n"


def _chromium_or_skip() -> None:
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(
            f"{CHROMIUM} is missing: .ci/run installs Debian's chromium for this test "
            "(or set NIGHTSHIFT_CHROMIUM to a Chromium-based browser)"
        )
    pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium); CI runs this test")


@pytest.fixture
def browser() -> Iterator[Browser]:
    _chromium_or_skip()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path}/browser.db")
    store.migrate()
    seed(store, time.time)
    yield store
    store.dispose()


@pytest.fixture
def server(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`nightshift serve`'s app on a free loopback port; yields its base URL."""
    monkeypatch.setattr(dashboard, "REFRESH_SECONDS", 1)  # see the refresh without waiting
    settings = Settings(
        _env_file=None,
        database_url=sqlite_store.url,
        app_id=1,
        private_key="unused",
        dashboard_token=TOKEN,
    )
    app = create_app(
        secrets=[b"secret"],
        inbox=Inbox(sqlite_store),
        router=ROUTER,
        metrics=Metrics(sqlite_store),
        store=sqlite_store,
        settings=settings,
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_log_in_see_the_night_and_take_a_screenshot(
    browser: Browser, server: str, sqlite_store: Store, tmp_path: Path
) -> None:
    page: Page = browser.new_page(viewport={"width": 1400, "height": 1000})
    dialogs: list[str] = []

    def on_dialog(dialog: Dialog) -> None:  # an alert() would mean a title ran as script
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.set_default_timeout(10_000)

    # not logged in: the dashboard sends the browser to the login form
    page.goto(f"{server}/")
    expect(page).to_have_url(f"{server}/login")
    page.fill("#token", "not-the-token-at-all")
    page.click("button[type=submit]")
    expect(page.get_by_role("alert")).to_have_text(dashboard.WRONG_TOKEN)

    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server}/dashboard")

    # the board: tasks in their columns, the untrusted title shown as text
    queued = page.locator('[data-state="queued"] .card')
    expect(queued).to_have_count(1)
    expect(queued).to_contain_text(f"{REPO}#1")
    expect(queued).to_contain_text("Add the CSV parser")
    expect(page.locator('[data-state="done"] .card')).to_contain_text("Fix the date bug")
    assigned = page.locator('[data-state="assigned"] .card .title')
    expect(assigned).to_have_text(EVIL)
    expect(page.locator(".card .title b")).to_have_count(0)

    # the agents: status, load against their maximum
    alpha = page.locator("tr.agent-online", has_text="alpha")
    expect(alpha).to_contain_text("2 / 3")
    expect(page.locator("tr.agent-unreachable")).to_contain_text("beta")
    expect(page.locator("tr.agent-offline")).to_contain_text("gamma")
    expect(page.locator("#progress")).to_contain_text("1 of 6")
    expect(page.locator("#escalations")).to_contain_text("merge_conflict")

    # it refreshes itself: a task accepted now appears without a reload
    sqlite_store.transition(REPO, 8, None, "proposed", None, event="propose", reason="label")
    sqlite_store.record_task(
        REPO, 8, title="Arrived while watching", body=None, labels=[], depends_on=[], created_at=0
    )
    expect(page.locator('[data-state="proposed"] .card')).to_contain_text(
        "Arrived while watching", timeout=15_000
    )

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    data = shot.read_bytes()
    assert data.startswith(PNG) and len(data) > 10_000

    page.click("form.logout button")
    expect(page).to_have_url(f"{server}/login")
    page.goto(f"{server}/dashboard")
    expect(page).to_have_url(f"{server}/login")
    assert dialogs == []
    page.close()
