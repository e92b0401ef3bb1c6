"""The clients' cookie store looks only at responses that set a cookie, and keeps those
cookies as httpx would. Against a real HTTP server on loopback and the simulator."""

from __future__ import annotations

import http.cookiejar
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulutfon_pipeline.api import BulutfonClient, ClientConfig
from bulutfon_pipeline.api.cookies import keep_set_cookies_only


class _Handler(http.server.BaseHTTPRequestHandler):
    """``/set`` sets an affinity cookie; every path answers with the Cookie header it got."""

    def do_GET(self) -> None:
        body = json.dumps({"cookie": self.headers.get("Cookie")}).encode()
        self.send_response(200)
        if self.path == "/set":
            self.send_header("Set-Cookie", "affinity=node-2; Path=/")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def jar_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs of the responses ``http.cookiejar`` was asked to read cookies from."""
    reads: list[str] = []
    extract = http.cookiejar.CookieJar.extract_cookies

    def counted(self: Any, response: Any, request: Any) -> None:
        reads.append(request.get_full_url())
        extract(self, response, request)

    monkeypatch.setattr(http.cookiejar.CookieJar, "extract_cookies", counted)
    return reads


def test_a_cookie_set_by_the_server_is_kept_and_sent_back(
    server: str, jar_reads: list[str]
) -> None:
    with httpx.Client() as client:
        keep_set_cookies_only(client)
        assert client.get(f"{server}/plain").json() == {"cookie": None}
        assert jar_reads == []  # no Set-Cookie: the jar was not asked
        assert client.get(f"{server}/set").json() == {"cookie": None}
        assert jar_reads == [f"{server}/set"]
        assert client.get(f"{server}/plain").json() == {"cookie": "affinity=node-2"}
        assert dict(client.cookies) == {"affinity": "node-2"}


def test_the_detail_fan_out_reads_no_cookies_from_responses_that_set_none(
    simulator_factory: Any, tmp_path: Path, jar_reads: list[str]
) -> None:
    sim = simulator_factory(days=1, calls_per_day=20)
    uuids = list(sim.dataset.uuids)
    config = ClientConfig.from_env(sim.env("master"), data_dir=tmp_path)
    with BulutfonClient(config) as client:
        fetched = sorted(result.uuid for result in client.fetch_details(uuids))
        listed = sum(len(page.items) for page in client.iter_listing_pages())
    assert (fetched, listed) == (sorted(uuids), len(uuids))
    assert jar_reads == []
