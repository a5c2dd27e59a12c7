"""The long-running processes: the web tier, a worker, both at once (`run`), and `status`."""

from __future__ import annotations

import sys

import click
import orjson

from concur_postback.cli.common import configured, redis_and_settings, require
from concur_postback.errors import ConfigurationError
from concur_postback.service.server import Tls
from concur_postback.service.server import serve as run_server
from concur_postback.supervisor import run_all
from concur_postback.workers.status import collect, render
from concur_postback.workers.worker import run_worker

_FILE = click.Path(exists=True, dir_okay=False)


@click.command()
@click.option("--host", default="0.0.0.0", help="Interface to listen on.")  # noqa: S104
@click.option("--port", default=8000, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--workers", default=1, type=click.IntRange(1, 64), help="uvicorn worker processes.")
@click.option("--ssl-certfile", type=_FILE, default=None, help="Serve HTTPS with this certificate (PEM).")
@click.option(
    "--ssl-keyfile", type=_FILE, default=None, help="Its private key (PEM), unless in the certfile."
)
@click.option(
    "--ssl-ca-certs", type=_FILE, default=None,
    help="Mutual TLS: client certificates must chain to these CAs and have ESS_CLIENT_CN on the public port.",
)  # fmt: skip
def serve(
    host: str,
    port: int,
    workers: int,
    *,
    ssl_certfile: str | None,
    ssl_keyfile: str | None,
    ssl_ca_certs: str | None,
) -> None:
    """Run the web tier only (needs REDIS_URL and TOKEN_ENCRYPTION_KEY; ADMIN_PORT moves the probes
    and metrics to a listener of their own)."""
    settings = configured()
    require(settings)
    admin = (settings.admin_host, settings.admin_port) if settings.admin_port else None
    if admin is not None and admin[1] == port:
        raise ConfigurationError(f"ADMIN_PORT {port} is also the public --port")
    if (ssl_keyfile or ssl_ca_certs) and not ssl_certfile:
        raise click.UsageError("--ssl-keyfile and --ssl-ca-certs need --ssl-certfile")
    tls = Tls(ssl_certfile, ssl_keyfile, ssl_ca_certs) if ssl_certfile else None
    run_server(host, port, workers, admin, tls)


@click.command()
@click.option("--burst", is_flag=True, help="Process what is waiting, then exit.")
def worker(burst: bool) -> None:
    """Run an RQ worker: its jobs are sessions that take stored notifications as they arrive."""
    settings = configured()
    require(settings)
    run_worker(settings, burst=burst)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object (field `pending`: not yet processed).")
def status(as_json: bool) -> None:
    """Show what is waiting and what failed."""
    redis, settings = redis_and_settings()
    result = collect(redis, settings.queue_name)
    click.echo(orjson.dumps(result).decode() if as_json else render(result))


@click.command()
@click.option("--host", default="127.0.0.1", help="Interface to listen on.")
@click.option("--port", default=8000, type=click.IntRange(0, 65535), help="TCP port.")
@click.option("--workers", default=1, type=click.IntRange(1, 64), help="Worker processes.")
@click.option("--simulate", is_flag=True, help="Also run the Concur simulator and fetch from it.")
def run(host: str, port: int, workers: int, simulate: bool) -> None:
    """Web tier + workers in one command; starts an embedded Redis when REDIS_URL is not set."""
    sys.exit(run_all(configured(), host, port, workers, simulate=simulate))
