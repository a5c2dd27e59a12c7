"""The `concur-postback` command line (click)."""

from __future__ import annotations

import sys

import click
import orjson
from pydantic import ValidationError

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
