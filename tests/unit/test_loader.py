"""Unit tests of ``registry.bulk.load`` (JSON Lines import) on a real LMDB store."""

from __future__ import annotations

import io
from importlib import resources

import orjson
import pytest

from registry import bulk
from resolver.identifier import Identifier
from resolver.record import unpack
from resolver.store import schema as S
from resolver.valuejson import value_to_json

T2026 = 1767225600


def _demo_lines() -> list[str]:
    return (resources.files("registry") / "demo.jsonl").read_text(encoding="utf-8").splitlines(True)


def _log(store):
    return [(c.txn_id, c.action, c.key) for c in store.changes_since(0)]


def _line(handle: str, values: list) -> str:
    return orjson.dumps({"handle": handle, "values": values}).decode() + "\n"


PREFIX_LINE = _line("0.NA/88.118.8", [{"index": 100, "type": "HS_ADMIN", "data": {
    "format": "admin", "value": {"handle": "0.NA/88.118.8", "index": 300,
                                 "permissions": "011111111111"}}}])  # fmt: skip


def test_demo_file_loads(store):
    lines = _demo_lines()
    report = bulk.load(store, lines, now=T2026)
    assert report.ok and report.errors == []
    assert (report.lines, report.prefixes, report.loaded) == (4, 1, 3)
    assert report.last_txn_id == 4 == store.last_txn_id()
    assert store.stat() == {"records": 3, "prefixes": 1, "changes": 4}
    assert sorted(a for _, a, _ in _log(store)) == [S.ACTION_CREATE] * 3 + [S.ACTION_HOME_PREFIX]

    # every line's values are stored exactly as the JSON said
    for line in lines:
        obj = orjson.loads(line)
        ident = Identifier.parse(obj["handle"])
        if ident.is_prefix_handle:
            blob = store.get_prefix(ident.suffix_key)
        else:
            blob = store.get_record(ident.key)
        assert blob is not None, obj["handle"]
        got = [value_to_json(v) for v in unpack(blob)]
        want = [(v["index"], v["type"]) for v in obj["values"]]
        assert [(g["index"], g["type"]) for g in got] == want
        for g, v in zip(got, obj["values"]):
            assert g["timestamp"] == v["timestamp"]
            data = v["data"]
            assert g["data"]["value"] == (data if isinstance(data, str) else data["value"])

    # keys are the normalised identifiers; the unicode suffix keeps its slashes
    assert store.get_record(b"88.118.8/DEMO-1") is not None
    ukey = "88.118.8/设备-压缩机/批次-2026-11/序列号-0001-温州工厂-二号生产线-质检合格-出口型号-αβγ".encode()
    assert store.get_record(ukey) is not None
    assert store.list_keys(b"88.118.8")[0] == 3


def test_demo_file_from_a_text_stream(store):
    text = "".join(_demo_lines())
    report = bulk.load(store, io.StringIO(text))
    assert report.ok and report.loaded == 3


def test_reload_is_a_noop(store):
    first = bulk.load(store, _demo_lines(), now=T2026)
    log = _log(store)
    second = bulk.load(store, _demo_lines(), now=T2026 + 86400)  # every value has its timestamp
    assert second.ok and second.loaded == 3 and second.prefixes == 1
    assert second.last_txn_id == 0
    assert _log(store) == log
    assert store.last_txn_id() == first.last_txn_id


def test_reload_without_timestamps_is_a_noop(store):
    # bulk.py promises "Loading the same file twice changes nothing"; values without a
    # timestamp get "now", so a later reload currently rewrites (and logs) every record.
    lines = [PREFIX_LINE, _line("88.118.8/no-ts", [{"index": 1, "type": "URL", "data": "u"}])]
    bulk.load(store, lines, now=T2026)
    log = _log(store)
    again = bulk.load(store, lines, now=T2026 + 60)
    assert again.ok
    assert _log(store) == log


def test_bad_lines_are_reported_and_skipped(store):
    lines = [
        "# a comment line\n",  # 1
        PREFIX_LINE,  # 2
        "\n",  # 3
        _line("88.118.8/good-1", [{"index": 1, "type": "URL", "data": "u1"}]),  # 4
        "{not json\n",  # 5
        "[1, 2]\n",  # 6
        '{"values": []}\n',  # 7
        '{"handle": "88.118.8/x", "values": {}}\n',  # 8
        _line("88.118.8/", [{"index": 1, "type": "URL", "data": "u"}]),  # 9
        _line("88.118.8/bad-value", [{"index": 0, "type": "URL", "data": "u"}]),  # 10
        _line("88.118.8/dup", [{"index": 1, "type": "URL", "data": "a"},
                               {"index": 1, "type": "URL", "data": "b"}]),  # 11  # fmt: skip
        _line("88.118.8/no-type", [{"index": 1, "data": "u"}]),  # 12
        _line("99.1/foreign", [{"index": 1, "type": "URL", "data": "u"}]),  # 13
        "   \n",  # 14
        _line("88.118.8/good-2", [{"index": 1, "type": "URL", "data": "u2"}]),  # 15
        _line("88.118.8/bad\u0001ctl", [{"index": 1, "type": "URL", "data": "u"}]),  # 16
    ]
    report = bulk.load(store, lines, now=T2026)
    assert not report.ok
    numbers = [n for n, _ in report.errors]
    assert numbers == [5, 6, 7, 8, 9, 10, 11, 12, 13, 16]
    reasons = dict(report.errors)
    assert reasons[5].startswith("not JSON")
    assert "handle" in reasons[6] and "handle" in reasons[7]
    assert "values" in reasons[8]
    assert reasons[9] == "Handle has an empty suffix"
    assert "positive" in reasons[10]
    assert "duplicate value index 1" in reasons[11]
    assert "'type'" in reasons[12]
    assert "99.1" in reasons[13] and "not homed" in reasons[13]
    assert reasons[16] == "Handle contains a control character"
    assert report.lines == 13  # comments and blank lines are not counted
    assert (report.prefixes, report.loaded) == (1, 2)
    assert store.list_keys(b"88.118.8") == (2, [b"88.118.8/GOOD-1", b"88.118.8/GOOD-2"])
    assert store.stat()["changes"] == 3


def test_value_out_of_int4_range_is_reported_not_raised(store):
    # value_from_json lets struct.error escape for an admin index beyond int4; the loader
    # must report the line like any other bad line instead of aborting the whole load.
    lines = [
        PREFIX_LINE,
        _line("88.118.8/big", [{"index": 100, "type": "HS_ADMIN", "data": {"format": "admin",
              "value": {"handle": "0.NA/88.118.8", "index": 2**40}}}]),  # fmt: skip
        _line("88.118.8/ok", [{"index": 1, "type": "URL", "data": "u"}]),
    ]
    report = bulk.load(store, lines, now=T2026)
    assert [n for n, _ in report.errors] == [2]
    assert report.loaded == 1
    assert store.get_record(b"88.118.8/OK") is not None


def test_records_under_unhomed_prefix_are_rejected(store):
    lines = [
        _line("88.118.9/early", [{"index": 1, "type": "URL", "data": "u"}]),  # before its prefix
        PREFIX_LINE,
        _line("88.118.8/ok", [{"index": 1, "type": "URL", "data": "u"}]),
        _line("88.118/parent", [{"index": 1, "type": "URL", "data": "u"}]),  # a parent is not held
        _line("88.118.8.1/derived", [{"index": 1, "type": "URL", "data": "u"}]),  # nor a child
        _line("0.NA/88.118.9", []),
        _line("88.118.9/late", [{"index": 1, "type": "URL", "data": "u"}]),
    ]
    report = bulk.load(store, lines, now=T2026)
    assert [n for n, _ in report.errors] == [1, 4, 5]
    assert "add a line for 0.NA/88.118.9 first" in dict(report.errors)[1]
    assert store.get_record(b"88.118.9/EARLY") is None
    assert store.get_record(b"88.118/PARENT") is None
    assert store.get_record(b"88.118.8.1/DERIVED") is None
    assert store.get_record(b"88.118.9/LATE") is not None
    assert store.get_prefix(b"88.118.9") is not None


def test_prefix_homed_in_an_earlier_load_counts(store):
    bulk.load(store, [PREFIX_LINE], now=T2026)
    report = bulk.load(store, [_line("88.118.8/later", [{"index": 1, "type": "URL", "data": "u"}])])
    assert report.ok and report.loaded == 1


def test_prefix_case_is_folded(store):
    lines = [_line("0.na/abc.def", []),
             _line("ABC.def/x", [{"index": 1, "type": "URL", "data": "u"}])]
    report = bulk.load(store, lines, now=T2026)
    assert report.ok
    assert store.get_prefix(b"ABC.DEF") is not None
    assert store.get_record(b"ABC.DEF/X") is not None


def test_case_sensitive_load(store):
    lines = [PREFIX_LINE, _line("88.118.8/MiXeD", [{"index": 1, "type": "URL", "data": "u"}])]
    report = bulk.load(store, lines, case_sensitive=True, now=T2026)
    assert report.ok
    assert store.get_record(b"88.118.8/MiXeD") is not None
    assert store.get_record(b"88.118.8/MIXED") is None


@pytest.mark.parametrize("batch_size", [1, 2, 3, 1000])
def test_batches(store, batch_size):
    lines = [PREFIX_LINE] + [
        _line(f"88.118.8/n-{i}", [{"index": 1, "type": "URL", "data": f"u{i}"}]) for i in range(7)
    ]
    report = bulk.load(store, lines, batch_size=batch_size, now=T2026)
    assert report.ok and report.loaded == 7
    assert report.last_txn_id == 8 == store.last_txn_id()
    assert store.list_keys(b"88.118.8")[0] == 7
