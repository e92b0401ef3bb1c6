"""The generator's model and its ground truth, without a server."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal

import pytest

from bulutfon_pipeline.settings import LOCAL_TZ
from bulutfon_pipeline.simulator import SimulatorConfig, generate_dataset
from bulutfon_pipeline.simulator.generator import EXTENSIONS, GROUPS

CDR_COLUMNS = {
    "uuid", "call_type", "direction", "caller", "callee", "extension", "call_time",
    "answer_time", "hangup_time", "call_date", "answered", "ring_seconds", "talk_seconds",
    "call_record", "has_recording", "hangup_cause", "hangup_cause_code", "hangup_state",
    "hangup_state_code", "missing_call", "call_price",
}  # fmt: skip
STEP_COLUMNS = {
    "cdr_uuid", "step_index", "callee", "start_time", "answer_time", "hangup_time",
    "redirection", "redirection_kind", "redirection_target",
}  # fmt: skip
ORIGINATION_COLUMNS = {
    "cdr_uuid", "step_index", "attempt_index", "destination", "start_time", "answer_time",
    "hangup_time", "result", "outcome", "answered",
}  # fmt: skip


@pytest.fixture(scope="module")
def month():
    """The default 30 days, at 40 calls a day."""
    return generate_dataset(SimulatorConfig(calls_per_day=40))


def test_same_seed_same_dataset_other_seed_other_dataset():
    config = SimulatorConfig(days=2, calls_per_day=30)
    first, again = generate_dataset(config), generate_dataset(config)
    assert first.calls == again.calls
    assert first.expected_tables() == again.expected_tables()
    other = generate_dataset(SimulatorConfig(days=2, calls_per_day=30, seed=7))
    assert {c.uuid for c in other.calls}.isdisjoint({c.uuid for c in first.calls})


def test_exact_call_count_per_local_day_ending_with_end_date(month):
    per_day = Counter(c.call_time.astimezone(LOCAL_TZ).date() for c in month.calls)
    assert set(per_day.values()) == {40}
    assert max(per_day) == dt.date(2015, 4, 16)
    assert min(per_day) == dt.date(2015, 3, 18)


def test_dataset_crosses_turkish_dst_start(month):
    offsets = Counter(c.call_time.astimezone(LOCAL_TZ).utcoffset() for c in month.calls)
    assert set(offsets) == {dt.timedelta(hours=2), dt.timedelta(hours=3)}


def test_listing_order_is_newest_first_then_uuid(month):
    keys = [(-c.call_time.timestamp(), c.uuid) for c in month.calls]
    assert keys == sorted(keys)


def test_top_level_times_on_whole_minutes_flow_times_have_seconds(month):
    for call in month.calls:
        for t in (call.call_time, call.answer_time, call.hangup_time):
            assert t is None or (t.second == 0 and t.microsecond == 0)
            assert t is None or t.utcoffset() == dt.timedelta(0)
    flow_seconds = {s.start_time.second for c in month.calls for s in c.flow}
    assert len(flow_seconds) > 30


def test_about_ten_flow_and_origination_rows_per_call():
    tables = generate_dataset(SimulatorConfig(days=4, calls_per_day=300)).expected_tables()
    rows = len(tables["call_flow_steps"]) + len(tables["originations"])
    assert 8.5 <= rows / len(tables["cdrs"]) <= 11.5


def test_ring_groups_have_one_winner_or_nobody(month):
    groups = 0
    for call in month.calls:
        for step in call.flow:
            if step.originations is None:
                continue
            groups += 1
            assert step.kind == "CONNECTING_TO_GROUP"
            assert {o.destination for o in step.originations} <= set(GROUPS[step.callee])
            results = Counter(o.result for o in step.originations)
            if step.answer_time is None:  # nobody picked up
                assert set(results) == {"NO_ANSWER"}
                assert all(o.answer_time is None for o in step.originations)
            else:
                assert results["ANSWERED"] == 1
                assert set(results) <= {"ANSWERED", "LOSE_RACE", "NO_ANSWER"}
    assert groups > 500


def test_inbound_flows_go_through_menus_or_straight_to_an_extension(month):
    inbound = [c for c in month.calls if c.direction == "IN"]
    first_kinds = Counter(c.flow[0].kind for c in inbound)
    assert set(first_kinds) == {"REDIRECTED_TO_MENU", "REDIRECTED_TO_EXTENSION"}
    menu = [c for c in inbound if c.flow[0].kind == "REDIRECTED_TO_MENU"]
    assert all(c.flow[0].target == "10" and c.flow[1].callee == "10" for c in menu)
    missed = [c for c in inbound if c.answer_time is None]
    assert 0.05 < len(missed) / len(inbound) < 0.35
    assert all(c.missing_call for c in missed)


def test_outbound_calls_come_from_an_extension_with_a_price(month):
    outbound = [c for c in month.calls if c.direction == "OUT"]
    assert outbound and all(c.extension in EXTENSIONS for c in outbound)
    assert all(c.extension is None for c in month.calls if c.direction != "OUT")
    priced = [c.call_price for c in outbound if c.call_price is not None]
    assert priced and all(p > 0 and p == p.quantize(Decimal("0.0001")) for p in priced)


def test_numbers_mix_full_and_masked(month):
    callers = [c.caller for c in month.calls if c.direction == "IN"]
    assert any(n.isdigit() and len(n) == 12 for n in callers)
    assert any(n.endswith("xxxxxxx") and n[:5].isdigit() for n in callers)


def test_expected_tables_have_exactly_the_warehouse_columns(month):
    tables = month.expected_tables()
    assert set(tables) == {"cdrs", "call_flow_steps", "originations", "load_rejects"}
    assert all(set(r) == CDR_COLUMNS for r in tables["cdrs"])
    assert all(set(r) == STEP_COLUMNS for r in tables["call_flow_steps"])
    assert all(set(r) == ORIGINATION_COLUMNS for r in tables["originations"])
    assert tables["load_rejects"] == []


def test_expected_cdrs_derive_columns_from_the_model(month):
    rows = {r["uuid"]: r for r in month.expected_tables()["cdrs"]}
    for call in month.calls:
        row = rows[call.uuid]
        assert row["call_date"] == call.call_time.astimezone(LOCAL_TZ).date()
        assert row["answered"] is (call.answer_time is not None)
        end = call.answer_time or call.hangup_time
        assert row["ring_seconds"] == (end - call.call_time).total_seconds()
        assert row["ring_seconds"] % 60 == 0 and row["talk_seconds"] % 60 == 0
        if call.answer_time is None:
            assert row["talk_seconds"] == 0
        assert row["missing_call"] is (call.direction == "IN" and call.answer_time is None)
        # seed dialect: no extension or price, Turkish as-sent text
        assert row["extension"] is None and row["call_price"] is None
        assert row["call_record"] in ("Var", "Yok")
        assert row["has_recording"] is (row["call_record"] == "Var")


def test_expected_as_sent_text_follows_the_dialect():
    config = SimulatorConfig(days=2, calls_per_day=60)
    seed = generate_dataset(config).expected_tables()
    v1 = generate_dataset(config.replace(dialect="v1")).expected_tables()
    seed_causes = {r["hangup_cause"]: r["hangup_cause_code"] for r in seed["cdrs"]}
    assert seed_causes["Normal"] == "NORMAL_CLEARING"
    assert seed_causes["Aramayı başlatan cevaplanmadan iptal ediyor."] == "ORIGINATOR_CANCEL"
    assert {r["hangup_cause"] for r in v1["cdrs"]} == {r["hangup_cause_code"] for r in v1["cdrs"]}
    seed_redirections = {r["redirection"] for r in seed["call_flow_steps"]}
    assert {"Menüye Yönlendi - (10)", "Gruba bağlanılıyor"} <= seed_redirections
    assert any(r.startswith("Gruba Yönlendi - (10") for r in seed_redirections)
    assert {r["result"] for r in seed["originations"]} == {
        "Cevapladı",
        "Başkası açtı",
        "Cevaplanmadı",
    }
    assert {r["result"] for r in v1["originations"]} == {"ANSWERED", "LOSE_RACE", "NO_ANSWER"}
    assert {r["outcome"] for r in v1["originations"]} == {"ANSWERED", "LOSE_RACE", "OTHER"}
    assert any(r["extension"] is not None for r in v1["cdrs"])
    assert any(isinstance(r["call_price"], Decimal) for r in v1["cdrs"])

    # canonical columns are identical across dialects
    def canonical(rows, drop):
        return [{k: v for k, v in r.items() if k not in drop} for r in rows]

    as_sent = {"call_record", "hangup_cause", "hangup_state", "extension", "call_price"}
    assert canonical(seed["cdrs"], as_sent) == canonical(v1["cdrs"], as_sent)
    assert canonical(seed["call_flow_steps"], {"redirection"}) == canonical(
        v1["call_flow_steps"], {"redirection"}
    )
    assert canonical(seed["originations"], {"result"}) == canonical(v1["originations"], {"result"})


def test_fault_counts_show_up_as_rejects_only():
    config = SimulatorConfig(
        days=2, calls_per_day=50, missing_detail_count=3, malformed_count=5, unknown_field_count=4
    )
    ds = generate_dataset(config)
    tables = ds.expected_tables()
    faults = ds.faults
    assert Counter(f.split(":")[0] for f in faults.values()) == {
        "missing": 3, "malformed": 5, "unknown_field": 4,
    }  # fmt: skip
    rejects = {r["uuid"]: r["stage"] for r in tables["load_rejects"]}
    assert len(rejects) == 8
    for uuid, fault in faults.items():
        if fault == "missing" or fault in ("malformed:html_200", "malformed:empty_200"):
            assert rejects[uuid] == "detail"
        elif fault.startswith("malformed:"):
            assert rejects[uuid] == "normalize"
        else:
            assert uuid not in rejects
    loaded = {r["uuid"] for r in tables["cdrs"]}
    assert loaded.isdisjoint(rejects)
    assert len(loaded) == 100 - 8
    assert {r["cdr_uuid"] for r in tables["call_flow_steps"]} <= loaded


def test_add_calls_at_the_head_and_late():
    ds = generate_dataset(SimulatorConfig(days=1, calls_per_day=20))
    newest = ds.calls[0].call_time
    head = ds.add_calls(3, "head")
    assert [c.uuid for c in ds.calls[:3]] == head[::-1]
    assert all(ds.get(u).call_time > newest for u in head)
    late = ds.add_calls(2, "late", hours_ago=6)
    for u in late:
        age = ds.calls[0].call_time - ds.get(u).call_time
        assert dt.timedelta(hours=6) <= age <= dt.timedelta(hours=8)
    assert len(ds) == 25 and len(ds.expected_tables()["cdrs"]) == 25
