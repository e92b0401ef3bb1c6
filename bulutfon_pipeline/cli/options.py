"""The options several commands share."""

from __future__ import annotations

import click

__all__ = ["DATE", "account_option", "json_option", "no_progress_option"]

DATE = click.DateTime(formats=["%Y-%m-%d"])

#: ``--account NAME`` (repeatable): only these accounts of BULUTFON_ACCOUNTS_FILE.
account_option = click.option(
    "--account",
    "accounts",
    multiple=True,
    metavar="NAME",
    help="Only this account of BULUTFON_ACCOUNTS_FILE (repeatable); default every account.",
)

json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the summary as one JSON object on stdout (and no progress bars).",
)

no_progress_option = click.option("--no-progress", is_flag=True, help="Do not draw progress bars.")
