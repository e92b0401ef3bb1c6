"""Dagster assets (group ``bulutfon``): thin wrappers around :mod:`bulutfon_pipeline.loads`."""

from bulutfon_pipeline.assets.details import cdr_details
from bulutfon_pipeline.assets.listing import cdr_listing

__all__ = ["cdr_details", "cdr_listing"]
