"""The Dagster side of webhooks: the job that loads pushed calls, and the sensor that
starts it for new hangups in the inbox.

The sensor's cursor is ``{"inbox": id, "consumed": seq, "pending": {...} | null}``:
``inbox`` is the inbox file's random id (a replaced file is read from its start);
``consumed`` the inbox ``seq`` up to which every hangup was loaded by a run that
*succeeded*; ``pending`` names the run requested for the hangups after it (its run key
and the last ``seq`` it covers). Each tick:

1. with a pending run: if it succeeded, its hangups become consumed; if it failed or was
   canceled, the same hangups are requested again under a new run key (a retry: at once
   after a first failure, then after the interval doubling per failure, up to 10 min,
   so that a run that keeps failing does not start at every tick); while
   it is queued or running, the tick skips (one load at a time: on DuckDB the runs would
   only queue behind each other on the file);
2. with none pending: the hangups after ``consumed`` (at most :data:`MAX_CALLS_PER_RUN`)
   become one run request, their uuids per account in the run config (visible in the
   launchpad); the run loads each account's calls with that account's client and rows.

So a hangup is consumed only by a run that succeeded, a failed run is retried, and a
replayed event (stored once in the inbox, and skipped by the load when its call is in
``cdrs``) changes nothing. The scheduled listing scan stays the reconciler: it loads
every call whose post was lost, or whose detail a run deferred.
"""

import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import dagster as dg

from bulutfon_pipeline.accounts import find_account
from bulutfon_pipeline.assets._common import WRITER_POOL
from bulutfon_pipeline.resources import BulutfonResource, SettingsResource, WarehouseResource
from bulutfon_pipeline.settings import SettingsError
from bulutfon_pipeline.webhook.config import DEFAULT_SENSOR_INTERVAL_S, WebhookConfig
from bulutfon_pipeline.webhook.inbox import Inbox, InboxError
from bulutfon_pipeline.webhook.load import PushedLoadSummary, load_pushed_calls

__all__ = [
    "BATCH_TAG",
    "MAX_CALLS_PER_RUN",
    "SENSOR_INTERVAL_S",
    "PushedCallsConfig",
    "bulutfon_webhook_sensor",
    "webhook_load_job",
]

#: The run tag naming the batch of hangups a run loads (the sensor finds its run by it).
BATCH_TAG = "bulutfon/webhook-batch"
#: The most calls one run loads: a backlog (the sensor was off) becomes several runs.
MAX_CALLS_PER_RUN = 2000
_INTERVAL_ENV = "BULUTFON_WEBHOOK_SENSOR_INTERVAL_S"


def _interval_from_env() -> int:
    raw = os.environ.get(_INTERVAL_ENV, "").strip()
    # Read when the code location loads; a malformed value keeps the default (as the
    # schedules do with theirs) rather than stopping the definitions from loading.
    return int(raw) if raw.isdigit() and int(raw) > 0 else DEFAULT_SENSOR_INTERVAL_S


#: The sensor's minimum interval (BULUTFON_WEBHOOK_SENSOR_INTERVAL_S, default 10 s).
SENSOR_INTERVAL_S = _interval_from_env()


class PushedCallsConfig(dg.Config):
    """Run configuration of the webhook load."""

    calls: dict[str, list[str]]
    """Per account, the calls whose hangup was pushed; those already loaded are skipped."""


@dg.op(name="load_pushed_calls", pool=WRITER_POOL)
def load_pushed_calls_op(
    context: dg.OpExecutionContext,
    config: PushedCallsConfig,
    bulutfon: BulutfonResource,
    warehouse: WarehouseResource,
    settings: SettingsResource,
) -> dg.Output[None]:
    """Fetch and load the detail of each pushed call not loaded yet, account by account
    (an account's failure fails the run after the others loaded: the sensor retries it,
    and the calls loaded already are skipped then)."""
    knobs = settings.get()
    total = PushedLoadSummary()
    failed: list[str] = []
    for name, uuids in config.calls.items():
        try:
            account = find_account(name)
            with bulutfon.client(account) as client:
                summary = load_pushed_calls(
                    client,
                    warehouse.warehouse(name),
                    uuids,
                    batch_size=knobs.detail_batch_size,
                    mirror_recording_deletes=(
                        knobs.data_dir if knobs.mirror_recording_deletes else None
                    ),
                )
        except Exception as error:
            lines = str(error).splitlines() or [type(error).__name__]
            context.log.error("account %r: %s", name, lines[0])
            failed.append(name)
            continue
        context.log.info(
            "account %r: pushed calls %d, already loaded %d, fetched %d, new %d, "
            "deferred to the scan %d",
            name,
            summary.requested,
            summary.already_loaded,
            summary.fetched,
            summary.new,
            len(summary.deferred),
        )
        total = total.plus(summary)
    if failed:
        raise dg.Failure(
            f"the pushed calls of account(s) {', '.join(map(repr, failed))} were not loaded "
            "(the sensor runs them again)",
            metadata=total.to_metadata(),
        )
    return dg.Output(None, metadata=total.to_metadata())


@dg.job(
    name="bulutfon_webhook_load",
    description="Load the calls whose hangup a webhook pushed (started by the webhook sensor).",
    tags={"bulutfon/trigger": "webhook"},
    # One op: a step process of its own (the default multiprocess executor) would only add
    # a second interpreter start-up and import to every run, and the latency is the point.
    executor_def=dg.in_process_executor,
)
def webhook_load_job() -> None:
    load_pushed_calls_op()


@dataclass
class _Pending:
    key: str
    after: int
    through: int
    attempt: int
    #: Runs of these hangups that failed so far (they space the retries out).
    failures: int = 0


@dataclass
class _Cursor:
    inbox: str = ""
    consumed: int = 0
    pending: _Pending | None = None

    @classmethod
    def parse(cls, text: str | None) -> "_Cursor":
        if not text:
            return cls()
        raw = json.loads(text)
        pending = raw.get("pending")
        return cls(raw["inbox"], int(raw["consumed"]), _Pending(**pending) if pending else None)

    def dumps(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))


_FAILED = {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
#: The longest wait before retrying a failed run (a run that keeps failing, e.g. on bad
#: credentials, is retried at most this often instead of at every tick).
MAX_RETRY_WAIT_S = 600.0


def _now() -> float:
    return time.time()


def _retry_wait_s(failures: int, ended_at: float | None) -> float:
    """How long to wait still before retrying a run that ended at ``ended_at``: nothing
    after a first failure, then the interval doubling per failure, up to the cap."""
    if failures == 0 or ended_at is None:
        return 0.0
    backoff = min(SENSOR_INTERVAL_S * 2.0 ** (failures - 1), MAX_RETRY_WAIT_S)
    return max(0.0, ended_at + backoff - _now())


def _run_request(
    inbox: Inbox, after: int, attempt: int, failures: int = 0
) -> tuple[dg.RunRequest, _Pending] | None:
    """A run for the hangups after ``after``, keyed by the inbox, the range and the
    attempt: a key Dagster has launched once is never launched again."""
    hangups = inbox.hangups_after(after, limit=MAX_CALLS_PER_RUN)
    if not hangups:
        return None
    through = hangups[-1].seq
    key = f"webhook-{inbox.inbox_id[:12]}-{after + 1}-{through}-{attempt}"
    calls: dict[str, list[str]] = {}
    for hangup in hangups:
        calls.setdefault(hangup.account, []).append(hangup.uuid)
    request = dg.RunRequest(
        run_key=key,
        run_config={"ops": {"load_pushed_calls": {"config": {"calls": calls}}}},
        tags={BATCH_TAG: key},
    )
    return request, _Pending(key, after, through, attempt, failures)


@dg.sensor(
    job=webhook_load_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Loads the calls of new hangups in the webhook inbox; a failed run is retried.",
)
def bulutfon_webhook_sensor(context: dg.SensorEvaluationContext) -> Any:
    """New hangups in the inbox -> a run of ``bulutfon_webhook_load`` (see the module)."""
    cursor = _Cursor.parse(context.cursor)
    try:
        inbox = Inbox(WebhookConfig.from_env().inbox_path)
    except (InboxError, SettingsError) as error:
        return dg.SkipReason(str(error))
    with inbox:
        if cursor.inbox != inbox.inbox_id:
            if cursor.inbox:
                # A new inbox file (its seq restarts at 1): read it from the start; the
                # load skips the calls already in cdrs.
                context.log.warning("the webhook inbox was replaced; reading it from the start")
            cursor = _Cursor(inbox=inbox.inbox_id)
            context.update_cursor(cursor.dumps())
        pending = cursor.pending
        if pending is not None:
            records = context.instance.get_run_records(
                filters=dg.RunsFilter(tags={BATCH_TAG: pending.key}), limit=1
            )
            run = records[0].dagster_run if records else None
            status = run.status if run else None
            wait = _retry_wait_s(pending.failures, records[0].end_time if records else None)
            if status in _FAILED and wait > 0:
                return dg.SkipReason(
                    f"run {run.run_id if run else '?'} failed; retrying in {wait:.0f} s"
                )
            if status == dg.DagsterRunStatus.SUCCESS:
                cursor = _Cursor(cursor.inbox, consumed=pending.through)
            elif status in _FAILED or status is None:
                # Failed: retry under a new key. Not found (the daemon creates the run in
                # the tick that requested it, so it was never created, or it was deleted):
                # a new key too, since Dagster never launches a used key again. A
                # duplicate run would be harmless: the load skips calls in cdrs.
                failures = pending.failures + (status is not None)
                made = _run_request(inbox, pending.after, pending.attempt + 1, failures)
                if made is None:  # cannot happen while the inbox keeps its rows
                    context.update_cursor(_Cursor(cursor.inbox, pending.through).dumps())
                    return dg.SkipReason("the pending hangups are gone from the inbox")
                request, retry = made
                # A retry covers the failed run's hangups and the new ones that fit.
                context.update_cursor(_Cursor(cursor.inbox, cursor.consumed, retry).dumps())
                return [request]
            else:
                return dg.SkipReason(
                    f"run {run.run_id if run else '?'} for hangups up to #{pending.through} "
                    f"is {status.value}"
                )
        made = _run_request(inbox, cursor.consumed, attempt=0)
        if made is None:
            context.update_cursor(cursor.dumps())
            refused = inbox.rejected_count()
            note = f"; {refused} refused posts in the inbox's rejected_posts" if refused else ""
            return dg.SkipReason(f"no new hangups after #{cursor.consumed}{note}")
        request, pending = made
        context.update_cursor(_Cursor(cursor.inbox, cursor.consumed, pending).dumps())
        return [request]
