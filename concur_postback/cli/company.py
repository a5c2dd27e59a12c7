"""`company`: the company tokens ESS integrations fetch with (connect, add, list, remove)."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime

import click
import orjson

from concur_postback.cli.common import redis_and_settings
from concur_postback.companies import (
    add_refresh_token,
    company_id,
    list_companies,
    reauthorization_reason,
    remove_company,
    save_grant,
)
from concur_postback.concur.client import ConcurClient
from concur_postback.concur.hosts import HostPolicy
from concur_postback.concur.notification import OAuthToken
from concur_postback.concur.oauth import TOKEN_PATH, Grant, connect_company
from concur_postback.config import Settings
from concur_postback.errors import FetchError, InvalidPostback
from concur_postback.tokens import vault_from_settings
from concur_postback.workers.deliveries import event_ttl
from concur_postback.workers.failed import list_failed, requeue

_STDIN = "Give - to read it from stdin. Never printed."


def _token(value: str, option: str) -> OAuthToken:
    if value == "-":
        value = sys.stdin.readline().strip()
    if not value or any(char.isspace() for char in value):
        raise click.BadParameter("empty, or holds whitespace", param_hint=option)
    return OAuthToken(value)


def _company(value: str) -> str:
    try:
        return company_id(value)
    except Exception as exc:  # ConfigurationError: said as the option's problem
        raise click.BadParameter(str(exc), param_hint="--company-id") from None


@click.group()
def company() -> None:
    """Company tokens: what ESS events are fetched with (CONCUR_CLIENT_ID, CONCUR_CLIENT_SECRET)."""


@company.command("connect")
@click.option("--company-id", "ident", required=True, help="The company's UUID (App Center's `id`).")
@click.option(
    "--request-token", envvar="CONCUR_REQUEST_TOKEN", show_envvar=True, required=True,
    help=f"The company request token from App Center's connect redirect. {_STDIN}",
)  # fmt: skip
def connect(ident: str, request_token: str) -> None:
    """Exchange a company request token for the company's tokens (the password grant), and requeue
    its notifications that failed for want of them."""
    redis, settings = redis_and_settings()
    chosen, secret = _company(ident), _token(request_token, "--request-token")
    grant = _grant(settings, chosen, secret)
    save_grant(redis, vault_from_settings(settings), chosen, grant)
    reason = reauthorization_reason(chosen)
    waiting = [
        entry.id for entry in list_failed(redis) if entry.what == "notification" and entry.reason == reason
    ]
    done, _ = requeue(redis, waiting, event_ttl(settings))
    click.echo(
        f"connected company {chosen} ({grant.geolocation or 'geolocation not given'}); requeued {len(done)}"
    )


def _grant(settings: Settings, chosen: str, secret: OAuthToken) -> Grant:
    async def call() -> Grant:
        client = ConcurClient(settings)
        try:
            return await connect_company(client, settings, chosen, secret)
        finally:
            await client.aclose()

    try:
        return asyncio.run(call())
    except FetchError as exc:
        raise click.ClickException(f"company connect failed: {secret.hidden_in(str(exc))}") from None


@company.command("add")
@click.option("--company-id", "ident", required=True, help="The company's UUID.")
@click.option(
    "--refresh-token", envvar="CONCUR_REFRESH_TOKEN", show_envvar=True, required=True,
    help=f"A company refresh token obtained elsewhere. {_STDIN}",
)  # fmt: skip
@click.option(
    "--geolocation",
    default=None,
    help="Where the company's calls go, e.g. https://us.api.concursolutions.com.",
)
def add(ident: str, refresh_token: str, geolocation: str | None) -> None:
    """Store a company refresh token obtained elsewhere; the first fetch refreshes it."""
    redis, settings = redis_and_settings()
    chosen, secret = _company(ident), _token(refresh_token, "--refresh-token")
    if geolocation is not None:
        try:
            HostPolicy.from_settings(settings).check_url(geolocation.rstrip("/") + TOKEN_PATH)
        except InvalidPostback:
            raise click.BadParameter(
                "not an https URL of an allowed Concur host", param_hint="--geolocation"
            ) from None
    add_refresh_token(redis, vault_from_settings(settings), chosen, secret, geolocation)
    click.echo(f"added company {chosen}")


@company.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def company_list(as_json: bool) -> None:
    """The companies with tokens, their state and geolocation (never a token)."""
    for entry in list_companies(redis_and_settings()[0]):
        if as_json:
            click.echo(orjson.dumps(entry).decode())
            continue
        until = _when(entry.access_expires_at)
        note = f": {entry.reason}" if entry.reason else ""
        where = entry.geolocation or "-"
        click.echo(f"{entry.company_id}  {entry.state:11} {where}  access token until {until}{note}")


def _when(moment: float | None) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds") if moment else "-"


@company.command("remove")
@click.argument("ident")
def remove(ident: str) -> None:
    """Forget a company's tokens."""
    chosen = _company(ident)
    if not remove_company(redis_and_settings()[0], chosen):
        raise click.ClickException(f"no company {chosen}")
    click.echo(f"removed company {chosen}")
