"""The simulator over a real socket: endpoints, auth, paging, faults, stats, admin, CLI."""

from __future__ import annotations

import json

import httpx
import pytest

from bulutfon_pipeline.simulator.app import to_jsonable

UA = {"User-Agent": "bulutfon-pipeline-tests"}


def _client(sim, token=None) -> httpx.Client:
    params = {"access_token": token if token is not None else sim.master_token}
    return httpx.Client(base_url=sim.url, params=params, headers=UA, timeout=10)


def _page_all(client, path, limit):
    pages, page = [], 1
    while True:
        body = client.get(path, params={"page": page, "limit": limit}).json()
        pages.append([item["uuid"] for item in body["cdrs"]])
        if body["pagination"]["next_page"] is None:
            return pages
        page += 1


@pytest.mark.parametrize("dialect, path", [("seed", "/cdr.json"), ("v1", "/cdrs")])
def test_paging_covers_every_uuid_once(simulator_factory, dialect, path):
    sim = simulator_factory(days=2, calls_per_day=45, dialect=dialect)
    with _client(sim) as client:
        pages = _page_all(client, path, limit=25)
        first = client.get(path, params={"limit": 25}).json()
    seen = [u for page in pages for u in page]
    assert seen == sim.dataset.uuids  # every call once, newest first
    assert len(pages) == 4 and [len(p) for p in pages] == [25, 25, 25, 15]
    pagination = first["pagination"]
    assert pagination == {
        "page": 1, "limit": 25, "total_count": 90, "total_pages": 4,
        "previous_page": None, "next_page": f"{sim.url}{path}?page=2",
    }  # fmt: skip
    assert sim.stats()["listing"] == {"200": 5}


def test_both_path_sets_are_served_whatever_the_dialect(simulator):
    with _client(simulator) as client:
        uuid = client.get("/cdrs").json()["cdrs"][0]["uuid"]
        seed_detail = client.get(f"/cdr/{uuid}.json").json()["cdr"]
        v1_detail = client.get(f"/cdrs/{uuid}").json()["cdr"]
    assert seed_detail == v1_detail
    assert seed_detail["uuid"] == uuid and isinstance(seed_detail["call_flow"], list)
    assert simulator.stats()["detail_uuids"] == {uuid: 2}


def test_limit_defaults_to_100_and_is_clamped(simulator_factory):
    sim = simulator_factory(days=3, calls_per_day=400, max_page_size=500)
    with _client(sim) as client:
        assert client.get("/cdrs").json()["pagination"]["limit"] == 100
        assert len(client.get("/cdrs", params={"limit": 5000}).json()["cdrs"]) == 500
        sim.update_config(max_page_size=5000)
        assert len(client.get("/cdrs", params={"limit": 5000}).json()["cdrs"]) == 1200


def test_unpaginated_listing_is_the_bare_seed_shape(simulator_factory):
    sim = simulator_factory(days=1, calls_per_day=30, paginate=False)
    with _client(sim) as client:
        body = client.get("/cdr.json").json()
    assert list(body) == ["cdrs"] and len(body["cdrs"]) == 30


def test_live_calls_push_items_across_pages(simulator_factory):
    sim = simulator_factory(days=1, calls_per_day=60, live_calls_per_page=4)
    before = set(sim.dataset.uuids)
    with _client(sim) as client:
        pages = _page_all(client, "/cdrs", limit=20)
    seen = [u for page in pages for u in page]
    # 4 calls arrive before each page > 1: each shifts 4 old items onto the next page.
    assert len(seen) > len(set(seen))
    assert set(seen) == before  # new calls land on page 1, which was already read
    assert len(sim.dataset) > len(before)
    assert set(sim.dataset.uuids) - before <= {r["uuid"] for r in sim.expected_tables()["cdrs"]}


def test_missing_and_malformed_details(simulator_factory):
    sim = simulator_factory(days=2, calls_per_day=40, missing_detail_count=2, malformed_count=5,
                            unknown_field_count=2)  # fmt: skip
    faults = sim.dataset.faults
    with _client(sim) as client:
        responses = {u: client.get(f"/cdr/{u}.json") for u in faults}
    for uuid, fault in faults.items():
        r = responses[uuid]
        if fault == "missing":
            assert r.status_code == 404 and r.json() == {"error": "Not found"}
        elif fault == "malformed:html_200":
            assert r.status_code == 200 and r.text.startswith("<!DOCTYPE html>")
        elif fault == "malformed:empty_200":
            assert r.status_code == 200 and r.content == b""
        elif fault == "malformed:impossible_date":
            assert r.json()["cdr"]["hangup_time"] == "31-02-2015 10:00"
        elif fault == "malformed:flow_not_list":
            assert isinstance(r.json()["cdr"]["call_flow"], dict)
        elif fault == "malformed:origination_missing_fields":
            steps = r.json()["cdr"]["call_flow"]
            assert {} in [o for s in steps for o in s.get("origination", [])]
        else:
            assert r.json()["cdr"]["queue_wait_seconds"] == 4
    rejects = sim.expected_tables()["load_rejects"]
    assert sorted(r["stage"] for r in rejects) == ["detail"] * 4 + ["normalize"] * 3
    with _client(sim) as client:
        assert client.get("/cdrs/not-a-call").status_code == 404


def test_auth_errors(simulator):
    with httpx.Client(base_url=simulator.url, headers=UA) as client:
        assert client.get("/cdr.json").json() == {"error": "Invalid token"}
        r = client.get("/cdr.json", params={"access_token": "nope"})
        assert r.status_code == 401 and r.json() == {"error": "Invalid token"}
    no_ua = httpx.get(
        simulator.url + "/cdr.json",
        params={"access_token": simulator.master_token},
        headers={"User-Agent": ""},
    )
    assert no_ua.status_code == 400


def _grant(sim, **form):
    return httpx.post(
        sim.token_url,
        data={"client_id": sim.client_id, "client_secret": sim.client_secret, **form},
        headers=UA,
    )


def test_authorization_code_then_expiry_then_rotating_refresh(simulator_factory):
    sim = simulator_factory(days=1, calls_per_day=5, expired_status=403)
    code = sim.issue_auth_code()
    first = _grant(sim, grant_type="authorization_code", code=code, redirect_uri="urn:x")
    body = first.json()
    assert first.status_code == 200
    assert body["token_type"] == "bearer" and body["expires_in"] == 7200
    assert body["scope"] == "cdr call_record" and isinstance(body["created_at"], int)
    assert _grant(sim, grant_type="authorization_code", code=code).json() == {
        "error": "invalid_grant"
    }
    with _client(sim, body["access_token"]) as client:
        assert client.get("/cdrs").status_code == 200
        assert sim.expire_tokens() == 1
        expired = client.get("/cdrs")
    assert expired.status_code == 403 and expired.json() == {"error": "Token expired"}

    refreshed = _grant(sim, grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert refreshed.status_code == 200
    new = refreshed.json()
    assert new["refresh_token"] != body["refresh_token"]
    with _client(sim, new["access_token"]) as client:
        assert client.get("/cdrs").status_code == 200
    reused = _grant(sim, grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert reused.status_code == 400 and reused.json() == {"error": "invalid_grant"}
    bad_client = httpx.post(sim.token_url, headers=UA, data={
        "grant_type": "refresh_token", "client_id": sim.client_id, "client_secret": "x",
        "refresh_token": new["refresh_token"],
    })  # fmt: skip
    assert bad_client.status_code == 401
    assert sim.stats()["token"] == {"200": 2, "400": 2, "401": 1}


def test_initial_refresh_token_and_token_ttl(simulator_factory):
    sim = simulator_factory(days=1, calls_per_day=5, token_ttl_s=0, rotate_refresh_tokens=False)
    body = _grant(sim, grant_type="refresh_token", refresh_token=sim.initial_refresh_token).json()
    assert body["refresh_token"] == sim.initial_refresh_token  # no rotation
    assert body["expires_in"] == 0
    with _client(sim, body["access_token"]) as client:
        assert client.get("/cdrs").json() == {"error": "Token expired"}
    with _client(sim) as client:  # the master token never expires
        assert client.get("/cdrs").status_code == 200


def test_rate_limit_per_token(simulator_factory):
    sim = simulator_factory(days=1, calls_per_day=5, rate_limit_rps=5, rate_limit_retry_after=True)
    with _client(sim) as client:
        responses = [client.get("/cdrs") for _ in range(40)]
    limited = [r for r in responses if r.status_code == 429]
    stats = sim.stats()["listing"]
    assert stats["429"] == len(limited) > 0
    assert stats["200"] >= 5
    assert limited[0].json() == {"error": "Too Many Requests"}
    assert limited[0].headers["Retry-After"] == "1"


def test_random_faults(simulator_factory):
    sim = simulator_factory(days=1, calls_per_day=5, error_rate=1.0, html_error_share=0.5)
    with _client(sim) as client:
        statuses = [client.get("/cdrs") for _ in range(30)]
        assert {r.status_code for r in statuses} <= {500, 502, 503}
        assert any(r.headers["content-type"].startswith("text/html") for r in statuses)
        assert any(r.headers["content-type"].startswith("application/json") for r in statuses)
        sim.update_config(error_rate=0.0, truncate_rate=1.0)
        cut = client.get("/cdrs")
        assert cut.status_code == 200
        with pytest.raises(json.JSONDecodeError):
            json.loads(cut.content)
        sim.update_config(truncate_rate=0.0, random_429_rate=1.0, random_429_retry_after_share=0.0)
        r = client.get("/cdrs")
        assert r.status_code == 429 and "Retry-After" not in r.headers
        sim.update_config(random_429_rate=0.0)
        assert client.get("/cdrs").status_code == 200
    # the token endpoint is never faulted
    sim.update_config(error_rate=1.0)
    assert (
        _grant(sim, grant_type="refresh_token", refresh_token=sim.initial_refresh_token).status_code
        == 200
    )


def test_recordings_are_real_audio(simulator_factory):
    sim = simulator_factory(days=2, calls_per_day=60, recording_share=0.8)
    calls = sim.dataset.calls
    recorded = [c for c in calls if c.call_record == "YES"]
    without = [c for c in calls if c.call_record != "YES"]
    types = set()
    with _client(sim) as client:
        for call in recorded:
            r = client.get(f"/call-records/{call.uuid}")
            assert r.status_code == 200
            types.add(r.headers["content-type"])
            if call.recording_format == "wav":
                assert r.content[:4] == b"RIFF" and r.content[8:12] == b"WAVE"
            else:
                assert r.content[:2] == b"\xff\xfb"
        assert client.get(f"/call-records/{without[0].uuid}").status_code == 404
    assert {"audio/wav", "audio/mpeg", "application/octet-stream"} <= types


def test_admin_endpoints(simulator):
    with httpx.Client(base_url=simulator.url, headers=UA) as admin, _client(simulator) as api:
        api.get("/cdr.json")
        assert admin.get("/_admin/stats").json()["listing"] == {"200": 1}
        admin.post("/_admin/stats/reset")
        assert simulator.stats()["listing"] == {}
        uuids = admin.post("/_admin/calls", json={"count": 2, "where": "head"}).json()["uuids"]
        assert simulator.dataset.uuids[:2] == uuids[::-1]
        late = admin.post("/_admin/calls", json={"count": 1, "where": "late", "hours_ago": 3})
        assert late.json()["uuids"][0] in simulator.dataset.uuids
        config = admin.post("/_admin/config", json={"rate_limit_rps": 50}).json()
        assert config["rate_limit_rps"] == 50 and "master_token" not in config
        assert admin.post("/_admin/config", json={"seed": 1}).status_code == 400
        expected = admin.get("/_admin/expected").json()
        assert len(expected["cdrs"]) == 123
        assert expected == to_jsonable(simulator.expected_tables())
        assert expected["cdrs"][0]["call_time"].endswith("+00:00")
        code = admin.post("/_admin/auth-code").json()["code"]
    assert _grant(simulator, grant_type="authorization_code", code=code).status_code == 200


def test_env_points_a_client_at_the_simulator(simulator_factory):
    sim = simulator_factory(days=1, calls_per_day=5, dialect="v1")
    master = sim.env()
    assert master["BULUTFON_API_URL"] == sim.url
    assert master["BULUTFON_CDR_LIST_PATH"] == "/cdrs"
    assert master["BULUTFON_CDR_DETAIL_PATH"] == "/cdrs/{uuid}"
    assert master["BULUTFON_ACCESS_TOKEN"] == sim.master_token
    oauth = sim.env(auth="oauth")
    assert oauth["BULUTFON_REFRESH_TOKEN"] == sim.initial_refresh_token
    assert "BULUTFON_ACCESS_TOKEN" not in oauth
    assert sim.master_token not in repr(sim)
    assert master["BULUTFON_API_VERSION"] == "v1" and "BULUTFON_API_KEY" not in master
    v2_sim = simulator_factory(days=1, calls_per_day=5, dialect="v2")
    v2 = v2_sim.env(auth="oauth")  # whatever auth: the v2 key
    assert (v2["BULUTFON_API_VERSION"], v2["BULUTFON_API_KEY"]) == ("v2", v2_sim.api_key)
    assert "BULUTFON_ACCESS_TOKEN" not in v2 and "BULUTFON_CLIENT_ID" not in v2
