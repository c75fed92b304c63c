"""Parity of the import encoders that take a block: ``encode_jsonl_lines`` (a region's lines in
one call) and ``encode_csv_row`` (one CSV record, no dicts).

``encode_jsonl_lines`` is held to its definition, a loop over the same twin's
``encode_jsonl_line`` (blank lines in no list, lines over ``max_line`` or outside ``under`` in
``other``), and every line it takes to the orjson reference of test_encode_jsonl_line.
``encode_csv_row`` is held to the reference of its contract (dicts through the pure
``pack_json_values``, the handle through ``normalize_key``), which parity with the general path
(test_pack_from_json) makes exact.  Tables state which inputs are taken, and the generated plain
rows must mostly be taken, so parity cannot hold by declining everything.
"""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import native
import test_encode_jsonl_line as single
from native import _hotpath_py as python_twin
from native import constants as C
from resolver.valuejson import iso_utc

NOW = 1767225600  # 2026-01-01T00:00:00Z
NOW_TEXT = iso_utc(NOW).encode()
RESERVED = 1001  # record.TEMPLATE_INDEX: the IDIS template value, the caller's
UNDER = b"88.118.8/"
MAX_LINE = 1 << 20


def _twins(cython_twin):
    return [python_twin] + ([cython_twin] if cython_twin is not None else [])


def test_the_selector_exports_the_twin():
    impl = native.cython_twin if native.IMPLEMENTATION == "cython" else native.python_twin
    assert native.encode_jsonl_lines is impl.encode_jsonl_lines
    assert native.encode_csv_row is impl.encode_csv_row


# -- encode_jsonl_lines -------------------------------------------------------------------------


def lines_reference(twin, parts, now=NOW, cs=False, under=UNDER, max_line=MAX_LINE):
    """The contract's loop over ``twin.encode_jsonl_line``."""
    pairs, taken, other = [], [], []
    for i, ln in enumerate(parts):
        if not ln.strip(b" \t\r"):
            continue
        r = None
        if len(ln) <= max_line:
            r = twin.encode_jsonl_line(ln, now, iso_utc(now).encode() if now else b"", RESERVED,
                                       cs)  # fmt: skip
        if r is not None and r[0].startswith(under):
            pairs.append((r[0], r[2]))
            taken.append(i)
        else:
            other.append(i)
    return pairs, taken, other


def check_lines(twins, parts, now=NOW, cs=False, under=UNDER, max_line=MAX_LINE):
    """Assert parity for one region; → its (pairs, taken, other)."""
    text = iso_utc(now).encode() if now else b""
    outs = [t.encode_jsonl_lines(parts, now, text, RESERVED, cs, under, max_line) for t in twins]
    assert all(o == outs[0] for o in outs), "the twins disagree"
    for t in twins:
        assert lines_reference(t, parts, now, cs, under, max_line) == outs[0]
    pairs, taken, other = outs[0]
    assert type(pairs) is list and type(taken) is list and type(other) is list
    assert len(pairs) == len(taken) and taken == sorted(taken) and other == sorted(other)
    assert sorted(taken + other) == [i for i, ln in enumerate(parts) if ln.strip(b" \t\r")]
    for (key, blob), i in zip(pairs, taken):
        assert type(key) is bytes and type(blob) is bytes
        expected = single.reference(parts[i], now, cs)
        assert expected is not single.ERROR and (key, blob) == (expected[0], expected[2])
    return outs[0]


def product(n: int, prefix: str = "88.118.8", suffix: str | None = None) -> bytes:
    """An import line as the bench writes them: three values."""
    handle = f"{prefix}/{suffix if suffix is not None else f'SN-2026-{n:07d}'}"
    return orjson.dumps({"handle": handle, "values": [
        {"index": 1, "type": "URL", "data": f"https://trace.example-factory.cn/p/{handle}"},
        {"index": 2, "type": "EMAIL", "data": "quality@example-factory.cn"},
        {"index": 3, "type": "DESC", "data": f"Li-ion battery pack, model X{n % 100:02d}"}]})


# (name, line, taken with UNDER) — taken lines are encoded, other lines are the caller's
REGION = [
    ("a product", product(1), True),
    ("empty", b"", None),
    ("a space", b" ", None),
    ("blanks", b" \t\r \r", None),
    ("a product with a cr", product(2) + b"\r", True),
    ("form feed: not blank", b"\x0c", False),
    ("vertical tab: not blank", b" \x0b", False),
    ("nbsp: not blank", b"\xc2\xa0", False),
    ("a newline: not blank", b"\n", False),
    ("a comment", b"# a comment", False),
    ("an indented comment", b"  # a comment", False),
    ("not json", b"{not json", False),
    ("not utf-8", b'{"handle":"88.118.8/\xff","values":[]}', False),
    ("an array", b"[1,2]", False),
    ("no values", b'{"handle":"88.118.8/x"}', False),
    ("a structured type", single.line([single.v(type="HS_ADMIN")], "88.118.8/a"), False),
    ("the reserved index", single.line([single.v(RESERVED)], "88.118.8/b"), False),
    ("an escaped member name",
     b'{"hand\\u006ce":"88.118.8/c","values":' + single.j([single.v()]) + b"}", False),
    ("a duplicate index", single.line([single.v(1), single.v(1)], "88.118.8/d"), False),
    ("an invalid handle", product(3, "88..118.8"), False),
    ("another prefix", product(4, "88.118.9"), False),
    ("a longer prefix", product(5, "88.118.80"), False),
    ("a parent prefix", product(6, "88.118"), False),
    ("a 0.NA handle", product(7, "0.NA", "88.118.8"), False),
    ("no slash: a 0.NA handle", single.line([single.v()], "88.118.8"), False),
    ("a lower-case prefix", single.line([single.v()], "88.118.8/lower"), True),
    ("a product after all that", product(8), True),
    ("leading blanks", b" \t" + product(9), True),
]


@pytest.mark.parametrize("cs", [False, True])
def test_region_table(cython_twin_or_none, cs):
    parts = [row[1] for row in REGION]
    pairs, taken, other = check_lines(_twins(cython_twin_or_none), parts, cs=cs)
    assert taken == [i for i, row in enumerate(REGION) if row[2] is True]
    assert other == [i for i, row in enumerate(REGION) if row[2] is False]
    assert pairs[0][0] == b"88.118.8/SN-2026-0000001"


def test_letters_in_the_prefix_are_folded_before_under(cython_twin_or_none):
    parts = [single.line([single.v()], "88.abc/Sn-Ab"), single.line([single.v()], "88.ABC/x")]
    twins = _twins(cython_twin_or_none)
    pairs, taken, _ = check_lines(twins, parts, under=b"88.ABC/")
    assert taken == [0, 1] and pairs[0][0] == b"88.ABC/SN-AB"
    pairs, taken, _ = check_lines(twins, parts, cs=True, under=b"88.ABC/")
    assert taken == [0, 1] and pairs[0][0] == b"88.ABC/Sn-Ab"
    assert check_lines(twins, parts, under=b"88.abc/")[1] == []  # under is a key: upper case


def test_case_sensitivity_reaches_the_keys(cython_twin_or_none):
    parts = [product(1, suffix="Sn-Ab")]
    for twin in _twins(cython_twin_or_none):
        for cs, key in ((False, b"88.118.8/SN-AB"), (True, b"88.118.8/Sn-Ab")):
            pairs, taken, other = twin.encode_jsonl_lines(parts, NOW, NOW_TEXT, RESERVED, cs,
                                                          UNDER, MAX_LINE)  # fmt: skip
            assert [k for k, _ in pairs] == [key] and taken == [0] and other == []


def test_max_line(cython_twin_or_none):
    good = product(1)
    parts = [good, b" " * 40, good + b" "]
    twins = _twins(cython_twin_or_none)
    assert check_lines(twins, parts, max_line=len(good))[1:] == ([0], [2])
    assert check_lines(twins, parts, max_line=len(good) + 1)[1:] == ([0, 2], [])
    assert check_lines(twins, parts, max_line=len(good) - 1)[1:] == ([], [0, 2])
    assert check_lines(twins, parts, max_line=0)[1:] == ([], [0, 2])  # blanks stay blank


def test_an_empty_region(cython_twin_or_none):
    for twin in _twins(cython_twin_or_none):
        assert twin.encode_jsonl_lines([], NOW, NOW_TEXT, RESERVED, False, UNDER, MAX_LINE) == (
            [], [], [])  # fmt: skip
    assert check_lines(_twins(cython_twin_or_none), [b"", b" "]) == ([], [], [])


def test_under_empty_takes_every_key(cython_twin_or_none):
    parts = [product(1), product(2, "20.500"), product(3, "0.NA", "20.500")]
    assert check_lines(_twins(cython_twin_or_none), parts, under=b"")[1] == [0, 1, 2]


@pytest.mark.parametrize("now", [0, 1, 0x7FFFFFFF])
def test_every_server_time(cython_twin_or_none, now):
    assert check_lines(_twins(cython_twin_or_none), [product(1), b""], now=now)[1] == [0]


@pytest.mark.parametrize("now", [-1, 0x80000000, 1.0, True, None])
def test_a_bad_server_time_leaves_every_line_to_the_caller(cython_twin_or_none, now):
    parts = [product(1), b"", product(2), b"#"]
    for twin in _twins(cython_twin_or_none):
        assert twin.encode_jsonl_lines(parts, now, b"x", RESERVED, False, UNDER, MAX_LINE) == (
            [], [], [0, 2, 3])  # fmt: skip


def test_the_reserved_index_is_the_callers(cython_twin_or_none):
    parts = [single.line([single.v(7)], "88.118.8/a"), single.line([single.v(RESERVED)],
                                                                  "88.118.8/b")]  # fmt: skip
    for twin in _twins(cython_twin_or_none):
        assert twin.encode_jsonl_lines(parts, NOW, NOW_TEXT, 7, False, UNDER, MAX_LINE)[1:] == (
            [1], [0])  # fmt: skip


@pytest.mark.parametrize("parts", [
    [b"", "a str line"], [bytearray(b"{}")], [memoryview(b"{}")], [None], [product(1), 1],
    (product(1),), None, b"{}\n",
], ids=["str", "bytearray", "memoryview", "none", "int", "tuple", "no list", "bytes"])  # fmt: skip
def test_lines_must_be_bytes_in_a_list(cython_twin_or_none, parts):
    for twin in _twins(cython_twin_or_none):
        with pytest.raises(TypeError):
            twin.encode_jsonl_lines(parts, NOW, NOW_TEXT, RESERVED, False, UNDER, MAX_LINE)


def test_under_must_be_bytes(cython_twin_or_none):
    for twin in _twins(cython_twin_or_none):
        with pytest.raises(TypeError):
            twin.encode_jsonl_lines([product(1)], NOW, NOW_TEXT, RESERVED, False, "88.118.8/",
                                    MAX_LINE)  # fmt: skip


@pytest.mark.parametrize("cs", [False, True])
def test_every_single_line_case_as_a_region(cython_twin_or_none, cs):
    """test_encode_jsonl_line's table as one region: the lines it takes, and only those."""
    parts = [row[1] for row in single.TABLE]
    taken = check_lines(_twins(cython_twin_or_none), parts, cs=cs, under=b"")[1]
    assert taken == [i for i, row in enumerate(single.TABLE) if row[2]]


@pytest.mark.parametrize("n", [1, 255, 256, 1000])
def test_products(cython_twin_or_none, n):
    parts = [product(i) for i in range(n)]
    pairs, taken, other = check_lines(_twins(cython_twin_or_none), parts)
    assert taken == list(range(n)) and other == []


# -- generated regions --------------------------------------------------------------------------

_FILLER = st.sampled_from([b"", b" ", b"\t", b"\r", b" \r", b"#", b"# x", b"\x0c", b"null", b"{}",
                           b"\xff", b'"x"', b"[]"])  # fmt: skip


@st.composite
def _region_line(draw):
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(_FILLER)
    obj = draw(single._plain_line())
    if kind == 1:
        obj["handle"] = "88.118.8/" + obj["handle"].split("/", 1)[1]
    rnd = draw(st.randoms(use_true_random=False))
    ln = single._variant(obj, rnd) if draw(st.booleans()) else orjson.dumps(obj)
    if kind == 2:
        ln = single._mutate(ln, rnd)
    return ln


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_region_line(), max_size=10), st.booleans(),
       st.sampled_from([b"", UNDER, b"88.ABC/", b"0.NA/"]), st.integers(0, 400))
def test_generated_regions(cython_twin_or_none, parts, cs, under, max_line):
    check_lines(_twins(cython_twin_or_none), parts, cs=cs, under=under, max_line=max_line)


def _blank(line: bytes) -> bool:
    return not line.strip(b" \t\r")


def test_generated_regions_are_mostly_taken(cython_twin_or_none):
    """Plain lines under ``under`` among blank ones: taken, so parity is not by declining."""
    twins = _twins(cython_twin_or_none)
    regions = []

    @settings(max_examples=30, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(st.lists(st.one_of(single._plain_line(), _FILLER.filter(_blank)), min_size=1,
                    max_size=8))  # fmt: skip
    def run(items):
        parts = []
        for x in items:
            if isinstance(x, dict):
                x = {**x, "handle": "88.118.8/" + x["handle"].split("/", 1)[1]}
                x = orjson.dumps(x)
            parts.append(x)
        regions.append(parts)

    run()
    plain = taken = 0
    for parts in regions:
        plain += sum(1 for p in parts if not _blank(p))
        taken += len(check_lines(twins, parts)[1])
    assert plain >= 30 and taken >= 0.95 * plain


# -- encode_csv_row -----------------------------------------------------------------------------


def csv_reference(row, handle_at, columns, now=NOW, cs=False):
    """The contract's reference, where it is defined (a list of str, positions in range)."""
    handle = row[handle_at]
    if not handle:
        return None
    values = []
    for pos, index, vtype, ttl in columns:
        cell = row[pos]
        if cell:
            v = {"index": index, "type": vtype, "data": cell}
            if ttl is not None:
                v["ttl"] = ttl
            values.append(v)
    try:
        raw = handle.encode("utf-8")
    except UnicodeEncodeError:
        return None
    key = python_twin.normalize_key(raw, cs)
    blob = python_twin.pack_json_values(values, now, iso_utc(now).encode(), RESERVED)
    return None if key is None or blob is None else (key, blob)


def csv_outs(twins, row, handle_at, columns, now=NOW, cs=False):
    text = iso_utc(now).encode() if type(now) is int and 0 <= now <= 0x7FFFFFFF else b"x"
    outs = [t.encode_csv_row(row, handle_at, columns, now, text, RESERVED, cs) for t in twins]
    assert all(o == outs[0] for o in outs), f"the twins disagree on {row!r}"
    return outs[0]


def check_row(twins, row, handle_at, columns, now=NOW, cs=False) -> bool:
    """Assert parity for one row; → whether it was taken."""
    out = csv_outs(twins, row, handle_at, columns, now, cs)
    assert out == csv_reference(row, handle_at, columns, now, cs)
    if out is not None:
        assert type(out) is tuple and type(out[0]) is bytes and type(out[1]) is bytes
    return out is not None


ROW = ["88.118.8/SN-2026-0000001", "https://trace.example-factory.cn/p/SN-2026-0000001",
       "quality@example-factory.cn", "Li-ion battery pack, model X01"]  # fmt: skip
COLS = ((1, 1, "URL", None), (2, 2, "EMAIL", None), (3, 3, "DESC", None))


def cols(*types, ttl=None, start=1):
    """A column per type, at positions and indexes ``start``, ``start`` + 1, ..."""
    return tuple((start + i, start + i, t, ttl) for i, t in enumerate(types))


def row(*cells, handle="88.118.8/a"):
    return [handle, *cells]


_SURROGATE = "\udc80"
_MANY = 40  # columns: past the stack's 16 values

# (name, row, handle_at, columns, taken)
CSV_TABLE = [
    ("the product row", ROW, 0, COLS, True),
    ("handle last", ROW[1:] + ROW[:1], 3, ((0, 1, "URL", None), (1, 2, "EMAIL", None),
                                           (2, 3, "DESC", None)), True),
    ("columns in any order", ROW, 0, COLS[::-1], True),
    ("one empty cell", row("u", "", "d"), 0, cols("URL", "EMAIL", "DESC"), True),
    ("all cells empty", row("", "", ""), 0, cols("URL", "EMAIL", "DESC"), False),
    ("no value columns", row(), 0, (), False),
    ("a cell of one blank", row(" "), 0, cols("DESC"), True),
    ("ttl columns", row("u", "e"), 0, ((1, 1, "URL", 3600), (2, 2, "EMAIL", -1)), True),
    ("ttl 0 and int32 bounds", row("a", "b", "c"), 0,
     ((1, 1, "T", 0), (2, 2, "T", -0x80000000), (3, 3, "T", 0x7FFFFFFF)), True),
    ("ttl past int32", row("a"), 0, ((1, 1, "T", 0x80000000),), False),
    ("ttl past int64", row("a"), 0, ((1, 1, "T", 1 << 70),), False),
    ("ttl a bool", row("a"), 0, ((1, 1, "T", True),), False),
    ("ttl a str", row("a"), 0, ((1, 1, "T", "60"),), False),
    ("ttl on an empty cell is unchecked", row("a", ""), 0, ((1, 1, "T", None), (2, 2, "T", "x")),
     True),
    ("unicode cells", row("设备-泵", "é\u2028ü", "🚀"), 0, cols("名称", "URL", "DESC"), True),
    ("unicode handle", row("x", handle="88.118.8/设备-泵-1"), 0, cols("URL"), True),
    ("escaping in a cell", row('a "q" \\ /\t\n\r\x0b\x13'), 0, cols("DESC"), True),
    ("escaping in a type", row("x"), 0, cols('T"\\\x01\x7f'), True),
    ("a binary-looking cell", row("a\x00b"), 0, cols("DESC"), False),
    ("a cell with DEL", row("a\x7f"), 0, cols("DESC"), False),
    ("a cell with C1", row("a\x85"), 0, cols("DESC"), True),
    ("a surrogate in a cell", row("a" + _SURROGATE), 0, cols("DESC"), False),
    ("a surrogate in an empty cell's neighbour", row("", "b" + _SURROGATE), 0, cols("A", "B"),
     False),
    ("a surrogate in the handle", row("x", handle="88.118.8/" + _SURROGATE), 0, cols("URL"),
     False),
    ("a surrogate in a type", row("x"), 0, cols("T" + _SURROGATE), False),
    ("a surrogate pair spelt out", row("\ud83d\ude80"), 0, cols("DESC"), False),
    ("HS_ADMIN", row("x"), 0, cols("HS_ADMIN"), False),
    ("hs_vlist", row("x"), 0, cols("hs_vlist"), False),
    ("hſ_site by unicode upper", row("x"), 0, cols("hſ_site"), False),
    ("HS_ADMIN on an empty cell", row("x", ""), 0, cols("URL", "HS_ADMIN"), True),
    ("an HS_ type that is not structured", row("x"), 0, cols("HS_SERV"), True),
    ("the reserved index", row("x"), 0, ((1, RESERVED, "T", None),), False),
    ("the reserved index on an empty cell", row("x", ""), 0,
     ((1, 1, "T", None), (2, RESERVED, "T", None)), True),
    ("index 0", row("x"), 0, ((1, 0, "T", None),), False),
    ("index max", row("x"), 0, ((1, 0x7FFFFFFF, "T", None),), True),
    ("index max + 1", row("x"), 0, ((1, 0x80000000, "T", None),), False),
    ("index huge", row("x"), 0, ((1, 1 << 80, "T", None),), False),
    ("index a bool", row("x"), 0, ((1, True, "T", None),), False),
    ("index a str", row("x"), 0, ((1, "1", "T", None),), False),
    ("duplicate indexes", row("x", "y"), 0, ((1, 5, "T", None), (2, 5, "T", None)), False),
    ("duplicate indexes, one cell empty", row("x", ""), 0, ((1, 5, "T", None), (2, 5, "T", None)),
     True),
    ("one cell in two columns", row("x"), 0, ((1, 1, "A", None), (1, 2, "B", None)), True),
    ("the handle as a value too", row(), 0, ((0, 1, "HANDLE", None),), True),
    ("an empty type", row("x"), 0, cols(""), False),
    ("a type not a str", row("x"), 0, ((1, 1, b"T", None),), False),
    ("max data", row("é" * (C.MAX_DATA_LENGTH // 2)), 0, cols("DESC"), True),
    ("data too long", row("é" * (C.MAX_DATA_LENGTH // 2) + "x"), 0, cols("DESC"), False),
    ("many columns", row(*[f"c{i}" for i in range(_MANY)]), 0,
     cols(*[f"T{i}" for i in range(_MANY)]), True),
    ("many columns, most empty", row(*["x" if i % 7 == 0 else "" for i in range(_MANY)]), 0,
     cols(*[f"T{i}" for i in range(_MANY)]), True),
    ("max values",
     row(*["d"] * (C.MAX_VALUES + 1)), 0, tuple((i, i, "T", None) for i in range(
         1, C.MAX_VALUES + 2) if i != RESERVED), True),
    ("too many values",
     row(*["d"] * (C.MAX_VALUES + 2)), 0, tuple((i, i, "T", None) for i in range(
         1, C.MAX_VALUES + 3) if i != RESERVED), False),
    # handles
    ("an empty handle", row("x", handle=""), 0, cols("URL"), False),
    ("a blank handle", row("x", handle=" "), 0, cols("URL"), True),
    ("no suffix", row("x", handle="88.118.8/"), 0, cols("URL"), False),
    ("double dot prefix", row("x", handle="88..1/a"), 0, cols("URL"), False),
    ("a control in the handle", row("x", handle="88.1/a\x01"), 0, cols("URL"), False),
    ("a C1 control in the handle", row("x", handle="88.1/a\x85"), 0, cols("URL"), False),
    ("no slash: a 0.NA key", row("x", handle="88.118.8"), 0, cols("URL"), True),
    ("longest handle", row("x", handle="8/" + "x" * (C.MAX_HANDLE - 2)), 0, cols("URL"), True),
    ("handle too long", row("x", handle="8/" + "x" * (C.MAX_HANDLE - 1)), 0, cols("URL"), False),
    ("mixed-case handle", row("x", handle="88.abc/Sn-Ab"), 0, cols("URL"), True),
]


@pytest.mark.parametrize("cs", [False, True])
@pytest.mark.parametrize("r,at,columns,takes", [t[1:] for t in CSV_TABLE],
                         ids=[t[0] for t in CSV_TABLE])  # fmt: skip
def test_csv_table(cython_twin_or_none, r, at, columns, takes, cs):
    assert check_row(_twins(cython_twin_or_none), r, at, columns, cs=cs) is takes


def test_csv_keys_fold_as_configured(cython_twin_or_none):
    r = row("x", handle="88.abc/Sn-Ab")
    for twin in _twins(cython_twin_or_none):
        assert twin.encode_csv_row(r, 0, cols("URL"), NOW, NOW_TEXT, RESERVED, False)[0] == (
            b"88.ABC/SN-AB")  # fmt: skip
        assert twin.encode_csv_row(r, 0, cols("URL"), NOW, NOW_TEXT, RESERVED, True)[0] == (
            b"88.ABC/Sn-Ab")  # fmt: skip


def test_a_csv_row_is_stored_as_its_jsonl_line(cython_twin_or_none):
    """The same identifier imported either way gives the same record."""
    values = [{"index": 1, "type": "URL", "data": ROW[1]},
              {"index": 2, "type": "EMAIL", "data": ROW[2]},
              {"index": 3, "type": "DESC", "data": ROW[3], "ttl": 60}]  # fmt: skip
    jl = orjson.dumps({"handle": ROW[0], "values": values})
    columns = COLS[:2] + ((3, 3, "DESC", 60),)
    for twin in _twins(cython_twin_or_none):
        key, handle, blob = twin.encode_jsonl_line(jl, NOW, NOW_TEXT, RESERVED, False)
        assert twin.encode_csv_row(ROW, 0, columns, NOW, NOW_TEXT, RESERVED, False) == (key, blob)


# Outside the reference's domain (it would raise or index from the end): declined, not raised.
CSV_DECLINED = [
    ("handle_at past the row", ROW, 4, COLS),
    ("handle_at negative", ROW, -4, COLS),
    ("handle_at a bool", ROW, False, COLS),
    ("handle_at a str", ROW, "0", COLS),
    ("handle_at None", ROW, None, COLS),
    ("a position past the row", ROW, 0, COLS + ((4, 4, "T", None),)),
    ("a position negative", ROW, 0, ((-1, 1, "T", None),)),
    ("a position huge", ROW, 0, ((1 << 70, 1, "T", None),)),
    ("a position a bool", ROW, 0, ((True, 1, "T", None),)),
    ("a position a float", ROW, 0, ((1.0, 1, "T", None),)),
    ("a column of three", ROW, 0, ((1, 1, "T"),)),
    ("a column of five", ROW, 0, ((1, 1, "T", None, None),)),
    ("a column a list", ROW, 0, ([1, 1, "T", None],)),
    ("columns a list", ROW, 0, list(COLS)),
    ("columns None", ROW, 0, None),
    ("a row tuple", tuple(ROW), 0, COLS),
    ("a row of bytes", [c.encode() for c in ROW], 0, COLS),
    ("a row None", None, 0, COLS),
    ("an empty row", [], 0, ()),
    ("a handle None", [None, "x"], 0, cols("T")),
    ("a cell None", row(None), 0, cols("T")),
    ("a cell an int", row(5), 0, cols("T")),
    ("an empty cell of bytes", row(b""), 0, cols("T")),
    ("a str subclass cell", row(type("S", (str,), {})("x")), 0, cols("T")),
]


@pytest.mark.parametrize("r,at,columns", [t[1:] for t in CSV_DECLINED],
                         ids=[t[0] for t in CSV_DECLINED])  # fmt: skip
def test_csv_declines_the_unexpected(cython_twin_or_none, r, at, columns):
    assert csv_outs(_twins(cython_twin_or_none), r, at, columns) is None


@pytest.mark.parametrize("now", [0, 1, 0x7FFFFFFF])
def test_csv_every_server_time(cython_twin_or_none, now):
    assert check_row(_twins(cython_twin_or_none), ROW, 0, COLS, now=now)


@pytest.mark.parametrize("now", [-1, 0x80000000, 1.0, True, None])
def test_csv_bad_server_time_declines(cython_twin_or_none, now):
    assert csv_outs(_twins(cython_twin_or_none), ROW, 0, COLS, now=now) is None


# -- generated rows -----------------------------------------------------------------------------

_CLEAN = st.characters(blacklist_categories=("Cc", "Cs"))  # no control, no surrogate
_PREFIX = st.sampled_from(["88.118.8", "88.abc", "0.NA", "x"])
_CELL = st.one_of(st.just(""), st.text(_CLEAN, max_size=12))
_ODD_CELL = st.one_of(_CELL, st.text(max_size=6), st.sampled_from(
    ["", "\x00", "\x7f", "\x85", "a\n\"b\"", _SURROGATE, "\ud83d\ude80", "é" * 3]))
_TYPE = st.one_of(st.sampled_from(["URL", "EMAIL", "DESC", "名称", "HS_SERV"]),
                  st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=6))
_ODD_TYPE = st.one_of(_TYPE, st.sampled_from(["", "HS_ADMIN", "hs_pubkey", "hſ_site",
                                              "T" + _SURROGATE]))  # fmt: skip
_TTL = st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1))
_ODD_TTL = st.one_of(_TTL, st.integers(-(2**40), 2**40), st.sampled_from([True, "60", 1.5]))
_HANDLE = st.one_of(
    st.builds(lambda p, s: f"{p}/{s}", _PREFIX, st.text(_CLEAN, min_size=1, max_size=10)),
    st.sampled_from(["", "88.1", "88.1/", "88..1/a", "88.1/\x01", "88.1/" + _SURROGATE]))


@st.composite
def _plain_row(draw):
    """A row the fast path takes unless every cell is empty (or a type happens to be
    structured): distinct indexes, in-range positions, clean text."""
    n = draw(st.integers(1, 6))
    handle = draw(st.builds(lambda p, s: f"{p}/{s}", _PREFIX, st.text(_CLEAN, min_size=1,
                                                                       max_size=10)))
    cells = [draw(_CELL) for _ in range(n)]
    indexes = draw(st.lists(st.integers(1, 2**31 - 1).filter(lambda i: i != RESERVED),
                            min_size=n, max_size=n, unique=True))  # fmt: skip
    at = draw(st.integers(0, n))  # the handle's column; the cells around it
    columns = tuple((i if i < at else i + 1, indexes[i], draw(_TYPE), draw(_TTL))
                    for i in range(n))  # fmt: skip
    return cells[:at] + [handle] + cells[at:], at, columns


@st.composite
def _wild_row(draw):
    n = draw(st.integers(0, 5))
    r = [draw(_HANDLE)] + [draw(_ODD_CELL) for _ in range(n)]
    k = draw(st.integers(0, 5))
    columns = tuple((draw(st.integers(0, n)), draw(st.one_of(st.integers(0, 4), st.just(RESERVED),
                                                             st.integers(2**31 - 2, 2**31))),
                     draw(_ODD_TYPE), draw(_ODD_TTL)) for _ in range(k))  # fmt: skip
    return r, 0, columns


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_wild_row(), st.booleans())
def test_generated_wild_rows(cython_twin_or_none, case, cs):
    r, at, columns = case
    check_row(_twins(cython_twin_or_none), r, at, columns, cs=cs)


def test_generated_plain_rows_are_taken(cython_twin_or_none):
    twins = _twins(cython_twin_or_none)
    cases = []

    # derandomize: the assertion below is about the share of generated rows, so the rows
    # must be the same every run (a random draw fell short of it once in many runs)
    @settings(max_examples=120, deadline=None, database=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(_plain_row(), st.booleans())
    def run(case, cs):
        cases.append((*case, cs))

    run()
    with_values = [c for c in cases if any(c[0][p] for p, *_ in c[2])]
    taken = [check_row(twins, r, at, columns, cs=cs) for r, at, columns, cs in with_values]
    for r, at, columns, cs in cases:
        if not any(r[p] for p, *_ in columns):
            assert not check_row(twins, r, at, columns, cs=cs)
    assert len(with_values) >= 60 and sum(taken) >= 0.95 * len(with_values)
