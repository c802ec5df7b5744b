"""Repository configuration (`.github/nightshift.yml`) as a validated model with defaults."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Limits(BaseModel):
    """The limits table users expect (DESIGN.md §4)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    heartbeat_missed_threshold: int = Field(default=3, ge=1)
    ci_poll_attempts: int = Field(default=5, ge=1)
    max_concurrent_tasks: int = Field(default=3, ge=1)
    max_retry_attempts: int = Field(default=3, ge=0)
    max_fix_rounds: int = Field(default=5, ge=1)


class Config(BaseModel):
    """What a repository can configure; every key has a default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    trigger_label: str = "autonomous"
    require_acceptance_criteria: bool = True
    limits: Limits = Field(default_factory=Limits)


DEFAULT_CONFIG = Config()
