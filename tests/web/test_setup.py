"""The setup flow: the manifest form, the callback's state, the code exchange, the .env."""

from __future__ import annotations

import html
import json
import logging
import stat
from collections.abc import AsyncIterator, Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx
import yaml
from dotenv import dotenv_values
from starlette.applications import Starlette
from starlette.routing import Route

from app.core.rules import ROUTER
from app.effects.store import Store
from app.engine.inbox import Inbox
from app.metrics import Metrics
from app.settings import Settings
from app.web.app import create_app
from app.web.setup import (
    BAD_STATE,
    MANIFEST,
    NOT_LOCAL,
    PRIVATE_KEY,
    STATE_SECONDS,
    SetupFlow,
    write_env,
)
from tests.contract.contract import Contract
from tests.fakes.shapes import example

PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEpAIBAAKCAQEA1c7+9z5Pad7OejecsQ0bu3aozN3tihPmljnnudb9G3HECdnH\n"
    "lWu2/a1gB9JW5TBQ+AVpum9Okx7KfqkfBKL9mcHgSL0yWMdjMfNOqNtrQqKlN4kE\n"
    "-----END RSA PRIVATE KEY-----\n"
)
WEBHOOK_SECRET = "e340154128314309424b7c8e90325147d99fdafa"
GHES_API = "https://ghe.example.com/api/v3"


class Forms(HTMLParser):
    """The forms of a page: their action and their inputs' values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": values.get("action", ""), "inputs": {}})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"][values.get("name", "")] = values.get("value", "")


def forms_of(page: str) -> list[dict[str, Any]]:
    parser = Forms()
    parser.feed(page)
    return parser.forms


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


Harness = Callable[..., tuple[httpx.AsyncClient, SetupFlow]]


def asgi_client(app: Any, base_url: str = "http://testserver") -> httpx.AsyncClient:
    """The app through httpx's ASGI transport (Starlette's TestClient now wants httpx2)."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=base_url, follow_redirects=False
    )


@pytest.fixture
async def setup(tmp_path: Path, clock: Clock) -> AsyncIterator[Harness]:
    clients: list[httpx.AsyncClient] = []

    def make(
        *,
        api_url: str = "https://api.github.com",
        public_url: str | None = None,
        available: bool = True,
        base_url: str = "http://testserver",
        dry_run: bool = False,
    ) -> tuple[httpx.AsyncClient, SetupFlow]:
        flow = SetupFlow(
            available=available,
            api_url=api_url,
            public_url=public_url,
            env_file=tmp_path / ".env",
            dry_run=dry_run,
            clock=clock,
        )
        app = Starlette(routes=[Route("/", flow.home), *flow.routes()])
        clients.append(asgi_client(app, base_url))
        return clients[-1], flow

    yield make
    for client in clients:
        await client.aclose()


async def start(client: httpx.AsyncClient, **fields: str) -> httpx.Response:
    data = {"name": "Nightshift", "org": "", "webhook_url": "https://ns.example.com/webhooks"}
    return await client.post("/setup/start", data={**data, **fields})


def github_form(response: httpx.Response) -> tuple[str, dict[str, Any], str]:
    """The form that goes to GitHub: (where it posts, the manifest, the state)."""
    (form,) = [f for f in forms_of(response.text) if "manifest" in f["inputs"]]
    action = form["action"]
    state = parse_qs(urlsplit(action).query)["state"][0]
    return action.partition("?")[0], json.loads(form["inputs"]["manifest"]), state


# the setup page ---------------------------------------------------------------------------


async def test_the_setup_page_asks_where_to_register(setup: Harness) -> None:
    client, _ = setup()
    response = await client.get("/")
    assert response.status_code == 200
    (form,) = forms_of(response.text)
    assert form["action"] == "/setup/start"
    assert form["inputs"] == {
        "name": "Nightshift",
        "org": "",
        "webhook_url": "http://testserver/webhooks",
    }
    # what to do when GitHub cannot reach the server is said plainly
    assert "smee.io" in response.text
    assert "NIGHTSHIFT_PUBLIC_URL" in response.text
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_a_local_address_is_called_unreachable(setup: Harness) -> None:
    client, _ = setup(base_url="http://127.0.0.1:3000")
    response = await client.get("/")
    assert "GitHub cannot reach from the internet" in response.text
    assert "--target http://127.0.0.1:3000/webhooks" in response.text


async def test_the_public_url_setting_wins_over_the_request(setup: Harness) -> None:
    client, _ = setup(public_url="https://ns.example.com/", base_url="http://127.0.0.1:3000")
    response = await client.get("/")
    assert forms_of(response.text)[0]["inputs"]["webhook_url"] == "https://ns.example.com/webhooks"
    assert "GitHub cannot reach from the internet" not in response.text


# the manifest form ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("api_url", "org", "expected"),
    [
        pytest.param(
            "https://api.github.com", "", "https://github.com/settings/apps/new", id="personal"
        ),
        pytest.param(
            "https://api.github.com",
            "octo-org",
            "https://github.com/organizations/octo-org/settings/apps/new",
            id="organization",
        ),
        pytest.param(GHES_API, "", "https://ghe.example.com/settings/apps/new", id="ghes"),
        pytest.param(
            GHES_API,
            "octo-org",
            "https://ghe.example.com/organizations/octo-org/settings/apps/new",
            id="ghes-organization",
        ),
    ],
)
async def test_the_manifest_is_posted_to_github(
    setup: Harness, api_url: str, org: str, expected: str
) -> None:
    client, flow = setup(api_url=api_url, public_url="https://ns.example.com")
    response = await start(client, org=org, name="Nightshift Octo")
    assert response.status_code == 200
    action, manifest, state = github_form(response)
    assert action == expected
    assert len(state) >= 32 and state in flow._states
    template = yaml.safe_load(MANIFEST.read_text())
    assert manifest == {
        **template,
        "name": "Nightshift Octo",
        "url": "https://ns.example.com",
        "hook_attributes": {"url": "https://ns.example.com/webhooks", "active": True},
        "redirect_url": "https://ns.example.com/setup/callback",
    }
    # the form may post to GitHub, and nowhere else off this server
    csp = response.headers["content-security-policy"]
    web = urlsplit(expected)
    assert f"form-action 'self' {web.scheme}://{web.netloc};" in csp


async def test_the_manifest_uses_the_request_address_without_a_public_url(setup: Harness) -> None:
    client, _ = setup(base_url="https://nightshift.example.org")
    _, manifest, _ = github_form(await start(client, webhook_url="https://smee.io/AbC123"))
    assert manifest["url"] == "https://nightshift.example.org"
    assert manifest["redirect_url"] == "https://nightshift.example.org/setup/callback"
    assert manifest["hook_attributes"]["url"] == "https://smee.io/AbC123"


async def test_every_registration_gets_its_own_state(setup: Harness) -> None:
    client, flow = setup()
    states = {github_form(await start(client))[2] for _ in range(3)}
    assert len(states) == 3 and states == set(flow._states)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"org": "not an org"}, "is not an organization", id="org"),
        pytest.param({"org": "a/../../x"}, "is not an organization", id="org-path"),
        pytest.param({"name": ""}, "name must be 1 to 34", id="no-name"),
        pytest.param({"name": "x" * 35}, "name must be 1 to 34", id="long-name"),
        pytest.param({"webhook_url": "ftp://x"}, "must be an http(s) URL", id="scheme"),
        pytest.param(
            {"webhook_url": "http://127.0.0.1:3000/webhooks"},
            NOT_LOCAL.format(url="http://127.0.0.1:3000/webhooks"),
            id="loopback",
        ),
        pytest.param(
            {"webhook_url": "http://localhost:3000/webhooks"},
            NOT_LOCAL.format(url="http://localhost:3000/webhooks"),
            id="localhost",
        ),
    ],
)
async def test_bad_fields_get_the_form_back(
    setup: Harness, fields: dict[str, str], message: str
) -> None:
    client, flow = setup()
    response = await start(client, **fields)
    assert response.status_code == 400
    assert message in html.unescape(response.text)
    assert flow._states == {}
    assert forms_of(response.text)[0]["action"] == "/setup/start"


async def test_ghes_may_deliver_to_a_private_address(setup: Harness) -> None:
    client, _ = setup(api_url=GHES_API)
    response = await start(client, webhook_url="http://10.1.2.3:3000/webhooks")
    assert response.status_code == 200


# the callback -----------------------------------------------------------------------------


def conversion(
    contract: Contract, *, status: int = 201, **fields: Any
) -> Callable[[httpx.Request], httpx.Response]:
    """GitHub's answer to the code exchange (its own example, dressed), checked against its
    published description with the request that asked for it."""

    def answer(request: httpx.Request) -> httpx.Response:
        if status == 201:
            body: dict[str, Any] = example("integration-from-manifest") | {
                "id": 4242,
                "slug": "nightshift-octo",
                "name": "Nightshift Octo",
                "html_url": "https://github.com/apps/nightshift-octo",
                "pem": PEM,
                "webhook_secret": WEBHOOK_SECRET,
            }
            body |= fields
        else:
            body = {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
        response = httpx.Response(status, json=body, request=request)
        contract(request, response)
        return response

    return answer


async def test_the_callback_keeps_the_credentials(
    setup: Harness,
    tmp_path: Path,
    respx_mock: respx.MockRouter,
    github_contract: Contract,
    caplog: pytest.LogCaptureFixture,
) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "# written by make\nNIGHTSHIFT_WEBHOOK_SECRET=old\nNIGHTSHIFT_DRY_RUN=true\n"
        "NIGHTSHIFT_PRIVATE_KEY_PATH=/old/key.pem\nOTHER=kept\n"
    )
    env.chmod(0o644)
    route = respx_mock.post("https://api.github.com/app-manifests/a1b2c3/conversions").mock(
        side_effect=conversion(github_contract)
    )
    client, flow = setup(dry_run=True)
    _, _, state = github_form(await start(client))
    with caplog.at_level(logging.INFO):
        response = await client.get("/setup/callback", params={"code": "a1b2c3", "state": state})
    assert response.status_code == 200
    assert route.call_count == 1
    sent = route.calls.last.request
    assert "authorization" not in sent.headers
    assert sent.headers["accept"] == "application/vnd.github+json"

    # the install link, and what to do next
    assert "https://github.com/apps/nightshift-octo/installations/new" in response.text
    assert "Restart" in response.text
    assert "NIGHTSHIFT_DRY_RUN=false" in response.text
    assert PEM.splitlines()[1] not in response.text

    # .env: mode 0600, merged, and read back by the settings as written
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    lines = env.read_text().splitlines()
    assert lines[:3] == [
        "# written by make",
        f"NIGHTSHIFT_WEBHOOK_SECRET={WEBHOOK_SECRET}",
        "NIGHTSHIFT_DRY_RUN=true",
    ]
    assert "OTHER=kept" in lines
    assert not any(line.startswith("NIGHTSHIFT_PRIVATE_KEY_PATH") for line in lines)
    settings = Settings(_env_file=env)
    assert settings.app_id == 4242
    assert settings.app_private_key() == PEM
    assert [s.get_secret_value() for s in settings.webhook_secret] == [WEBHOOK_SECRET]
    assert settings.has_app_credentials
    assert not list(tmp_path.glob(".env.*"))  # no temporary file left behind
    # secrets never reach the log
    assert WEBHOOK_SECRET not in caplog.text
    assert "BEGIN RSA" not in caplog.text

    # registered: the setup pages are gone, `/` says what to do next
    assert (await client.post("/setup/start", data={"name": "x"})).status_code == 404
    again = await client.get("/setup/callback", params={"code": "a1b2c3", "state": state})
    assert again.status_code == 404
    assert "installations/new" in (await client.get("/")).text
    assert flow.created is not None and flow.created.id == 4242


async def test_a_ghes_code_is_exchanged_on_the_enterprise_api(
    setup: Harness, tmp_path: Path, respx_mock: respx.MockRouter, github_contract: Contract
) -> None:
    route = respx_mock.post(f"{GHES_API}/app-manifests/c0de/conversions").mock(
        side_effect=conversion(
            github_contract, html_url="https://ghe.example.com/github-apps/nightshift-octo"
        )
    )
    client, _ = setup(api_url=GHES_API)
    _, _, state = github_form(await start(client, org="octo-org"))
    response = await client.get("/setup/callback", params={"code": "c0de", "state": state})
    assert response.status_code == 200, response.text
    assert route.call_count == 1
    assert "https://ghe.example.com/github-apps/nightshift-octo/installations/new" in response.text
    assert "NIGHTSHIFT_APP_ID=4242" in (tmp_path / ".env").read_text()


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"code": "a1b2c3"}, id="no-state"),
        pytest.param({"code": "a1b2c3", "state": ""}, id="empty-state"),
        pytest.param({"code": "a1b2c3", "state": "forged"}, id="unknown-state"),
    ],
)
async def test_a_callback_without_its_state_is_refused(
    setup: Harness, tmp_path: Path, params: dict[str, str], respx_mock: respx.MockRouter
) -> None:
    client, _ = setup()
    await start(client)  # a registration is under way; its state is not the one given
    response = await client.get("/setup/callback", params=params)
    assert response.status_code == 400
    assert html.escape(BAD_STATE) in response.text
    assert not (tmp_path / ".env").exists()
    assert not respx_mock.calls


async def test_a_state_works_once_and_for_an_hour(
    setup: Harness,
    clock: Clock,
    respx_mock: respx.MockRouter,
    github_contract: Contract,
) -> None:
    respx_mock.post("https://api.github.com/app-manifests/gone/conversions").mock(
        side_effect=conversion(github_contract, status=404)
    )
    client, _ = setup()
    _, _, stale = github_form(await start(client))
    clock.now += STATE_SECONDS + 1
    assert (
        await client.get("/setup/callback", params={"code": "c", "state": stale})
    ).status_code == 400
    _, _, state = github_form(await start(client))
    # GitHub does not know the code: said plainly, nothing written, and the state is spent
    first = await client.get("/setup/callback", params={"code": "gone", "state": state})
    assert first.status_code == 502
    assert "lasts an hour and works once" in first.text
    second = await client.get("/setup/callback", params={"code": "gone", "state": state})
    assert second.status_code == 400


async def test_a_malformed_code_is_not_sent(setup: Harness, respx_mock: respx.MockRouter) -> None:
    client, _ = setup()
    _, _, state = github_form(await start(client))
    response = await client.get(
        "/setup/callback", params={"code": "../../app/hook", "state": state}
    )
    assert response.status_code == 400
    assert not respx_mock.calls


async def test_a_configured_install_has_no_setup_pages(setup: Harness) -> None:
    client, _ = setup(available=False)
    assert (await client.post("/setup/start", data={"name": "x"})).status_code == 404
    assert (
        await client.get("/setup/callback", params={"code": "c", "state": "s"})
    ).status_code == 404


# wiring -----------------------------------------------------------------------------------


def server(store: Store, settings: Settings) -> httpx.AsyncClient:
    app = create_app(
        secrets=[b"s"],
        inbox=Inbox(store),
        router=ROUTER,
        metrics=Metrics(store),
        store=store,
        settings=settings,
    )
    return asgi_client(app)


async def test_serve_without_credentials_offers_the_setup(store: Store, database_url: str) -> None:
    settings = Settings(_env_file=None, database_url=database_url)
    async with server(store, settings) as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert forms_of(response.text)[0]["action"] == "/setup/start"


@pytest.mark.parametrize(
    "credential",
    [
        pytest.param({"app_id": 1}, id="app-id"),
        pytest.param({"private_key": PEM}, id="key"),
        pytest.param({"app_id": 1, "private_key": PEM}, id="both"),
    ],
)
async def test_serve_with_credentials_sends_slash_to_the_dashboard(
    store: Store, database_url: str, credential: dict[str, Any]
) -> None:
    settings = Settings(_env_file=None, database_url=database_url, **credential)
    async with server(store, settings) as client:
        response = await client.get("/")
        assert (response.status_code, response.headers["location"]) == (303, "/dashboard")
        assert (await client.post("/setup/start", data={"name": "x"})).status_code == 404
        callback = await client.get("/setup/callback", params={"code": "c", "state": "s"})
        assert callback.status_code == 404


# .env -------------------------------------------------------------------------------------


def test_write_env_creates_a_private_file(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    write_env(env, {"NIGHTSHIFT_APP_ID": "7", PRIVATE_KEY: PEM, "NIGHTSHIFT_GONE": None})
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert env.read_text().startswith('NIGHTSHIFT_APP_ID=7\nNIGHTSHIFT_PRIVATE_KEY="-----BEGIN')


def test_write_env_replaces_removes_and_keeps(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "A=1\nexport NIGHTSHIFT_APP_ID=1\n# a comment\nNIGHTSHIFT_APP_ID=2\n\nB='x y'\nC=3\n"
    )
    write_env(env, {"NIGHTSHIFT_APP_ID": "9", "C": None, "D": 'say "hi" \\ there'})
    assert env.read_text() == (
        'A=1\nNIGHTSHIFT_APP_ID=9\n# a comment\n\nB=\'x y\'\nD="say \\"hi\\" \\\\ there"\n'
    )
    assert dotenv_values(env) == {
        "A": "1",
        "NIGHTSHIFT_APP_ID": "9",
        "B": "x y",
        "D": 'say "hi" \\ there',
    }
