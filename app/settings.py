"""Process settings: read once in the entry point from the environment or `.env`, passed down."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "NIGHTSHIFT_"
DEFAULT_DATABASE_URL = "sqlite:///./nightshift.db"
MAX_WEBHOOK_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB
MIN_DASHBOARD_TOKEN = 16  # a guessable token would open the whole dashboard


class SettingsError(Exception):
    """A setting is missing or malformed; the message is one line naming it."""


class Settings(BaseSettings):
    """Every setting Nightshift reads, all prefixed `NIGHTSHIFT_` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    webhook_secret: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        default=(),
        description="One or more webhook secrets, comma-separated; any listed secret verifies.",
    )
    app_id: int | None = Field(default=None, description="The GitHub App's id.")
    private_key_path: Path | None = Field(default=None, description="PEM file of the App key.")
    private_key: SecretStr | None = Field(default=None, description="The App key itself (PEM).")
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="sqlite:///FILE (default) or postgresql://...; decides store and engine.",
    )
    github_api_url: str = Field(default="https://api.github.com")
    dry_run: bool = Field(default=False, description="Decide and record, send nothing.")
    cache_dir: Path = Field(
        default=Path(".nightshift-cache"),
        description="Bare mirrors and review worktrees (removed after each review).",
    )
    spare_worktrees: bool = Field(
        default=True,
        description="Keep one checkout per repository ready for its next review (disk: one"
        " working tree per repository reviewed).",
    )
    review_concurrency: int = Field(
        default=2, ge=1, le=64, description="Reviews run at once by a worker (one per repo)."
    )
    ci_poll_seconds: float = Field(
        default=60.0, gt=0, description="Wait between looks at a head's required checks."
    )
    sandbox_env_allow: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Variables (comma-separated) repositories may pass to sandboxed commands.",
    )
    sandbox_readonly_paths: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(),
        description="Extra host paths (comma-separated) the sandbox may read: toolchains.",
    )
    executor_id: str | None = Field(
        default=None,
        description="Stable id of this worker process for the engine (default: generated).",
    )
    worker_concurrency: int = Field(default=8, ge=1, le=256)
    write_interval_seconds: float = Field(
        default=1.0,
        ge=0,
        description="Pause between content-creating GitHub requests (secondary limit: 80/min).",
    )
    reconcile_interval_seconds: float = Field(default=3600.0, gt=0)
    schedule_reports: bool = Field(
        default=True,
        description="Publish each repository's report on its `report.schedule` (cron).",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, /metrics asks for `Authorization: Bearer <token>`.",
    )
    dashboard_token: SecretStr | None = Field(
        default=None,
        description="Dashboard login token (also as `Authorization: Bearer`); unset: disabled.",
    )
    public_url: str | None = Field(
        default=None,
        description="The URL GitHub and browsers reach this server at (default: the request's).",
    )
    dead_worker_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A worker silent this long is presumed dead and its workflows recovered.",
    )

    @field_validator("sandbox_env_allow", mode="before")
    @classmethod
    def _split_names(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("sandbox_readonly_paths", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(Path(part.strip()) for part in value.split(",") if part.strip())
        return value

    @field_validator("webhook_secret", mode="before")
    @classmethod
    def _split_secrets(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = tuple(part.strip() for part in value.split(","))
            return tuple(part for part in parts if part)
        return value

    @field_validator("metrics_token")
    @classmethod
    def _not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("must not be empty (unset it to leave /metrics open)")
        return value

    @field_validator("dashboard_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_DASHBOARD_TOKEN:
            raise ValueError(
                f"must be at least {MIN_DASHBOARD_TOKEN} characters (unset it to disable the "
                "dashboard)"
            )
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")) or "?" in value or "#" in value:
            raise ValueError("must be an http(s) URL without a query (e.g. https://ns.example.com)")
        return value.rstrip("/")

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @field_validator("github_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_key_source(self) -> Settings:
        if self.private_key_path is not None and self.private_key is not None:
            raise ValueError("set PRIVATE_KEY_PATH or PRIVATE_KEY, not both")
        return self

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

    @property
    def has_app_credentials(self) -> bool:
        return self.app_id is not None and (
            self.private_key is not None or self.private_key_path is not None
        )

    def app_private_key(self) -> str:
        """The App's PEM key, read from the file or the variable."""
        if self.private_key is not None:
            return self.private_key.get_secret_value()
        if self.private_key_path is None:
            raise SettingsError(
                f"{ENV_PREFIX}PRIVATE_KEY_PATH or {ENV_PREFIX}PRIVATE_KEY is not set"
            )
        try:
            return self.private_key_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(
                f"{ENV_PREFIX}PRIVATE_KEY_PATH: cannot read {self.private_key_path}: {exc.strerror}"
            ) from None

    def secrets(self) -> list[bytes]:
        return [secret.get_secret_value().encode() for secret in self.webhook_secret]


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning a validation error into one line naming the setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = ENV_PREFIX + "_".join(str(part) for part in error["loc"][:1]).upper()
        if not error["loc"]:
            name = "settings"
        raise SettingsError(f"{name}: {error['msg']}") from None


def require(settings: Settings, *, webhook_secret: bool = False) -> None:
    """Stop start-up with one line when a setting a command needs is missing."""
    if webhook_secret and not settings.webhook_secret:
        raise SettingsError(
            f"{ENV_PREFIX}WEBHOOK_SECRET is not set: give the App's webhook secret "
            "(several, comma-separated, while rotating)"
        )
    if settings.app_id is not None and settings.private_key is None:
        settings.app_private_key()  # a configured key file must be readable


def agent_secret(
    agent: str, kind: Literal["TOKEN", "SECRET"], env_file: str | Path = ".env"
) -> str | None:
    """An agent's token (`TOKEN`: its heartbeats) or signing secret (`SECRET`: webhook
    deliveries to it), from `NIGHTSHIFT_AGENT_<AGENT>_<KIND>` in the environment or `.env`.

    Read at each use, so a secret added or rotated takes effect without a restart. Never in
    AGENT_ROSTER.md: the roster is public to anyone who can read the repository."""
    from dotenv import dotenv_values

    from app.core.roster import secret_env_name

    name = secret_env_name(agent, kind)
    value = os.environ.get(name)
    if value is None and Path(env_file).is_file():
        value = dotenv_values(env_file).get(name)
    return value or None
