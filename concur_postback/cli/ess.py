"""`ess`: the ESS subscriptions of this application (topics, subscribe, list, unsubscribe)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click
import orjson

from concur_postback.cli.common import configured
from concur_postback.concur import ess_subscriptions
from concur_postback.concur.client import ConcurClient
from concur_postback.concur.notification import OAuthToken
from concur_postback.concur.oauth import app_token
from concur_postback.config import Settings
from concur_postback.errors import FetchError

T = TypeVar("T")
_GEOLOCATION = click.option(
    "--geolocation",
    default=None,
    help="The data centre, e.g. https://emea.api.concursolutions.com (default CONCUR_BASE_URL). "
    "Concur needs one subscription per data centre.",
)


def _with_app_token(
    geolocation: str | None, call: Callable[[ConcurClient, str, OAuthToken], Awaitable[T]]
) -> T:
    settings: Settings = configured(sys.stderr)
    base = (geolocation or settings.concur_base_url).rstrip("/")

    async def run() -> T:
        client = ConcurClient(settings)
        try:
            return await call(client, base, await app_token(client, settings, base))
        finally:
            await client.aclose()

    try:
        return asyncio.run(run())
    except FetchError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
def ess() -> None:
    """ESS subscriptions (an application token: CONCUR_CLIENT_ID, CONCUR_CLIENT_SECRET)."""


@ess.command("topics")
@_GEOLOCATION
def ess_topics(geolocation: str | None) -> None:
    """The topics this application may subscribe to (empty: ask Concur for the scopes)."""
    for topic in _with_app_token(geolocation, ess_subscriptions.topics):
        click.echo(topic)


@ess.command("subscribe")
@click.option("--topic", required=True, help="e.g. public.concur.travel.itinerary")
@click.option("--endpoint", required=True, help="Where ESS posts: https://your.host/events/<secret>")
@click.option("--filter", "filter_", default=".*", help="Event types to receive (a regular expression).")
@click.option(
    "--id", "ident", default=None, help="The subscription's globally unique name (default: derived)."
)
@_GEOLOCATION
def ess_subscribe(
    topic: str, endpoint: str, filter_: str, ident: str | None, geolocation: str | None
) -> None:
    """Create (or replace) a webhook subscription to a topic."""
    try:
        subscription = ess_subscriptions.webhook_subscription(topic, endpoint, filter_, ident)
    except Exception as exc:  # ConfigurationError: said as a usage problem
        raise click.UsageError(str(exc)) from None
    said = _with_app_token(
        geolocation,
        lambda client, base, token: ess_subscriptions.subscribe(client, base, token, subscription),
    )
    click.echo(f"{subscription.id}: {said}")


@ess.command("list")
@_GEOLOCATION
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, as Concur returns them.")
def ess_list(geolocation: str | None, as_json: bool) -> None:
    """This application's subscriptions at one data centre."""
    for item in _with_app_token(geolocation, ess_subscriptions.subscriptions):
        if as_json:
            click.echo(orjson.dumps(item).decode())
            continue
        endpoint = (item.get("webHookConfig") or {}).get("endpoint", "-")
        companies = len(item.get("companyIds") or [])
        said = f"{item.get('id')}  {item.get('topic')}  {item.get('filter')}  {endpoint}"
        click.echo(f"{said}  {companies} compan(ies)")


@ess.command("unsubscribe")
@click.argument("ident")
@_GEOLOCATION
def ess_unsubscribe(ident: str, geolocation: str | None) -> None:
    """Delete a subscription."""
    said = _with_app_token(
        geolocation, lambda client, base, token: ess_subscriptions.unsubscribe(client, base, token, ident)
    )
    click.echo(said)
