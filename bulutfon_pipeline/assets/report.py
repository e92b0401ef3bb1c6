"""The ``call_report`` asset, a thin wrapper around ``report.build_report``."""

import dagster as dg

from bulutfon_pipeline.assets._common import WRITER_POOL
from bulutfon_pipeline.resources import SettingsResource, WarehouseResource

#: Its own group, so the 15-minute refresh job (group ``bulutfon``) does not redraw it.
REPORT_GROUP = "bulutfon_reports"


@dg.asset(
    deps=["cdrs", "call_flow_steps", "originations"],
    group_name=REPORT_GROUP,
    pool=WRITER_POOL,
    kinds={"html", "python"},
)
def call_report(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, settings: SettingsResource
) -> dg.MaterializeResult:
    """A self-contained HTML call report (charts of the marts) in BULUTFON_DATA_DIR/reports."""
    # Imported here: matplotlib costs every process that loads the definitions (each
    # `sync`, each run worker) most of a second, and only this asset draws.
    from bulutfon_pipeline.report import report_from_settings

    report = report_from_settings(settings.get(), warehouse.warehouse())
    context.log.info("call report written to %s", report.path)
    summary = report.summary
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(report.path.resolve())),
            "latest_path": dg.MetadataValue.path(str(report.latest_path.resolve())),
            "summary": dg.MetadataValue.md(summary.markdown()),
            "calls": summary.calls,
            "answered": summary.answered,
            "missed_incoming": summary.missed_incoming,
            "callers_to_call_back": summary.callers_to_call_back,
        }
    )
