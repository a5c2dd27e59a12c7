"""Every setting, read from the environment in one place.

Names are the environment variables (case-insensitive); README.md documents each one. Values are
validated at start-up so a typo fails loudly instead of at the first notification.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from concur_postback.concur.hosts import HostPolicy


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.replace(",", " ").split() if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, frozen=True, extra="ignore")

    redis_url: str | None = None
    concur_base_url: str = "https://us.api.concursolutions.com"
    concur_allowed_hosts: Annotated[list[str], NoDecode] = Field(default=["*.concursolutions.com"])
    postback_secret: SecretStr | None = None
    token_encryption_key: SecretStr | None = None
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.JSON
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    data_dir: Path = Path(".concur-postback")

    token_ttl_seconds: int = Field(default=3 * 24 * 3600, ge=60)
    dedup_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    coalesce_window_seconds: int = Field(default=300, ge=1)

    queue_name: str = Field(default="concur-postback", pattern=r"^[A-Za-z0-9_.:-]+$")
    pump_batch_size: int = Field(default=100, ge=1, le=1000)
    pump_max_queued_jobs: int = Field(default=2, ge=1)
    job_timeout_seconds: int = Field(default=60, ge=5)
    ingest_max_batch: int = Field(default=256, ge=1, le=10_000)
    redis_timeout_seconds: float = Field(default=2.0, gt=0)
    retry_after_seconds: int = Field(default=5, ge=1)

    # Workers: fetching from Concur and delivering to sinks.
    sinks: str = "log:"
    concur_auth_scheme: str = Field(default="OAuth", pattern=r"^(OAuth|Bearer)$")
    concur_profile_version: str = Field(default="v2.0", pattern=r"^v[12]\.0$")
    concur_subscribe_path: str = Field(default="/api/travelprofile/v1.0/subscribe", pattern=r"^/[^?#\s]*$")
    concur_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    concur_read_timeout_seconds: float = Field(default=30.0, gt=0)
    # The whole deployment's request budget per Concur host (shared by every worker through Redis).
    concur_max_rps: float = Field(default=50.0, gt=0)
    concur_max_in_flight: int = Field(default=32, ge=1, le=1024)  # per Concur host and worker process
    # Fetch retries: a durable schedule in Redis, for up to the horizon after the first failure.
    fetch_backoff_seconds: float = Field(default=1.0, ge=0)
    fetch_backoff_max_seconds: float = Field(default=300.0, ge=0)
    fetch_retry_horizon_seconds: float = Field(default=24 * 3600, ge=0)
    worker_maintenance_seconds: int = Field(default=15, ge=1)
    # A killed worker's batch is re-queued within this + WORKER_MAINTENANCE_SECONDS (about 35 s).
    worker_heartbeat_ttl_seconds: int = Field(default=20, ge=4)
    sink_timeout_seconds: float = Field(default=20.0, gt=0)  # above the HTTP sink's 5 s connect + 10 s read
    sink_http_secret: SecretStr | None = None
    sink_backoff_seconds: float = Field(default=1.0, ge=0)
    sink_backoff_max_seconds: float = Field(default=300.0, ge=0)
    sink_retry_horizon_seconds: float = Field(default=24 * 3600, ge=0)
    dead_letter_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    # Metrics: a worker process serves its own on this port (unset: no server; one port per process).
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)

    @field_validator("concur_allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("postback_secret", "token_encryption_key", "sink_http_secret", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`POSTBACK_SECRET=` (as compose and shells produce) means unset, not an empty secret."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("concur_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as https://us.api.concursolutions.com")
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @model_validator(mode="after")
    def _horizon_within_token_ttl(self) -> Settings:
        """A notification cannot be retried after its record (and token) is gone."""
        if self.fetch_retry_horizon_seconds > self.token_ttl_seconds:
            raise ValueError(
                f"FETCH_RETRY_HORIZON_SECONDS ({self.fetch_retry_horizon_seconds:g}) must not exceed "
                f"TOKEN_TTL_SECONDS ({self.token_ttl_seconds}): a notification is not kept that long"
            )
        return self

    @cached_property
    def host_policy(self) -> HostPolicy:
        return HostPolicy.from_base_url(self.concur_base_url, self.concur_allowed_hosts)


def load_settings(**overrides: object) -> Settings:
    """Read the environment; keyword overrides win (used by the CLI and the tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
