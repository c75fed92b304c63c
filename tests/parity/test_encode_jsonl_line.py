"""Parity of ``encode_jsonl_line``: one JSONL import line → (key, handle, stored record).

Both twins must return None (decline) or exactly what the reference gives: ``orjson.loads`` of
the line, its "handle" through ``normalize_key`` and its "values" through ``pack_json_values``
(the pure twin's, the normative one).  Where the reference fails (orjson rejects the line, the
members are not exactly "handle" and "values", ...) the twins must decline.  Table rows state
whether the fast path takes the line, and the generated plain lines must mostly be taken, so
parity cannot hold by declining everything.
"""

from __future__ import annotations

import random

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import native
from native import _hotpath_py as python_twin
from native import constants as C
from resolver.valuejson import iso_utc

NOW = 1767225600  # 2026-01-01T00:00:00Z
NOW_TEXT = iso_utc(NOW).encode()
RESERVED = 1001  # record.TEMPLATE_INDEX: the IDIS template value, the caller's
ERROR = object()  # the reference has no answer: the line must be declined


def _twins(cython_twin):
    return [python_twin] + ([cython_twin] if cython_twin is not None else [])


def reference(line: bytes, now=NOW, case_sensitive=False):
    """The general path's answer for one line (``now`` a valid server time), or ERROR."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return ERROR
    if type(obj) is not dict or set(obj) != {"handle", "values"} or type(obj["handle"]) is not str:
        return ERROR
    handle = obj["handle"]
    key = python_twin.normalize_key(handle.encode("utf-8"), case_sensitive)
    blob = python_twin.pack_json_values(obj["values"], now, iso_utc(now).encode(), RESERVED)
    return None if key is None or blob is None else (key, handle, blob)


def check(twins, line: bytes, now=NOW, case_sensitive=False) -> bool:
    """Assert parity for one line; → whether the fast path took it."""
    expected = reference(line, now, case_sensitive)
    text = iso_utc(now).encode()
    outs = [t.encode_jsonl_line(line, now, text, RESERVED, case_sensitive) for t in twins]
    assert all(o == outs[0] for o in outs), f"the twins disagree on {line!r}"
    if outs[0] is not None:
        assert expected is not ERROR, f"taken, but the reference rejects {line!r}"
        assert outs[0] == expected, f"a different answer from the reference for {line!r}"
        key, handle, blob = outs[0]
        assert type(key) is bytes and type(handle) is str and type(blob) is bytes
    return outs[0] is not None


def j(obj) -> bytes:
    return orjson.dumps(obj)


def v(index=1, type="URL", data="https://f.example/p/1", **more):
    return {"index": index, "type": type, "data": data, **more}


def line(values, handle="88.118.8/SN-2026-0000001") -> bytes:
    return j({"handle": handle, "values": values})


def raw(values_json: bytes, handle_json: bytes = b'"88.118.8/SN-1"') -> bytes:
    """A line from hand-written JSON pieces."""
    return b'{"handle":' + handle_json + b',"values":' + values_json + b"}"


def one(member_json: bytes) -> bytes:
    """A line of one value, given its members' JSON after "index":1."""
    return raw(b'[{"index":1,' + member_json + b"}]")


def data(text_json: bytes) -> bytes:
    """A line whose one value's data is ``text_json`` (the JSON of a string, quotes included)."""
    return one(b'"type":"T","data":' + text_json)


def type_(text_json: bytes) -> bytes:
    return one(b'"type":' + text_json + b',"data":"x"')


LINE = (b'{"handle":"88.118.8/SN-2026-0000001","values":[{"index":1,"type":"URL","data":'
        b'"https://f.example/p/1"},{"index":2,"type":"EMAIL","data":{"format":"string","value":'
        b'"qa@f.example"}},{"index":3,"type":"DESC","data":"battery"}]}')  # fmt: skip

# (name, line, the fast path takes it)
TABLE = [
    ("the import line", LINE, True),
    ("members reversed", b'{"values":[{"index":1,"type":"URL","data":"x"}],"handle":"88.1/a"}',
     True),
    ("value members in any order", raw(b'[{"data":"x","ttl":5,"type":"URL","index":7,'
                                       b'"permissions":"1100"}]'), True),
    ("data object members reversed", data(b'{"value":"x","format":"string"}'), True),
    ("whitespace everywhere", b' \t\r\n{ "handle" :\t"88.1/a" ,\n"values"\r: [ { "index" : 1 ,'
     b' "type" : "T" , "data" : { "format" : "string" , "value" : "x" } , "ttl" : null } ,'
     b'\n{"index":2,"type":"T","data":"y"} ] } \n', True),
    ("trailing cr", LINE + b"\r", True),
    ("trailing crlf", LINE + b"\r\n", True),
    ("leading bom", b"\xef\xbb\xbf" + LINE, False),
    ("form feed is not whitespace", b"\x0c" + LINE, False),
    ("nbsp is not whitespace", LINE + b"\xc2\xa0", False),
    ("vertical tab is not whitespace", LINE.replace(b",", b",\x0b", 1), False),
    # escapes
    ("solidus escape in the handle", raw(j([v()]), b'"88.1\\/a\\/b"'), True),
    ("short escapes in the data", data(b'"\\"\\\\\\/\\n\\r\\t\\f"'), True),
    ("backspace escape in the type", type_(b'"T\\b"'), True),
    ("backspace escape in the data: binary", data(b'"a\\bb"'), False),
    ("u escape ascii", data(b'"\\u0041\\u007a"'), True),
    ("u escape two bytes", data(b'"\\u00e9\\u00E9"'), True),
    ("u escape three bytes upper hex", data(b'"\\u8BBE\\uFFFF"'), True),
    ("u escape del in the type", type_(b'"T\\u007f"'), True),
    ("u escape del in the data: binary", data(b'"\\u007f"'), False),
    ("u escape nul in the type", type_(b'"\\u0000T"'), True),
    ("u escape nul in the data: binary", data(b'"\\u0000"'), False),
    ("u escape 0x1f in the type", type_(b'"\\u001f"'), True),
    ("u escape 0x0b in the data", data(b'"\\u000b\\u0013"'), True),
    ("surrogate pair", data(b'"\\ud83d\\ude80"'), True),
    ("surrogate pair upper hex", data(b'"\\uD83D\\uDE80x"'), True),
    ("surrogate pair, the last code point", data(b'"\\udbff\\udfff"'), True),
    ("surrogate pair in the handle", raw(j([v()]), b'"88.1/\\ud83d\\ude80"'), True),
    ("lone high surrogate", data(b'"\\ud800"'), False),
    ("lone high surrogate then text", data(b'"\\ud800x"'), False),
    ("high surrogate then a letter escape", data(b'"\\ud800\\u0041"'), False),
    ("two high surrogates", data(b'"\\ud800\\ud800"'), False),
    ("lone low surrogate", data(b'"\\udc00"'), False),
    ("lone surrogate in the handle", raw(j([v()]), b'"88.1/\\udfff"'), False),
    ("unknown escape", data(b'"\\x41"'), False),
    ("capital u escape", data(b'"\\U0041"'), False),
    ("short u escape", data(b'"\\u41"'), False),
    ("u escape not hex", data(b'"\\u12G4"'), False),
    ("escape at the end", data(b'"\\'), False),
    ("escaped member name", b'{"hand\\u006ce":"88.1/a","values":' + j([v()]) + b"}", False),
    ("escaped value member name", one(b'"typ\\u0065":"T","data":"x"'), False),
    ("mixed raw and escaped text",
     data(b'"pr\xc3\xa9 \\"q\\" \xe8\xae\xbe\\u5907 \xf0\x9f\x9a\x80"'), True),
    ("long line with escapes: heap scratch", data(b'"' + b"ab\\n\\u00e9" * 400 + b'"'), True),
    # raw bytes in strings
    ("raw tab", data(b'"a\tb"'), False),
    ("raw newline", data(b'"a\nb"'), False),
    ("raw nul", data(b'"a\x00b"'), False),
    ("raw 0x1f in the type", type_(b'"T\x1f"'), False),
    ("raw del in the type", type_(b'"T\x7f"'), True),
    ("raw del in the data: binary", data(b'"a\x7f"'), False),
    ("raw c1 in the data", data(b'"\xc2\x85\xc2\x9f"'), True),
    ("raw c1 in the handle: invalid", raw(j([v()]), b'"88.1/a\xc2\x85"'), False),
    ("raw u+2028", data(b'"\xe2\x80\xa8"'), True),
    ("four-byte utf-8", data(b'"\xf0\x9f\x9a\x80\xf4\x8f\xbf\xbf"'), True),
    ("cjk handle", raw(j([v()]), '"88.118.8/设备-泵-1"'.encode()), True),
    ("cjk type and data", type_('"设备名称"'.encode()), True),
    # invalid UTF-8
    ("byte 0xff", data(b'"\xff"'), False),
    ("overlong nul", data(b'"\xc0\x80"'), False),
    ("overlong three bytes", data(b'"\xe0\x80\xaf"'), False),
    ("encoded surrogate", data(b'"\xed\xa0\x80"'), False),
    ("past u+10ffff", data(b'"\xf4\x90\x80\x80"'), False),
    ("lead byte 0xf5", data(b'"\xf5\x80\x80\x80"'), False),
    ("truncated sequence", data(b'"\xe8\xae"'), False),
    ("lone continuation", data(b'"\x80"'), False),
    ("invalid utf-8 in the handle", raw(j([v()]), b'"88.1/\xff"'), False),
    # member sets
    ("duplicate handle", b'{"handle":"88.1/a","handle":"88.1/b","values":' + j([v()]) + b"}",
     False),
    ("duplicate values", b'{"handle":"88.1/a","values":[],"values":' + j([v()]) + b"}", False),
    ("duplicate index member", one(b'"index":2,"type":"T","data":"x"'), False),
    ("duplicate type member", one(b'"type":"A","type":"T","data":"x"'), False),
    ("duplicate data member", one(b'"data":"y","type":"T","data":"x"'), False),
    ("duplicate ttl member", one(b'"ttl":1,"type":"T","data":"x","ttl":2'), False),
    ("duplicate value in the data object", data(b'{"format":"string","value":"a","value":"b"}'),
     False),
    ("duplicate format in the data object",
     data(b'{"format":"hex","format":"string","value":"a"}'), False),
    ("extra top member", b'{"handle":"88.1/a","values":' + j([v()]) + b',"x":1}', False),
    ("extra value member", line([v(timestamp="2020-01-01T00:00:00Z")]), False),
    ("references", line([v(references=[])]), False),
    ("extra data member", data(b'{"format":"string","value":"x","extra":1}'), False),
    ("no handle", b'{"values":' + j([v()]) + b"}", False),
    ("no values", b'{"handle":"88.1/a"}', False),
    ("no index", raw(b'[{"type":"T","data":"x"}]'), False),
    ("no type", raw(b'[{"index":1,"data":"x"}]'), False),
    ("no data", raw(b'[{"index":1,"type":"T"}]'), False),
    ("data object without value", data(b'{"format":"string"}'), False),
    ("empty object", b"{}", False),
    ("empty value object", raw(b"[{}]"), False),
    ("empty values", raw(b"[]"), False),
    ("empty values with whitespace", raw(b"[ ]"), False),
    # numbers
    ("index 0", line([v(0)]), False),
    ("index -1", line([v(-1)]), False),
    ("index max", line([v(0x7FFFFFFF)]), True),
    ("index max + 1", line([v(0x80000000)]), False),
    ("index 1e3", raw(b'[{"index":1e3,"type":"T","data":"x"}]'), False),
    ("index 1E3", raw(b'[{"index":1E3,"type":"T","data":"x"}]'), False),
    ("index 1.0", raw(b'[{"index":1.0,"type":"T","data":"x"}]'), False),
    ("index 01", raw(b'[{"index":01,"type":"T","data":"x"}]'), False),
    ("index -0", raw(b'[{"index":-0,"type":"T","data":"x"}]'), False),
    ("index +1", raw(b'[{"index":+1,"type":"T","data":"x"}]'), False),
    ("index huge", raw(b'[{"index":99999999999999999999999,"type":"T","data":"x"}]'), False),
    ("index 11 digits", raw(b'[{"index":10000000001,"type":"T","data":"x"}]'), False),
    ("index 10 digits", raw(b'[{"index":2147483647,"type":"T","data":"x"}]'), True),
    ("index minus alone", raw(b'[{"index":-,"type":"T","data":"x"}]'), False),
    ("index nan", raw(b'[{"index":NaN,"type":"T","data":"x"}]'), False),
    ("index true", line([v(True)]), False),
    ("index null", line([v(None)]), False),
    ("index as text", line([v("1")]), False),
    ("reserved index", line([v(RESERVED)]), False),
    ("duplicate index", line([v(1), v(2), v(1)]), False),
    ("ttl 0", line([v(ttl=0)]), True),
    ("ttl -1", line([v(ttl=-1)]), True),
    ("ttl int32 min", line([v(ttl=-0x80000000)]), True),
    ("ttl int32 max", line([v(ttl=0x7FFFFFFF)]), True),
    ("ttl int32 min - 1", line([v(ttl=-0x80000001)]), False),
    ("ttl -0", one(b'"type":"T","data":"x","ttl":-0'), False),
    ("ttl 1.5", one(b'"type":"T","data":"x","ttl":1.5'), False),
    ("ttl -1e2", one(b'"type":"T","data":"x","ttl":-1e2'), False),
    ("ttl null", one(b'"type":"T","data":"x","ttl":null'), True),
    ("ttl nul", one(b'"type":"T","data":"x","ttl":nul'), False),
    ("ttl nullx", one(b'"type":"T","data":"x","ttl":nullx'), False),
    ("ttl true", one(b'"type":"T","data":"x","ttl":true'), False),
    ("ttl as text", line([v(ttl="60")]), False),
    # nested wrong types
    ("values an object", raw(j(v())), False),
    ("values a string", raw(b'"x"'), False),
    ("values null", raw(b"null"), False),
    ("value an array", raw(b"[[1]]"), False),
    ("value a string", raw(b'["x"]'), False),
    ("second value a number", raw(b'[{"index":1,"type":"T","data":"x"},2]'), False),
    ("handle a number", raw(j([v()]), b"88"), False),
    ("handle null", raw(j([v()]), b"null"), False),
    ("handle an array", raw(j([v()]), b'["88.1/a"]'), False),
    ("type null", line([v(type=None)]), False),
    ("type a number", line([v(type=5)]), False),
    ("data a number", line([v(data=5)]), False),
    ("data null", line([v(data=None)]), False),
    ("data an array", line([v(data=["x"])]), False),
    ("data format a number", data(b'{"format":1,"value":"x"}'), False),
    ("data value a number", data(b'{"format":"string","value":1}'), False),
    ("data format hex", line([v(data={"format": "hex", "value": "41"})]), False),
    ("data format escaped", data(b'{"format":"str\\u0069ng","value":"x"}'), True),
    ("perms a number", one(b'"type":"T","data":"x","permissions":1110'), False),
    ("perms null", line([v(permissions=None)]), False),
    ("perms star", line([v(permissions="*")]), True),
    ("perms 0101", line([v(permissions="0101")]), True),
    ("perms default", line([v(permissions="1110")]), True),
    ("perms escaped digits", one(b'"type":"T","data":"x","permissions":"\\u0031100"'), True),
    ("perms empty", line([v(permissions="")]), False),
    ("perms bad digit", line([v(permissions="1210")]), False),
    # types
    ("structured type", line([v(type="HS_ADMIN")]), False),
    ("structured type lower case", line([v(type="hs_vlist")]), False),
    ("structured type by unicode upper", line([v(type="hſ_site")]), False),
    ("structured type escaped", type_(b'"HS\\u005fPUBKEY"'), False),
    ("hs_ type with string data", line([v(type="HS_SERV"), v(2, "hs_alias", "x")]), True),
    ("empty type", line([v(type="")]), False),
    # handles
    ("empty handle", line([v()], ""), False),
    ("no suffix", line([v()], "88.1/"), False),
    ("no prefix", line([v()], "/a"), False),
    ("double dot prefix", line([v()], "88..1/a"), False),
    ("a 0.NA handle", line([v()], "0.NA/88.1"), True),
    ("a handle without a slash", line([v()], "88.1"), True),
    ("handle with a control escape", raw(j([v()]), b'"88.1/\\u0001"'), False),
    ("handle with quotes and backslashes", raw(j([v()]), b'"88.1/a\\"b\\\\c"'), True),
    ("longest handle", line([v()], "8/" + "x" * (C.MAX_HANDLE - 2)), True),
    ("handle too long", line([v()], "8/" + "x" * (C.MAX_HANDLE - 1)), False),
    ("mixed-case handle", line([v()], "88.abc/Sn-Ab"), True),
    # sizes
    ("17 values: heap", line([v(i, data=str(i)) for i in range(1, 18)]), True),
    ("max values", line([v(i, "T", "d") for i in range(1, C.MAX_VALUES + 2) if i != RESERVED]),
     True),
    ("too many values",
     line([v(i, "T", "d") for i in range(1, C.MAX_VALUES + 3) if i != RESERVED]), False),
    ("max data", line([v(data="é" * (C.MAX_DATA_LENGTH // 2))]), True),
    ("data too long", line([v(data="é" * (C.MAX_DATA_LENGTH // 2) + "x")]), False),
    ("max data escaped", data(b'"' + b"\\u8bbe" * (C.MAX_DATA_LENGTH // 3) + b'"'), True),
    # trailing and structural garbage
    ("trailing letter", LINE + b"x", False),
    ("trailing object", LINE + b"{}", False),
    ("trailing comma", LINE + b",", False),
    ("trailing nul", LINE + b"\x00", False),
    ("nul inside", LINE.replace(b",", b"\x00,", 1), False),
    ("trailing comma in values", raw(b'[{"index":1,"type":"T","data":"x"},]'), False),
    ("trailing comma in a value", raw(b'[{"index":1,"type":"T","data":"x",}]'), False),
    ("trailing comma at the top", b'{"handle":"88.1/a","values":' + j([v()]) + b",}", False),
    ("missing colon", b'{"handle" "88.1/a","values":' + j([v()]) + b"}", False),
    ("missing comma", b'{"handle":"88.1/a" "values":' + j([v()]) + b"}", False),
    ("single quotes", LINE.replace(b'"', b"'"), False),
    ("two lines", LINE + b"\n" + LINE, False),
    ("an array", b"[" + LINE + b"]", False),
    ("empty line", b"", False),
    ("blank line", b" \r\n", False),
]


@pytest.mark.parametrize("case_sensitive", [False, True])
@pytest.mark.parametrize("ln,takes", [(t[1], t[2]) for t in TABLE], ids=[t[0] for t in TABLE])
def test_table(cython_twin_or_none, ln, takes, case_sensitive):
    assert check(_twins(cython_twin_or_none), ln, case_sensitive=case_sensitive) is takes


def test_case_sensitivity_reaches_the_key(cython_twin_or_none):
    ln = line([v()], "88.abc/Sn-Ab")
    for twin in _twins(cython_twin_or_none):
        assert twin.encode_jsonl_line(ln, NOW, NOW_TEXT, RESERVED, False)[:2] == (
            b"88.ABC/SN-AB", "88.abc/Sn-Ab")  # fmt: skip
        assert twin.encode_jsonl_line(ln, NOW, NOW_TEXT, RESERVED, True)[0] == b"88.ABC/Sn-Ab"


def test_every_prefix_of_the_line_declines(cython_twin_or_none):
    twins = _twins(cython_twin_or_none)
    for end in range(len(LINE)):
        assert not check(twins, LINE[:end])


@pytest.mark.parametrize("now", [0, 1, NOW, 0x7FFFFFFF])
def test_every_server_time(cython_twin_or_none, now):
    """``now`` 0 writes no timestamp member."""
    assert check(_twins(cython_twin_or_none), LINE, now)


@pytest.mark.parametrize("now", [-1, 0x80000000, 1.0, True, None])
def test_server_time_out_of_range_declines(cython_twin_or_none, now):
    for twin in _twins(cython_twin_or_none):
        assert twin.encode_jsonl_line(LINE, now, b"x", RESERVED, False) is None


def test_the_reserved_index_is_the_callers(cython_twin_or_none):
    for twin in _twins(cython_twin_or_none):
        assert twin.encode_jsonl_line(line([v(7)]), NOW, NOW_TEXT, 7, False) is None
        assert twin.encode_jsonl_line(line([v(RESERVED)]), NOW, NOW_TEXT, 7, False) is not None


def test_the_line_must_be_bytes(cython_twin_or_none):
    for twin in _twins(cython_twin_or_none):
        with pytest.raises(TypeError):
            twin.encode_jsonl_line(LINE.decode(), NOW, NOW_TEXT, RESERVED, False)


def test_the_selector_exports_the_twin():
    impl = native.cython_twin if native.IMPLEMENTATION == "cython" else native.python_twin
    assert native.encode_jsonl_line is impl.encode_jsonl_line
    assert native.pack_json_values is impl.pack_json_values


# -- generated lines ----------------------------------------------------------------------------

#: Text the fast path takes anywhere: no C0/C1 control or DEL, no surrogate.
_CLEAN = st.characters(blacklist_categories=("Cc", "Cs"))
_PREFIX = st.sampled_from(["88.118.8", "88.abc", "20.500.12", "0.NA", "x"])


@st.composite
def _plain_line(draw):
    """A line the fast path takes (bar a vanishingly rare structured type): its handle and
    values as Python objects."""
    handle = draw(_PREFIX) + "/" + draw(st.text(_CLEAN, min_size=1, max_size=16))
    vals = []
    for index in draw(st.lists(st.integers(1, 2**31 - 1).filter(lambda i: i != RESERVED),
                               min_size=1, max_size=5, unique=True)):  # fmt: skip
        obj = {"index": index, "type": draw(st.text(_CLEAN, min_size=1, max_size=8))}
        text = draw(st.text(st.one_of(_CLEAN, st.sampled_from('\t\n\r"\\/\x0b\x0c')),
                            max_size=16))  # fmt: skip
        obj["data"] = text if draw(st.booleans()) else {"format": "string", "value": text}
        if draw(st.booleans()):
            obj["ttl"] = draw(st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)))
        if draw(st.booleans()):
            obj["permissions"] = draw(st.one_of(st.just("*"),
                                                st.text(alphabet="01", min_size=1, max_size=6)))
        vals.append(obj)
    return {"handle": handle, "values": vals}


_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n",
          "\r": "\\r", "\t": "\\t"}  # fmt: skip
_WS = ["", "", "", " ", "  ", "\t", "\n", "\r", "\r\n"]


def _dump_string(s: str, rnd: random.Random) -> str:
    """JSON text of ``s`` with each character spelled at random: raw where JSON allows it, a
    short escape, or \\uXXXX (either hex case; a surrogate pair past the BMP)."""
    out = ['"']
    for ch in s:
        cp = ord(ch)
        ways = []
        if ch not in '"\\' and cp >= 0x20:
            ways.append(ch)
        if ch in _SHORT:
            ways.append(_SHORT[ch])
        if cp < 0x10000:
            ways.append(f"\\u{cp:04x}")
            ways.append(f"\\u{cp:04X}")
        else:
            hi, lo = 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF)
            ways.append(f"\\u{hi:04x}\\u{lo:04x}")
            ways.append(f"\\u{hi:04X}\\u{lo:04X}")
        out.append(rnd.choice(ways))
    out.append('"')
    return "".join(out)


def _dump(obj, rnd: random.Random) -> str:
    """JSON text of ``obj`` with random whitespace, member order and string spellings (member
    names stay unescaped: the fast path declines an escaped name)."""

    def ws() -> str:
        return rnd.choice(_WS)

    if isinstance(obj, dict):
        items = list(obj.items())
        rnd.shuffle(items)
        return "{" + ",".join(f'{ws()}"{k}"{ws()}:{ws()}{_dump(x, rnd)}{ws()}' for k, x in items) \
            + "}"  # fmt: skip
    if isinstance(obj, list):
        return "[" + ",".join(ws() + _dump(x, rnd) + ws() for x in obj) + "]"
    if isinstance(obj, str):
        return _dump_string(obj, rnd)
    if type(obj) is int:
        return str(obj)  # past 64 bits too, which orjson.dumps refuses
    return orjson.dumps(obj).decode()  # null, true, false, a float (NaN and infinities: null)


def _variant(obj, rnd: random.Random) -> bytes:
    return (rnd.choice(_WS) + _dump(obj, rnd) + rnd.choice(_WS)).encode("utf-8")


def _mutate(ln: bytes, rnd: random.Random) -> bytes:
    """One to three random byte edits: delete, insert, replace, or repeat a slice."""
    b = bytearray(ln)
    for _ in range(rnd.randint(1, 3)):
        i = rnd.randrange(len(b) + 1)
        op = rnd.randrange(4)
        byte = rnd.choice([rnd.randrange(256), *b'"\\{}[],: \x00\x7fu0-e.'])
        if op == 0 and i < len(b):
            del b[i]
        elif op == 1:
            b.insert(i, byte)
        elif op == 2 and i < len(b):
            b[i] = byte
        else:
            b[i:i] = b[i : i + rnd.randint(1, 8)]
    return bytes(b)


def _taken_share(twins, lines) -> float:
    taken = [check(twins, ln, case_sensitive=cs) for ln, cs in lines]
    return sum(taken) / len(taken)


def test_generated_plain_lines_are_taken(cython_twin_or_none):
    """orjson's own serialization and random spellings of it: the fast path's shapes, so they
    are taken (not declined) as well as answered exactly."""
    twins = _twins(cython_twin_or_none)
    lines = []

    @settings(max_examples=80, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(_plain_line(), st.randoms(use_true_random=False), st.booleans())
    def run(obj, rnd, cs):
        lines.append((orjson.dumps(obj), cs))
        lines.append((_variant(obj, rnd), cs))

    run()
    assert len(lines) >= 160 and _taken_share(twins, lines) >= 0.95


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_plain_line(), st.randoms(use_true_random=False))
def test_generated_mutated_lines(cython_twin_or_none, obj, rnd):
    twins = _twins(cython_twin_or_none)
    base = _variant(obj, rnd) if rnd.random() < 0.5 else orjson.dumps(obj)
    for _ in range(4):
        check(twins, _mutate(base, rnd), case_sensitive=rnd.random() < 0.5)


_ANY_TEXT = st.one_of(st.text(max_size=8), st.sampled_from(["", "HS_ADMIN", "hſ_admin", "\x7f",
                                                            "\x00", "\x08", "é\u2028", "*", "01"]))
_ANY = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), _ANY_TEXT,
                 st.just([]), st.just({}), st.just({"format": "string", "value": "x"}))
_MEMBERS = ("index", "type", "data", "ttl", "permissions", "timestamp", "references")


@st.composite
def _wild_value(draw):
    """A plain value with some members dropped, added or given odd values."""
    obj = {"index": draw(st.integers(1, 9)), "type": "T", "data": "x"}
    for name in draw(st.lists(st.sampled_from(_MEMBERS), unique=True, max_size=3)):
        if draw(st.integers(0, 3)) == 0:
            obj.pop(name, None)
        elif name == "index":
            obj[name] = draw(st.one_of(st.integers(-2, 2**32), _ANY))
        elif name == "data":
            obj[name] = draw(st.one_of(_ANY_TEXT, _ANY, st.dictionaries(
                st.sampled_from(["format", "value", "x"]), st.one_of(_ANY_TEXT, _ANY))))
        else:
            obj[name] = draw(st.one_of(_ANY_TEXT, st.integers(-(2**32), 2**32), _ANY))
    return obj


@st.composite
def _wild_line(draw):
    obj = {"handle": "88.1/a", "values": draw(st.lists(_wild_value(), max_size=3))}
    for name in draw(st.lists(st.sampled_from(["handle", "values", "x"]), unique=True,
                              max_size=2)):  # fmt: skip
        if draw(st.integers(0, 3)) == 0:
            obj.pop(name, None)
        elif name == "values":
            obj[name] = draw(_ANY)
        else:
            obj[name] = draw(st.one_of(_ANY_TEXT.map(lambda s: "88.1/" + s), _ANY))
    return obj


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_wild_line(), st.randoms(use_true_random=False))
def test_generated_wild_lines(cython_twin_or_none, obj, rnd):
    """Wrong types, missing and extra members, odd numbers: declined or answered exactly."""
    twins = _twins(cython_twin_or_none)
    check(twins, _variant(obj, rnd))
    try:
        check(twins, orjson.dumps(obj))
    except orjson.JSONEncodeError:  # an int past 64 bits
        pass
