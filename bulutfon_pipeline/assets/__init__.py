"""Dagster assets (group ``bulutfon``): thin wrappers around :mod:`bulutfon_pipeline.loads`."""

from bulutfon_pipeline.assets.details import cdr_details
from bulutfon_pipeline.assets.directory import directory
from bulutfon_pipeline.assets.listing import cdr_listing
from bulutfon_pipeline.assets.recordings import call_recordings
from bulutfon_pipeline.assets.report import call_report

#: Every asset of the code location, in load order.
ASSETS = (cdr_listing, directory, cdr_details, call_recordings, call_report)

__all__ = ["ASSETS", "call_recordings", "call_report", "cdr_details", "cdr_listing", "directory"]
