"""The commands that call Concur: subscribe, unsubscribe, and backfill."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import click
from redis.exceptions import RedisError

from concur_postback.backfill import parse_since, run_backfill
from concur_postback.cli.common import KINDS, STARTUP_ERRORS, configured, require, token_option
from concur_postback.concur.notification import Kind, OAuthToken
from concur_postback.concur.subscriptions import SubscriptionFailed, change_subscription
from concur_postback.errors import ConcurPostbackError, HostNotAllowed


def _subscription(action: str, kind: str, company: bool, token: str, path: str | None) -> None:
    settings = configured(sys.stderr)
    secret = OAuthToken(token)
    try:
        result = asyncio.run(change_subscription(settings, secret, kind, action, company=company, path=path))
    except (SubscriptionFailed, HostNotAllowed) as exc:
        raise click.ClickException(secret.hidden_in(str(exc))) from None
    done = "subscribed" if action == "subscribe" else "unsubscribed"
    said = f": {result.message}" if result.message else ""
    click.echo(
        f"{done} {'the company' if company else 'the user'} ({secret.masked}) "
        f"{'to' if action == 'subscribe' else 'from'} {kind} notifications "
        f"at {result.url} (HTTP {result.status}){said}"
    )


_SUBSCRIPTION_HELP = (
    "Path of the user endpoint (default CONCUR_SUBSCRIBE_PATH; unsubscribe: its /unsubscribe twin)."
)


@click.command()
@click.option("--type", "kind", required=True, type=click.Choice(KINDS))
@click.option(
    "--company", is_flag=True, help="Subscribe the whole company (a company administrator's token)."
)
@token_option("The user's (or, with --company, the company administrator's) OAuth access token.")
@click.option("--path", default=None, help=_SUBSCRIPTION_HELP)
def subscribe(kind: str, company: bool, token: str, path: str | None) -> None:
    """Subscribe a user (or, with --company, a company) to Concur's notifications of one type."""
    _subscription("subscribe", kind, company, token, path)


@click.command()
@click.option("--type", "kind", required=True, type=click.Choice(KINDS))
@click.option(
    "--company", is_flag=True, help="Unsubscribe the whole company (a company administrator's token)."
)
@token_option("The user's (or, with --company, the company administrator's) OAuth access token.")
@click.option("--path", default=None, help=_SUBSCRIPTION_HELP)
def unsubscribe(kind: str, company: bool, token: str, path: str | None) -> None:
    """Stop a user's (or, with --company, a company's) notifications of one type."""
    _subscription("unsubscribe", kind, company, token, path)


@click.command()
@click.option("--since", required=True, help="Changes since this date or date-time (ISO 8601; UTC).")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(["profile", "itinerary"]),
    help="What to walk (repeatable; default both).",
)
@token_option("A company administrator's OAuth access token.")
def backfill(since: str, kinds: tuple[str, ...], token: str) -> None:
    """Queue a notification for every profile and trip changed since a date (workers process them)."""
    settings = configured(sys.stderr)
    require(settings)
    try:
        cutoff = parse_since(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    chosen = tuple(Kind(kind) for kind in kinds) or (Kind.PROFILE, Kind.ITINERARY)
    progress = _BackfillBars() if sys.stderr.isatty() else None
    secret = OAuthToken(token)
    try:
        result = run_backfill(settings, token, cutoff, kinds=chosen, progress=progress)
    except STARTUP_ERRORS:
        raise  # said by the group, like every command's
    except (ConcurPostbackError, RedisError) as exc:
        raise click.ClickException(f"backfill failed: {secret.hidden_in(str(exc))}") from None
    finally:
        if progress is not None:
            progress.close()
    click.echo(result.summary())


class _BackfillBars:
    """One click progress bar per kind, on stderr (only on a terminal)."""

    def __init__(self) -> None:
        self._bar: Any = None

    def start(self, kind: object, total: int | None) -> None:
        self.close()
        if total:  # unknown or nothing: the summary line says it all
            self._bar = click.progressbar(length=total, label=str(kind), file=sys.stderr, show_pos=True)
            self._bar.__enter__()

    def advance(self, kind: object, count: int) -> None:
        if self._bar is not None:
            self._bar.update(count)

    def finish(self, kind: object) -> None:
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
