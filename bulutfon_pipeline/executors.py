"""Dagster's executor for the code location's jobs, chosen by ``BULUTFON_EXECUTOR``.

Unset (``multiprocess``): Dagster's multiprocess executor, each step of a run in a child
process of that run's worker, forked from a server process that imported the code
location once per run (start method ``forkserver``). Dagster's default, ``spawn``, starts
a new interpreter for every step, which imports Dagster and the code location again:
about 4 CPU seconds a step before it does any work.

``celery``: dagster-celery's executor. The run's worker then sends each step as a task to
a Celery queue (the broker, Redis), and ``dagster-celery worker`` processes on any machine
run the steps and write their events to the Dagster instance (which must therefore be
shared: PostgreSQL, deploy/dagster.yaml). The workers start with deploy/celery.yaml, which
holds the same settings as :data:`CELERY_CONFIG` (a test compares them). docs/deploy.md
has the whole setup.

Only the *names* of the broker's and the result backend's variables are written here:
Dagster reads their values (a Redis URL may hold a password) when a run starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from bulutfon_pipeline.settings import SettingsError, parse_executor

#: The broker's URL, e.g. ``redis://redis.internal:6379/0`` (read when a run starts).
CELERY_BROKER_ENV = "BULUTFON_CELERY_BROKER_URL"
#: Where workers put each step's result for the run's worker, e.g.
#: ``redis://redis.internal:6379/1`` (read when a run starts).
CELERY_BACKEND_ENV = "BULUTFON_CELERY_BACKEND_URL"

#: Celery's own settings, for the executor (the run's side) and the workers alike.
CELERY_APP_SETTINGS: dict[str, Any] = {
    # A worker acknowledges a step when it has run it, not when it takes it: with
    # dagster-celery's prefetch of 1, a busy worker then holds no second step back, so the
    # steps that are ready go to idle workers; and a step whose worker dies stays in Redis
    # and goes to another worker after the visibility timeout below, instead of being
    # lost (every load is idempotent: rows and high-water marks commit together).
    "task_acks_late": True,
    # With late acks, Redis hands an unacknowledged task to another worker after this many
    # seconds (default 1 hour): longer than any step, so a long reconcile never runs twice.
    # The other keys are dagster-celery's defaults, which this dict replaces.
    "broker_transport_options": {
        "visibility_timeout": 43200,
        "max_retries": 3,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    },
}

#: The celery executor's configuration; deploy/celery.yaml's ``execution.config``.
CELERY_CONFIG: dict[str, Any] = {
    "broker": {"env": CELERY_BROKER_ENV},
    "backend": {"env": CELERY_BACKEND_ENV},
    "config_source": CELERY_APP_SETTINGS,
}


def executor_from_env(env: Mapping[str, str] | None = None) -> dg.ExecutorDefinition:
    """The executor ``BULUTFON_EXECUTOR`` names: :func:`multiprocess_executor` or Celery's.

    Raises:
        SettingsError: an unknown executor, ``celery`` on a DuckDB warehouse, or
            ``celery`` without dagster-celery installed (one line each). The definitions
            then fail to load rather than run steps where they cannot write.
    """
    env = os.environ if env is None else env
    if parse_executor(env) != "celery":
        return multiprocess_executor()
    return celery_executor()


def multiprocess_executor() -> dg.ExecutorDefinition:
    """Dagster's multiprocess executor, its steps forked from a server that imported the
    code location (the run's job module, which Dagster preloads by default).

    A run's config can still set ``max_concurrent``, ``tag_concurrency_limits`` and
    ``retries``; the start method is the one thing it fixes.
    """
    return dg.multiprocess_executor.configured(
        lambda config: {**config, "start_method": {"forkserver": {}}},
        name="multiprocess",
        config_schema={
            "max_concurrent": dg.Field(int, is_required=False),
            "tag_concurrency_limits": dg.Field(list, is_required=False),
            "retries": dg.Field(dg.Permissive(), is_required=False),
        },
    )


def celery_executor() -> dg.ExecutorDefinition:
    """dagster-celery's executor with :data:`CELERY_CONFIG`.

    Raises:
        SettingsError: dagster-celery is not installed.
    """
    try:
        from dagster_celery import celery_executor as executor
    except ImportError:
        raise SettingsError(
            "BULUTFON_EXECUTOR=celery needs dagster-celery and the Redis client: "
            "pip install -e '.[celery]'"
        ) from None
    return executor.configured(CELERY_CONFIG, name="celery")
