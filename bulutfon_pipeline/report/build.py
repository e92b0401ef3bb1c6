"""Build the report: read the marts, render the page, write the dated file and its copy."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from bulutfon_pipeline.report.data import ReportSummary, read_marts, summarize
from bulutfon_pipeline.report.page import SECTIONS, render_html
from bulutfon_pipeline.settings import LOCAL_TZ, Settings, analytics_path_for
from bulutfon_pipeline.warehouse import Warehouse

__all__ = ["REPORTS_DIR", "CallReport", "build_report", "report_from_settings"]

#: Folder under BULUTFON_DATA_DIR that holds the reports.
REPORTS_DIR = "reports"


@dataclass(frozen=True)
class CallReport:
    """A written report: the dated file, the ``latest`` copy and its numbers."""

    path: Path
    latest_path: Path
    summary: ReportSummary
    sections: list[str] = field(default_factory=list)


def build_report(
    warehouse: Warehouse,
    *,
    out_dir: Path,
    now: dt.datetime | None = None,
    account: str | None = None,
) -> CallReport:
    """Write ``call_report_<local date>.html`` and ``call_report_latest.html`` to ``out_dir``
    (with ``account``: ``call_report_<account>_<local date>.html`` and
    ``call_report_<account>_latest.html``).

    Args:
        warehouse: the warehouse (schema and views in place).
        out_dir: the reports folder (created if missing), normally
            ``BULUTFON_DATA_DIR/reports``.
        now: the generation time (default: now).
        account: report this account's calls only; default every account's (one table
            row per account, the charts over them all).

    Returns:
        The paths written and the headline numbers.
    """
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(LOCAL_TZ)
    frames = read_marts(warehouse, account=account)
    summary = summarize(frames)
    page = render_html(frames, summary, f"{moment:%Y-%m-%d %H:%M}", account=account)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = "call_report" if account is None else f"call_report_{account}"
    path = out_dir / f"{prefix}_{moment:%Y-%m-%d}.html"
    tmp = path.with_suffix(".html.part")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    latest = out_dir / f"{prefix}_latest.html"
    shutil.copyfile(path, latest)
    return CallReport(path=path, latest_path=latest, summary=summary, sections=list(SECTIONS))


def report_from_settings(
    settings: Settings, warehouse: Warehouse | None = None, *, account: str | None = None
) -> CallReport:
    """:func:`build_report` into ``BULUTFON_DATA_DIR/reports``, read from the analysts'
    copy when one is published (a load never waits for it), else from the warehouse itself
    (nothing loaded yet, or the copy's folder was cleaned; a PostgreSQL warehouse is read
    directly, its readers never block a load).

    Args:
        warehouse: the warehouse the settings name, when the caller has it already.
        account: report this account's calls only; default every account's.
    """
    from bulutfon_pipeline.warehouse.duckdb_analytics import read_only_warehouse

    wh = Warehouse.from_settings(settings) if warehouse is None else warehouse
    source = wh
    if not wh.is_server:
        copy = settings.analytics_path_setting or analytics_path_for(wh.path)
        source = read_only_warehouse(copy) if copy.is_file() else wh
    return build_report(source, out_dir=settings.data_dir / REPORTS_DIR, account=account)
