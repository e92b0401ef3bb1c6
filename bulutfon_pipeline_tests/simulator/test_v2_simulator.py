"""The simulator's v2 API over a real socket: shapes, paging, per-account keys, rate
limits and faults on ``/v2/``, and its ground truth against v1's."""

from __future__ import annotations

import datetime as dt

import httpx

from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline.simulator import SimulatorConfig, generate_dataset
from bulutfon_pipeline.simulator.render import listing_item

UA = {"User-Agent": "bulutfon-pipeline-tests"}


def _client(sim, key: str | None = None) -> httpx.Client:
    headers = {**UA, "apikey": key if key is not None else sim.api_key}
    return httpx.Client(base_url=sim.url, headers=headers, timeout=10)


def _dated(call) -> str:
    day = call.call_time.astimezone(LOCAL_TZ)
    return f"/v2/cdr/{day:%Y}/{day:%m}/{day:%d}/{call.uuid}"


def test_v2_pages_every_call_once_in_data_with_total_pages(simulator_factory) -> None:
    sim = simulator_factory(days=2, calls_per_day=45, dialect="v2")
    uuids, page = [], 1
    with _client(sim) as client:
        while True:
            body = client.get("/v2/cdr/list", params={"page": page, "limit": 25}).json()
            assert set(body) == {"data", "pagination"}
            # only what is known of v2's paging: no next_page to follow
            assert set(body["pagination"]) == {"page", "limit", "total_count", "total_pages"}
            uuids += [item["uuid"] for item in body["data"]]
            if page >= body["pagination"]["total_pages"]:
                break
            page += 1
    assert uuids == sim.dataset.uuids
    assert body["pagination"]["total_pages"] == 4 and body["pagination"]["total_count"] == 90
    assert sim.stats()["listing"] == {"200": 4}


def test_each_key_sees_its_own_account_with_its_own_rate_limit(simulator_factory) -> None:
    sim = simulator_factory(days=1, calls_per_day=10, dialect="v2", accounts=2,
                            rate_limit_rps=3)  # fmt: skip
    keys = {name: sim.env(account=name)["BULUTFON_API_KEY"] for name in sim.account_names}
    assert len(set(keys.values())) == 2 and sim.api_key == keys["account-1"]
    statuses: dict[str, list[int]] = {}
    for name, key in keys.items():
        with _client(sim, key) as client:
            first = client.get("/v2/cdr/list", params={"limit": 100}).json()["data"]
            assert [i["uuid"] for i in first] == sim.account(name).dataset.uuids
            statuses[name] = [client.get("/v2/cdr/list").status_code for _ in range(6)]
    # A bucket of 3 per key: the burst is limited, and one key's burst not the other's.
    for name in keys:
        assert statuses[name].count(429) >= 2 and statuses[name][0] == 200
        listing = sim.stats(name)["listing"]
        assert listing["429"] == statuses[name].count(429)
    # a key is no v1 token, and no key at all is a 401 too
    with httpx.Client(base_url=sim.url, headers=UA, timeout=10) as bare:
        assert bare.get("/cdrs", params={"access_token": keys["account-2"]}).status_code == 401
        assert bare.get("/v2/cdr/list").status_code == 401


def test_v2_details_and_recordings_follow_the_faults_and_the_date(simulator_factory) -> None:
    sim = simulator_factory(days=2, calls_per_day=20, dialect="v2", missing_detail_count=1,
                            recording_share=1.0, outage_requests=2)  # fmt: skip
    calls = sim.dataset.calls
    missing = next(u for u, f in sim.dataset.faults.items() if f == "missing")
    ok = next(c for c in calls if c.uuid != missing and c.call_record == "YES")
    with _client(sim) as client:
        # an outage answers every API request 503, v2 included
        assert [client.get("/v2/cdr/list").status_code for _ in range(3)] == [503, 503, 200]
        detail = client.get(_dated(ok)).json()["data"]
        assert detail["uuid"] == ok.uuid and detail["call_record"] == sim.url + _dated(ok) + (
            "/recording"
        )
        assert client.get(detail["call_record"]).content == sim.dataset.recording(ok.uuid)[0]
        gone = next(c for c in calls if c.uuid == missing)
        assert client.get(_dated(gone)).status_code == 404
        day_before = ok.call_time.astimezone(LOCAL_TZ) - dt.timedelta(days=1)
        wrong = f"/v2/cdr/{day_before:%Y/%m/%d}/{ok.uuid}"
        assert client.get(wrong).status_code == 404
        assert client.get(wrong + "/recording").status_code == 404
    assert sim.stats()["detail"] == {"200": 1, "404": 2}
    assert sim.stats()["recording"] == {"200": 1, "404": 1}


def test_v2_truth_is_v1s_but_for_the_recording_url() -> None:
    config = SimulatorConfig(days=2, calls_per_day=25, recording_share=0.5)
    v1 = generate_dataset(config.replace(dialect="v1"))
    v2 = generate_dataset(config.replace(dialect="v2"))
    base = "http://sim.test"
    truth_v1, truth_v2 = v1.expected_tables(), v2.expected_tables(base_url=base)
    assert {k: v for k, v in truth_v1.items() if k != "cdrs"} == {
        k: v for k, v in truth_v2.items() if k != "cdrs"
    }
    removed = 0
    for row1, row2, call in zip(truth_v1["cdrs"], truth_v2["cdrs"], v2.calls, strict=True):
        assert {**row1, "call_record": None} == {**row2, "call_record": None}
        item = listing_item(call, "v2", base_url=base)
        assert item["call_record"] == row2["call_record"]
        if call.call_record == "YES":
            assert row2["call_record"] == base + _dated(call) + "/recording"
        else:  # NO, and a removed recording too
            removed += call.call_record == "REMOVED"
            assert row2["call_record"] == "NO"
        assert "extension" not in item
        assert item.get("caller_extension") == (
            None if call.extension is None else listing_item(call, "v1")["extension"]
        )
        end = call.hangup_time or call.call_time
        assert item["duration"] == int((end - call.call_time).total_seconds())
    assert removed, "the dataset should have a removed recording"
