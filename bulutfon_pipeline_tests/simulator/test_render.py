"""Both dialects render the documented shapes."""

from __future__ import annotations

import json
import re

import pytest

from bulutfon_pipeline.simulator import SimulatorConfig, generate_dataset
from bulutfon_pipeline.simulator.render import detail_object, listing_item

SEED_TOP = re.compile(r"^\d{2}-\d{2}-2015 \d{2}:\d{2}$")
SEED_FLOW = re.compile(r"^\d{2}/\d{2}/2015 - \d{2}:\d{2}:\d{2}$")
ISO = re.compile(r"^2015-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0[23]:00$")
ISO_MINUTE = re.compile(r"^2015-\d{2}-\d{2}T\d{2}:\d{2}:00\+0[23]:00$")
MASKED = re.compile(r"^\d{5,8}x+$")
SEED_KEYS = [
    "uuid", "bf_calltype", "direction", "caller", "callee", "call_time", "answer_time",
    "hangup_time", "call_record", "hangup_cause", "hangup_state",
]  # fmt: skip


@pytest.fixture(scope="module")
def dataset():
    return generate_dataset(SimulatorConfig(calls_per_day=20))


def _times(obj, *names):
    return [obj[n] for n in names if obj[n] is not None]


def test_seed_listing_items(dataset):
    for call in dataset.calls:
        item = json.loads(json.dumps(listing_item(call, "seed")))
        assert list(item) == SEED_KEYS
        assert all(
            SEED_TOP.match(t) for t in _times(item, "call_time", "answer_time", "hangup_time")
        )
        for key in ("caller", "callee"):
            value = item[key]
            assert isinstance(value, int) or (isinstance(value, str) and MASKED.match(value))
        assert item["call_record"] in ("Var", "Yok")
        assert item["hangup_cause"] in (
            "Normal", "Aramayı başlatan cevaplanmadan iptal ediyor.", "Meşgul", "Cevap yok",
        )  # fmt: skip


def test_seed_detail_flow(dataset):
    redirection = re.compile(
        r"^((Menüye|Gruba|Dahiliye) Yönlendi - \(\d+\)|(Menüye|Gruba|Dahiliye) bağlanılıyor"
        r"|Dış hatta bağlanılıyor)$"
    )
    for call in dataset.calls:
        cdr = detail_object(call, "seed")
        assert cdr["call_flow"], call.uuid
        for step in cdr["call_flow"]:
            assert isinstance(step["callee"], str)
            assert "redirection_target" not in step
            assert redirection.match(step["redirection"])
            assert all(
                SEED_FLOW.match(t) for t in _times(step, "start_time", "answer_time", "hangup_time")
            )
            for o in step.get("origination", []):
                assert isinstance(o["destination"], str)
                assert o["result"] in ("Cevapladı", "Başkası açtı", "Cevaplanmadı")
                assert SEED_FLOW.match(o["start_time"])


def test_v1_listing_and_detail(dataset):
    kinds = set()
    for call in dataset.calls:
        cdr = detail_object(call, "v1")
        assert all(
            ISO_MINUTE.match(t) for t in _times(cdr, "call_time", "answer_time", "hangup_time")
        )
        assert cdr["call_record"] in ("YES", "NO", "REMOVED")
        assert cdr["missing_call"] is (cdr["direction"] == "IN" and cdr["answer_time"] is None)
        assert cdr["hangup_state"] in (None, "send_bye", "recv_bye", "recv_cancel", "send_refuse")
        assert ("extension" in cdr) is (cdr["direction"] == "OUT")
        price = cdr["call_price"]
        assert price is None or isinstance(price, float) or re.match(r"^\d+\.\d{4}$", price)
        for step in cdr["call_flow"]:
            kinds.add(step["redirection"])
            assert isinstance(step["callee"], int) or MASKED.match(step["callee"])
            assert all(
                ISO.match(t) for t in _times(step, "start_time", "answer_time", "hangup_time")
            )
            if step["redirection"].startswith("REDIRECTED_TO_"):
                assert step["redirection_target"].isdigit()
            else:
                assert step["redirection_target"] is None
            for o in step.get("origination", []):
                assert isinstance(o["destination"], int)
                assert o["result"] in ("ANSWERED", "LOSE_RACE", "NO_ANSWER")
    assert kinds >= {
        "REDIRECTED_TO_MENU", "REDIRECTED_TO_GROUP", "REDIRECTED_TO_EXTENSION",
        "CONNECTING_TO_GROUP", "CONNECTING_TO_EXTENSION", "OTHER",
    }  # fmt: skip


def test_v1_prices_come_as_text_and_as_numbers(dataset):
    prices = [listing_item(c, "v1")["call_price"] for c in dataset.calls if c.direction == "OUT"]
    assert {type(p) for p in prices} == {str, float, type(None)}


def test_v1_offsets_follow_turkish_dst(dataset):
    offsets = {}
    for call in dataset.calls:
        local_day = listing_item(call, "v1")["call_time"]
        offsets.setdefault(local_day[-6:], []).append(local_day[:10])
    assert max(offsets["+02:00"]) < "2015-03-29" <= min(offsets["+03:00"])


def test_seed_and_v1_show_the_same_local_wall_time(dataset):
    for call in dataset.calls[:50]:
        seed, v1 = listing_item(call, "seed")["call_time"], listing_item(call, "v1")["call_time"]
        day, month, rest = seed.split("-")
        assert v1.startswith(f"{rest[:4]}-{month}-{day}T{rest[5:]}:00")
