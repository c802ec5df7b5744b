"""The setup flow: register the GitHub App from its manifest, then keep its credentials.

Probot's convention, served by `nightshift serve` while no App credentials are configured:

1. `/` asks where to register the App (a personal account or an organization), under which
   name, and where GitHub should send webhooks;
2. `POST /setup/start` answers a page whose form posts the manifest (manifests/github-app.yml
   with this server's URLs filled in) to GitHub, with a random `state` kept here;
3. GitHub registers the App and sends the browser back to `/setup/callback?code=&state=`;
   the code is exchanged (`POST /app-manifests/{code}/conversions`, no authentication) for
   the App's id, private key and webhook secret, which are written to `.env` (mode 0600);
4. the page links to the App's installation page; a restart picks the credentials up.

https://docs.github.com/en/apps/sharing-github-apps/registering-a-github-app-from-a-manifest

Once credentials are configured (at start-up, or by this flow) the setup pages answer 404:
nobody can register another App over a configured install.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import yaml
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from app.settings import ENV_PREFIX
from app.web.dashboard import FormError, github_web_url, page, read_form

log = logging.getLogger("nightshift.setup")

MANIFEST = Path(__file__).resolve().parents[2] / "manifests" / "github-app.yml"
GITHUB_API = "https://api.github.com"
STATE_SECONDS = 3600.0  # GitHub's manifest codes live an hour too
MAX_STATES = 64  # registrations started and not finished, kept at once
MAX_NAME = 34  # GitHub's limit on an App's name
API_VERSION = "2022-11-28"
# a GitHub login: letters, digits and single hyphens, at most 39 characters
LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
CODE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

# what the callback writes to .env; the key file setting goes (one key source only)
APP_ID = f"{ENV_PREFIX}APP_ID"
PRIVATE_KEY = f"{ENV_PREFIX}PRIVATE_KEY"
PRIVATE_KEY_PATH = f"{ENV_PREFIX}PRIVATE_KEY_PATH"
WEBHOOK_SECRET = f"{ENV_PREFIX}WEBHOOK_SECRET"

BAD_STATE = (
    "This callback does not match a registration started on this server (or it is more "
    "than an hour old, or was used already). Start again from the setup page."
)
BAD_CODE = "GitHub's callback carries no usable code. Start again from the setup page."
NOT_LOCAL = (
    "GitHub.com only delivers webhooks to addresses on the public internet, and {url} is not "
    "one. Use a forwarding URL (see below) as the webhook URL."
)


class SetupError(Exception):
    """The registration cannot be finished; the message is for the person setting up."""


@dataclass(frozen=True)
class CreatedApp:
    """What GitHub answered the conversion with, minus the secrets (they went to .env)."""

    id: int
    slug: str
    name: str
    html_url: str
    owner: str

    @property
    def install_url(self) -> str:
        return f"{self.html_url}/installations/new"


def registration_url(api_url: str, org: str | None) -> str:
    """Where the manifest is posted: an organization's or the signed-in user's new App page
    (on GitHub Enterprise Server, the same paths on its host)."""
    web = github_web_url(api_url)
    if org:
        return f"{web}/organizations/{quote(org, safe='')}/settings/apps/new"
    return f"{web}/settings/apps/new"


def conversion_url(api_url: str, code: str) -> str:
    return f"{api_url.rstrip('/')}/app-manifests/{quote(code, safe='')}/conversions"


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SetupError(
            f"the App manifest {path} cannot be read ({exc.strerror}): run the setup from a "
            "clone of Nightshift"
        ) from None
    if not isinstance(data, dict):
        raise SetupError(f"the App manifest {path} is not a mapping")
    return data


def build_manifest(
    template: Mapping[str, Any], *, public_url: str, webhook_url: str, name: str
) -> dict[str, Any]:
    """The manifest with this server's addresses: the homepage, the webhook URL, and the
    callback GitHub sends the browser back to."""
    manifest: dict[str, Any] = json.loads(json.dumps(template))  # a deep copy of plain data
    manifest["name"] = name
    manifest["url"] = public_url
    manifest["hook_attributes"] = {**manifest.get("hook_attributes", {}), "url": webhook_url}
    manifest["redirect_url"] = f"{public_url}/setup/callback"
    return manifest


def unreachable_from_github(url: str) -> bool:
    """True for addresses GitHub.com cannot deliver to: localhost, loopback, private ranges."""
    host = (urlsplit(url).hostname or "").lower()
    if host in ("", "localhost") or host.endswith((".localhost", ".local", ".internal")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not address.is_global


def write_env(path: Path, updates: Mapping[str, str | None]) -> None:
    """Set (or, for None, remove) variables in a .env file, keeping every other line.

    Written to a temporary file created with mode 0600 in the same directory, flushed, then
    renamed over the old file: a crash leaves the old file or the new, never half of one,
    and the secrets are never readable by others, not even for a moment.
    """
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    kept: list[str] = []
    written: set[str] = set()
    for line in lines:
        key = _env_key(line)
        if key is None or key not in updates:
            kept.append(line)
            continue
        value = updates[key]
        if value is not None and key not in written:
            kept.append(f"{key}={_env_value(value)}")
            written.add(key)
    kept += [
        f"{key}={_env_value(value)}"
        for key, value in updates.items()
        if value is not None and key not in written
    ]
    directory = path.parent if str(path.parent) else Path(".")
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".env.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)  # mkstemp makes it 0600 already; say it anyway
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(kept) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    try:  # the rename itself survives a power loss once the directory is flushed
        directory_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(directory_fd)
    except OSError:
        pass
    finally:
        os.close(directory_fd)


_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")
_BARE = re.compile(r"^[A-Za-z0-9_./:@+,=-]*$")


def _env_key(line: str) -> str | None:
    match = _ENV_LINE.match(line)
    return match.group(1) if match else None


def _env_value(value: str) -> str:
    """A value as python-dotenv reads it back: bare when plain, else double-quoted with
    escapes (a PEM's newlines become `\\n`)."""
    if _BARE.match(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped.replace("\r", "\\r") + '"'


class SetupFlow:
    """`/` (while available), `POST /setup/start` and `GET /setup/callback`."""

    def __init__(
        self,
        *,
        available: bool,
        api_url: str = GITHUB_API,
        public_url: str | None = None,
        env_file: Path = Path(".env"),
        manifest: Path = MANIFEST,
        dry_run: bool = False,
        client: Callable[[], httpx.AsyncClient] = lambda: httpx.AsyncClient(timeout=30),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.available = available  # no App credentials were configured at start-up
        self.api_url = api_url.rstrip("/")
        self.public_url = public_url.rstrip("/") if public_url else None
        self.env_file = env_file
        self.manifest = manifest
        self.dry_run = dry_run
        self.client = client
        self.clock = clock
        self.created: CreatedApp | None = None
        self._states: dict[str, tuple[float, str | None]] = {}  # state -> (started, org)
        self._lock = asyncio.Lock()

    @property
    def open(self) -> bool:
        """Whether a registration may still be started or finished here."""
        return self.available and self.created is None

    @property
    def github_web(self) -> str:
        return github_web_url(self.api_url)

    @property
    def enterprise(self) -> bool:
        return self.github_web != "https://github.com"

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/setup/start", self.start, methods=["POST"]),
            Route("/setup/callback", self.callback, methods=["GET"]),
        ]

    def base_url(self, request: Request) -> str:
        """The URL GitHub and the browser reach this server at."""
        return self.public_url or str(request.base_url).rstrip("/")

    # pages ----------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        """`/` while no credentials are configured: the form, or what to do next."""
        if self.created is not None:
            return self._done(self.created)
        return self._form(request, {})

    def _form(
        self, request: Request, fields: Mapping[str, str], errors: list[str] | None = None
    ) -> Response:
        base = self.base_url(request)
        try:
            default_name = str(load_manifest(self.manifest).get("name") or "Nightshift")
        except SetupError as exc:
            return page("setup_error.html", {"message": str(exc)}, status=500)
        context = {
            "base": base,
            "public_url_set": self.public_url is not None,
            "unreachable": not self.enterprise and unreachable_from_github(base),
            "github": self.github_web,
            "enterprise": self.enterprise,
            "name": fields.get("name", default_name),
            "org": fields.get("org", ""),
            "webhook_url": fields.get("webhook_url", f"{base}/webhooks"),
            "errors": errors or [],
        }
        return page("setup.html", context, status=400 if errors else 200)

    def _done(self, app: CreatedApp) -> Response:
        context = {"app": app, "env_file": self.env_file, "dry_run": self.dry_run}
        return page("setup_done.html", context)

    async def start(self, request: Request) -> Response:
        if not self.open:
            return _not_found()
        try:
            fields = await read_form(request)
        except FormError as exc:
            return self._form(request, {}, [str(exc)])
        name = fields.get("name", "").strip()
        org = fields.get("org", "").strip().removeprefix("@")
        webhook_url = fields.get("webhook_url", "").strip()
        shown = {"name": name, "org": org, "webhook_url": webhook_url}
        errors = []
        if not 0 < len(name) <= MAX_NAME:
            errors.append(f"The App's name must be 1 to {MAX_NAME} characters.")
        if org and not LOGIN.match(org):
            errors.append(f"{org!r} is not an organization's login (e.g. octo-org).")
        parts = urlsplit(webhook_url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            errors.append("The webhook URL must be an http(s) URL.")
        elif not self.enterprise and unreachable_from_github(webhook_url):
            errors.append(NOT_LOCAL.format(url=webhook_url))
        if errors:
            return self._form(request, shown, errors)
        try:
            template = load_manifest(self.manifest)
        except SetupError as exc:
            return page("setup_error.html", {"message": str(exc)}, status=500)
        base = self.base_url(request)
        manifest = build_manifest(template, public_url=base, webhook_url=webhook_url, name=name)
        state = self._new_state(org or None)
        action = f"{registration_url(self.api_url, org or None)}?state={quote(state)}"
        context = {
            "action": action,
            "manifest": json.dumps(manifest, separators=(",", ":")),
            "manifest_pretty": json.dumps(manifest, indent=2),
            "org": org,
            "github": self.github_web,
        }
        return page("setup_confirm.html", context, form_action=f"'self' {self.github_web}")

    async def callback(self, request: Request) -> Response:
        if not self.open:
            return _not_found()
        code = request.query_params.get("code", "")
        state = request.query_params.get("state", "")
        if not state or not self._take_state(state):
            log.warning("setup: a callback with an unknown state from %s", _client(request))
            return page("setup_error.html", {"message": BAD_STATE}, status=400)
        if not CODE.match(code):
            return page("setup_error.html", {"message": BAD_CODE}, status=400)
        async with self._lock:
            if self.created is not None:  # another callback finished first
                return _not_found()
            try:
                answer = await self._convert(code)
                created = self._save(answer)
            except SetupError as exc:
                return page("setup_error.html", {"message": str(exc)}, status=502)
            self.created = created
        log.info(
            "setup: registered the GitHub App %s (id %d); credentials written to %s",
            created.slug,
            created.id,
            self.env_file,
        )
        return self._done(created)

    # state ----------------------------------------------------------------------------------

    def _new_state(self, org: str | None) -> str:
        now = self.clock()
        for key, (started, _) in list(self._states.items()):
            if now - started > STATE_SECONDS:
                del self._states[key]
        while len(self._states) >= MAX_STATES:  # the oldest goes: insertion order
            del self._states[next(iter(self._states))]
        state = secrets.token_urlsafe(32)
        self._states[state] = (now, org)
        return state

    def _take_state(self, given: str) -> bool:
        """True once for a state this server made in the last hour (constant-time match)."""
        now = self.clock()
        for state, (started, _) in list(self._states.items()):
            if secrets.compare_digest(state.encode(), given.encode()):
                del self._states[state]
                return now - started <= STATE_SECONDS
        return False

    # GitHub and .env ------------------------------------------------------------------------

    async def _convert(self, code: str) -> dict[str, Any]:
        """Exchange the one-time code for the App's configuration (no authentication)."""
        url = conversion_url(self.api_url, code)
        headers = {
            "accept": "application/vnd.github+json",
            "x-github-api-version": API_VERSION,
            "user-agent": "nightshift-setup",
        }
        try:
            async with self.client() as client:
                response = await client.post(url, headers=headers)
        except httpx.HTTPError as exc:
            raise SetupError(f"GitHub could not be reached at {self.api_url}: {exc}") from None
        if response.status_code == 404:
            raise SetupError(
                "GitHub does not know this code: it lasts an hour and works once. "
                "Start again from the setup page."
            )
        if response.status_code != 201:
            raise SetupError(
                f"GitHub answered {response.status_code} to the code exchange. "
                "Start again from the setup page."
            )
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise SetupError("GitHub's answer to the code exchange is not a JSON object.")
        return answer

    def _save(self, answer: Mapping[str, Any]) -> CreatedApp:
        app_id, pem = answer.get("id"), answer.get("pem")
        html_url, slug = answer.get("html_url"), answer.get("slug")
        if not isinstance(app_id, int) or not isinstance(pem, str) or not pem.strip():
            raise SetupError("GitHub's answer lacks the App's id or private key.")
        if not isinstance(html_url, str) or not html_url.startswith(("https://", "http://")):
            raise SetupError("GitHub's answer lacks the App's address.")
        secret = answer.get("webhook_secret")
        updates: dict[str, str | None] = {
            APP_ID: str(app_id),
            PRIVATE_KEY: pem,
            PRIVATE_KEY_PATH: None,
        }
        if isinstance(secret, str) and secret:
            updates[WEBHOOK_SECRET] = secret
        try:
            write_env(self.env_file, updates)
        except OSError as exc:
            raise SetupError(
                f"The App was registered, but {self.env_file} cannot be written "
                f"({exc.strerror}). Generate a new private key in the App's settings "
                f"({html_url}) and set {APP_ID}={app_id}, {PRIVATE_KEY_PATH} and "
                f"{WEBHOOK_SECRET} yourself."
            ) from None
        owner = answer.get("owner")
        return CreatedApp(
            id=app_id,
            slug=str(slug or app_id),
            name=str(answer.get("name") or slug or app_id),
            html_url=html_url.rstrip("/"),
            owner=str(owner.get("login", "")) if isinstance(owner, dict) else "",
        )


def _not_found() -> Response:
    return PlainTextResponse("Not Found", status_code=404)


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "-"
