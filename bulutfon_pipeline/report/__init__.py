"""The call report: one self-contained HTML page built from the marts (no dagster).

``data.py`` reads the marts and derives the headline numbers, ``charts.py`` draws them
with matplotlib, ``page.py`` lays out the HTML and ``build.py`` writes the files.

>>> from bulutfon_pipeline.report import REPORTS_DIR, build_report
>>> build_report(warehouse, out_dir=data_dir / REPORTS_DIR)  # doctest: +SKIP
"""

from bulutfon_pipeline.report.build import (
    REPORTS_DIR,
    CallReport,
    build_report,
    report_from_settings,
)
from bulutfon_pipeline.report.data import ReportSummary, summarize
from bulutfon_pipeline.report.page import SECTIONS

__all__ = [
    "REPORTS_DIR",
    "SECTIONS",
    "CallReport",
    "ReportSummary",
    "build_report",
    "report_from_settings",
    "summarize",
]
