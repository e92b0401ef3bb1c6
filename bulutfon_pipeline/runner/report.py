"""``bulutfon-pipeline report``: the HTML call report, of every account or of one, built
from the analysts' copy (or a PostgreSQL warehouse) without a Dagster run."""

from __future__ import annotations

from pathlib import Path

from bulutfon_pipeline.accounts import AccountsError, find_account
from bulutfon_pipeline.runner.errors import SetupError
from bulutfon_pipeline.runner.preflight import read_settings
from bulutfon_pipeline.settings import analytics_path_for
from bulutfon_pipeline.warehouse import Warehouse


def build_call_report(account: str | None = None) -> Path:
    """Write the report (``call_report_<date>.html``, or ``call_report_<account>_<date>.html``
    for one account) into ``BULUTFON_DATA_DIR/reports``; its path.

    Raises:
        SetupError: a malformed setting, an account the deployment does not have (the
            known ones listed), or no warehouse yet.
    """
    from bulutfon_pipeline.report import report_from_settings

    settings = read_settings()
    if account is not None:
        try:
            find_account(account)
        except AccountsError as error:
            raise SetupError(str(error)) from None
    warehouse = Warehouse.from_settings(settings)
    if not warehouse.is_server:
        copy = settings.analytics_path_setting or analytics_path_for(warehouse.path)
        if not copy.is_file() and not warehouse.path.is_file():
            raise SetupError(
                f"no warehouse at {warehouse.path} yet: run `bulutfon-pipeline sync` first"
            )
    return report_from_settings(settings, warehouse, account=account).path
