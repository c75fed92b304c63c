"""Parity of ``pack_json_values``: JSON values → stored record, native twins vs the general path.

Both twins must return either None (decline) or exactly the bytes of
``pack(Record(value_from_json(v, now=now) for v in values).validate())``; a decline is never a
different answer.  ``record.pack_from_json`` must give the general path's bytes or its
``InvalidValue``.  Each table row states whether the fast path takes it, so parity cannot hold by
declining everything.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import native
from native import _hotpath_py as python_twin
from native import constants as C
from resolver import record, values
from resolver.errors import InvalidValue
from resolver.record import Record, pack, pack_from_json, unpack
from resolver.valuejson import iso_utc, value_from_json, value_to_json

NOW = 1767225600  # 2026-01-01T00:00:00Z
RESERVED = record.TEMPLATE_INDEX


def _twins(cython_twin):
    return [python_twin] + ([cython_twin] if cython_twin is not None else [])


def general(vals, now=NOW):
    """The general path's answer: stored bytes, or the InvalidValue it raises."""
    if not isinstance(vals, list):  # pack_from_json takes a JSON array only
        return InvalidValue("values must be a JSON array")
    try:
        return pack(Record(value_from_json(v, now=now) for v in vals).validate())
    except (InvalidValue, UnicodeEncodeError) as exc:  # a lone surrogate in a type: see below
        return exc


def fast(twin, vals, now=NOW):
    return twin.pack_json_values(vals, now, iso_utc(now).encode(), RESERVED)


def check(twins, vals, now=NOW):
    """Assert parity for one input; → whether every twin took the fast path."""
    expected = general(vals, now)
    outs = [fast(t, vals, now) for t in twins]
    assert all(o == outs[0] for o in outs), "the twins disagree"
    if outs[0] is not None:
        assert outs[0] == expected, "the fast path answered differently from the general path"
    got = _pack_from_json(vals, now)
    if isinstance(expected, bytes):
        assert got == expected
    else:
        assert isinstance(got, InvalidValue)
        if isinstance(expected, InvalidValue):
            assert got.message == expected.message
    return outs[0] is not None


def _pack_from_json(vals, now):
    try:
        return pack_from_json(vals, now)
    except InvalidValue as exc:
        return exc


def v(index=1, type="URL", data="https://example.com/a", **more):
    return {"index": index, "type": type, "data": data, **more}


LINE = [
    v(1, "URL", {"format": "string", "value": "https://factory.example.com/items/SN-1"}),
    v(2, "EMAIL", "ops@factory.example.com"),
    v(3, "DESC", "设备 pump X-200", ttl=3600),
]

# (name, values, the fast path takes it)
TABLE = [
    ("typical line", LINE, True),
    ("one value", [v()], True),
    ("data dict", [v(data={"format": "string", "value": "x"})], True),
    ("empty data", [v(data="")], True),
    ("empty data dict", [v(data={"format": "string", "value": ""})], True),
    ("cjk and emoji", [v(type="设备名称", data="泵 🚀 é\u0301")], True),
    ("line separators raw", [v(data="a\u2028b\u2029c")], True),
    ("c1 controls are not binary", [v(data="\x80\x85\x9f")], True),
    ("slash not escaped", [v(data="a/b</script>")], True),
    ("quotes and backslashes", [v(type='T"\\', data='say "hi" \\ \\"')], True),
    ("json short escapes", [v(data="a\tb\nc\rd\x0ce")], True),
    ("u00xx escapes 0x0b 0x0e-0x13", [v(data="\x0b\x0e\x0f\x10\x11\x12\x13")], True),
    ("controls and del in the type", [v(type="T\x00\x01\x08\x1f\x7f", data="x")], True),
    ("lower-case type", [v(type="url")], True),
    ("hs_ types with string data", [v(1, "HS_SERV", "0.NA/88"), v(2, "hs_alias", "x"),
                                     v(3, "HS_SECKEY", "k"), v(4, "HS_SITEX", "s")], True),
    ("perms default is not written", [v(permissions="1110")], True),
    ("perms long default", [v(permissions="000000001110")], True),
    ("perms 0000", [v(permissions="0000")], True),
    ("perms 1111", [v(permissions="1111")], True),
    ("perms star", [v(permissions="*")], True),
    ("perms short", [v(1, permissions="1"), v(2, permissions="0"), v(3, permissions="10")], True),
    ("perms last four", [v(permissions="01011")], True),
    ("no public read anywhere", [v(1, permissions="1100"), v(2, permissions="1000")], True),
    ("one without public read", [v(1), v(2, permissions="1100")], True),
    ("ttl null", [v(ttl=None)], True),
    ("ttl zero", [v(ttl=0)], True),
    ("ttl negative", [v(ttl=-1)], True),
    ("ttl int32 min", [v(ttl=-0x80000000)], True),
    ("ttl int32 max", [v(ttl=0x7FFFFFFF)], True),
    ("index bounds", [v(1), v(0x7FFFFFFF), v(1000), v(1002)], True),
    ("reversed order kept", [v(3), v(2), v(1)], True),
    ("17 values: heap", [v(i, data=str(i)) for i in range(1, 18)], True),
    ("33 values: sorted duplicate check", [v(i, data=str(i)) for i in range(33, 0, -1)], True),
    ("max values", [v(i, "T", "d") for i in range(1, values.MAX_VALUES + 2) if i != RESERVED],
     True),
    ("max data ascii", [v(data="x" * values.MAX_DATA_LENGTH)], True),
    ("max data escaped", [v(data='"' * values.MAX_DATA_LENGTH)], True),
    ("max data 3-byte", [v(data="设" * (values.MAX_DATA_LENGTH // 3) + "x")], True),
    # declines that the general path accepts
    ("reserved index", [v(RESERVED)], False),
    ("hs_admin", [v(type="HS_ADMIN", data={"format": "admin", "value": {
        "handle": "0.NA/88", "index": 200, "permissions": "011111111111"}})], False),
    ("hs_admin as a string", [v(type="hs_admin", data="x")], False),
    ("hs_admin by unicode upper", [v(type="hſ_admin", data="x")], False),
    ("hs_vlist", [v(type="HS_VLIST", data="x")], False),
    ("hs_site", [v(type="HS_SITE", data="x")], False),
    ("hs_site.6", [v(type="hs_site.6", data="x")], False),
    ("hs_site.prefix", [v(type="HS_SITE.PREFIX", data="x")], False),
    ("hs_na_delegate", [v(type="HS_NA_DELEGATE", data="x")], False),
    ("hs_pubkey", [v(type="HS_PUBKEY", data="x")], False),
    ("binary data 0x00", [v(data="a\x00")], False),
    ("binary data 0x08", [v(data="\x08")], False),
    ("binary data 0x14", [v(data="\x14")], False),
    ("binary data 0x1f", [v(data="\x1f")], False),
    ("binary data del", [v(data="\x7f")], False),
    ("base64 data", [v(data={"format": "base64", "value": "AAE="})], False),
    ("hex data", [v(data={"format": "hex", "value": "41"})], False),
    ("format in capitals", [v(data={"format": "STRING", "value": "x"})], False),
    ("data dict with more", [v(data={"format": "string", "value": "x", "extra": 1})], False),
    ("ttl as text", [v(ttl="3600")], False),
    ("ttl as iso time", [v(ttl="2030-01-01T00:00:00Z")], False),
    ("index as text", [v(" 7 ")], False),
    ("perms as int", [v(permissions=1110)], False),
    ("timestamp given", [v(timestamp="2020-01-01T00:00:00Z")], False),
    ("references", [v(references=[{"handle": "0.NA/88", "index": 1}])], False),
    ("references empty", [v(references=[])], False),
    ("empty record", [], False),
    # declines the general path rejects
    ("not a list", {"index": 1}, False),
    ("tuple", (v(),), False),
    ("value not a dict", [["index", 1]], False),
    ("no index", [{"type": "URL", "data": "x"}], False),
    ("no type", [{"index": 1, "data": "x"}], False),
    ("no data", [{"index": 1, "type": "URL"}], False),
    ("index zero", [v(0)], False),
    ("index negative", [v(-1)], False),
    ("index too big", [v(0x80000000)], False),
    ("index huge", [v(1 << 70)], False),
    ("index bool", [v(True)], False),
    ("index float", [v(1.0)], False),
    ("index null", [v(None)], False),
    ("duplicate index", [v(1), v(2), v(1)], False),
    ("duplicate index among 40", [v(i) for i in range(1, 40)] + [v(20)], False),
    ("empty type", [v(type="")], False),
    ("type not text", [v(type=5)], False),
    ("data not text", [v(data=5)], False),
    ("data null", [v(data=None)], False),
    ("data dict without value", [v(data={"format": "string", "other": "x"})], False),
    ("data dict value not text", [v(data={"format": "string", "value": 5})], False),
    ("data too long", [v(data="x" * (values.MAX_DATA_LENGTH + 1))], False),
    ("data too long 3-byte", [v(data="设" * (values.MAX_DATA_LENGTH // 3 + 1))], False),
    ("ttl too big", [v(ttl=0x80000000)], False),
    ("ttl too small", [v(ttl=-0x80000001)], False),
    ("ttl bool", [v(ttl=True)], False),
    ("ttl float", [v(ttl=1.5)], False),
    ("perms empty", [v(permissions="")], False),
    ("perms bad digit", [v(permissions="1210")], False),
    ("perms space", [v(permissions="11 0")], False),
    ("perms two stars", [v(permissions="**")], False),
    ("perms null", [v(permissions=None)], False),
    ("perms bool", [v(permissions=True)], False),
    ("too many values", [v(i, "T", "d") for i in range(1, values.MAX_VALUES + 2)], False),
    ("lone surrogate in data", [v(data="a\ud800")], False),
    ("lone surrogate in type", [v(type="T\udfff")], False),
    ("lone surrogate in perms", [v(permissions="\ud800")], False),
]


@pytest.mark.parametrize("vals,takes", [(t[1], t[2]) for t in TABLE], ids=[t[0] for t in TABLE])
def test_table(cython_twin_or_none, vals, takes):
    assert check(_twins(cython_twin_or_none), vals) is takes


@pytest.mark.parametrize("now", [0, 1, NOW, 0x7FFFFFFF])
def test_every_server_time(cython_twin_or_none, now):
    """``now`` 0 writes no timestamp member (value_to_json omits a zero timestamp)."""
    assert check(_twins(cython_twin_or_none), LINE, now)


@pytest.mark.parametrize("now", [-1, 0x80000000, 1.0, True, None])
def test_server_time_out_of_range_declines(cython_twin_or_none, now):
    for twin in _twins(cython_twin_or_none):
        assert twin.pack_json_values(LINE, now, b"x", RESERVED) is None


def test_the_reserved_index_is_the_callers(cython_twin_or_none):
    for twin in _twins(cython_twin_or_none):
        assert twin.pack_json_values([v(7)], NOW, iso_utc(NOW).encode(), 7) is None
        blob = twin.pack_json_values([v(RESERVED)], NOW, iso_utc(NOW).encode(), 7)
        assert blob == general([v(RESERVED)])


def test_record_reads_back():
    blob = pack_from_json(LINE, NOW)
    got = unpack(blob)
    assert [x.index for x in got] == [1, 2, 3]
    assert got[2].data == "设备 pump X-200".encode() and got[2].ttl == 3600
    assert all(x.timestamp == NOW for x in got)
    assert [value_to_json(x)["data"]["format"] for x in got] == ["string"] * 3


def test_pack_from_json_errors_are_invalid_value():
    with pytest.raises(InvalidValue, match="JSON array"):
        pack_from_json({"index": 1}, NOW)
    with pytest.raises(InvalidValue, match="duplicate value index 1"):
        pack_from_json([v(1), v(1)], NOW)
    with pytest.raises(InvalidValue, match="not valid Unicode"):
        pack_from_json([v(type="T\udfff")], NOW)


def test_the_server_time_text_is_recomputed_when_it_changes():
    for now in (NOW, NOW + 1, NOW, 0x7FFFFFFF):
        assert unpack(pack_from_json([v()], now))[0].timestamp == now
        assert iso_utc(now).encode() in pack_from_json([v()], now)


def test_pack_from_json_uses_the_selected_twin():
    impl = native.cython_twin if native.IMPLEMENTATION == "cython" else native.python_twin
    assert record._pack_json_values is impl.pack_json_values


def test_constants_match_the_resolver():
    assert C.MAX_VALUES == values.MAX_VALUES
    assert C.MAX_DATA_LENGTH == values.MAX_DATA_LENGTH
    assert C.DEFAULT_PERMISSIONS == values.DEFAULT_PERMISSIONS
    assert C.DEFAULT_TTL == values.DEFAULT_TTL
    assert set(C.STRUCTURED_TYPES) == {values.ADMIN_TYPE, values.VLIST_TYPE, *values.SITE_TYPES,
                                       values.PUBKEY_TYPE}  # fmt: skip


# -- generated value lists ------------------------------------------------------------------

_TEXT = st.one_of(
    st.text(max_size=12),
    st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=12),
    st.sampled_from(['"', "\\", "\t\n", "\x00", "\x7f", "\x13", "\x14", "é", "\u2028", "\ud800"]),
)  # fmt: skip
_INDEX = st.one_of(st.integers(1, 6), st.integers(-2, 2**31 + 1), st.just(RESERVED),
                   st.booleans(), st.sampled_from(["3", 1.0, None]))  # fmt: skip
_TYPE = st.one_of(
    st.sampled_from(["URL", "EMAIL", "desc", "HS_SERV", "HS_ADMIN", "hs_vlist", "HS_SITE",
                     "HS_PUBKEY", "hſ_admin", "", 3]),
    _TEXT,
)  # fmt: skip
_DATA = st.one_of(
    _TEXT,
    st.builds(lambda s: {"format": "string", "value": s}, _TEXT),
    st.sampled_from([{"format": "base64", "value": "QQ=="}, {"format": "String", "value": "x"},
                     {"format": "string"}, {"format": "string", "value": 1}, None, 7]),
)  # fmt: skip
_OPTIONAL = {
    "ttl": st.one_of(st.none(), st.integers(-2**31 - 1, 2**31), st.sampled_from(["60", True])),
    "permissions": st.one_of(st.text(alphabet="01", min_size=1, max_size=14),
                             st.sampled_from(["*", "", "12", 1110, None])),
    "timestamp": st.just("2020-01-01T00:00:00Z"),
}  # fmt: skip


@st.composite
def _value(draw):
    obj = {"index": draw(_INDEX), "type": draw(_TYPE), "data": draw(_DATA)}
    for key in draw(st.lists(st.sampled_from(sorted(_OPTIONAL)), unique=True, max_size=3)):
        if key != "timestamp" or draw(st.integers(0, 9)) == 0:  # rare: it always declines
            obj[key] = draw(_OPTIONAL[key])
    return obj


#: Text that is never binary: no C0 control but tab and newline (no surrogates: hypothesis
#: leaves them out of text() unless asked).
_PLAIN = st.text(st.one_of(st.characters(blacklist_categories=("Cc", "Cs")),
                           st.sampled_from('\t\n"\\/')), max_size=20)  # fmt: skip


@st.composite
def _plain_value(draw):
    """A value the fast path takes (bar an unlucky index or type), so accepts are common."""
    obj = {"index": draw(st.integers(1, 2**31 - 1)),
           "type": draw(st.text(min_size=1, max_size=10)), "data": draw(_PLAIN)}
    if draw(st.booleans()):
        obj["ttl"] = draw(st.integers(-2**31, 2**31 - 1))
    if draw(st.booleans()):
        obj["permissions"] = draw(st.text(alphabet="01", min_size=1, max_size=6))
    return obj


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_value(), max_size=5), st.sampled_from([0, 1, NOW, 2**31 - 1]))
def test_generated(cython_twin_or_none, vals, now):
    check(_twins(cython_twin_or_none), vals, now)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_plain_value(), min_size=1, max_size=6))
def test_generated_plain(cython_twin_or_none, vals):
    check(_twins(cython_twin_or_none), vals)


def test_generated_plain_mostly_takes_the_fast_path(cython_twin_or_none):
    """The plain generator's shapes are the fast path's: a sample of them is taken, not declined."""
    taken = []

    @settings(max_examples=60, deadline=None, database=None)
    @given(st.lists(_plain_value(), min_size=1, max_size=3, unique_by=lambda o: o["index"]))
    def run(vals):
        taken.append(check(_twins(cython_twin_or_none), vals))

    run()
    assert len(taken) == 60 and sum(taken) >= 55
