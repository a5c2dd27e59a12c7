"""Every setting, read from the environment in one place.

Names are the environment variables (case-insensitive). Each field's description is its row of the
configuration table in README.md, and its default that row's default: tests/test_config.py holds the two
to each other. Values are validated at start-up so a typo fails loudly instead of at the first
notification.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.replace(",", " ").split() if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, frozen=True, extra="ignore")

    redis_url: str | None = Field(
        default=None,
        description="Redis for the inbox and RQ (`redis://host:6379/0`, or "
        "`redis+sentinel://[user:pass@]host:port[,host:port…]/<master>[/db]` to follow a failover). Unset: "
        "`run` starts an embedded one; `serve`/`worker` refuse to start. Use AOF and "
        "`maxmemory-policy noeviction`.",
    )
    concur_base_url: str = Field(
        default="https://us.api.concursolutions.com",
        description="Concur API base. Its host is always allowed for ObjectURIs. `http://` only for a local "
        "simulator.",
    )
    concur_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default=["*.concursolutions.com"],
        description="Further host patterns (comma or space separated, `*` wildcard) an ObjectURI may name. "
        "A wildcard never matches an IP address. https and port 443 only.",
    )
    postback_secret: SecretStr | None = Field(
        default=None,
        description="When set, the endpoint is `POST /postback/<secret>` (compared in constant time); "
        "anything else is 404. To change it, list the new secret and the old one (comma or space "
        "separated): both are accepted until the old one is dropped from the list.",
    )
    concur_client_id: str | None = Field(
        default=None,
        description="Your Concur application's client id: needed for company tokens (`company connect`, "
        "ESS events that fetch).",
    )
    concur_client_secret: SecretStr | None = Field(
        default=None,
        description="Your Concur application's client secret, with CONCUR_CLIENT_ID.",
    )
    concur_token_url: str = Field(
        default="https://us.api.concursolutions.com/oauth2/v0/token",
        description="Concur's OAuth2 token URL for `company connect`; refreshes go to the company's own "
        "geolocation. Under the host policy like every Concur URL.",
    )
    ess_public_keys: Path | None = Field(
        default=None,
        description="A PEM file with the public keys that may sign ESS events (`Concur-Signature`); "
        "by default the two keys Concur publishes (before and after 2025-10-22), shipped with the package.",
    )
    ess_fetch_fop: bool = Field(
        default=False,
        description="Also fetch the form of payment for each travel profile ESS event (an event of "
        "kind `fop` beside the `profile` one), for deployments subscribed to FOP changes.",
    )
    ess_client_cn: str = Field(
        default="webhook.api.concursolutions.com",
        description="With `serve --ssl-ca-certs`: the subject CN a client certificate must have on the "
        "public listener (Concur's ESS client certificate's).",
    )
    ess_verify_signature: bool = Field(
        default=True,
        description="Refuse ESS events whose Concur-Signature no key verifies (401). `false` only for "
        "local development: every start then logs a warning.",
    )
    token_encryption_key: SecretStr | None = Field(
        default=None,
        description="32 random bytes, url-safe base64 (`concur-postback genkey`); the same for all "
        "processes. `run` generates one into `DATA_DIR/token.key` (mode 0600).",
    )
    token_encryption_keys: SecretStr | None = Field(
        default=None,
        description="Instead of `TOKEN_ENCRYPTION_KEY`, to rotate it: keys comma or space separated, the "
        "first seals what is stored, every one opens it. Put the new key first everywhere, run "
        "`concur-postback rekey`, then drop the old one.",
    )
    admin_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="When set, `serve` answers `/healthz`, `/readyz` and `/metrics` on this port only "
        "(on `ADMIN_HOST`), and its public port answers the postback only.",
    )
    admin_host: str = Field(
        default="127.0.0.1", description="The interface of the admin listener (`0.0.0.0` in a container)."
    )
    log_level: str = Field(default="INFO", description="`DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL`.")
    log_format: LogFormat = Field(
        default=LogFormat.JSON, description="`json` (one object per line) or `console`."
    )
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="Body limit (413 above it), checked while reading.",
    )
    head_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="A request head (request line and headers) must arrive within this of the connection's "
        "start, or of a kept-alive connection's next byte; then 408 and the connection is closed.",
    )
    max_body_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A request body must arrive within this of its head; then 408 and the connection is "
        "closed.",
    )
    max_connections: int | None = Field(
        default=None,
        ge=1,
        description="Connections one web process holds at most; by default its open-file limit less a "
        "reserve (`serve` raises the soft limit to the hard one where allowed). Beyond it a new connection "
        "closes the one waiting longest for its request head, or is closed itself.",
    )
    data_dir: Path = Field(
        default=Path(".concur-postback"),
        description="Where `run` keeps the embedded Redis data and the token key.",
    )

    token_ttl_seconds: int = Field(
        default=3 * 24 * 3600,
        ge=60,
        description="How long a stored notification (with its encrypted token) may wait, retries included; "
        "past it the notification is a failed notification `expired`.",
    )
    dedup_ttl_seconds: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        description="How long an itinerary change is remembered for redelivery detection.",
    )
    coalesce_window_seconds: int = Field(
        default=300,
        ge=1,
        description="Window in which repeated FOP/Profile notifications for one traveller are coalesced.",
    )

    queue_name: str = Field(
        default="concur-postback",
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="The RQ queue (`rq:queue:<name>`).",
    )
    worker_max_in_flight: int = Field(
        default=128,
        ge=1,
        le=10_000,
        description="Notifications a worker process works on at once (fetching or delivering); more wait "
        "in the inbox for the first free place, in any worker.",
    )
    worker_take_interval_seconds: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="How long a busy worker lets arrivals gather between its takes from the inbox. A worker "
        "that found two notifications or more per this much time, over the last five such spans, looks "
        "again only this much after each take, taking what came meanwhile in one round trip instead of "
        "each alone (another worker that is waiting takes them at once). A worker less busy looks again "
        "at once: in a quieter hour an arrival is taken the moment it lands. 0: always at once.",
    )
    job_timeout_seconds: int = Field(
        default=60,
        ge=5,
        description="RQ job timeout. A worker's job takes notifications for the first half of it, then "
        "finishes them and makes way for the next.",
    )
    ingest_max_batch: int = Field(
        default=256, ge=1, le=10_000, description="Most postbacks stored by one group commit."
    )
    redis_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="Longest wait for Redis on the ack path, per postback from when it is ready to store: "
        "then 503. Also the timeout of every attempt to connect to Redis.",
    )
    redis_min_replicas: int = Field(
        default=0,
        ge=0,
        description="A postback is acknowledged only once this many replicas have its write (`WAIT`), "
        "within `REDIS_TIMEOUT_SECONDS`; else 503. 0: once the primary has it (a failover may then "
        "lose the last writes).",
    )
    retry_after_seconds: int = Field(default=5, ge=1, description="`Retry-After` sent with a 503.")

    # Workers: fetching from Concur and delivering to sinks.
    sinks: str = Field(default="log:", description="Where events go (see Sinks).")
    concur_auth_scheme: str = Field(
        default="OAuth",
        pattern=r"^(OAuth|Bearer)$",
        description="`OAuth` (reference docs) or `Bearer` (TMC guides).",
    )
    concur_profile_version: str = Field(
        default="v2.0",
        pattern=r"^v[12]\.0$",
        description="Travel profile API version: `v2.0` or `v1.0`.",
    )
    concur_subscribe_path: str = Field(
        default="/api/travelprofile/v1.0/subscribe",
        pattern=r"^/[^?#\s]*$",
        description="User (un)subscribe endpoint (`/api/user/v1.0/subscribe` is the other documented one).",
    )
    concur_connect_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Longest wait to connect to Concur, per request."
    )
    concur_read_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Longest wait for each read (or write) of a request to Concur once connected.",
    )
    concur_max_rps: float = Field(
        default=50.0,
        gt=0,
        description="Requests per second per Concur host for the whole deployment, shared by every worker "
        "through Redis.",
    )
    concur_max_in_flight: int = Field(
        default=32, ge=1, le=1024, description="Requests in flight per Concur host and worker process."
    )
    # Fetch retries: a durable schedule in Redis, for up to the horizon after the first failure.
    fetch_backoff_seconds: float = Field(
        default=1.0,
        ge=0,
        description="Fetch retries: the n-th waits a random time between half and all of "
        "min(`FETCH_BACKOFF_MAX_SECONDS`, this × 2ⁿ⁻¹), and at least `Retry-After`, however long.",
    )
    fetch_backoff_max_seconds: float = Field(
        default=300.0,
        ge=0,
        description="The longest fetch retry backoff; a longer `Retry-After` is still honoured.",
    )
    fetch_retry_horizon_seconds: float = Field(
        default=24 * 3600,
        ge=0,
        description="How long after its first failure a notification is retried before it becomes a failed "
        "notification. At most `TOKEN_TTL_SECONDS` (start-up refuses more).",
    )
    worker_maintenance_seconds: int = Field(
        default=15,
        ge=1,
        description="How often workers look for jobs abandoned by a dead worker, and sweep expired state.",
    )
    # A killed worker's batch is re-queued within this + WORKER_MAINTENANCE_SECONDS (about 35 s).
    worker_heartbeat_ttl_seconds: int = Field(
        default=20,
        ge=4,
        description="A running job, and a job's claim on a notification, not heard of for this long count as "
        "abandoned (renewed every quarter of it).",
    )
    sink_timeout_seconds: float = Field(
        default=20.0,
        gt=0,  # above the HTTP sink's 5 s connect + 10 s read
        description="Longest wait for one sink to take one event (then: a retry).",
    )
    sink_http_secret: SecretStr | None = Field(
        default=None,
        description="`whsec_<base64 key>`: signs webhook deliveries (Standard Webhooks).",
    )
    sink_backoff_seconds: float = Field(
        default=1.0,
        ge=0,
        description="Per-sink retry backoff, as `FETCH_BACKOFF_SECONDS` is for fetches, and at least the "
        "sink's `Retry-After`.",
    )
    sink_backoff_max_seconds: float = Field(
        default=300.0,
        ge=0,
        description="The longest sink retry backoff; a longer `Retry-After` is still honoured.",
    )
    sink_retry_horizon_seconds: float = Field(
        default=24 * 3600,
        ge=0,
        description="How long after its hand-over a delivery to one sink is retried before it becomes a dead "
        "letter.",
    )
    dead_letter_ttl_seconds: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        description="How long dead letters (with their events) and failed notifications are listed.",
    )
    worker_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="A worker process serves its Prometheus metrics at `http://<host>:<port>/metrics` (all "
        "interfaces); unset: no server. One port per worker process (see Metrics).",
    )

    @property
    def encryption_keys(self) -> list[str]:
        """The key ring: TOKEN_ENCRYPTION_KEYS, or the one TOKEN_ENCRYPTION_KEY (first seals, all open)."""
        if self.token_encryption_keys is not None:
            return self.token_encryption_keys.get_secret_value().replace(",", " ").split()
        return [self.token_encryption_key.get_secret_value()] if self.token_encryption_key else []

    @property
    def postback_secrets(self) -> tuple[bytes, ...]:
        """Every accepted secret path segment (more than one while it is being changed)."""
        if self.postback_secret is None:
            return ()
        return tuple(
            part.encode() for part in self.postback_secret.get_secret_value().replace(",", " ").split()
        )

    @field_validator("concur_allowed_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> object:
        return _split_list(value)

    @field_validator(
        "redis_url",
        "postback_secret",
        "token_encryption_key",
        "token_encryption_keys",
        "sink_http_secret",
        "concur_client_id",
        "concur_client_secret",
        "ess_public_keys",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """`POSTBACK_SECRET=` (as compose and shells produce) means unset, not an empty secret."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        """Refused at start, in words that do not repeat the URL (it may hold a password)."""
        schemes = ("redis", "rediss", "unix", "redis+sentinel", "rediss+sentinel")
        if value is not None and value.partition("://")[0].lower() not in schemes:
            raise ValueError(
                "must be a redis://, rediss://, unix:// or redis+sentinel:// URL such as redis://host:6379/0"
            )
        return value

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
    def _one_way_to_give_keys(self) -> Settings:
        if self.token_encryption_key is not None and self.token_encryption_keys is not None:
            raise ValueError("set TOKEN_ENCRYPTION_KEY or TOKEN_ENCRYPTION_KEYS, not both")
        return self

    @model_validator(mode="after")
    def _horizon_within_token_ttl(self) -> Settings:
        """A notification cannot be retried after its record (and token) is gone."""
        if self.fetch_retry_horizon_seconds > self.token_ttl_seconds:
            raise ValueError(
                f"FETCH_RETRY_HORIZON_SECONDS ({self.fetch_retry_horizon_seconds:g}) must not exceed "
                f"TOKEN_TTL_SECONDS ({self.token_ttl_seconds}): a notification is not kept that long"
            )
        return self


def env_name(field: str) -> str:
    """The environment variable a field is read from, as README.md and error messages name it."""
    return (Settings.model_config.get("env_prefix", "") + field).upper()


def load_settings(**overrides: object) -> Settings:
    """Read the environment; keyword overrides win (used by the CLI and the tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
