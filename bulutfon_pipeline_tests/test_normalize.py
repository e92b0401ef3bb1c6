"""normalize.py: seed fixtures to exact rows, dialect equality, vocabulary, times, rejects."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest

from bulutfon_pipeline.normalize import (
    CALL_FLOW_STEP_COLUMNS,
    CDR_COLUMNS,
    LISTING_COLUMNS,
    ORIGINATION_COLUMNS,
    normalize_details,
    normalize_listing,
    parse_api_time,
)
from bulutfon_pipeline_tests.fixtures import load_fixture

UUID = "dd3b3506-e40e-11e4-9880-17aee3ce4e7b"


def utc(year: int, month: int, day: int, hour: int, minute: int, second: int = 0) -> pd.Timestamp:
    return pd.Timestamp(datetime(year, month, day, hour, minute, second, tzinfo=UTC))


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts with NULLs as None (NaT/NA normalised)."""
    nulls = (None, pd.NaT, pd.NA)
    return [
        {str(k): (None if any(v is n for n in nulls) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def seed_detail() -> dict[str, Any]:
    return load_fixture("seed_cdr_detail.json")["cdr"]


def v1_detail() -> dict[str, Any]:
    return load_fixture("v1_cdr_detail.json")["cdr"]


# --- the seed document's samples -------------------------------------------------------


def test_seed_detail_normalizes_to_exact_rows() -> None:
    result = normalize_details([seed_detail()])

    assert result.rejects == []
    assert list(result.cdrs.columns) == list(CDR_COLUMNS)
    assert records(result.cdrs) == [
        {
            "uuid": UUID,
            "call_type": "voice",
            "direction": "IN",
            "caller": "90507xxxxxxx",
            "callee": "90850885xxxx",
            "extension": None,
            # "16-04-2015 11:02" Istanbul summer time (+03:00)
            "call_time": utc(2015, 4, 16, 8, 2),
            "answer_time": utc(2015, 4, 16, 8, 2),
            "hangup_time": utc(2015, 4, 16, 8, 4),
            "call_date": date(2015, 4, 16),
            "answered": True,
            "ring_seconds": 0,
            "talk_seconds": 120,
            "call_record": "Var",
            "has_recording": True,
            "hangup_cause": "Normal",
            "hangup_cause_code": "NORMAL_CLEARING",
            "hangup_state": "İstemci tarafından sonlandırılan çağrı",
            "hangup_state_code": "recv_bye",
            "missing_call": False,
            "call_price": None,
        }
    ]

    assert list(result.call_flow_steps.columns) == list(CALL_FLOW_STEP_COLUMNS)
    t0 = utc(2015, 4, 16, 8, 2, 2)  # "16/04/2015 - 11:02:02" local
    t1 = utc(2015, 4, 16, 8, 4, 44)  # "16/04/2015 - 11:04:44" local
    step = ("cdr_uuid", "step_index", "callee", "start_time", "answer_time", "hangup_time",
            "redirection", "redirection_kind", "redirection_target")  # fmt: skip
    assert records(result.call_flow_steps) == [
        dict(zip(step, values, strict=True))
        for values in [
            (UUID, 0, "90850885xxxx", t0, None, None,
             "Menüye Yönlendi - (10)", "REDIRECTED_TO_MENU", "10"),
            (UUID, 1, "10", t0, t0, None, "Menüye Yönlendi - (11)", "REDIRECTED_TO_MENU", "11"),
            (UUID, 2, "11", t0, t0, None,
             "Gruba Yönlendi - (101)", "REDIRECTED_TO_GROUP", "101"),
            (UUID, 3, "101", t0, t0, t1, "Gruba bağlanılıyor", "CONNECTING_TO_GROUP", None),
        ]
    ]  # fmt: skip

    assert list(result.originations.columns) == list(ORIGINATION_COLUMNS)
    attempt = ("cdr_uuid", "step_index", "attempt_index", "destination", "start_time",
               "answer_time", "hangup_time", "result", "outcome", "answered")  # fmt: skip
    assert records(result.originations) == [
        dict(zip(attempt, values, strict=True))
        for values in [
            (UUID, 3, 0, "1004", t0, t0, t1, "Cevapladı", "ANSWERED", True),
            (UUID, 3, 1, "1008", t0, t0, t1, "Başkası açtı", "LOSE_RACE", False),
            (UUID, 3, 2, "1009", t0, t0, t1, "Başkası açtı", "LOSE_RACE", False),
            (UUID, 3, 3, "1015", t0, t0, t1, "Başkası açtı", "LOSE_RACE", False),
        ]
    ]


def test_frame_dtypes() -> None:
    result = normalize_details([v1_detail()])
    cdrs = result.cdrs
    assert str(cdrs["call_time"].dtype) == "datetime64[us, UTC]"
    assert cdrs["uuid"].dtype == object and cdrs["extension"].iloc[0] is None
    assert cdrs["answered"].dtype == bool and cdrs["missing_call"].dtype == bool
    assert str(cdrs["ring_seconds"].dtype) == "Int64"
    assert cdrs["call_price"].iloc[0] == Decimal("0.0182")
    assert isinstance(cdrs["call_date"].iloc[0], date)
    assert result.call_flow_steps["step_index"].dtype == "int64"


CANONICAL_CDR = [
    "uuid", "call_type", "direction", "caller", "callee", "call_time", "answer_time",
    "hangup_time", "call_date", "answered", "ring_seconds", "talk_seconds", "has_recording",
    "hangup_cause_code", "hangup_state_code", "missing_call",
]  # fmt: skip
CANONICAL_STEP = [
    "cdr_uuid", "step_index", "callee", "start_time", "answer_time", "hangup_time",
    "redirection_kind", "redirection_target",
]  # fmt: skip
CANONICAL_ORIGINATION = [
    "cdr_uuid", "step_index", "attempt_index", "destination", "start_time", "answer_time",
    "hangup_time", "outcome", "answered",
]  # fmt: skip


def test_v1_dialect_gives_identical_canonical_columns() -> None:
    seed = normalize_details([seed_detail()])
    v1 = normalize_details([v1_detail()])

    assert v1.rejects == []
    pd.testing.assert_frame_equal(seed.cdrs[CANONICAL_CDR], v1.cdrs[CANONICAL_CDR])
    pd.testing.assert_frame_equal(
        seed.call_flow_steps[CANONICAL_STEP], v1.call_flow_steps[CANONICAL_STEP]
    )
    pd.testing.assert_frame_equal(
        seed.originations[CANONICAL_ORIGINATION], v1.originations[CANONICAL_ORIGINATION]
    )
    # as sent: v1 keeps its own spelling
    assert v1.cdrs.loc[0, "hangup_cause"] == "NORMAL_CLEARING"
    assert v1.cdrs.loc[0, "call_record"] == "YES"


def test_seed_listing_normalizes_to_exact_rows() -> None:
    result = normalize_listing(load_fixture("seed_cdr_list.json")["cdrs"])

    assert result.rejects == []
    assert list(result.frame.columns) == list(LISTING_COLUMNS)
    day = date(2015, 4, 16)
    assert records(result.frame) == [
        # JSON numbers 1005/1006 become text
        {"uuid": "f35d3f92-e43a-11e4-b7e6-17aee3ce4e7b", "call_time": utc(2015, 4, 16, 13, 17),
         "call_date": day, "direction": "LOCAL", "caller": "1005", "callee": "1006"},
        {"uuid": "e0e02f46-e43a-11e4-b73b-17aee3ce4e7b", "call_time": utc(2015, 4, 16, 13, 17),
         "call_date": day, "direction": "LOCAL", "caller": "1005", "callee": "1006"},
        {"uuid": "78e057d6-e43a-11e4-b5d7-17aee3ce4e7b", "call_time": utc(2015, 4, 16, 13, 14),
         "call_date": day, "direction": "IN", "caller": "90532xxxxxxx", "callee": "90850885xxxx"},
        {"uuid": "76a8a946-e43a-11e4-b5b4-17aee3ce4e7b", "call_time": utc(2015, 4, 16, 13, 14),
         "call_date": day, "direction": "IN", "caller": "90532xxxxxxx", "callee": "90850885xxxx"},
        {"uuid": "6930557a-e43a-11e4-b591-17aee3ce4e7b", "call_time": utc(2015, 4, 16, 13, 13),
         "call_date": day, "direction": "IN", "caller": "90532xxxxxxx", "callee": "90850885xxxx"},
    ]  # fmt: skip


def test_seed_listing_items_as_details() -> None:
    """Listing items have no call_flow: they normalise as calls without steps."""
    result = normalize_details(load_fixture("seed_cdr_list.json")["cdrs"])

    assert result.rejects == []
    assert result.call_flow_steps.empty and result.originations.empty
    first = records(result.cdrs)[0]
    # unanswered LOCAL call cancelled by the caller
    assert first["answered"] is False or first["answered"] == False  # noqa: E712
    assert (first["ring_seconds"], first["talk_seconds"]) == (0, 0)
    assert first["hangup_cause_code"] == "ORIGINATOR_CANCEL"
    assert first["hangup_state_code"] is None
    assert first["missing_call"] == False  # noqa: E712  (LOCAL, not IN)
    third = records(result.cdrs)[2]
    assert (third["ring_seconds"], third["talk_seconds"]) == (0, 240)
    assert third["hangup_state_code"] == "send_bye"
    assert third["has_recording"] == True  # noqa: E712


# --- times -----------------------------------------------------------------------------

TIME_CASES = [
    # seed flow format, summer 2015 (+03:00)
    ("16/04/2015 - 11:02:02", datetime(2015, 4, 16, 8, 2, 2, tzinfo=UTC)),
    # seed top-level format, summer 2015 (+03:00)
    ("16-04-2015 16:17", datetime(2015, 4, 16, 13, 17, tzinfo=UTC)),
    # winter 2015 (+02:00)
    ("15-01-2015 10:00", datetime(2015, 1, 15, 8, 0, tzinfo=UTC)),
    ("15/01/2015 - 10:00:30", datetime(2015, 1, 15, 8, 0, 30, tzinfo=UTC)),
    # autumn fall-back 2015-11-08 04:00 -> 03:00: 03:30 is ambiguous, first (DST) wins
    ("08-11-2015 03:30", datetime(2015, 11, 8, 0, 30, tzinfo=UTC)),
    # spring gap 2015-03-29 03:00 -> 04:00: 03:30 does not exist, shifts forward to 04:00
    ("29/03/2015 - 03:30:00", datetime(2015, 3, 29, 1, 0, tzinfo=UTC)),
    # v1 ISO-8601 with offset
    ("2017-03-15T09:46:06+03:00", datetime(2017, 3, 15, 6, 46, 6, tzinfo=UTC)),
    # v1 ISO-8601 in UTC
    ("2015-04-16T08:02:02Z", datetime(2015, 4, 16, 8, 2, 2, tzinfo=UTC)),
    # ISO-8601 without offset: Turkey local time, like every offset-less API time
    ("2015-01-15T10:00:00", datetime(2015, 1, 15, 8, 0, tzinfo=UTC)),
    # null stays null
    (None, None),
]


@pytest.mark.parametrize(("text", "expected"), TIME_CASES)
def test_parse_api_time(text: str | None, expected: datetime | None) -> None:
    assert parse_api_time(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "31-02-2015 10:00",  # impossible date (strptime would roll it to 03-03)
        "31/04/2015 - 11:02:02",  # April has 30 days
        "16-04-2015 24:00",  # hour out of range
        "16/04/2015 - 11:02:60",  # second out of range
        "1-4-2015 6:17",  # not zero padded
        "16-04-2015",  # no time
        "2015-02-31T10:00:00+03:00",  # impossible ISO date
        "yesterday",
        "",
        12345,  # not a string
    ],
)
def test_parse_api_time_rejects_garbage(text: object) -> None:
    with pytest.raises(ValueError):
        parse_api_time(text)


def test_times_in_a_batch_match_the_scalar_helper() -> None:
    texts = [t for t, _ in TIME_CASES if t is not None]
    payloads = [
        {"uuid": f"u{i}", "call_time": "16-04-2015 16:17", "hangup_time": text}
        for i, text in enumerate(texts)
    ]
    result = normalize_details(payloads)
    assert result.rejects == []
    got = [t.to_pydatetime() for t in result.cdrs["hangup_time"]]
    assert got == [expected for t, expected in TIME_CASES if t is not None]


# --- vocabulary --------------------------------------------------------------------------


def one_call(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "uuid": "u1",
        "direction": "IN",
        "call_time": "16-04-2015 11:02",
        "answer_time": "16-04-2015 11:03",
        "hangup_time": "16-04-2015 11:05",
    }
    base.update(fields)
    return base


CDR_LABEL_CASES = [
    # (field, sent, derived column, canonical)
    ("hangup_cause", "Normal", "hangup_cause_code", "NORMAL_CLEARING"),
    ("hangup_cause", "Aramayı başlatan cevaplanmadan iptal ediyor.", "hangup_cause_code",
     "ORIGINATOR_CANCEL"),
    ("hangup_cause", "Meşgul", "hangup_cause_code", "USER_BUSY"),
    ("hangup_cause", "  Cevap yok ", "hangup_cause_code", "NO_ANSWER"),  # exact after strip
    ("hangup_cause", "Bilinmeyen", "hangup_cause_code", None),  # unknown Turkish text
    ("hangup_cause", "USER_BUSY", "hangup_cause_code", "USER_BUSY"),  # v1 passes through
    ("hangup_cause", "NORMAL_TEMPORARY_FAILURE", "hangup_cause_code",
     "NORMAL_TEMPORARY_FAILURE"),  # any Q.850 name passes through
    ("hangup_cause", "user_busy", "hangup_cause_code", None),  # codes are case-sensitive
    ("hangup_state", "İstemci tarafından sonlandırılan çağrı", "hangup_state_code", "recv_bye"),
    ("hangup_state", "Sistem tarafından sonlandırılan çağrı", "hangup_state_code", "send_bye"),
    ("hangup_state", "Arayan tarafından iptal edildi", "hangup_state_code", "recv_cancel"),
    ("hangup_state", "Reddedildi", "hangup_state_code", "send_refuse"),
    ("hangup_state", "recv_refuse", "hangup_state_code", "recv_refuse"),  # v1 passes through
    ("hangup_state", None, "hangup_state_code", None),
    ("hangup_state", "RECV_BYE", "hangup_state_code", None),  # case-sensitive
    ("call_record", "Var", "has_recording", True),
    ("call_record", "Yok", "has_recording", False),
    ("call_record", "YES", "has_recording", True),
    ("call_record", "REMOVED", "has_recording", False),
    ("call_record", None, "has_recording", False),
    ("caller", 902322290000, "caller", "902322290000"),  # JSON number -> decimal text
    ("caller", 902322290000.0, "caller", "902322290000"),  # integral float too
    ("caller", "90532xxxxxxx", "caller", "90532xxxxxxx"),  # masked number stays text
    ("extension", 1004, "extension", "1004"),
    ("call_price", "0.0182", "call_price", Decimal("0.0182")),
    ("call_price", 0.0182, "call_price", Decimal("0.0182")),  # JSON number
    ("call_price", 3, "call_price", Decimal("3")),
    ("call_price", None, "call_price", None),
    ("missing_call", True, "missing_call", True),  # v1 value wins over the derivation
]  # fmt: skip


@pytest.mark.parametrize(("field", "sent", "column", "expected"), CDR_LABEL_CASES)
def test_cdr_vocabulary(field: str, sent: object, column: str, expected: object) -> None:
    result = normalize_details([one_call(**{field: sent})])
    assert result.rejects == []
    assert records(result.cdrs)[0][column] == expected


STEP_CASES = [
    # (redirection, redirection_target, kind, target)
    ("Menüye Yönlendi - (10)", None, "REDIRECTED_TO_MENU", "10"),
    ("Gruba Yönlendi - (101)", None, "REDIRECTED_TO_GROUP", "101"),
    ("Dahiliye Yönlendi - (1004)", None, "REDIRECTED_TO_EXTENSION", "1004"),
    ("Gruba bağlanılıyor", None, "CONNECTING_TO_GROUP", None),
    ("Menüye bağlanılıyor", None, "CONNECTING_TO_MENU", None),
    (" Dahiliye bağlanılıyor ", None, "CONNECTING_TO_EXTENSION", None),  # strip()
    ("Sesli mesaj", None, "OTHER", None),  # unknown label
    (None, None, "OTHER", None),
    ("REDIRECTED_TO_EXTENSION", 1004, "REDIRECTED_TO_EXTENSION", "1004"),  # v1 + number
    ("CONNECTING_TO_GROUP", "101", "CONNECTING_TO_GROUP", "101"),
    ("OTHER", None, "OTHER", None),
]


@pytest.mark.parametrize(("redirection", "target", "kind", "expected_target"), STEP_CASES)
def test_redirection_vocabulary(
    redirection: str | None, target: object, kind: str, expected_target: str | None
) -> None:
    step = {"callee": 11, "start_time": "16/04/2015 - 11:02:02", "redirection": redirection}
    if target is not None:
        step["redirection_target"] = target
    result = normalize_details([one_call(call_flow=[step])])
    assert result.rejects == []
    row = records(result.call_flow_steps)[0]
    assert (row["callee"], row["redirection_kind"], row["redirection_target"]) == (
        "11",
        kind,
        expected_target,
    )


OUTCOME_CASES = [
    ("Cevapladı", "ANSWERED", True),
    ("Başkası açtı", "LOSE_RACE", False),
    ("Cevaplanmadı", "OTHER", False),
    ("ANSWERED", "ANSWERED", True),
    ("LOSE_RACE", "LOSE_RACE", False),
    ("NO_ANSWER", "OTHER", False),
    ("BUSY", "OTHER", False),
    (None, "OTHER", False),
]


@pytest.mark.parametrize(("result_sent", "outcome", "answered"), OUTCOME_CASES)
def test_origination_outcome(result_sent: str | None, outcome: str, answered: bool) -> None:
    step = {
        "callee": "101",
        "start_time": "16/04/2015 - 11:02:02",
        "redirection": "Gruba bağlanılıyor",
        "origination": [
            {"destination": 1004, "start_time": "16/04/2015 - 11:02:02", "result": result_sent}
        ],
    }
    result = normalize_details([one_call(call_flow=[step])])
    assert result.rejects == []
    row = records(result.originations)[0]
    assert (row["destination"], row["outcome"], row["answered"]) == ("1004", outcome, answered)


def test_derived_seconds_and_missing_call() -> None:
    payloads = [
        # answered IN call: ring 60 s, talk 120 s
        one_call(uuid="a"),
        # unanswered IN call: ring to hangup, talk 0, missed
        one_call(uuid="b", answer_time=None, hangup_time="16-04-2015 11:04"),
        # answered but no hangup yet: talk unknown
        one_call(uuid="c", hangup_time=None),
        # unanswered OUT call, no hangup: ring unknown, not a missed call
        one_call(uuid="d", direction="OUT", answer_time=None, hangup_time=None),
    ]
    rows = records(normalize_details(payloads).cdrs)
    got = [(r["uuid"], r["ring_seconds"], r["talk_seconds"], r["missing_call"]) for r in rows]
    assert got == [
        ("a", 60, 120, False),
        ("b", 120, 0, True),
        ("c", 60, None, False),
        ("d", None, 0, False),
    ]


def test_duplicate_uuid_keeps_last_occurrence() -> None:
    first = one_call(hangup_cause="Meşgul")
    second = one_call(hangup_cause="Normal")
    result = normalize_details([first, second])
    assert records(result.cdrs)[0]["hangup_cause"] == "Normal"
    assert len(result.cdrs) == 1

    listing = normalize_listing([one_call(direction="OUT"), one_call(direction="IN")])
    assert listing.frame["direction"].tolist() == ["IN"]


def test_unknown_fields_are_ignored() -> None:
    call = one_call(surprise={"nested": [1, 2]}, another=1)
    result = normalize_details([call])
    assert result.rejects == [] and len(result.cdrs) == 1


# --- rejects -------------------------------------------------------------------------------


def with_flow(**override: Any) -> dict[str, Any]:
    call = copy.deepcopy(seed_detail())
    call.update(override)
    return call


def broken(path: str, value: Any) -> dict[str, Any]:
    """The seed detail with one nested field replaced (``path`` like ``3.origination.1``)."""
    call = copy.deepcopy(seed_detail())
    parts = path.split(".")
    target: Any = call["call_flow"]
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if value is KeyError:
        del target[int(last) if last.isdigit() else last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return call


BAD_RECORDS = [
    # (record, uuid in the reject, expected reason)
    (with_flow(call_time="31-02-2015 10:00"), UUID,
     "call_time: unparseable time '31-02-2015 10:00'"),
    # year 0 parses as a timestamp but has no Python date (found by the SQL-path fuzz test)
    (with_flow(call_time="16-04-0000 10:00"), UUID,
     "call_time: unparseable time '16-04-0000 10:00'"),
    (with_flow(uuid=None), None, "uuid: missing"),
    (with_flow(uuid=""), None, "uuid: not a non-empty string ''"),
    (with_flow(call_time=None), UUID, "call_time: missing"),
    (with_flow(call_flow={"callee": "10"}), UUID, "call_flow: not a list {'callee': '10'}"),
    (broken("1", "oops"), UUID, "call_flow[1]: not an object 'oops'"),
    (broken("2.start_time", KeyError), UUID, "call_flow[2].start_time: missing"),
    (broken("2.redirection", KeyError), UUID, "call_flow[2].redirection: missing"),
    (broken("3.hangup_time", "16/04/2015 - 25:00:00"), UUID,
     "call_flow[3].hangup_time: unparseable time '16/04/2015 - 25:00:00'"),
    (broken("3.origination", "1004"), UUID, "call_flow[3].origination: not a list '1004'"),
    (broken("3.origination.1", 1008), UUID, "call_flow[3].origination[1]: not an object 1008"),
    (broken("3.origination.2.destination", KeyError), UUID,
     "call_flow[3].origination[2].destination: missing"),
    (broken("3.origination.2.result", KeyError), UUID,
     "call_flow[3].origination[2].result: missing"),
    (broken("3.origination.0.answer_time", ["x"]), UUID,
     "call_flow[3].origination[0].answer_time: expected a time string, got ['x']"),
    (broken("3.origination.0.start_time", "31/02/2015 - 11:02:02"), UUID,
     "call_flow[3].origination[0].start_time: unparseable time '31/02/2015 - 11:02:02'"),
    (with_flow(call_price="1,5 TL"), UUID, "call_price: unparseable '1,5 TL'"),
    (with_flow(call_price="NaN"), UUID, "call_price: not a finite number 'NaN'"),
    (with_flow(call_price=True), UUID, "call_price: not a number True"),
    (with_flow(caller={"no": 1}), UUID, "caller: expected text or number, got {'no': 1}"),
    (with_flow(missing_call="yes"), UUID, "missing_call: not a boolean 'yes'"),
    (with_flow(answer_time=20150416), UUID,
     "answer_time: expected a time string, got 20150416"),
    ("not an object", None, "cdr: not an object 'not an object'"),
]  # fmt: skip


@pytest.mark.parametrize(("record", "uuid", "reason"), BAD_RECORDS)
def test_bad_record_is_rejected_and_the_rest_loads(
    record: Any, uuid: str | None, reason: str
) -> None:
    good = one_call(uuid="good", call_flow=[seed_detail()["call_flow"][3]])
    result = normalize_details([good, record, one_call(uuid="good2")])

    assert [(r.uuid, r.stage, r.reason) for r in result.rejects] == [(uuid, "normalize", reason)]
    assert result.rejects[0].payload == json.dumps(record, ensure_ascii=False)
    # all or nothing: none of the bad call's rows, all of the good ones
    assert result.cdrs["uuid"].tolist() == ["good", "good2"]
    assert set(result.call_flow_steps["cdr_uuid"]) == {"good"}
    assert result.originations["cdr_uuid"].tolist() == ["good"] * 4


def test_listing_rejects() -> None:
    items: list[Any] = [
        one_call(uuid="ok"),
        one_call(uuid="bad-date", call_time="31-02-2015 10:00"),
        one_call(uuid=None),
        one_call(uuid="no-time", call_time=None),
        42,
    ]
    result = normalize_listing(items)
    assert result.frame["uuid"].tolist() == ["ok"]
    assert [(r.uuid, r.reason) for r in result.rejects] == [
        ("bad-date", "call_time: unparseable time '31-02-2015 10:00'"),
        (None, "uuid: missing"),
        ("no-time", "call_time: missing"),
        (None, "item: not an object 42"),
    ]


def test_empty_batches() -> None:
    details = normalize_details([])
    assert list(details.cdrs.columns) == list(CDR_COLUMNS)
    assert details.cdrs.empty and details.call_flow_steps.empty and details.rejects == []
    listing = normalize_listing([])
    assert list(listing.frame.columns) == list(LISTING_COLUMNS) and listing.frame.empty
