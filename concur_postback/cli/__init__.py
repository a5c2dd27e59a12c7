"""The `concur-postback` command line (click), one module per group of commands.

Each command's module is imported only when that command runs (``common.Commands``), so a command
loads what it needs and no more: `genkey` does not import the web tier, `serve` not the simulator.
"""

from __future__ import annotations

import click

from concur_postback.cli.common import Commands

_COMMANDS = {
    "serve": "concur_postback.cli.tiers:serve",
    "worker": "concur_postback.cli.tiers:worker",
    "status": "concur_postback.cli.tiers:status",
    "run": "concur_postback.cli.tiers:run",
    "simulate": "concur_postback.cli.simulate:simulate",
    "subscribe": "concur_postback.cli.concur:subscribe",
    "unsubscribe": "concur_postback.cli.concur:unsubscribe",
    "backfill": "concur_postback.cli.concur:backfill",
    "failed": "concur_postback.cli.failed:failed",
    "company": "concur_postback.cli.company:company",
    "ess": "concur_postback.cli.ess:ess",
    "rekey": "concur_postback.cli.keys:rekey",
    "genkey": "concur_postback.cli.keys:genkey",
}


@click.group(
    cls=Commands,
    lazy=_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
)
def main() -> None:
    """Receive SAP Concur travel notifications (itinerary, form of payment, profile) and process them.

    Configuration comes from environment variables; see README.md.
    """
