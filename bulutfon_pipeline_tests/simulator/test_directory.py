"""The simulator's directory routes (``/extensions``, ``/groups``, ``/dids``): shapes as
``shared/bulutfon-api.md`` §5 documents them, consistency with the calls, the ``Date``
header, ETags, the month's changes and each account's own directory. One server for the
module; each test resets what it changes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from bulutfon_pipeline.simulator import SimulatorConfig, SimulatorServer
from bulutfon_pipeline.simulator.directory import Directory
from bulutfon_pipeline.simulator.generator import DID, EXTENSIONS, GROUPS

UA = {"User-Agent": "bulutfon-pipeline-tests"}
CLOCK = "2015-04-10T09:00:00+03:00"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorServer]:
    server = SimulatorServer(
        SimulatorConfig(days=1, calls_per_day=5, clock=CLOCK), accounts=["izmir", "ankara"]
    ).start()
    yield server
    server.stop()


def _get(sim: SimulatorServer, path: str, account: str = "izmir", **headers: str) -> httpx.Response:
    token = sim.account(account).master_token
    return httpx.get(
        sim.url + path, params={"access_token": token}, headers={**UA, **headers}, timeout=10
    )


def test_lists_and_details_have_the_documented_shapes(sim: SimulatorServer) -> None:
    extensions = _get(sim, "/extensions").json()["extensions"]
    assert [str(e["number"]) for e in extensions] == list(EXTENSIONS)
    assert {tuple(sorted(e)) for e in extensions} == {
        ("caller_name", "email", "id", "number", "registered")
    }
    # Numbers come as numbers or as strings, as the real API sends them.
    assert {type(e["number"]) for e in extensions} == {int, str}
    first = extensions[0]
    detail = _get(sim, f"/extensions/{first['id']}").json()["extension"]
    assert sorted(set(detail) - set(first)) == [
        "acl", "destination_number", "destination_type", "did", "external_number",
        "redirection_type", "voice_mail",
    ]  # fmt: skip
    assert str(detail["did"]) == DID and set(detail["acl"]) <= {"domestic", "gsm", "international"}

    groups = _get(sim, "/groups").json()["groups"]
    assert [str(g["number"]) for g in groups] == list(GROUPS)
    assert {tuple(sorted(g)) for g in groups} == {
        ("delay_time", "id", "name", "number", "ring_duration", "timeout")
    }
    for group in groups:
        members = _get(sim, f"/groups/{group['id']}").json()["group"]["extensions"]
        assert [str(m["number"]) for m in members] == list(GROUPS[str(group["number"])])
        assert {tuple(sorted(m)) for m in members} == {("caller_name", "email", "id", "number")}

    dids = _get(sim, "/dids").json()["dids"]
    assert [str(d["number"]) for d in dids] == [DID, str(int(DID) + 1)]
    assert {tuple(sorted(d)) for d in dids} == {
        ("destination_id", "destination_number", "destination_type", "id", "number", "state",
         "working_hour")
    }  # fmt: skip
    hours = _get(sim, f"/dids/{dids[0]['id']}").json()["did"]["working_hours"]
    assert list(hours) == ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                           "sunday"]  # fmt: skip
    assert hours["wednesday"] == {
        "open": True, "shift_start": "08:30", "shift_finish": "18:30",
        "lunch_break_start": "12:30", "lunch_break_finish": "13:30",
    }  # fmt: skip
    assert hours["saturday"] == {"open": True, "shift_start": "09:00", "shift_finish": "13:00"}
    assert hours["sunday"] == {"open": False}


def test_suffix_date_etag_auth_and_stats(sim: SimulatorServer) -> None:
    sim.reset_stats()
    bare = _get(sim, "/groups/11")
    assert _get(sim, "/groups/11.json").content == bare.content
    # The simulator's clock (2015-04-10 09:00 Istanbul) is the Date of every answer.
    assert bare.headers["date"] == "Fri, 10 Apr 2015 06:00:00 GMT"
    assert bare.headers.get_list("date") == [bare.headers["date"]]
    unchanged = _get(sim, "/groups/11", **{"If-None-Match": bare.headers["etag"]})
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    assert _get(sim, "/groups/11", **{"If-None-Match": '"other"'}).status_code == 200
    assert _get(sim, "/extensions/999").status_code == 404
    refused = httpx.get(sim.url + "/dids", params={"access_token": "nope"}, headers=UA)
    assert refused.status_code == 401
    assert sim.stats(account="izmir")["directory"] == {"200": 3, "304": 1, "404": 1}
    assert sim.stats()["directory"] == {"200": 3, "304": 1, "404": 1, "401": 1}
    assert sim.stats()["listing"] == {} and sim.stats()["detail"] == {}


def test_the_months_changes_are_each_accounts_own(sim: SimulatorServer) -> None:
    before = _get(sim, "/extensions/5104").json()["extension"]["caller_name"]
    ankara_before = _get(sim, "/extensions", "ankara").json()
    etag = _get(sim, "/groups/11").headers["etag"]
    with httpx.Client(base_url=sim.url, headers=UA) as admin:
        changes = admin.post("/_admin/accounts/izmir/directory/change").json()
        assert admin.post("/_admin/accounts/izmir/directory/change").json() == changes
    try:
        members_101 = [*(f"10{i:02d}" for i in range(1, 10)), "1011"]
        assert changes == {"renamed": {"1004": f"{before} Erdem"}, "members": {"101": members_101}}
        renamed = _get(sim, "/extensions/5104").json()["extension"]
        assert renamed["caller_name"] == f"{before} Erdem" and str(renamed["number"]) == "1004"
        group = _get(sim, "/groups/11", **{"If-None-Match": etag})
        assert group.status_code == 200  # its members changed: a new ETag
        assert [str(m["number"]) for m in group.json()["group"]["extensions"]] == members_101
        # 1011 stays in group 102 too; the other account's directory did not change.
        group_102 = _get(sim, "/groups/12").json()["group"]["extensions"]
        assert [str(m["number"]) for m in group_102] == list(GROUPS["102"])
        assert _get(sim, "/extensions", "ankara").json() == ankara_before
        assert ankara_before != _get(sim, "/extensions").json()  # names rotate by seed
    finally:
        izmir = sim.account("izmir")
        izmir.directory = Directory(izmir.config.seed)  # as it was, for the next test
