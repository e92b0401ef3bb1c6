"""The v2 API: configuration, key placement and redaction, paging, the time filter, the
dated detail path and recording URLs, against the real simulator where it crosses the
wire (and ``httpx.MockTransport`` where the point is what a foreign host receives)."""

from __future__ import annotations

import datetime as dt
import logging
import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulutfon_pipeline.api import (
    AuthError,
    BulutfonClient,
    ClientConfig,
    ConfigError,
    NotFoundError,
    ServerError,
)
from bulutfon_pipeline.api.config import ENV_VARS
from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline.simulator import SimulatorServer
from bulutfon_pipeline.simulator.audio import recording_for

KEY = "v2-key-0123456789abcdef"


def v2_config(sim: SimulatorServer, tmp_path: Path, **kw: Any) -> ClientConfig:
    values: dict[str, Any] = {"data_dir": tmp_path, "backoff_base_s": 0.001, "max_retries": 2}
    values.update(kw)
    return ClientConfig.from_env(sim.env(), **values)


def requests_to(sim: SimulatorServer, endpoint: str) -> dict[str, int]:
    return dict(sim.stats()[endpoint])


# --- configuration ------------------------------------------------------------------------


def test_the_v2_variables_configure_the_client_and_the_key_stays_out_of_repr() -> None:
    env = {
        "BULUTFON_API_VERSION": "V2",
        "BULUTFON_API_KEY": KEY,
        "BULUTFON_V2_CDR_LIST_PATH": "/v2/calls",
        "BULUTFON_V2_CDR_DETAIL_PATH": "/v2/calls/{yyyy}-{mm}-{dd}/{uuid}",
        "BULUTFON_V2_AUTH": "query",
        "BULUTFON_V2_KEY_NAME": "api_key",
        "BULUTFON_V2_PAGE_PARAM": "p",
        "BULUTFON_V2_LIMIT_PARAM": "per_page",
        "BULUTFON_V2_DATA_KEY": "items",
        "BULUTFON_V2_PAGINATION_KEY": "meta",
        "BULUTFON_V2_TIME_FIELD": "none",
        "BULUTFON_V2_TIME_OP": "gt",
        "BULUTFON_V2_FIELD_MAP": "caller_extension=extension, cost=call_price",
    }
    config = ClientConfig.from_env(env, api_url="https://api.test")
    assert (config.api_version, config.v2_auth, config.v2_key_name) == ("v2", "query", "api_key")
    assert config.list_url == "https://api.test/v2/calls"
    assert (
        config.detail_url("a/b", dt.date(2016, 3, 7))
        == "https://api.test/v2/calls/2016-03-07/a%2Fb"
    )
    assert (config.v2_page_param, config.v2_limit_param) == ("p", "per_page")
    assert (config.v2_data_key, config.v2_pagination_key) == ("items", "meta")
    assert (config.v2_time_field, config.v2_time_op) == ("", "gt")  # "none": no filter
    assert config.v2_renames == (("caller_extension", "extension"), ("cost", "call_price"))
    assert config.auth_mode == "apikey"
    assert KEY not in repr(config) and KEY in config.secrets()
    with pytest.raises(ValueError, match="local date"):
        config.detail_url("u1")


@pytest.mark.parametrize(
    "env, message",
    [
        # v2 without any credential: ask for the key
        ({"BULUTFON_API_VERSION": "v2"}, "No Bulutfon API key: set BULUTFON_API_KEY"),
        # a v1 master token does not work on v2
        (
            {"BULUTFON_API_VERSION": "v2", "BULUTFON_ACCESS_TOKEN": "master-000000"},
            "a v1 token (BULUTFON_ACCESS_TOKEN or OAuth) does not work on v2",
        ),
        # nor does a v1 OAuth client
        (
            {
                "BULUTFON_API_VERSION": "v2",
                "BULUTFON_CLIENT_ID": "a",
                "BULUTFON_CLIENT_SECRET": "s",
            },
            "does not work on v2",
        ),
        # a v2 key alone on v1 (the default version)
        ({"BULUTFON_API_KEY": KEY}, "BULUTFON_API_KEY is a v2 API key and does not work on v1"),
        # v1 without anything: today's message
        ({}, "No Bulutfon credentials: set BULUTFON_ACCESS_TOKEN"),
    ],
)
def test_a_missing_or_wrong_kind_of_credential_is_one_clear_line(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    config = ClientConfig.from_env(env, data_dir=tmp_path)
    assert config.auth_mode is None
    with pytest.raises(ConfigError) as caught:
        config.require_auth_mode()
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert KEY not in str(caught.value)


@pytest.mark.parametrize(
    "env, variable",
    [
        ({"BULUTFON_API_VERSION": "v3"}, "BULUTFON_API_VERSION must be one of v1, v2"),
        ({"BULUTFON_V2_AUTH": "cookie"}, "BULUTFON_V2_AUTH must be one of header, query"),
        ({"BULUTFON_V2_TIME_OP": "lt"}, "BULUTFON_V2_TIME_OP must be one of gt, ge"),
        ({"BULUTFON_V2_CDR_DETAIL_PATH": "/v2/cdr/{uuid}"}, "BULUTFON_V2_CDR_DETAIL_PATH must"),
        ({"BULUTFON_V2_CDR_LIST_PATH": "v2/cdr/list"}, "BULUTFON_V2_CDR_LIST_PATH must be a path"),
        ({"BULUTFON_V2_FIELD_MAP": "caller_extension"}, "BULUTFON_V2_FIELD_MAP must be"),
    ],
)
def test_a_bad_v2_setting_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable.replace("{", r"\{").replace("}", r"\}")):
        ClientConfig.from_env(env)


# --- the key on the wire --------------------------------------------------------------------


def _recorder() -> tuple[list[httpx.Request], httpx.MockTransport]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "api.test" and request.url.path == "/v2/moved":
            return httpx.Response(302, headers={"Location": "https://cdn.test/audio/1"})
        if request.url.path == "/v2/cdr/list":
            return httpx.Response(200, json={"data": [], "pagination": {"total_pages": 1}})
        return httpx.Response(200, content=b"RIFF\x00\x00\x00\x00WAVEfmt ", headers={})

    return seen, httpx.MockTransport(handler)


@pytest.mark.parametrize("mode", ["header", "query"])
def test_the_key_goes_to_the_api_only_never_to_another_host(mode: str, tmp_path: Path) -> None:
    seen, transport = _recorder()
    config = ClientConfig(
        api_url="https://api.test", api_version="v2", api_key=KEY, v2_auth=mode, data_dir=tmp_path
    )
    with BulutfonClient(config, transport=transport) as client:
        list(client.iter_listing_pages())
        client.download_recording("u1", tmp_path / "a", "https://cdn.test/audio/1")
        client.download_recording("u2", tmp_path / "b", "https://api.test/v2/moved")
    listing, foreign, moved, redirected = seen
    # The API's own requests carry it, in the header (default) or the query.
    for request in (listing, moved):
        assert request.headers.get("apikey") == (KEY if mode == "header" else None)
        assert request.url.params.get("apikey") == (KEY if mode == "query" else None)
    # A recording URL on another host, and a redirect off the API's host, do not.
    for request in (foreign, redirected):
        assert request.url.host == "cdn.test"
        assert "apikey" not in request.headers and "apikey" not in request.url.params
        assert KEY not in str(request.url) and KEY not in str(request.headers)


def test_a_key_in_the_query_is_redacted_from_errors_and_logs(
    simulator_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # httpx logs every URL at INFO, httpcore at DEBUG
    sim = simulator_factory(days=1, calls_per_day=5, dialect="v2", error_rate=1.0)
    with (
        BulutfonClient(v2_config(sim, tmp_path, v2_auth="query", max_retries=1)) as client,
        pytest.raises(ServerError) as caught,
    ):
        list(client.iter_listing_pages())
    error = caught.value
    logged = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    assert "apikey=***" in logged  # the URLs that carried the key were logged, masked
    for text in (str(error), error.url, error.body_excerpt, logged):
        assert sim.api_key not in text
    assert sum(requests_to(sim, "listing").values()) == 2  # really sent, twice


# --- against the simulator ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["header", "query"])
def test_the_listing_pages_through_every_call_once(
    mode: str, simulator_factory: Any, tmp_path: Path
) -> None:
    sim = simulator_factory(days=2, calls_per_day=25, dialect="v2")
    with BulutfonClient(v2_config(sim, tmp_path, v2_auth=mode)) as client:
        pages = list(client.iter_listing_pages(limit=10))
    uuids = [item["uuid"] for page in pages for item in page.items]
    assert uuids == sim.dataset.uuids  # newest first, each once
    assert [p.total_pages for p in pages] == [math.ceil(50 / 10)] * 5
    assert requests_to(sim, "listing") == {"200": 5}
    # v2 names are read as v1's: caller_extension is the extension
    outbound = [i for p in pages for i in p.items if i["direction"] == "OUT"]
    assert outbound and all("extension" in i and "caller_extension" not in i for i in outbound)


def test_a_wrong_key_or_a_v1_token_is_refused_on_v2_and_a_key_on_v1(
    simulator_factory: Any, tmp_path: Path
) -> None:
    sim = simulator_factory(days=1, calls_per_day=5, dialect="v2")
    with (
        BulutfonClient(v2_config(sim, tmp_path, api_key="not-the-key-000")) as client,
        pytest.raises(AuthError),
    ):
        list(client.iter_listing_pages())
    ua = {"User-Agent": "test"}
    v1_token_on_v2 = httpx.get(
        sim.url + "/v2/cdr/list", params={"access_token": sim.master_token}, headers=ua
    )
    key_on_v1 = httpx.get(sim.url + "/cdrs", params={"access_token": sim.api_key}, headers=ua)
    key_as_v1_header = httpx.get(sim.url + "/cdrs", headers={**ua, "apikey": sim.api_key})
    assert [v1_token_on_v2.status_code, key_on_v1.status_code, key_as_v1_header.status_code] == [
        401,
        401,
        401,
    ]
    assert requests_to(sim, "listing") == {"401": 4}


@pytest.mark.parametrize("op", ["ge", "gt"])
def test_the_time_filter_lists_exactly_the_calls_after_the_instant(
    op: str, simulator_factory: Any, tmp_path: Path
) -> None:
    sim = simulator_factory(days=3, calls_per_day=20, dialect="v2")
    calls = sim.dataset.calls
    since = calls[17].call_time  # a call of the newest day
    with BulutfonClient(v2_config(sim, tmp_path, v2_time_op=op)) as client:
        pages = list(client.iter_listing_pages(limit=5, since=since))
    got = [item["uuid"] for page in pages for item in page.items]
    newer = [c.uuid for c in calls if c.call_time > since or (op == "ge" and c.call_time == since)]
    assert got == newer
    assert calls[17].uuid in got if op == "ge" else calls[17].uuid not in got
    assert requests_to(sim, "listing") == {"200": math.ceil(len(newer) / 5)}


def test_the_filter_operators_of_the_simulator(simulator_factory: Any) -> None:
    # eq ne gt ge lt le cont, on text, number and time fields; an unknown op is a 400
    sim = simulator_factory(days=1, calls_per_day=30, dialect="v2")
    calls = sim.dataset.calls
    headers = {"User-Agent": "test", "apikey": sim.api_key}

    def listed(**params: str) -> list[str]:
        response = httpx.get(sim.url + "/v2/cdr/list", params={**params, "limit": "500"},
                             headers=headers)  # fmt: skip
        assert response.status_code == 200, response.text
        return [item["uuid"] for item in response.json()["data"]]

    first = calls[0]
    assert listed(**{"uuid[eq]": first.uuid}) == [first.uuid]
    assert listed(**{"uuid[ne]": first.uuid}) == [c.uuid for c in calls[1:]]
    assert listed(**{"direction[eq]": "OUT"}) == [c.uuid for c in calls if c.direction == "OUT"]
    assert listed(**{"uuid[cont]": first.uuid[:8]}) == [
        c.uuid for c in calls if first.uuid[:8] in c.uuid
    ]
    middle = calls[15].call_time.isoformat()
    assert listed(**{"call_time[lt]": middle}) == [
        c.uuid for c in calls if c.call_time < calls[15].call_time
    ]
    assert listed(**{"call_time[le]": middle, "direction[eq]": "IN"}) == [
        c.uuid for c in calls if c.call_time <= calls[15].call_time and c.direction == "IN"
    ]
    bad = httpx.get(sim.url + "/v2/cdr/list", params={"call_time[after]": middle}, headers=headers)
    assert bad.status_code == 400 and "unknown filter operator" in bad.text


def add_call_after_local_midnight(sim: SimulatorServer) -> str:
    """A call at about 01:30 local on the newest call's day, whose UTC date is the day
    before (Istanbul is UTC+2/+3); returns its uuid."""
    newest = sim.dataset.calls[0].call_time
    target = dt.datetime.combine(newest.astimezone(LOCAL_TZ).date(), dt.time(1, 45), LOCAL_TZ)
    (uuid,) = sim.add_calls(1, "late", hours_ago=(newest - target).total_seconds() / 3600)
    return uuid


def test_a_detail_is_fetched_on_its_local_date(simulator_factory: Any, tmp_path: Path) -> None:
    sim = simulator_factory(days=3, calls_per_day=30, dialect="v2")
    early = sim.dataset.get(add_call_after_local_midnight(sim))
    assert early is not None
    assert early.call_time.astimezone(LOCAL_TZ).date() != early.call_time.date()
    calls = sim.dataset.calls
    local = early.call_time.astimezone(LOCAL_TZ).date()
    with BulutfonClient(v2_config(sim, tmp_path)) as client:
        results = list(client.fetch_details([(c.uuid, c.call_time.astimezone(LOCAL_TZ).date())
                                             for c in calls]))  # fmt: skip
        assert sorted(r.uuid for r in results) == sorted(c.uuid for c in calls)
        assert all(r.ok for r in results)
        assert requests_to(sim, "detail") == {"200": len(calls)}
        sim.reset_stats()
        # Without its date, the call is looked up in the listing first: two requests.
        detail = client.get_detail(early.uuid)
        assert requests_to(sim, "listing") == {"200": 1}
        assert requests_to(sim, "detail") == {"200": 1}
        # On the wrong (UTC) date there is no such call.
        with pytest.raises(NotFoundError):
            client.get_detail(early.uuid, early.call_time.date())
    assert detail["uuid"] == early.uuid and isinstance(detail["call_flow"], list)
    assert local != early.call_time.date()
    # stored as the API sent it: the v2 name stays in the text
    if early.extension is not None:
        assert '"caller_extension"' in detail.text and "extension" in detail  # type: ignore[attr-defined]


def test_a_recording_is_downloaded_from_the_url_of_call_record(
    simulator_factory: Any, tmp_path: Path
) -> None:
    sim = simulator_factory(days=1, calls_per_day=20, dialect="v2", recording_share=1.0)
    with BulutfonClient(v2_config(sim, tmp_path)) as client:
        items = [i for page in client.iter_listing_pages() for i in page.items]
        with_audio = [i for i in items if i["call_record"] != "NO"]
        assert with_audio and all(
            i["call_record"].startswith(sim.url + "/v2/cdr/") for i in with_audio
        )
        item = with_audio[0]
        file = client.download_recording(item["uuid"], tmp_path / "rec", item["call_record"])
        # v2 needs the URL: without one there is no recording to fetch (and no request)
        with pytest.raises(NotFoundError, match="no recording URL"):
            client.download_recording(item["uuid"], tmp_path / "none")
    call = sim.dataset.get(item["uuid"])
    assert call is not None and call.recording_format is not None
    body, _ = recording_for(call.uuid, call.recording_format, call.recording_octet_stream)
    assert file.path.read_bytes() == body
    assert requests_to(sim, "recording") == {"200": 1}


def test_every_v2_variable_is_documented() -> None:
    root = Path(__file__).parents[2]
    example, readme = (root / ".env.example").read_text(), (root / "README.md").read_text()
    v2 = [var for var in ENV_VARS.values() if var.startswith("BULUTFON_V2_")]
    assert len(v2) == 11
    for var in [*v2, "BULUTFON_API_VERSION", "BULUTFON_API_KEY"]:
        assert f"\n{var}=" in example, var
        assert var in readme, var
