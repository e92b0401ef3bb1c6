"""The receiver over real HTTP: credentials, bodies, size cap, duplicates, durability.

Each test starts a receiver on a free port (in a thread: about 50 ms) with its own inbox
file, posts with the simulator's :class:`WebhookSender` or raw httpx, and reads the inbox
back through a connection of its own. One test runs the real command in a subprocess,
where the process boundary is the point: SIGKILL right after the 200s.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from bulutfon_pipeline.cli.main import run as cli_run
from bulutfon_pipeline.simulator import SimulatorConfig, generate_dataset
from bulutfon_pipeline.simulator.model import Call
from bulutfon_pipeline.simulator.webhooks import (
    WebhookSender,
    call_hangup_event,
    call_init_event,
    fax_init_event,
    form_pairs,
)
from bulutfon_pipeline.webhook.config import WebhookConfig, WebhookConfigError
from bulutfon_pipeline.webhook.events import parse_event
from bulutfon_pipeline.webhook.inbox import Inbox, InboxWriter
from bulutfon_pipeline.webhook.server import WebhookServer
from bulutfon_pipeline_tests.webhook._support import PASSWORD, USER, stored


@pytest.fixture(scope="module")
def calls() -> list[Call]:
    """Eight calls of the simulator's office (v1 dialect), oldest first."""
    dataset = generate_dataset(SimulatorConfig(days=1, calls_per_day=8, dialect="v1"))
    return sorted(dataset.calls, key=lambda call: call.call_time)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "authorization",
    [
        None,  # no credentials at all
        _basic(USER, "wrong"),  # a wrong password
        _basic("someone", PASSWORD),  # a wrong user
        _basic(USER, PASSWORD + "x"),  # the password with more after it
        "Basic not-base64!",  # a header that does not decode
        "Bearer " + PASSWORD,  # another scheme, even with the right secret
    ],
)
def test_a_post_without_valid_credentials_gets_401_and_stores_nothing(
    receiver: WebhookServer, calls: list[Call], authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = httpx.post(receiver.url, json=call_hangup_event(calls[0]), headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert stored(receiver) == []
    with Inbox(receiver.config.inbox_path) as inbox:
        assert inbox.rejected() == []  # not recorded: anyone can send those


def test_json_and_form_posts_of_each_event_are_stored_as_sent(
    receiver: WebhookServer, sender: WebhookSender, calls: list[Call]
) -> None:
    hangup = call_hangup_event(calls[0])
    sent = [
        ("json", call_init_event(calls[0])),
        ("json", hangup),
        ("form", call_init_event(calls[1])),
        ("form", call_hangup_event(calls[1])),
        ("json", fax_init_event(calls[2])),
        ("form", fax_init_event(calls[3])),
    ]
    for encoding, event in sent:
        response = sender.post(event, encoding)  # type: ignore[arg-type]
        assert (response.status_code, response.json()) == (200, {"stored": True})
    rows = stored(receiver)
    assert [(r["event_type"], r["uuid"], r["encoding"]) for r in rows] == [
        (event["event_type"], event["uuid"], encoding) for encoding, event in sent
    ]
    assert [r["timestamp_us"] for r in rows] == [event["timestamp"] for _, event in sent]
    # JSON is kept as sent; a form's values are text, its bracket keys nested back.
    assert json.loads(rows[1]["payload"]) == hangup
    form_hangup = json.loads(rows[3]["payload"])
    assert form_hangup["cdr"]["bf_caller"] == calls[1].caller
    assert form_hangup["cdr"]["callflow"][0]["redirection"] == calls[1].flow[0].kind
    assert len(form_hangup["cdr"]["callflow"]) == len(calls[1].flow)
    assert form_hangup["cdr"]["call_record"] in ("true", "false")
    assert sorted(form_pairs(form_hangup)) == sorted(form_pairs(call_hangup_event(calls[1])))


def test_a_form_post_may_carry_the_cdr_as_json_text(
    receiver: WebhookServer, calls: list[Call]
) -> None:
    event = call_hangup_event(calls[2])
    fields = {k: str(v) for k, v in event.items() if k != "cdr"}
    fields["cdr"] = json.dumps(event["cdr"])
    response = httpx.post(receiver.url, data=fields, auth=(USER, PASSWORD))
    assert response.status_code == 200
    (row,) = stored(receiver)
    assert json.loads(row["payload"])["cdr"] == event["cdr"]


def test_a_replayed_event_is_stored_once(
    receiver: WebhookServer, sender: WebhookSender, calls: list[Call]
) -> None:
    hangup = call_hangup_event(calls[0])
    answers = [sender.post(hangup).json(), sender.post(hangup, "form").json()]
    answers.append(sender.post(call_init_event(calls[0])).json())  # another event type
    answers.append(sender.post(hangup).json())
    assert answers == [{"stored": True}, {"stored": False}, {"stored": True}, {"stored": False}]
    rows = stored(receiver)
    assert [(r["event_type"], r["duplicates"]) for r in rows] == [
        ("call_hangup", 2),
        ("call_init", 0),
    ]
    assert json.loads(rows[0]["payload"]) == hangup  # the first copy is kept


def test_each_account_posts_to_its_own_path(
    receiver_factory: Any, calls: list[Call], tmp_path: Path
) -> None:
    receiver = receiver_factory(accounts=("default", "izmir"))
    auth = {"user": USER, "password": PASSWORD}
    with WebhookSender(f"{receiver.url}/izmir", **auth) as izmir:
        assert izmir.post(call_hangup_event(calls[0])).json() == {"stored": True}
    with WebhookSender(receiver.url, **auth) as default:
        assert default.post(call_hangup_event(calls[1])).json() == {"stored": True}
    with WebhookSender(f"{receiver.url}/nobody", **auth) as nobody:
        answer = nobody.post(call_hangup_event(calls[2]))
    with WebhookSender(f"{receiver.url}/izmir", user=USER, password="wrong") as intruder:
        assert intruder.post(call_hangup_event(calls[3])).status_code == 401  # auth first
    assert answer.status_code == 404
    assert answer.json() == {
        "error": "this deployment has no account 'nobody': post to /webhook, /webhook/izmir"
    }
    assert [(r["account"], r["uuid"]) for r in stored(receiver)] == [
        ("izmir", calls[0].uuid),
        ("default", calls[1].uuid),
    ]
    with Inbox(receiver.config.inbox_path) as inbox:
        assert [(h.account, h.uuid) for h in inbox.hangups_after(0, limit=10)] == [
            ("izmir", calls[0].uuid),
            ("default", calls[1].uuid),
        ]
        assert [(r.status, r.reason) for r in inbox.rejected()] == [(404, answer.json()["error"])]


def test_an_inbox_made_before_accounts_reads_as_default_and_gets_the_column(
    tmp_path: Path, calls: list[Call]
) -> None:
    path = tmp_path / "old.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_type TEXT NOT NULL,"
        " uuid TEXT NOT NULL, timestamp_us INTEGER NOT NULL, received_at TEXT NOT NULL,"
        " encoding TEXT NOT NULL, payload TEXT NOT NULL,"
        " duplicates INTEGER NOT NULL DEFAULT 0, UNIQUE (uuid, event_type));"
        "CREATE TABLE inbox_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO inbox_meta VALUES ('inbox_id', 'old');"
        "INSERT INTO events (event_type, uuid, timestamp_us, received_at, encoding, payload)"
        " VALUES ('call_hangup', 'u-old', 1, '2026-12-01T00:00:00+00:00', 'json', '{}');"
    )
    old.commit()
    old.close()
    with Inbox(path) as reader:  # a reader never alters the file
        assert [(h.account, h.uuid) for h in reader.hangups_after(0, limit=5)] == [
            ("default", "u-old")
        ]
    with Inbox(path, create=True) as receiver_side:
        event = parse_event(json.dumps(call_hangup_event(calls[0])).encode(), None)
        receiver_side.store([dataclasses.replace(event, account="izmir")])
        assert [(h.account, h.uuid, h.seq) for h in receiver_side.hangups_after(0, limit=5)] == [
            ("default", "u-old", 1),
            ("izmir", calls[0].uuid, 2),
        ]
        assert receiver_side.inbox_id == "old"


def _hangup(calls: list[Call]) -> dict[str, Any]:
    return call_hangup_event(calls[0])


MALFORMED: list[tuple[str, str | None, bytes, str]] = [
    # (case, content type, body, what the reason says)
    ("not JSON", "application/json", b'{"event_type": ', "not valid JSON"),
    ("a JSON array", "application/json", b"[1, 2]", "not an object"),
    ("no event_type", "application/json", b'{"uuid": "u1", "timestamp": 1}', "event_type"),
    (
        "an unknown event",
        "application/json",
        b'{"event_type": "sms_received", "uuid": "u1", "timestamp": 1}',
        "unknown event_type",
    ),
    (
        "no uuid",
        "application/json",
        b'{"event_type": "call_init", "timestamp": 1435762851086820}',
        "uuid",
    ),
    (
        "a timestamp in seconds as text with a dot",
        "application/json",
        b'{"event_type": "call_init", "uuid": "u1", "timestamp": "1435762851.08"}',
        "timestamp",
    ),
    (
        "a cdr that is not an object",
        "application/json",
        b'{"event_type": "call_hangup", "uuid": "u1", "timestamp": 1, "cdr": "x"}',
        "cdr is not an object",
    ),
    (
        "a callflow that is not a list",
        "application/x-www-form-urlencoded",
        b"event_type=call_hangup&uuid=u1&timestamp=1&cdr[callflow][a]=1",
        "callflow is not a list",
    ),
    (
        "a form that is not UTF-8",
        "application/x-www-form-urlencoded",
        b"event_type=call_init&uuid=u1&timestamp=1&caller=%ff%fe",
        "not a valid form",
    ),
    ("another content type", "text/plain", b"event_type=call_init", "unsupported Content-Type"),
]


def test_malformed_posts_get_400_with_the_reason_recorded(receiver: WebhookServer) -> None:
    for case, content_type, body, reason in MALFORMED:
        headers = {"Content-Type": content_type} if content_type else {}
        response = httpx.post(receiver.url, content=body, headers=headers, auth=(USER, PASSWORD))
        assert response.status_code == 400, case
        assert reason in response.json()["error"], case
    assert stored(receiver) == []
    with Inbox(receiver.config.inbox_path) as inbox:
        rejected = inbox.rejected()
    assert len(rejected) == len(MALFORMED)
    for post, (case, _, _, reason) in zip(rejected, MALFORMED, strict=True):
        assert (post.status, reason in post.reason) == (400, True), case
    assert [r.body for r in rejected][:2] == ['{"event_type": ', "[1, 2]"]
    assert [r.encoding for r in rejected][-1] == "text/plain"


def test_a_post_above_the_size_cap_gets_413_and_is_recorded(
    receiver_factory: Any, calls: list[Call]
) -> None:
    receiver = receiver_factory(max_body_bytes=2048)
    event = call_hangup_event(calls[0])
    event["padding"] = "x" * 4096
    body = json.dumps(event).encode()
    declared = httpx.post(
        receiver.url,
        content=body,
        headers={"Content-Type": "application/json"},
        auth=(USER, PASSWORD),
    )

    def chunks() -> Any:  # no Content-Length: the cap applies while reading
        yield body[:1500]
        yield body[1500:]

    streamed = httpx.post(
        receiver.url,
        content=chunks(),
        headers={"Content-Type": "application/json"},
        auth=(USER, PASSWORD),
    )
    fits = httpx.post(receiver.url, json=call_init_event(calls[0]), auth=(USER, PASSWORD))
    assert [declared.status_code, streamed.status_code, fits.status_code] == [413, 413, 200]
    assert [r["event_type"] for r in stored(receiver)] == ["call_init"]
    with Inbox(receiver.config.inbox_path) as inbox:
        assert [(r.status, r.reason, r.body) for r in inbox.rejected()] == [
            (413, "body larger than 2048 bytes", None)
        ] * 2


def test_the_password_never_reaches_the_log(
    receiver: WebhookServer, calls: list[Call], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    httpx.post(receiver.url, json=_hangup(calls), auth=(USER, PASSWORD))
    httpx.post(receiver.url, json=_hangup(calls), auth=(USER, PASSWORD + "-wrong"))
    httpx.post(receiver.url, content=b"{", auth=(USER, PASSWORD))
    assert "without valid credentials" in caplog.text
    assert "refused (400)" in caplog.text
    assert PASSWORD not in caplog.text
    assert PASSWORD not in repr(receiver.config)


def test_concurrent_posts_are_all_stored_once(
    receiver: WebhookServer, sender: WebhookSender, calls: list[Call]
) -> None:
    # 8 hangups posted 3 times each from 6 threads: group commits see duplicates in one
    # transaction too.
    events = [call_hangup_event(call) for call in calls] * 3
    with ThreadPoolExecutor(6) as pool:
        codes = list(pool.map(lambda e: sender.post(e).status_code, events))
    assert codes == [200] * len(events)
    rows = stored(receiver)
    assert sorted(r["uuid"] for r in rows) == sorted(call.uuid for call in calls)
    assert sum(r["duplicates"] for r in rows) == 2 * len(calls)


def test_the_writer_prunes_rows_older_than_the_retention(tmp_path: Path, calls: list[Call]) -> None:
    path = tmp_path / "inbox.sqlite3"
    with Inbox(path, create=True) as inbox:
        events = [call_hangup_event(call) for call in calls[:3]]
        inbox.store([parse_event(json.dumps(event).encode(), None) for event in events])
        inbox.record_rejected(status=400, reason="x", encoding=None, body=b"{")
    con = sqlite3.connect(path)
    with con:  # two of them arrived 40 days ago
        old = (dt.datetime.now(dt.UTC) - dt.timedelta(days=40)).isoformat()
        con.execute("UPDATE events SET received_at = ? WHERE seq <= 2", (old,))
        con.execute("UPDATE rejected_posts SET received_at = ?", (old,))
    con.close()
    writer = InboxWriter(path, retention_days=30)  # prunes when it starts
    writer.close()
    with Inbox(path) as inbox:
        assert [r["uuid"] for r in inbox.events()] == [calls[2].uuid]
        assert inbox.rejected() == []
        kept = InboxWriter(path, retention_days=0)  # 0 keeps everything
        kept.close()
        assert inbox.prune(dt.datetime.now(dt.UTC) - dt.timedelta(days=1)) == 0
        assert len(inbox.events()) == 1


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"BULUTFON_WEBHOOK_USER": "u"}, "set both BULUTFON_WEBHOOK_USER"),
        ({"BULUTFON_WEBHOOK_MAX_BYTES": "12"}, "BULUTFON_WEBHOOK_MAX_BYTES='12'"),
        ({"BULUTFON_WEBHOOK_PATH": "hook"}, "must start with '/'"),
        ({"BULUTFON_WEBHOOK_RETENTION_DAYS": "-1"}, "must be a number of days >= 0"),
        ({"BULUTFON_WEBHOOK_RETENTION_DAYS": "nan"}, "must be a number of days >= 0"),
    ],
)
def test_bad_configuration_is_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(WebhookConfigError, match=message):
        WebhookConfig.from_env(env)


def test_the_command_refuses_a_public_host_without_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BULUTFON_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("BULUTFON_WEBHOOK_USER", raising=False)
    monkeypatch.delenv("BULUTFON_WEBHOOK_PASSWORD", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        cli_run(["webhook", "--host", "0.0.0.0", "--port", "0"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "refusing to listen on 0.0.0.0" in lines[0], lines
    assert not (tmp_path / "webhook_inbox.sqlite3").exists()
    with pytest.raises(WebhookConfigError):  # the server class refuses the same way
        WebhookServer(WebhookConfig(inbox_path=tmp_path / "x.sqlite3"), host="0.0.0.0")


def test_no_200_without_a_commit(
    receiver: WebhookServer, sender: WebhookSender, calls: list[Call], monkeypatch: Any
) -> None:
    # The inbox fails inside the transaction (as on a full disk): the post is answered
    # 503, not 200, nothing is stored, and the next post is stored again.
    monkeypatch.setenv("BULUTFON_FAULT_FAIL_AT", "webhook_before_commit")
    failed = sender.post(call_hangup_event(calls[0]))
    monkeypatch.delenv("BULUTFON_FAULT_FAIL_AT")
    assert failed.status_code == 503
    assert stored(receiver) == []
    assert sender.post(call_hangup_event(calls[0])).status_code == 200
    assert [r["uuid"] for r in stored(receiver)] == [calls[0].uuid]


@pytest.mark.slow
def test_every_200_survives_a_sigkill_of_the_receiver(tmp_path: Path, calls: list[Call]) -> None:
    # The real command in its own process, killed (SIGKILL, by the fault hook) inside
    # the transaction of the 17th post, right after the 16th post's 200: the inbox holds
    # exactly the 16 events answered 200, and the 17th got no 200.
    events = [call_hangup_event(call) for call in calls] + [call_init_event(call) for call in calls]
    env = {
        **os.environ,
        "BULUTFON_DATA_DIR": str(tmp_path),
        "BULUTFON_WEBHOOK_USER": USER,
        "BULUTFON_WEBHOOK_PASSWORD": PASSWORD,
        "BULUTFON_FAULT_CRASH_AT": f"webhook_before_commit@{len(events) + 1}",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bulutfon_pipeline.cli", "webhook", "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # "receiving webhooks on http://...; inbox ..."
        assert "receiving webhooks on " in line, line
        url = line.split("receiving webhooks on ", 1)[1].split(";", 1)[0]
        threading.Thread(target=process.stderr.read, daemon=True).start()  # drain the pipe
        with WebhookSender(url, user=USER, password=PASSWORD) as sender:
            codes = [sender.post(event).status_code for event in events]  # one commit each
            with pytest.raises(httpx.TransportError):
                sender.post(fax_init_event(calls[0]))
        assert codes == [200] * len(events)
        assert process.wait(30) == -signal.SIGKILL
    finally:
        process.kill()
        process.wait(30)
    with Inbox(tmp_path / "webhook_inbox.sqlite3") as inbox:
        rows = inbox.events()
    assert [(r["uuid"], r["event_type"]) for r in rows] == [
        (e["uuid"], e["event_type"]) for e in events
    ]
