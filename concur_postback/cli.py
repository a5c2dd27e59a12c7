"""The `concur-postback` command line (click)."""

from __future__ import annotations

import sys

import click
import orjson
from pydantic import ValidationError
from redis import Redis

from concur_postback import logs
from concur_postback.config import Settings, load_settings
from concur_postback.errors import ConfigurationError


def _settings() -> Settings:
    try:
        settings = load_settings()
    except ValidationError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from None
    logs.configure(settings.log_level, settings.log_format)
    return settings


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def main() -> None:
    """Receive SAP Concur travel notifications (itinerary, form of payment, profile) and process them.

    Configuration comes from environment variables; see README.md.
    """


@main.command()
@click.option("--host", default="0.0.0.0", help="Interface to listen on.")  # noqa: S104
@click.option("--port", default=8000, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--workers", default=1, type=click.IntRange(1, 64), help="uvicorn worker processes.")
def serve(host: str, port: int, workers: int) -> None:
    """Run the web tier only (needs REDIS_URL and TOKEN_ENCRYPTION_KEY)."""
    from concur_postback.service.server import serve as run_server  # noqa: PLC0415 - keep CLI start fast

    settings = _settings()
    _require(settings)
    run_server(host, port, workers)


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

    settings = _settings()
    try:
        result = collect(connect(settings), settings.queue_name)
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(orjson.dumps(result).decode() if as_json else render(result))


@main.command()
@click.option("--host", default="127.0.0.1", help="Interface to listen on.")
@click.option("--port", default=8000, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--workers", default=1, type=click.IntRange(1, 64), help="Worker processes.")
def run(host: str, port: int, workers: int) -> None:
    """Web tier + workers in one command; starts an embedded Redis when REDIS_URL is not set."""
    from concur_postback.runner import run_all  # noqa: PLC0415

    settings = _settings()
    try:
        sys.exit(run_all(settings, host, port, workers))
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--host", default="127.0.0.1", help="Interface to listen on.")
@click.option("--port", default=8081, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--latency-ms", default=0, type=click.IntRange(0, 60_000), help="Delay before every answer.")
def simulate(host: str, port: int, latency_ms: int) -> None:
    """Run a Concur API simulator (trips, profiles, FOP; faults injected over HTTP)."""
    from concur_postback.simulator import run_simulator  # noqa: PLC0415

    _settings()
    run_simulator(host, port, latency_ms)


@main.group()
def failed() -> None:
    """Dead letters: deliveries to a sink that failed for good."""


def _redis_for_cli() -> Redis:
    from concur_postback.workers.worker import connect  # noqa: PLC0415

    try:
        return connect(_settings())
    except ConfigurationError as exc:
        raise click.ClickException(str(exc)) from None


@failed.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def failed_list(as_json: bool) -> None:
    """List dead letters, oldest first."""
    from concur_postback.workers.deadletters import list_letters  # noqa: PLC0415

    for letter in list_letters(_redis_for_cli()):
        if as_json:
            click.echo(orjson.dumps(letter).decode())
        else:
            tries = f"after {letter.attempts} attempt(s)"
            click.echo(f"{letter.id}  {letter.kind:9} {letter.sink}  {tries}: {letter.reason}")


@failed.command("show")
@click.argument("letter_id")
def failed_show(letter_id: str) -> None:
    """Show one dead letter and the event it holds."""
    from concur_postback.workers.deadletters import show  # noqa: PLC0415

    found = show(_redis_for_cli(), letter_id)
    if found is None:
        raise click.ClickException(f"no dead letter {letter_id}")
    letter, event = found
    click.echo(orjson.dumps(letter, option=orjson.OPT_INDENT_2).decode())
    click.echo(
        orjson.dumps(orjson.loads(event), option=orjson.OPT_INDENT_2).decode() if event else "(event expired)"
    )


@failed.command("requeue")
@click.argument("letter_ids", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Requeue every dead letter.")
def failed_requeue(letter_ids: tuple[str, ...], everything: bool) -> None:
    """Deliver dead letters again, each to its failing sink only."""
    from concur_postback.workers.deadletters import all_ids, requeue  # noqa: PLC0415

    if not letter_ids and not everything:
        raise click.UsageError("name dead letter ids, or use --all")
    redis = _redis_for_cli()
    done, skipped = requeue(redis, all_ids(redis) if everything else list(letter_ids))
    click.echo(f"requeued {len(done)}" + (f"; not found or expired: {' '.join(skipped)}" if skipped else ""))
    if skipped and not done:
        sys.exit(1)


@failed.command("purge")
@click.confirmation_option(prompt="Delete every dead letter?")
def failed_purge() -> None:
    """Delete every dead letter."""
    from concur_postback.workers.deadletters import purge  # noqa: PLC0415

    click.echo(f"purged {purge(_redis_for_cli())}")


@main.command()
def genkey() -> None:
    """Print a new TOKEN_ENCRYPTION_KEY."""
    from concur_postback.tokens import generate_key  # noqa: PLC0415

    click.echo(generate_key())


def _require(settings: Settings) -> None:
    missing = [
        name
        for name, value in (
            ("REDIS_URL", settings.redis_url),
            ("TOKEN_ENCRYPTION_KEY", settings.token_encryption_key),
        )
        if value is None
    ]
    if missing:
        raise click.ClickException(
            f"{' and '.join(missing)} must be set (or use `concur-postback run`, which provides both)"
        )


if __name__ == "__main__":
    main()
