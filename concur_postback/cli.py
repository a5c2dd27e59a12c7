"""The `concur-postback` command line (click)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TextIO

import click
import orjson
from pydantic import ValidationError
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from concur_postback import logs
from concur_postback.concur.notification import Kind
from concur_postback.config import Settings, env_name, load_settings
from concur_postback.errors import ConfigurationError

# What a person must fix where the command runs, not a bug: said in one line, without a traceback.
# (Redis's AuthenticationError is a ConnectionError: a wrong password in REDIS_URL is one of them.)
_STARTUP_ERRORS = (ConfigurationError, RedisConnectionError, RedisTimeoutError)
EXIT_STARTUP_ERROR = 2
KINDS = [kind.value for kind in Kind]


class _Commands(click.Group):
    """Every command (and those of its subgroups) ends the same way on a configuration error or an
    unreachable Redis: `concur-postback: <what is wrong>` on stderr and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except _STARTUP_ERRORS as exc:
            click.echo(f"concur-postback: {_explain(exc)}", err=True)
            ctx.exit(EXIT_STARTUP_ERROR)


def _explain(exc: Exception) -> str:
    """One line: the messages never hold a secret, but some span lines (a redis-server log)."""
    text = str(exc) if isinstance(exc, ConfigurationError) else f"Redis (REDIS_URL) unavailable: {exc}"
    return " ".join(text.split())


def _settings(log_stream: TextIO | None = None) -> Settings:
    """Services log to stdout; commands whose stdout is their answer (``status --json``) pass stderr."""
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


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def main() -> None:
    """Receive SAP Concur travel notifications (itinerary, form of payment, profile) and process them.

    Configuration comes from environment variables; see README.md.
    """


@main.command()
@click.option("--host", default="0.0.0.0", help="Interface to listen on.")  # noqa: S104
@click.option("--port", default=8000, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--workers", default=1, type=click.IntRange(1, 64), help="uvicorn worker processes.")
def serve(host: str, port: int, workers: int) -> None:
    """Run the web tier only (needs REDIS_URL and TOKEN_ENCRYPTION_KEY; ADMIN_PORT moves the probes
    and metrics to a listener of their own)."""
    from concur_postback.service.server import serve as run_server  # noqa: PLC0415 - keep CLI start fast

    settings = _settings()
    _require(settings)
    admin = (settings.admin_host, settings.admin_port) if settings.admin_port else None
    if admin is not None and admin[1] == port:
        raise ConfigurationError(f"ADMIN_PORT {port} is also the public --port")
    run_server(host, port, workers, admin)


@main.command()
@click.option("--burst", is_flag=True, help="Process what is waiting, then exit.")
def worker(burst: bool) -> None:
    """Run an RQ worker (with the pump that turns stored notifications into jobs)."""
    from concur_postback.workers.worker import run_worker  # noqa: PLC0415

    settings = _settings()
    _require(settings)
    run_worker(settings, burst=burst)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object (field `pending`: not yet processed).")
def status(as_json: bool) -> None:
    """Show what is waiting and what failed."""
    from concur_postback.workers.status import collect, render  # noqa: PLC0415
    from concur_postback.workers.worker import connect  # noqa: PLC0415

    settings = _settings(sys.stderr)
    result = collect(connect(settings), settings.queue_name)
    click.echo(orjson.dumps(result).decode() if as_json else render(result))


@main.command()
@click.option("--host", default="127.0.0.1", help="Interface to listen on.")
@click.option("--port", default=8000, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--workers", default=1, type=click.IntRange(1, 64), help="Worker processes.")
@click.option("--simulate", is_flag=True, help="Also run the Concur simulator and fetch from it.")
def run(host: str, port: int, workers: int, simulate: bool) -> None:
    """Web tier + workers in one command; starts an embedded Redis when REDIS_URL is not set."""
    from concur_postback.runner import run_all  # noqa: PLC0415

    sys.exit(run_all(_settings(), host, port, workers, simulate=simulate))


@main.group(invoke_without_command=True)
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
    from concur_postback.simulator.api import run_simulator  # noqa: PLC0415

    _settings()
    run_simulator(host, port, latency_ms, travellers=travellers, seed=seed, max_rps=max_rps)


@simulate.command("fire")
@click.option("--to", "to", default="http://127.0.0.1:8000/postback", help="The postback URL.")
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
    to: str,
    rate: float,
    count: int,
    kinds: tuple[str, ...],
    concur_url: str,
    company_token: str | None,
    travellers: int,
    seed: int,
) -> None:
    """POST notifications like Concur: `?type=…&oauth_token_key=…`, itineraries with a Notification body."""
    import asyncio  # noqa: PLC0415

    from concur_postback.simulator.load import fire, plan_postbacks  # noqa: PLC0415

    planned = plan_postbacks(
        count,
        kinds=tuple(Kind(kind) for kind in kinds) or tuple(Kind),
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


def _token_option(help_text: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return click.option(
        "--token",
        envvar="CONCUR_ACCESS_TOKEN",
        required=True,
        show_envvar=True,
        help=help_text + " Never printed.",
    )


def _subscription(action: str, kind: str, company: bool, token: str, path: str | None) -> None:
    import asyncio  # noqa: PLC0415

    from concur_postback.concur.notification import OAuthToken  # noqa: PLC0415
    from concur_postback.concur.subscriptions import SubscriptionFailed, change_subscription  # noqa: PLC0415
    from concur_postback.errors import HostNotAllowed  # noqa: PLC0415

    settings = _settings(sys.stderr)
    secret = OAuthToken(token)
    try:
        result = asyncio.run(change_subscription(settings, secret, kind, action, company=company, path=path))
    except (SubscriptionFailed, HostNotAllowed) as exc:
        raise click.ClickException(str(exc).replace(token, secret.masked)) from None
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


@main.command()
@click.option("--type", "kind", required=True, type=click.Choice(KINDS))
@click.option(
    "--company", is_flag=True, help="Subscribe the whole company (a company administrator's token)."
)
@_token_option("The user's (or, with --company, the company administrator's) OAuth access token.")
@click.option("--path", default=None, help=_SUBSCRIPTION_HELP)
def subscribe(kind: str, company: bool, token: str, path: str | None) -> None:
    """Subscribe a user (or, with --company, a company) to Concur's notifications of one type."""
    _subscription("subscribe", kind, company, token, path)


@main.command()
@click.option("--type", "kind", required=True, type=click.Choice(KINDS))
@click.option(
    "--company", is_flag=True, help="Unsubscribe the whole company (a company administrator's token)."
)
@_token_option("The user's (or, with --company, the company administrator's) OAuth access token.")
@click.option("--path", default=None, help=_SUBSCRIPTION_HELP)
def unsubscribe(kind: str, company: bool, token: str, path: str | None) -> None:
    """Stop a user's (or, with --company, a company's) notifications of one type."""
    _subscription("unsubscribe", kind, company, token, path)


@main.command()
@click.option("--since", required=True, help="Changes since this date or date-time (ISO 8601; UTC).")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(["profile", "itinerary"]),
    help="What to walk (repeatable; default both).",
)
@_token_option("A company administrator's OAuth access token.")
def backfill(since: str, kinds: tuple[str, ...], token: str) -> None:
    """Queue a notification for every profile and trip changed since a date (workers process them)."""
    from redis.exceptions import RedisError  # noqa: PLC0415

    from concur_postback.concur.notification import Kind  # noqa: PLC0415
    from concur_postback.errors import ConcurPostbackError  # noqa: PLC0415
    from concur_postback.workers.backfill import parse_since, run_backfill  # noqa: PLC0415

    settings = _settings(sys.stderr)
    _require(settings)
    try:
        cutoff = parse_since(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    chosen = tuple(Kind(kind) for kind in kinds) or (Kind.PROFILE, Kind.ITINERARY)
    progress = _BackfillBars() if sys.stderr.isatty() else None
    try:
        result = run_backfill(settings, token, cutoff, kinds=chosen, progress=progress)
    except _STARTUP_ERRORS:
        raise  # said by the group, like every command's
    except (ConcurPostbackError, RedisError) as exc:
        raise click.ClickException(f"backfill failed: {str(exc).replace(token, '****')}") from None
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


@main.group()
def failed() -> None:
    """What needs a person: failed notifications and dead letters (deliveries a sink refused)."""


def _redis_for_cli() -> tuple[Redis, Settings]:
    from concur_postback.workers.worker import connect  # noqa: PLC0415

    settings = _settings(sys.stderr)
    return connect(settings), settings


@failed.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def failed_list(as_json: bool) -> None:
    """List failed notifications and dead letters, oldest first."""
    from concur_postback.workers.failed import list_failed  # noqa: PLC0415

    for entry in list_failed(_redis_for_cli()[0]):
        if as_json:
            click.echo(orjson.dumps(entry).decode())
            continue
        where = entry.sink if entry.sink else "fetch"
        note = "" if entry.requeueable else " (expired: cannot be requeued)"
        tries = f"after {entry.attempts} attempt(s)"
        click.echo(f"{entry.id}  {entry.kind:9} {where}  {tries}: {entry.reason}{note}")


@failed.command("show")
@click.argument("failed_id")
def failed_show(failed_id: str) -> None:
    """Show one entry and what it holds (a dead letter's event; a notification's record, token encrypted)."""
    from concur_postback.tokens import vault_from_settings  # noqa: PLC0415
    from concur_postback.workers.failed import show  # noqa: PLC0415

    redis, settings = _redis_for_cli()
    found = show(redis, failed_id, vault_from_settings(settings))
    if found is None:
        raise click.ClickException(f"nothing failed with id {failed_id}")
    entry, held = found
    click.echo(orjson.dumps(entry, option=orjson.OPT_INDENT_2).decode())
    click.echo(orjson.dumps(orjson.loads(held), option=orjson.OPT_INDENT_2).decode() if held else "(expired)")


@failed.command("requeue")
@click.argument("failed_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Requeue everything that can be requeued.")
def failed_requeue(failed_ids: tuple[str, ...], everything: bool) -> None:
    """Send failed notifications round again, and dead letters to their failing sink only."""
    from concur_postback.workers.deliveries import event_ttl  # noqa: PLC0415
    from concur_postback.workers.failed import all_ids, requeue  # noqa: PLC0415

    if not failed_ids and not everything:
        raise click.UsageError("name failed ids, or use --all")
    redis, settings = _redis_for_cli()
    chosen = all_ids(redis, requeueable_only=True) if everything else list(failed_ids)
    done, not_done = requeue(redis, chosen, event_ttl(settings))
    click.echo(f"requeued {len(done)}")
    for ident, why in not_done.items():
        click.echo(f"not requeued {ident}: {why}")
    if not_done and not everything:
        sys.exit(1)


@failed.command("purge")
@click.confirmation_option(prompt="Delete every failed notification and dead letter?")
def failed_purge() -> None:
    """Delete every failed notification (with its record) and every dead letter."""
    from concur_postback.workers.failed import purge  # noqa: PLC0415

    click.echo(f"purged {purge(_redis_for_cli()[0])}")


@main.command()
def rekey() -> None:
    """Re-seal stored tokens and events with the first key of TOKEN_ENCRYPTION_KEYS.

    Exit status 1 if something is sealed with a key the ring does not hold (it needs that key back).
    """
    from concur_postback.tokens import vault_from_settings  # noqa: PLC0415
    from concur_postback.workers.rekey import rekey as reseal  # noqa: PLC0415

    redis, settings = _redis_for_cli()
    counts = reseal(redis, vault_from_settings(settings))
    for what, done in counts.items():
        click.echo(
            f"{what}: {done.resealed} re-sealed, {done.current} already current, "
            f"{done.changed} changed meanwhile, {done.unreadable} under a key not in the ring"
        )
    if any(done.unreadable for done in counts.values()):
        sys.exit(1)


@main.command()
def genkey() -> None:
    """Print a new TOKEN_ENCRYPTION_KEY."""
    from concur_postback.tokens import generate_key  # noqa: PLC0415

    click.echo(generate_key())


def _require(settings: Settings) -> None:
    """What serve, worker and backfill cannot start without, refused before they bind a port or call
    Concur: REDIS_URL, and a TOKEN_ENCRYPTION_KEY that is a key."""
    from concur_postback.tokens import vault_from_settings  # noqa: PLC0415

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


if __name__ == "__main__":
    main()
