"""`simulate`: the Concur simulator, and `simulate fire`, which posts notifications like Concur."""

from __future__ import annotations

import asyncio
import sys

import click

from concur_postback.cli.common import KINDS, configured
from concur_postback.concur.notification import POSTBACK_KINDS, Kind
from concur_postback.simulator.api import run_simulator
from concur_postback.simulator.load import fetch_ess_events, fire, plan_postbacks


@click.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", help="Interface to listen on.")
@click.option("--port", default=8081, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--latency-ms", default=0, type=click.IntRange(0, 60_000), help="Delay before every answer.")
@click.option("--travellers", default=50, type=click.IntRange(0, 1_000_000), help="Generated travellers.")
@click.option("--seed", default=1, type=int, help="Seed of the generated travellers and trips.")
@click.option(
    "--max-rps", default=0.0, type=click.FloatRange(0), help="Answer 429 above this rate (0: never)."
)
@click.pass_context
def simulate(
    ctx: click.Context, *, host: str, port: int, latency_ms: int, travellers: int, seed: int, max_rps: float
) -> None:
    """Run a Concur API simulator (trips, profiles, FOP, summaries, subscriptions; faults over HTTP).

    `simulate fire` posts notifications to a postback URL the way Concur does.
    """
    if ctx.invoked_subcommand is not None:
        return
    configured()
    run_simulator(host, port, latency_ms, travellers=travellers, seed=seed, max_rps=max_rps)


@simulate.command("fire")
@click.option("--to", "to", default=None, help="The postback URL (with --ess: the events URL).")
@click.option(
    "--rate", default=10.0, type=click.FloatRange(0), help="Notifications per second (0: flat out)."
)
@click.option("--count", default=10, type=click.IntRange(1), help="How many to post.")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(KINDS),
    help="Kinds to post, in turn (repeatable; default all three).",
)
@click.option(
    "--ess",
    is_flag=True,
    help="Post ESS events instead (every topic, some redelivered), signed by the simulator.",
)
@click.option(
    "--concur-url",
    envvar="CONCUR_BASE_URL",
    default="http://127.0.0.1:8081",
    help="The simulator the itinerary ObjectURIs point at (env CONCUR_BASE_URL).",
)
@click.option("--company-token", default=None, help="Post company notifications with this token instead.")
@click.option("--travellers", default=50, type=click.IntRange(1), help="As given to the simulator.")
@click.option("--seed", default=1, type=int, help="As given to the simulator.")
def simulate_fire(
    *,
    to: str | None,
    rate: float,
    count: int,
    kinds: tuple[str, ...],
    ess: bool,
    concur_url: str,
    company_token: str | None,
    travellers: int,
    seed: int,
) -> None:
    """POST notifications like Concur: `?type=…&oauth_token_key=…`, itineraries with a Notification body;
    with --ess, signed ESS events to the events URL."""
    if ess:
        to = to or "http://127.0.0.1:8000/events"
        planned = fetch_ess_events(concur_url, count, seed)
    else:
        to = to or "http://127.0.0.1:8000/postback"
        planned = plan_postbacks(
            count,
            kinds=tuple(Kind(kind) for kind in kinds) or POSTBACK_KINDS,
            concur_url=concur_url,
            travellers=travellers,
            seed=seed,
            company_token=company_token,
        )
    with click.progressbar(length=count, label="firing", file=sys.stderr) as bar:
        result = asyncio.run(fire(to, planned, rate=rate, on_sent=lambda: bar.update(1)))
    click.echo(result.summary())
    if any(name not in ("accepted", "duplicate") for name in result.statuses):
        sys.exit(1)
