"""What every command shares: one way to load the settings and set up logging, one way to say what is
wrong with them, and the lazily loaded command group."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import Any, TextIO

import click
from pydantic import ValidationError
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from concur_postback import logs
from concur_postback.concur.notification import POSTBACK_KINDS
from concur_postback.config import Settings, env_name, load_settings
from concur_postback.connections import connect
from concur_postback.errors import ConfigurationError
from concur_postback.tokens import vault_from_settings

# What a person must fix where the command runs, not a bug: said in one line, without a traceback.
# (Redis's AuthenticationError is a ConnectionError: a wrong password in REDIS_URL is one of them.)
STARTUP_ERRORS = (ConfigurationError, RedisConnectionError, RedisTimeoutError)
EXIT_STARTUP_ERROR = 2
KINDS = [kind.value for kind in POSTBACK_KINDS]


class Commands(click.Group):
    """Commands by name -> ``"module:attribute"``, imported when asked for (click's lazy-loading
    pattern). Every command (and those of its subgroups) ends the same way on a configuration error
    or an unreachable Redis: `concur-postback: <what is wrong>` on stderr and exit status 2."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            module, _, attribute = self._lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except STARTUP_ERRORS as exc:
            click.echo(f"concur-postback: {explain(exc)}", err=True)
            ctx.exit(EXIT_STARTUP_ERROR)


def explain(exc: Exception) -> str:
    """One line: the messages never hold a secret, but some span lines (a redis-server log)."""
    text = str(exc) if isinstance(exc, ConfigurationError) else f"Redis (REDIS_URL) unavailable: {exc}"
    return " ".join(text.split())


def configured(log_stream: TextIO | None = None) -> Settings:
    """The settings, logging set up by them. Services log to stdout; commands whose stdout is their
    answer (``status --json``) pass stderr."""
    try:
        settings = load_settings()
    except ValidationError as exc:
        raise ConfigurationError(f"invalid configuration: {_problems(exc)}") from None
    logs.configure(settings.log_level, settings.log_format, log_stream)
    return settings


def _problems(exc: ValidationError) -> str:
    """Pydantic's errors by environment variable, without the values given (one may be a secret)."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        where = f"{env_name(str(error['loc'][0]))}: " if error["loc"] else ""
        problems.append(where + error["msg"].removeprefix("Value error, "))
    return "; ".join(problems)


def require(settings: Settings) -> None:
    """What serve, worker and backfill cannot start without, refused before they bind a port or call
    Concur: REDIS_URL, and a TOKEN_ENCRYPTION_KEY that is a key."""
    missing = [
        name
        for name, value in (
            ("REDIS_URL", settings.redis_url),
            ("TOKEN_ENCRYPTION_KEY", settings.encryption_keys or None),
        )
        if value is None
    ]
    if missing:
        raise ConfigurationError(
            f"{' and '.join(missing)} must be set (or use `concur-postback run`, which provides both)"
        )
    vault_from_settings(settings)


def redis_and_settings() -> tuple[Redis, Settings]:
    """For the commands that only read or mend what is stored (their answer on stdout, logs on stderr)."""
    settings = configured(sys.stderr)
    return connect(settings), settings


def token_option(help_text: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """--token, also from CONCUR_ACCESS_TOKEN (so it need not be on the command line)."""
    return click.option(
        "--token",
        envvar="CONCUR_ACCESS_TOKEN",
        required=True,
        show_envvar=True,
        help=help_text + " Never printed.",
    )
