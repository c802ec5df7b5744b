"""Reading a repository's `.github/nightshift.yml` (and what it `_extends`) from GitHub."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from app.core import config as core_config
from app.core import roster as core_roster
from app.core.config import CONFIG_PATH, DEFAULT_CONFIG, Config, ConfigError
from app.effects.github import GitHubError, GitHubPort, GitHubRequest

CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class LoadedConfig:
    """The configuration to decide with, and the problem with the file if it is invalid.

    With a problem, `config` is the defaults, keeping the file's trigger label when it
    could be read, so the comment about the problem lands on the issue that triggered.
    """

    config: Config
    error: ConfigError | None = None


class ConfigSource:
    """Reads configuration through the GitHub port; keeps each result for a minute."""

    def __init__(
        self,
        github: GitHubPort | None,
        *,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.github = github
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._cache: dict[str, tuple[float, LoadedConfig]] = {}
        self._rosters: dict[tuple[str, str], tuple[float, core_roster.Roster | None]] = {}
        self._lock = threading.Lock()

    def forget(self, repo: str) -> None:
        """Drop the cached configuration and roster (a push changed them)."""
        with self._lock:
            self._cache.pop(repo, None)
            for key in [k for k in self._rosters if k[0] == repo]:
                del self._rosters[key]

    def roster(
        self, installation_id: int | None, repo: str, path: str
    ) -> core_roster.Roster | None:
        """The repository's AGENT_ROSTER.md from the default branch, parsed (bad rows are in
        its problems); None when there is no such file. Kept for a minute, like the
        configuration."""
        if self.github is None or installation_id is None:
            return None
        now = self.clock()
        with self._lock:
            cached = self._rosters.get((repo, path))
            if cached is not None and now - cached[0] < self.cache_seconds:
                return cached[1]
        try:
            text = self._read(installation_id, repo, path)
        except ConfigError as error:
            parsed: core_roster.Roster | None = core_roster.Roster(
                (), (core_roster.Problem(1, 1, error.problem),)
            )
        else:
            parsed = core_roster.parse(text) if text is not None else None
        with self._lock:
            self._rosters[(repo, path)] = (now, parsed)
        return parsed

    def load(self, installation_id: int | None, repo: str) -> LoadedConfig:
        if self.github is None or installation_id is None:
            return LoadedConfig(DEFAULT_CONFIG)
        now = self.clock()
        with self._lock:
            cached = self._cache.get(repo)
            if cached is not None and now - cached[0] < self.cache_seconds:
                return cached[1]
        loaded = self._load(installation_id, repo)
        with self._lock:
            self._cache[repo] = (now, loaded)
        return loaded

    def _load(self, installation_id: int, repo: str) -> LoadedConfig:
        raw: dict[str, Any] = {}
        try:
            text = self._read(installation_id, repo, CONFIG_PATH)
            if text is None:
                return LoadedConfig(DEFAULT_CONFIG)
            raw = core_config.load_yaml(text, CONFIG_PATH)
            extends = core_config.extends_of(raw, owner=repo.split("/")[0])
            if extends is not None:
                where = f"{extends.repo}:{extends.path}"
                base_text = self._read(installation_id, extends.repo, extends.path)
                if base_text is None:
                    raise ConfigError(CONFIG_PATH, "_extends", f"{where} does not exist")
                base = core_config.load_yaml(base_text, where)
                base.pop(core_config.EXTENDS_KEY, None)  # one level, as Probot does
                raw = core_config.merge(base, raw)
            return LoadedConfig(core_config.validate(raw, CONFIG_PATH))
        except ConfigError as error:
            label = raw.get("trigger_label")
            fallback = (
                Config(trigger_label=label) if isinstance(label, str) and label else DEFAULT_CONFIG
            )
            return LoadedConfig(fallback, error)

    def _read(self, installation_id: int, repo: str, path: str) -> str | None:
        """A file from the default branch, or None when it does not exist."""
        assert self.github is not None
        request = GitHubRequest("GET", f"/repos/{repo}/contents/{quote(path)}")
        try:
            response = self.github.send(installation_id, request)
        except GitHubError as exc:
            if exc.status == 404:
                return None
            raise
        data = response.data
        if not isinstance(data, dict) or data.get("type") != "file":
            raise ConfigError(f"{repo}:{path}", "(file)", "is not a file")
        try:
            return base64.b64decode(str(data.get("content", ""))).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise ConfigError(f"{repo}:{path}", "(file)", "is not UTF-8 text") from None
