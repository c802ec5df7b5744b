"""The dashboard over a seeded store: what it shows, and who may see it."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from markupsafe import escape
from starlette.applications import Starlette

from app.core.roster import Agent
from app.effects.store import AuditEntry, Store
from app.effects.tables import escalations
from app.settings import Settings, SettingsError, load_settings
from app.web.app import site_routes
from app.web.dashboard import (
    BEARER_REQUIRED,
    DISABLED,
    SESSION_COOKIE,
    SESSION_SECONDS,
    WRONG_TOKEN,
    Dashboard,
)
from app.web.dashboard_data import (
    FLOW,
    SESSION_WINDOW,
    agent_rows,
    board,
    duration,
    session_progress,
    snapshot,
)

TOKEN = "correct-horse-battery-staple-42"
NOW = 1_800_000_000.0
REPO = "octo/repo"
EVIL = "<script>alert('owned')</script> & <b>bold</b>"


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def roster_agent(name: str, github: str, max_tasks: int, line: int) -> Agent:
    return Agent(
        name=name,
        github=github,
        capabilities=frozenset({"python"}),
        transport="github",
        endpoint=f"@{github}",
        max_tasks=max_tasks,
        backup=None,
        line=line,
    )


def move(store: Store, number: int, *steps: tuple[str, str, str]) -> None:
    """Walk a task through (event, from, to) moves; an assignment goes to alpha."""
    for event, from_state, to_state in steps:
        agent = AGENTS.get(number) if event == "assign" else None
        result = store.transition(
            REPO,
            number,
            from_state or None,
            to_state,
            from_state if event == "block" else None,
            event=event,
            reason=f"test: {event}",
            agent=agent[1] if agent else None,
            agent_name=agent[0] if agent else None,
        )
        assert result == "moved", (number, event)


# task number -> (roster name, GitHub login) it is assigned to
AGENTS = {2: ("alpha", "alpha-bot"), 3: ("alpha", "alpha-bot"), 4: ("beta", "beta-bot")}
AGENTS[5] = AGENTS[2]
PROPOSE = ("propose", "", "proposed")
ACCEPT = ("accept", "proposed", "queued")
ASSIGN = ("assign", "queued", "assigned")
ACK = ("acknowledge", "assigned", "in_progress")
PR = ("open_pr", "in_progress", "in_review")
MERGE = ("merge", "in_review", "merged")
FINISH = ("finish", "merged", "done")


def seed(store: Store, clock: Callable[[], float] | None = None) -> None:
    """A night in progress: 7 tasks (6 accepted, 1 done), 3 agents (online, unreachable,
    offline), an open and a resolved escalation, 60 audit entries, a paused repository."""
    clock = clock or Clock()
    start = clock()
    at = [start - 3 * 3600]  # the session began three hours ago

    def tick() -> float:
        at[0] += 60
        return at[0]

    store.clock = tick
    store.remember_roster(
        REPO,
        [
            roster_agent("alpha", "alpha-bot", 3, 1),
            roster_agent("beta", "beta-bot", 2, 2),
            roster_agent("gamma", "gamma-bot", 1, 3),
        ],
    )
    titles = {
        1: "Add the CSV parser",
        2: EVIL,
        3: "Speed up the importer",
        4: "Document the API",
        5: "Fix the date bug",
        6: "Upgrade the database",
        7: "Rewrite everything",
    }
    for number, title in titles.items():
        store.transition(REPO, number, None, "proposed", None, event="propose", reason="label")
        store.record_task(
            REPO,
            number,
            title=title,
            body="## Acceptance criteria\n- [ ] done",
            labels=["autonomous"],
            depends_on=[],
            created_at=start - 86400,
        )
    move(store, 1, ACCEPT)
    move(store, 2, ACCEPT, ASSIGN)
    move(store, 3, ACCEPT, ASSIGN, ACK)
    move(store, 4, ACCEPT, ASSIGN, ACK, PR)
    move(store, 5, ACCEPT, ASSIGN, ACK, PR, MERGE, FINISH)
    move(store, 6, ACCEPT, ("block", "queued", "blocked"))
    move(store, 7, ("reject", "proposed", "rejected"))
    store.record_waiting(REPO, 1, "waiting for a free agent")

    store.heartbeat("alpha", "working", f"{REPO}#3", 40)
    store.heartbeat("beta", "working", f"{REPO}#4", None)
    store.mark_agent("beta", unreachable=True)
    store.heartbeat("gamma", "idle", None, None)
    store.mark_agent("gamma", offline=True)

    store.record_escalation(
        "conflict:6", REPO, 6, "deferred", "merge_conflict", f"Conflict in {EVIL}"
    )
    store.record_escalation("old:1", REPO, 1, "immediate", "security", "Resolved long ago")
    with store.engine.begin() as connection:
        connection.execute(
            sa.update(escalations).where(escalations.c.key == "old:1").values(resolved_at=tick())
        )
    store.record(
        *(
            AuditEntry(
                kind="action",
                what=f"entry {n}",
                why=EVIL if n == 59 else f"reason {n}",
                repository=REPO,
                at=tick(),
            )
            for n in range(60)
        )
    )
    store.pause("octo/paused", by="cli:test")
    store.clock = clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def seeded(store: Store, clock: Clock) -> Store:
    seed(store, clock)
    return store


Client = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def client(seeded: Store, clock: Clock) -> AsyncIterator[Client]:
    made: list[httpx.AsyncClient] = []

    def make(
        token: str | None = TOKEN,
        base_url: str = "http://testserver",
        public_url: str | None = None,
    ) -> httpx.AsyncClient:
        dashboard = Dashboard(seeded, token, public_url=public_url, clock=clock)
        app = Starlette(routes=dashboard.routes())
        made.append(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url=base_url, follow_redirects=False
            )
        )
        return made[-1]

    yield make
    for each in made:
        await each.aclose()


async def login(client: httpx.AsyncClient, token: str = TOKEN) -> httpx.Response:
    return await client.post("/login", data={"token": token})


def section(page: str, name: str) -> str:
    match = re.search(rf'<section[^>]*id="{name}".*?</section>', page, re.S)
    assert match, name
    return match.group(0)


# who may see it ---------------------------------------------------------------------------


async def test_without_a_token_the_dashboard_is_disabled(client: Client) -> None:
    anonymous = client(token=None)
    for path in ("/dashboard", "/dashboard/live", "/login"):
        response = await anonymous.get(path, headers={"authorization": "Bearer anything"})
        assert response.status_code == 403, path
        assert str(escape(DISABLED)) in response.text
        assert "Add the CSV parser" not in response.text
    response = await anonymous.post("/login", data={"token": ""})
    assert response.status_code == 403


async def test_a_visitor_is_sent_to_the_login_form(client: Client) -> None:
    response = await client().get("/dashboard")
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    form = await client().get("/login")
    assert form.status_code == 200
    assert 'action="/login"' in form.text and 'type="password"' in form.text


async def test_the_live_part_needs_credentials(client: Client) -> None:
    response = await client().get("/dashboard/live")
    assert response.status_code == 401
    assert response.text == BEARER_REQUIRED
    assert "Add the CSV parser" not in response.text


async def test_the_right_token_opens_a_session(client: Client) -> None:
    browser = client()
    response = await login(browser)
    assert (response.status_code, response.headers["location"]) == (303, "/dashboard")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes
    assert "samesite=strict" in cookie.lower()
    assert "secure" not in attributes  # plain http: the browser would drop a Secure cookie
    assert TOKEN not in cookie
    page = await browser.get("/dashboard")
    assert page.status_code == 200
    assert "Add the CSV parser" in page.text
    live = await browser.get("/dashboard/live")
    assert live.status_code == 200
    assert "<html" not in live.text and "Add the CSV parser" in live.text


@pytest.mark.parametrize(
    ("base_url", "public_url"),
    [
        pytest.param("https://ns.example.com", None, id="https"),
        pytest.param("http://ns.example.com", "https://ns.example.com", id="behind-a-proxy"),
    ],
)
async def test_the_session_cookie_is_secure_over_https(
    client: Client, base_url: str, public_url: str | None
) -> None:
    response = await login(client(base_url=base_url, public_url=public_url))
    assert "secure" in {p.strip().lower() for p in response.headers["set-cookie"].split(";")}


async def test_a_wrong_token_is_refused_and_not_logged(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "wrong-token-that-must-not-be-logged"
    browser = client()
    with caplog.at_level(logging.DEBUG):
        response = await login(browser, wrong)
        bearer = await browser.get("/dashboard", headers={"authorization": f"Bearer {wrong}"})
        right = await browser.get("/dashboard", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 401
    assert str(escape(WRONG_TOKEN)) in response.text
    assert "set-cookie" not in response.headers
    assert bearer.status_code == 401
    assert "Add the CSV parser" not in response.text + bearer.text
    assert right.status_code == 200
    assert "wrong token" in caplog.text  # the attempt is logged, the token is not
    assert wrong not in caplog.text and TOKEN not in caplog.text
    assert (await browser.get("/dashboard")).status_code == 303  # still not logged in


async def test_a_script_uses_the_bearer_header(client: Client) -> None:
    response = await client().get("/dashboard/live", headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert "Add the CSV parser" in response.text


@pytest.mark.parametrize(
    "cookie",
    [
        pytest.param("1900000000.nonce.0123456789abcdef", id="forged"),
        pytest.param("", id="empty"),
        pytest.param("garbage", id="garbage"),
    ],
)
async def test_a_forged_session_is_sent_to_login(client: Client, cookie: str) -> None:
    browser = client()
    browser.cookies.set(SESSION_COOKIE, cookie)
    response = await browser.get("/dashboard")
    assert (response.status_code, response.headers["location"]) == (303, "/login")


async def test_a_session_ends(client: Client, clock: Clock) -> None:
    browser = client()
    await login(browser)
    clock.now += SESSION_SECONDS + 1
    assert (await browser.get("/dashboard")).status_code == 303


async def test_a_session_of_another_token_is_refused(client: Client) -> None:
    old = client(token="the-token-before-rotation")
    await login(old, "the-token-before-rotation")
    browser = client()
    browser.cookies = old.cookies
    assert (await browser.get("/dashboard")).status_code == 303


async def test_logging_out_ends_the_session(client: Client) -> None:
    browser = client()
    await login(browser)
    response = await browser.post("/logout")
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]
    assert (await browser.get("/dashboard")).status_code == 303


async def test_pages_carry_a_strict_content_security_policy(client: Client) -> None:
    browser = client()
    await login(browser)
    response = await browser.get("/dashboard")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "DENY"


# what it shows ----------------------------------------------------------------------------


@pytest.fixture
async def page(client: Client) -> str:
    browser = client()
    await login(browser)
    response = await browser.get("/dashboard")
    assert response.status_code == 200
    return response.text


def test_the_board_has_a_column_per_state(page: str) -> None:
    board_html = section(page, "board")
    columns = re.findall(r'data-state="([a-z_]+)"', board_html)
    # the flow's columns always, in order; detours and ends where a task is
    assert columns == [*FLOW, "blocked", "rejected"]
    queued = re.search(r'data-state="queued".*?(?=<div class="column)', board_html, re.S)
    assert (
        queued
        and "octo/repo#1" in queued.group(0)
        and "waiting for a free agent" in queued.group(0)
    )
    assert 'href="https://github.com/octo/repo/issues/5"' in board_html


def test_untrusted_text_is_escaped(page: str) -> None:
    assert "<script>alert" not in page
    assert "<b>bold</b>" not in page
    assert str(escape(EVIL)) in section(page, "board")  # the title
    assert str(escape(EVIL)) in section(page, "audit")  # a reason
    assert f"Conflict in {escape(EVIL)}" in section(page, "escalations")


def test_the_agents_show_status_load_and_record(page: str) -> None:
    agents_html = section(page, "agents")
    rows = {
        name: row
        for row in re.findall(r"<tr class=\"agent-.*?</tr>", agents_html, re.S)
        for name in re.findall(r"<strong>(\w+)</strong>", row)
    }
    assert set(rows) == {"alpha", "beta", "gamma"}
    assert "status-online" in rows["alpha"] and "2 / 3" in rows["alpha"]
    assert "status-unreachable" in rows["beta"] and "1 / 2" in rows["beta"]
    assert "status-offline" in rows["gamma"] and "0 / 1" in rows["gamma"]
    assert "octo/repo#3 (40%)" in rows["alpha"]
    # merged and done: alpha took #5 all the way
    assert re.findall(r"<td>(\d+)</td>", rows["alpha"]) == ["1", "1"]
    assert re.findall(r"<td>(\d+)</td>", rows["beta"]) == ["0", "0"]


def test_the_session_progress(page: str) -> None:
    progress = section(page, "progress")
    assert "<strong>1 of 6</strong> tasks done" in progress
    assert '<progress max="6" value="1">' in progress
    assert "left at this pace" in progress


def test_only_open_escalations(page: str) -> None:
    open_html = section(page, "escalations")
    assert "merge_conflict" in open_html and "octo/repo#6" in open_html
    assert "Resolved long ago" not in open_html


def test_the_latest_fifty_audit_entries_newest_first(page: str) -> None:
    entries = re.findall(r"<td>(entry \d+)</td>", section(page, "audit"))
    assert entries == [f"entry {n}" for n in range(59, 9, -1)]


def test_the_paused_repositories(page: str) -> None:
    assert "Paused: octo/paused" in page


def test_it_refreshes_itself(page: str) -> None:
    assert 'id="live" data-src="/dashboard/live" data-refresh="10"' in page
    assert '<script src="/dashboard/static/dashboard.js" defer></script>' in page
    assert '<noscript><meta http-equiv="refresh" content="10"></noscript>' in page


async def test_the_static_files_are_served(client: Client) -> None:
    script = await client().get("/dashboard/static/dashboard.js")
    assert script.status_code == 200 and "setInterval" in script.text
    style = await client().get("/dashboard/static/nightshift.css")
    assert style.status_code == 200


# the data behind it -----------------------------------------------------------------------


def test_an_empty_store(store: Store) -> None:
    snap = snapshot(store, NOW)
    assert [c.state for c in snap.columns] == list(FLOW)
    assert snap.agents == () and snap.escalations == () and snap.audit == ()
    assert snap.progress.since is None and snap.progress.percent == 0


def test_the_session_starts_at_the_first_acceptance_of_the_last_day(seeded: Store) -> None:
    progress = session_progress(seeded, NOW)
    assert (progress.accepted, progress.done, progress.remaining, progress.percent) == (6, 1, 5, 17)
    assert progress.since is not None and NOW - 3 * 3600 < progress.since < NOW
    assert progress.eta_seconds == pytest.approx(5 * (NOW - progress.since))
    later = session_progress(seeded, NOW + SESSION_WINDOW)
    assert later.since is None and later.accepted == 0


def test_a_column_shows_the_latest_cards(seeded: Store) -> None:
    columns = {c.state: c for c in board(seeded, per_column=1)}
    assert (columns["queued"].total, len(columns["queued"].cards)) == (1, 1)
    assert columns["done"].cards[0].title == "Fix the date bug"
    assert columns["in_progress"].hidden == 0


def test_an_agent_heard_of_but_not_rostered(store: Store) -> None:
    store.heartbeat("stray", "idle", None, None)
    (row,) = agent_rows(store)
    assert (row.name, row.status, row.github, row.max_tasks, row.load) == (
        "stray",
        "online",
        None,
        None,
        0,
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5 s"),
        (125, "2 min"),
        (3600, "1 h"),
        (3 * 3600 + 1200, "3 h 20 min"),
        (86400 * 2 + 3600 * 4, "2 d 4 h"),
    ],
)
def test_durations(seconds: float, text: str) -> None:
    assert duration(seconds) == text


# wiring and settings ----------------------------------------------------------------------


async def test_the_server_wires_the_dashboard(seeded: Store, database_url: str) -> None:
    settings = Settings(_env_file=None, database_url=database_url, app_id=1, dashboard_token=TOKEN)
    app = Starlette(routes=site_routes(settings, seeded))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://testserver",
        follow_redirects=True,
    ) as browser:
        response = await browser.post("/login", data={"token": TOKEN})
        assert response.status_code == 200 and response.url.path == "/dashboard"
        assert "Add the CSV parser" in response.text
        assert (await browser.get("/")).url.path == "/dashboard"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"NIGHTSHIFT_DASHBOARD_TOKEN": "short"},
            "NIGHTSHIFT_DASHBOARD_TOKEN: Value error, must be at least 16 characters",
            id="short-token",
        ),
        pytest.param(
            {"NIGHTSHIFT_PUBLIC_URL": "ns.example.com"},
            "NIGHTSHIFT_PUBLIC_URL: Value error, must be an http(s) URL",
            id="public-url",
        ),
    ],
)
def test_bad_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert str(raised.value).startswith(message)
    assert "short" not in str(raised.value).removeprefix(message)


def test_the_settings_read_token_and_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NIGHTSHIFT_DASHBOARD_TOKEN", TOKEN)
    monkeypatch.setenv("NIGHTSHIFT_PUBLIC_URL", "https://ns.example.com/")
    settings: Any = load_settings()
    assert settings.dashboard_token.get_secret_value() == TOKEN
    assert settings.public_url == "https://ns.example.com"
    assert TOKEN not in repr(settings)
