"""`failed`: what needs a person: failed notifications and dead letters."""

from __future__ import annotations

import sys

import click
import orjson

from concur_postback.cli.common import redis_and_settings
from concur_postback.tokens import vault_from_settings
from concur_postback.workers.deliveries import event_ttl
from concur_postback.workers.failed import all_ids, list_failed, purge, requeue, show


@click.group()
def failed() -> None:
    """What needs a person: failed notifications and dead letters (deliveries a sink refused)."""


@failed.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def failed_list(as_json: bool) -> None:
    """List failed notifications and dead letters, oldest first."""
    for entry in list_failed(redis_and_settings()[0]):
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
    redis, settings = redis_and_settings()
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
    if not failed_ids and not everything:
        raise click.UsageError("name failed ids, or use --all")
    redis, settings = redis_and_settings()
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
    click.echo(f"purged {purge(redis_and_settings()[0])}")
