"""The simulator changes a call after the fact, through its admin endpoint, consistently in
the listing, the detail, the recording endpoint and its ground truth."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import httpx
import pytest

from bulutfon_pipeline.settings import LOCAL_TZ

#: Stands for a call of the dataset in the cases below.
CALL = object()


def _get(sim, path: str) -> httpx.Response:
    return httpx.get(sim.url + path, params={"access_token": sim.master_token}, timeout=10)


def _listing_item(sim, uuid: str) -> dict:
    list_path = sim.paths[0]
    items = _get(sim, list_path + "?limit=500").json()["cdrs"]
    return next(item for item in items if item["uuid"] == uuid)


def test_a_change_shows_in_listing_detail_recording_and_ground_truth(simulator_factory) -> None:
    sim = simulator_factory(days=1, calls_per_day=30, dialect="v1", recording_share=1.0)
    call = next(c for c in sim.dataset.calls if c.call_record == "YES" and c.answered)
    _, detail_path, recording_path = sim.paths
    assert _get(sim, recording_path.format(uuid=call.uuid)).status_code == 200
    hangup = call.hangup_time + dt.timedelta(minutes=3, seconds=25)  # floored to the minute
    item = sim.change_call(
        call.uuid, call_record="REMOVED", call_price=Decimal("0.25"), hangup_time=hangup
    )
    floored = (call.hangup_time + dt.timedelta(minutes=3)).replace(second=0)
    local_end = floored.astimezone(LOCAL_TZ).isoformat()
    assert (item["call_record"], item["call_price"], item["hangup_time"]) == (
        "REMOVED", "0.2500", local_end,
    )  # fmt: skip
    assert _listing_item(sim, call.uuid) == item
    detail = _get(sim, detail_path.format(uuid=call.uuid)).json()["cdr"]
    assert {k: detail[k] for k in item} == item
    assert _get(sim, recording_path.format(uuid=call.uuid)).status_code == 404
    row = next(r for r in sim.expected_tables()["cdrs"] if r["uuid"] == call.uuid)
    assert (row["call_record"], row["has_recording"], row["call_price"], row["hangup_time"]) == (
        "REMOVED", False, Decimal("0.2500"), floored,
    )  # fmt: skip
    assert row["talk_seconds"] == int((floored - call.answer_time).total_seconds())


def test_seed_dialect_renders_a_removed_recording_as_yok(simulator_factory) -> None:
    sim = simulator_factory(days=1, calls_per_day=20, dialect="seed", recording_share=1.0)
    call = next(c for c in sim.dataset.calls if c.call_record == "YES")
    assert sim.change_call(call.uuid, call_record="REMOVED")["call_record"] == "Yok"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"uuid": "no-such-call", "call_price": "1"}, 404),
        ({"call_price": "1"}, 400),  # no uuid
        ({"uuid": None, "call_record": "REMOVED"}, 400),
        ({"uuid": CALL, "call_record": "GONE"}, 400),  # not YES/NO/REMOVED
        ({"uuid": CALL, "call_price": "abc"}, 400),
        ({"uuid": CALL, "hangup_time": "2015-04-16T10:00:00"}, 400),  # no offset
        ({"uuid": CALL, "call_time": "2015-04-16T10:00:00+03:00"}, 400),  # not changeable
    ],
)
def test_bad_changes_are_refused_and_change_nothing(simulator_factory, body, status) -> None:
    sim = simulator_factory(days=1, calls_per_day=5, dialect="v1")
    before = sim.expected_tables()
    if body.get("uuid") is CALL:
        body = {**body, "uuid": sim.dataset.calls[0].uuid}
    response = httpx.post(sim.url + "/_admin/change", json=body, timeout=10)
    assert response.status_code == status, response.text
    assert "error" in response.json()
    assert sim.expected_tables() == before
