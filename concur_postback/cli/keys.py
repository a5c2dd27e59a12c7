"""The encryption keys: `genkey` makes one, `rekey` re-seals what is stored with the current one."""

from __future__ import annotations

import sys

import click

from concur_postback.cli.common import redis_and_settings
from concur_postback.tokens import generate_key, vault_from_settings
from concur_postback.workers.rekey import rekey as reseal


@click.command()
def rekey() -> None:
    """Re-seal stored tokens and events with the first key of TOKEN_ENCRYPTION_KEYS.

    Exit status 1 if something is sealed with a key the ring does not hold (it needs that key back).
    """
    redis, settings = redis_and_settings()
    counts = reseal(redis, vault_from_settings(settings))
    for what, done in counts.items():
        click.echo(
            f"{what}: {done.resealed} re-sealed, {done.current} already current, "
            f"{done.changed} changed meanwhile, {done.unreadable} under a key not in the ring"
        )
    if any(done.unreadable for done in counts.values()):
        sys.exit(1)


@click.command()
def genkey() -> None:
    """Print a new TOKEN_ENCRYPTION_KEY."""
    click.echo(generate_key())
