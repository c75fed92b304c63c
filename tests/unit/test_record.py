"""Unit tests of ``resolver.record``: the stored layout v1, its validation and corrupt blobs.

The layout is checked field by field against the table at the top of ``resolver/record.py``;
the wire section against the golden OC_RESOLUTION response of handle.md §3.5.
"""

from __future__ import annotations

import struct

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolver.errors import CorruptRecord, InvalidValue
from resolver.record import (
    DIRENTRY, FLAG_ALL_PUBLIC, HEADER, LAYOUT_VERSION, Record, pack, sections, unpack, value_json,
    wire_values,
)  # fmt: skip
from resolver.values import AdminRecord, HandleValue, encode_value, encode_vlist
from resolver.valuejson import value_to_json

T2026 = 0x6955B900

URL = HandleValue(1, "URL", b"https://example.com/sn/0001", timestamp=T2026)
ADMIN = HandleValue(100, "HS_ADMIN", AdminRecord("0.NA/88.118.8", 200, 0x7FF).to_bytes(),
                    timestamp=T2026)  # fmt: skip
# handle.md §3.5 resolution response: "int4 n, n × value" after the echoed handle
GOLDEN_WIRE = bytes.fromhex(
    "00000002"
    "000000016955b90000000151800e0000000355524c0000001b68747470733a2f2f6578616d706c652e636f6d2f"
    "736e2f3030303100000000"
    "000000646955b90000000151800e0000000848535f41444d494e0000001707ff0000000d302e4e412f38382e31"
    "31382e38000000c800000000"
)

MIXED = Record([
    URL,
    HandleValue(2, "EMAIL", "qa@例え.jp".encode(), ttl=3600, timestamp=T2026),
    HandleValue(3, "SECRET", b"\x00\x01binary", permissions=0x0C, timestamp=T2026),
    HandleValue(200, "HS_VLIST", encode_vlist([("88.118.8/ADMIN", 300)]), timestamp=T2026,
                references=(("88.118.8/x", 1),)),
    ADMIN,
])  # fmt: skip


def _parse(blob: bytes):
    version, flags, n, wlen, jlen = HEADER.unpack_from(blob, 0)
    directory = [DIRENTRY.unpack_from(blob, HEADER.size + DIRENTRY.size * i) for i in range(n)]
    wstart = HEADER.size + DIRENTRY.size * n
    return version, flags, n, directory, blob[wstart : wstart + wlen], blob[wstart + wlen :]


def test_struct_sizes():
    assert HEADER.size == 12 and DIRENTRY.size == 16 and LAYOUT_VERSION == 1


@pytest.mark.parametrize("record", [Record(), Record([URL]), Record([URL, ADMIN]), MIXED])
def test_round_trip(record):
    assert unpack(pack(record)) == record
    assert unpack(bytearray(pack(record))) == record
    assert unpack(memoryview(pack(record))) == record


def test_golden_wire_section():
    blob = pack(Record([URL, ADMIN]))
    assert wire_values(blob) == GOLDEN_WIRE
    assert _parse(blob)[4] == GOLDEN_WIRE


def test_documented_layout():
    blob = pack(MIXED)
    version, flags, n, directory, wire, js = _parse(blob)
    assert version == LAYOUT_VERSION
    assert flags == 0  # index 3 has no public read
    assert n == len(MIXED)
    assert blob[2:4] == struct.pack(">H", n)
    assert len(blob) == HEADER.size + DIRENTRY.size * n + len(wire) + len(js)

    encoded = [encode_value(v) for v in MIXED]
    jsons = [orjson.dumps(value_to_json(v)) for v in MIXED]
    assert wire == struct.pack(">i", n) + b"".join(encoded)
    assert js == b"[" + b",".join(jsons) + b"]"
    assert js == orjson.dumps([value_to_json(v) for v in MIXED])

    woff, joff = 4, 1
    for (wo, wl, jo, jl), w, j, v in zip(directory, encoded, jsons, MIXED):
        assert (wo, wl, jo, jl) == (woff, len(w), joff, len(j))
        assert wire[wo : wo + wl] == w
        assert js[jo : jo + jl] == j == value_json(v)
        woff += len(w)
        joff += len(j) + 1  # the comma

    assert sections(blob) == (flags, n, directory, wire, js)


def test_empty_record_layout():
    blob = pack(Record())
    # (the flags byte is left out: whether ALL_PUBLIC holds for no values is a policy choice)
    expect = bytes.fromhex("01" "0000" "00000004" "00000002" "00000000") + b"[]"
    assert blob[:1] + blob[2:] == expect
    assert unpack(blob) == Record()


def test_all_public_flag():
    assert _parse(pack(Record([URL, ADMIN])))[1] == FLAG_ALL_PUBLIC
    assert _parse(pack(MIXED))[1] == 0
    for perms in (0x0D, 0x08, 0x00, 0x01):  # no public-read bit
        rec = Record([URL, HandleValue(9, "X", b"x", permissions=perms)])
        assert _parse(pack(rec))[1] & FLAG_ALL_PUBLIC == 0
    for perms in (0x02, 0x03, 0x0F):
        rec = Record([URL, HandleValue(9, "X", b"x", permissions=perms)])
        assert _parse(pack(rec))[1] == FLAG_ALL_PUBLIC


def test_record_order_is_kept():
    rec = Record([ADMIN, URL, HandleValue(50, "A", b"a")])
    assert [v.index for v in unpack(pack(rec))] == [100, 1, 50]


@pytest.mark.parametrize(
    "values, match",
    [
        ([URL, URL.replace(type="OTHER")], "duplicate value index 1"),
        ([URL.replace(index=0)], "positive"),
        ([URL.replace(index=-3)], "positive"),
        ([URL.replace(type="")], "empty type"),
        ([URL, URL.replace(index=2, permissions=0x1F)], "permissions"),
    ],
)
def test_validation(values, match):
    with pytest.raises(InvalidValue, match=match):
        pack(Record(values))
    with pytest.raises(InvalidValue, match=match):
        Record(values).validate()


def test_value_count_limit():
    ok = Record(HandleValue(i, "T", b"") for i in range(1, 2049))
    blob = pack(ok)
    assert blob[2:4] == b"\x08\x00"
    assert len(unpack(blob)) == 2048
    with pytest.raises(InvalidValue, match="more than 2048 values"):
        pack(Record(HandleValue(i, "T", b"") for i in range(1, 2050)))


# -- corrupt blobs: CorruptRecord, never another exception -----------------------------------

GOOD = pack(MIXED)
_W_AT = HEADER.size + DIRENTRY.size * len(MIXED)  # start of the wire section


def _with(blob: bytes, offset: int, fmt: str, *values) -> bytes:
    b = bytearray(blob)
    struct.pack_into(fmt, b, offset, *values)
    return bytes(b)


def _corrupt_cases():
    n = len(MIXED)
    _, _, _, directory, wire, js = _parse(GOOD)
    wlen, jlen = len(wire), len(js)
    d0 = HEADER.size
    cases = {
        "empty": b"",
        "one byte": b"\x01",
        "header only": GOOD[: HEADER.size],
        "header minus one": GOOD[: HEADER.size - 1],
        "version 0": b"\x00" + GOOD[1:],
        "version 2": b"\x02" + GOOD[1:],
        "version 255": b"\xff" + GOOD[1:],
        "trailing byte": GOOD + b"\0",
        "missing last byte": GOOD[:-1],
        "n too big": _with(GOOD, 2, ">H", n + 1),
        "n too small": _with(GOOD, 2, ">H", n - 1),
        "n huge": _with(GOOD, 2, ">H", 0xFFFF),
        "W too big": _with(GOOD, 4, ">I", wlen + 1),
        "W too small": _with(GOOD, 4, ">I", wlen - 1),
        "W huge": _with(GOOD, 4, ">I", 0xFFFFFFFF),
        "J too big": _with(GOOD, 8, ">I", jlen + 1),
        "J huge": _with(GOOD, 8, ">I", 0xFFFFFFFF),
        "W and J swapped": _with(_with(GOOD, 4, ">I", jlen), 8, ">I", wlen),
        "wire offset past section": _with(GOOD, d0, ">I", wlen),
        "wire offset huge": _with(GOOD, d0, ">I", 0xFFFFFFF0),
        "wire length past section": _with(GOOD, d0 + 4, ">I", wlen),
        "wire length huge": _with(GOOD, d0 + 4, ">I", 0xFFFFFFFF),
        "wire length below minimum": _with(GOOD, d0 + 4, ">I", 25),
        "wire length zero": _with(GOOD, d0 + 4, ">I", 0),
        "json offset past section": _with(GOOD, d0 + 8, ">I", jlen),
        "json length huge": _with(GOOD, d0 + 12, ">I", 0xFFFFFFFF),
        "last entry past section": _with(GOOD, d0 + 16 * (n - 1) + 4, ">I", directory[-1][1] + 1),
        "count disagrees": _with(GOOD, _W_AT, ">i", n + 1),
        "count negative": _with(GOOD, _W_AT, ">i", -1),
        # entry 0 claims more bytes than the value has: trailing bytes inside the entry
        "entry longer than value": _with(GOOD, d0 + 4, ">I", directory[0][1] + 4),
        # entry 0 shorter than its value: the value overruns its entry
        "entry shorter than value": _with(GOOD, d0 + 4, ">I", directory[0][1] - 1),
        # value 0's type length overruns
        "type length overrun": _with(GOOD, _W_AT + 4 + 14, ">i", 0x7FFFFFFF),
        "type length negative": _with(GOOD, _W_AT + 4 + 14, ">i", -2),
        # value 0's type is not UTF-8
        "type not utf-8": GOOD[: _W_AT + 4 + 18] + b"\xff" + GOOD[_W_AT + 4 + 19 :],
        # value 0's reference count negative
        "reference count negative": _with(GOOD, _W_AT + 4 + directory[0][1] - 4, ">i", -1),
    }
    for cut in (1, 5, 11, 13, 30, _W_AT + 3, _W_AT + 40, len(GOOD) - 20):
        cases[f"truncated at {cut}"] = GOOD[:cut]
    return cases


CORRUPT = _corrupt_cases()


@pytest.mark.parametrize("name", list(CORRUPT))
def test_corrupt_blobs_raise_corrupt_record(name):
    blob = CORRUPT[name]
    assert blob != GOOD
    with pytest.raises(CorruptRecord):
        unpack(blob)


def test_every_truncation_is_corrupt():
    for cut in range(len(GOOD)):
        with pytest.raises(CorruptRecord):
            unpack(GOOD[:cut])


def test_corrupt_record_is_a_store_error():
    from resolver.errors import Outcome, StoreError

    with pytest.raises(StoreError) as info:
        unpack(b"\x02" + GOOD[1:])
    assert info.value.outcome is Outcome.INTERNAL
    assert "version 2" in info.value.message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1,
                   max_size=4),
    cut=st.one_of(st.none(), st.integers(0, len(GOOD))),
)  # fmt: skip
def test_mutated_blobs_never_raise_anything_else(edits, cut):
    b = bytearray(GOOD)
    for pos, byte in edits:
        b[pos] = byte
    blob = bytes(b[:cut] if cut is not None else b)
    try:
        rec = unpack(blob)
    except CorruptRecord:
        return
    assert isinstance(rec, Record)


@settings(max_examples=200, deadline=None)
@given(blob=st.binary(max_size=200))
def test_random_blobs_never_raise_anything_else(blob):
    try:
        unpack(b"\x01" + blob)
    except CorruptRecord:
        pass
