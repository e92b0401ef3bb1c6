"""One simulator serving several accounts: each token its own calls, rate limit and stats."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys

import httpx
import pytest

from bulutfon_pipeline.simulator import SimulatorConfig, generate_dataset
from bulutfon_pipeline.simulator.accounts import account_names
from bulutfon_pipeline.simulator.app import to_jsonable

UA = {"User-Agent": "bulutfon-pipeline-tests"}


def _token(sim, account: str) -> str:
    return sim.env(account=account)["BULUTFON_ACCESS_TOKEN"]


def _client(sim, token: str) -> httpx.Client:
    return httpx.Client(base_url=sim.url, params={"access_token": token}, headers=UA, timeout=10)


def _listed(client: httpx.Client, limit: int) -> list[str]:
    """Every uuid of the listing, page by page."""
    uuids, page = [], 1
    while True:
        body = client.get("/cdrs", params={"page": page, "limit": limit}).json()
        uuids += [item["uuid"] for item in body["cdrs"]]
        if body["pagination"]["next_page"] is None:
            return uuids
        page += 1


@pytest.mark.parametrize(
    "accounts, names",
    [
        (1, ["account-1"]),  # the default: one account
        (3, ["account-1", "account-2", "account-3"]),
        (["izmir", "ankara.2", "x_y-z"], ["izmir", "ankara.2", "x_y-z"]),  # kept as given
    ],
)
def test_account_names(accounts, names):
    assert account_names(accounts) == names


@pytest.mark.parametrize(
    "accounts, message",
    [
        (0, "at least 1"),
        ("izmir", "a count or a list"),  # a string is not a list of names
        (True, "a count or a list"),
        ([], "at least one name"),
        (["a b"], "bad account names"),  # used in admin paths
        (["a", "a"], "repeat"),
    ],
)
def test_bad_accounts_are_refused(accounts, message):
    with pytest.raises(ValueError, match=message):
        account_names(accounts)


def test_each_token_sees_only_its_own_calls(simulator_factory):
    sim = simulator_factory(days=2, calls_per_day=30, dialect="v1", accounts=3)
    assert sim.account_names == ["account-1", "account-2", "account-3"]
    listed = {}
    for name in sim.account_names:
        with _client(sim, _token(sim, name)) as client:
            listed[name] = _listed(client, limit=25)
    for i, name in enumerate(sim.account_names):
        # The i-th account is the dataset of seed + i, exactly.
        assert sim.account(name).config.seed == 42 + i
        alone = generate_dataset(SimulatorConfig(seed=42 + i, days=2, calls_per_day=30))
        assert listed[name] == alone.uuids
        assert listed[name] == [row["uuid"] for row in sim.expected_tables(account=name)["cdrs"]]
    assert len(set().union(*listed.values())) == 3 * 60  # no uuid served to two accounts
    # The first account is the single-account simulator: same data, same default calls.
    assert sim.expected_tables() == sim.expected_tables(account="account-1")
    # A token reaches its own account's calls only.
    other = listed["account-2"][0]
    with _client(sim, _token(sim, "account-1")) as client:
        assert client.get(f"/cdrs/{other}").status_code == 404
    with _client(sim, _token(sim, "account-2")) as client:
        assert client.get(f"/cdrs/{other}").json()["cdr"]["uuid"] == other
        assert client.get(f"/cdrs/{listed['account-1'][0]}").status_code == 404
    assert sim.stats(account="account-1")["detail"] == {"404": 1}
    assert sim.stats(account="account-2")["detail"] == {"200": 1, "404": 1}
    assert sim.stats(account="account-3")["detail"] == {}


def test_one_accounts_rate_limit_leaves_the_others_alone(simulator_factory):
    sim = simulator_factory(days=1, calls_per_day=5, accounts=["izmir", "ankara"])
    # izmir: a one-request bucket that refills in 1000 s, so every request after the
    # first is refused whatever the timing; ankara: a bucket of 1000.
    sim.configure(account="izmir", rate_limit_rps=0.001, rate_limit_retry_after=True)
    sim.configure(account="ankara", rate_limit_rps=1000)
    assert sim.account("izmir").config.rate_limit_rps == 0.001
    assert sim.account("ankara").config.rate_limit_rps == 1000

    async def run() -> list[tuple[str, int]]:
        async with httpx.AsyncClient(base_url=sim.url, headers=UA, timeout=10) as client:

            async def get(name: str) -> tuple[str, int]:
                response = await client.get("/cdrs", params={"access_token": _token(sim, name)})
                return name, response.status_code

            # Both accounts' requests in flight at the same moment, interleaved.
            return await asyncio.gather(*(get(n) for _ in range(10) for n in ("izmir", "ankara")))

    results = asyncio.run(run())
    izmir = sorted(status for name, status in results if name == "izmir")
    ankara = [status for name, status in results if name == "ankara"]
    assert izmir == [200] + [429] * 9
    assert ankara == [200] * 10
    assert sim.stats(account="izmir")["listing"] == {"200": 1, "429": 9}
    assert sim.stats(account="ankara")["listing"] == {"200": 10}
    assert sim.stats()["listing"] == {"200": 11, "429": 9}  # server-wide


def test_per_account_stats_count_exactly_the_requests_made(simulator_factory):
    sim = simulator_factory(days=1, calls_per_day=20, recording_share=0.9, accounts=2)
    a, b = sim.account_names
    recorded = next(c.uuid for c in sim.account(a).dataset.calls if c.call_record == "YES")
    first_a, second_a = sim.account(a).dataset.uuids[:2]
    first_b = sim.account(b).dataset.uuids[0]
    with _client(sim, _token(sim, a)) as client:
        assert len(_listed(client, limit=15)) == 20  # 2 pages
        for call_uuid in (first_a, second_a, first_a):
            assert client.get(f"/cdr/{call_uuid}.json").status_code == 200
        assert client.get(f"/call-records/{recorded}").status_code == 200
    oauth = sim.env("oauth", account=b)
    grant = httpx.post(sim.token_url, headers=UA, data={
        "grant_type": "refresh_token", "client_id": oauth["BULUTFON_CLIENT_ID"],
        "client_secret": oauth["BULUTFON_CLIENT_SECRET"],
        "refresh_token": oauth["BULUTFON_REFRESH_TOKEN"],
    })  # fmt: skip
    with _client(sim, grant.json()["access_token"]) as client:  # routed to b by its token
        assert client.get("/cdrs").json()["pagination"]["total_count"] == 20
        assert client.get(f"/cdrs/{first_b}").status_code == 200
    with _client(sim, "not-a-token") as client:
        assert client.get("/cdrs").status_code == 401

    empty = {"token": {}, "listing": {}, "detail": {}, "recording": {}, "directory": {}}
    assert sim.stats(account=a) == {
        **empty, "listing": {"200": 2}, "detail": {"200": 3}, "recording": {"200": 1},
        "total": 6, "detail_uuids": {first_a: 2, second_a: 1}, "recording_uuids": {recorded: 1},
    }  # fmt: skip
    assert sim.stats(account=b) == {
        **empty, "token": {"200": 1}, "listing": {"200": 1}, "detail": {"200": 1},
        "total": 3, "detail_uuids": {first_b: 1}, "recording_uuids": {},
    }  # fmt: skip
    # Server-wide: both accounts plus the request no account recognized.
    assert sim.stats() == {
        "token": {"200": 1}, "listing": {"200": 3, "401": 1}, "detail": {"200": 4},
        "recording": {"200": 1}, "directory": {}, "total": 10,
        "detail_uuids": {first_a: 2, second_a: 1,
        first_b: 1}, "recording_uuids": {recorded: 1},
    }  # fmt: skip
    with httpx.Client(base_url=sim.url, headers=UA) as admin:
        assert admin.get(f"/_admin/accounts/{a}/stats").json() == sim.stats(account=a)
        assert admin.get(f"/_admin/accounts/{b}/stats").json() == sim.stats(account=b)
        assert admin.get("/_admin/stats").json() == sim.stats()
        assert admin.post(f"/_admin/accounts/{a}/stats/reset").json() == {"ok": True}
    assert sim.stats(account=a)["total"] == 0
    assert sim.stats(account=b)["total"] == 3 and sim.stats()["total"] == 10
    sim.reset_stats()  # server-wide: every account too
    assert [sim.stats(account=n)["total"] for n in (a, b)] + [sim.stats()["total"]] == [0, 0, 0]


def test_unknown_tokens_and_clients_are_refused(simulator_factory):
    sim = simulator_factory(days=1, calls_per_day=5, accounts=2)
    a, b = sim.account_names
    with _client(sim, "nope") as client:
        r = client.get("/cdrs")
    assert r.status_code == 401 and r.json() == {"error": "Invalid token"}
    # Account a's client id with account b's secret: no account grants it.
    mixed = httpx.post(sim.token_url, headers=UA, data={
        "grant_type": "refresh_token", "client_id": sim.account(a).client_id,
        "client_secret": sim.account(b).client_secret,
        "refresh_token": sim.account(a).initial_refresh_token,
    })  # fmt: skip
    assert mixed.status_code == 401 and mixed.json() == {"error": "invalid_client"}
    unknown = httpx.post(sim.token_url, headers=UA, data={
        "grant_type": "refresh_token", "client_id": "nobody", "client_secret": "x",
    })  # fmt: skip
    assert unknown.status_code == 401
    # An expired access token stays its account's (403 here, not an unknown 401).
    sim.configure(account=b, expired_status=403)
    grant = httpx.post(sim.token_url, headers=UA, data={
        "grant_type": "refresh_token", "client_id": sim.account(b).client_id,
        "client_secret": sim.account(b).client_secret,
        "refresh_token": sim.account(b).initial_refresh_token,
    }).json()  # fmt: skip
    assert sim.expire_tokens(account=b) == 1
    with _client(sim, grant["access_token"]) as client:
        assert client.get("/cdrs").json() == {"error": "Token expired"}
    assert sim.stats(account=a) == {**sim.stats(account=a), "token": {"401": 1}, "total": 1}
    assert sim.stats(account=b)["token"] == {"200": 1} and sim.stats(account=b)["total"] == 2
    assert sim.stats()["token"] == {"401": 2, "200": 1}
    assert sim.stats()["listing"] == {"401": 1, "403": 1}
    secrets = sim.issued_secrets()
    assert sim.account(b).master_token in secrets and grant["access_token"] in secrets


def test_admin_routes_per_account(simulator_factory):
    sim = simulator_factory(days=1, calls_per_day=8, accounts=["izmir", "ankara"])
    with httpx.Client(base_url=sim.url, headers=UA) as admin:
        listed = admin.get("/_admin/accounts").json()["accounts"]
        assert [(x["name"], x["seed"], x["client_id"]) for x in listed] == [
            ("izmir", 42, sim.account("izmir").client_id),
            ("ankara", 43, sim.account("ankara").client_id),
        ]
        assert not any(sim.account(n).master_token in json.dumps(listed) for n in sim.accounts)
        config = admin.post("/_admin/accounts/ankara/config", json={"rate_limit_rps": 7}).json()
        assert config["rate_limit_rps"] == 7 and config["seed"] == 43
        assert "master_token" not in config and "client_secret" not in config
        assert admin.get("/_admin/accounts/ankara/config").json() == config
        assert admin.get("/_admin/config").json()["rate_limit_rps"] == 0  # the first's
        bad = admin.post("/_admin/accounts/ankara/config", json={"seed": 1})
        assert bad.status_code == 400
        # Server-wide config sets every account.
        assert admin.post("/_admin/config", json={"latency_ms": 1}).json()["latency_ms"] == 1
        assert [sim.account(n).config.latency_ms for n in sim.accounts] == [1, 1]
        expected = admin.get("/_admin/accounts/ankara/expected").json()
        assert expected == to_jsonable(sim.expected_tables(account="ankara"))
        assert admin.get("/_admin/expected").json() == to_jsonable(sim.expected_tables())
        added = admin.post("/_admin/accounts/ankara/calls", json={"count": 2}).json()["uuids"]
        assert sim.account("ankara").dataset.uuids[:2] == added[::-1]
        assert len(sim.account("izmir").dataset) == 8 and len(sim.account("ankara").dataset) == 10
        code = admin.post("/_admin/accounts/ankara/auth-code").json()["code"]
        for path in ("stats", "config", "expected"):
            missing = admin.get(f"/_admin/accounts/nobody/{path}")
            assert missing.status_code == 404 and missing.json() == {"error": "no such account"}
    changed = sim.change_call(added[0], account="ankara", call_record="REMOVED")
    assert changed["uuid"] == added[0]
    with pytest.raises(httpx.HTTPStatusError):  # izmir has no such call
        sim.change_call(added[0], account="izmir", call_record="REMOVED")
    granted = httpx.post(sim.token_url, headers=UA, data={
        "grant_type": "authorization_code", "code": code,
        "client_id": sim.account("ankara").client_id,
        "client_secret": sim.account("ankara").client_secret,
    })  # fmt: skip
    assert granted.status_code == 200
    with pytest.raises(KeyError, match="no account 'nobody'"):
        sim.configure(account="nobody", rate_limit_rps=1)


def test_accounts_after_the_first_are_generated_on_first_use(simulator_factory):
    sim = simulator_factory(days=1, calls_per_day=6, accounts=50)
    assert [sim.account(n).generated for n in sim.account_names] == [True] + [False] * 49
    # A runtime knob set before generation applies as if set after it.
    sim.configure(account="account-50", missing_detail_count=2)
    assert not sim.account("account-50").generated
    with _client(sim, _token(sim, "account-50")) as client:
        body = client.get("/cdrs").json()
    alone = generate_dataset(SimulatorConfig(seed=42 + 49, days=1, calls_per_day=6))
    assert [item["uuid"] for item in body["cdrs"]] == alone.uuids
    assert len(sim.expected_tables(account="account-50")["load_rejects"]) == 2
    assert sum(sim.account(n).generated for n in sim.account_names) == 2


def test_cli_prints_only_the_url_and_serves_accounts_from_a_private_token_file(tmp_path):
    """The simulator's command line: one line with the URL, the credentials of every
    account in a 0600 token file, none of them in its output."""
    token_file = tmp_path / "creds.json"
    env = {**os.environ, "BULUTFON_SIMULATOR_MASTER_TOKEN": "parent-chosen-token",
           "BULUTFON_SIMULATOR_API_KEY": "parent-chosen-v2-key"}  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "bulutfon_pipeline.simulator", "--port", "0", "--days", "1",
         "--calls-per-day", "7", "--accounts", "3", "--dialect", "v2",
         "--token-file", str(token_file)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server accepts connections
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        creds = json.loads(token_file.read_text())
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        accounts = creds["accounts"]
        assert list(accounts) == ["account-1", "account-2", "account-3"]
        assert [a["seed"] for a in accounts.values()] == [42, 43, 44]
        assert accounts["account-1"]["master_token"] == creds["master_token"]
        assert creds["master_token"] == "parent-chosen-token"
        seen = []
        for account in accounts.values():
            r = httpx.get(url + "/cdrs", params={"access_token": account["master_token"]},
                          headers=UA)  # fmt: skip
            assert r.json()["pagination"]["total_count"] == 7
            seen.append({item["uuid"] for item in r.json()["cdrs"]})
        assert len(set().union(*seen)) == 21
        stats = httpx.get(url + "/_admin/accounts/account-2/stats").json()
        assert stats["listing"] == {"200": 1}
        # --dialect v2: the v1 routes stay, and the first account's key opens /v2/
        assert (creds["api_version"], creds["api_key"]) == ("v2", "parent-chosen-v2-key")
        v2 = httpx.get(url + "/v2/cdr/list", headers={**UA, "apikey": "parent-chosen-v2-key"})
        assert v2.json()["pagination"]["total_count"] == 7
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    text = line + output
    for account in accounts.values():
        for secret in (account["master_token"], account["client_secret"]):
            assert secret not in text
    assert creds["refresh_token"] not in text
    assert creds["api_key"] not in text
