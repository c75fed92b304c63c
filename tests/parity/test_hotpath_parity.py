"""Parity of the hot path: pure twin, Cython twin and the general path answer byte-identically.

For every case of ``vectors.cases()`` (and for generated ones) the two ``native`` twins must
return the same thing (both None or equal bytes), and whenever they return bytes these must be
the body the general path — parse → engine → codec, as ``HandleApi.general`` does — produces.
Each case also states the kind of answer it must get, so parity cannot hold vacuously.
"""

from __future__ import annotations

import asyncio
import dataclasses

import orjson
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import native
import vectors
from native import _hotpath_py as python_twin
from native import constants as C
from resolver import identifier, record, values
from resolver.config import Config
from resolver.core.authority import AuthorityHandler
from resolver.core.engine import Resolver
from resolver.core.request import ResolveRequest
from resolver.errors import InvalidIdentifier, Outcome
from resolver.identifier import Identifier
from resolver.protocols.handle import constants as handle_constants
from resolver.protocols.handle.codes import RC_FOR, ResponseCode
from resolver.protocols.http import codec
from resolver.record import Record, pack
from resolver.store import Change

CASES = vectors.cases()


def general_body(store, handle: bytes, types: tuple[str, ...], indexes: tuple[int, ...],
                 case_sensitive: bool = False) -> bytes:  # fmt: skip
    """The general path's body for a public-only GET, step by step as HandleApi.general."""
    try:
        ident = Identifier.parse(handle, case_sensitive=case_sensitive)
    except InvalidIdentifier as exc:
        return codec.error_body(ResponseCode.INVALID_HANDLE, handle.decode("utf-8", "replace"),
                                exc.message)  # fmt: skip
    resolver = Resolver([AuthorityHandler(store)])
    result = asyncio.run(resolver.resolve(ResolveRequest(ident, types, indexes, True)))
    if result.outcome is Outcome.OK:
        return codec.resolution_body(ident.text, result.values)
    return codec.error_body(RC_FOR[result.outcome], ident.text, result.message,
                            empty_values=result.outcome is Outcome.VALUES_NOT_FOUND)  # fmt: skip


def twin_answers(twin, store, handle: bytes, types, indexes, case_sensitive=False):
    """The twin's answer for both argument shapes the server uses (None = no query string)."""
    tb = tuple(t.encode("utf-8") for t in types)
    with store.read() as txn:
        out = [twin.http_resolve(handle, tb, tuple(indexes), True, txn, store.records_db,
                                 store.prefixes_db, case_sensitive)]  # fmt: skip
        if not types and not indexes:
            out.append(twin.http_resolve(handle, None, None, True, txn, store.records_db,
                                         store.prefixes_db, case_sensitive))  # fmt: skip
    assert all(o == out[0] for o in out), "None and () filters must answer alike"
    return out[0]


def check_parity(store, cython_twin, handle, types, indexes, case_sensitive=False):
    """Assert the parity rules; return (twin answer, general body)."""
    py = twin_answers(python_twin, store, handle, types, indexes, case_sensitive)
    if cython_twin is not None:
        cy = twin_answers(cython_twin, store, handle, types, indexes, case_sensitive)
        assert cy == py, "the Cython and pure twins disagree"
    general = general_body(store, handle, types, indexes, case_sensitive)
    if py is not None:
        assert py == general, "the hot path and the general path disagree"
    return py, general


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(parity_stores, cython_twin_or_none, case):
    store = parity_stores[case.case_sensitive]
    fast, general = check_parity(store, cython_twin_or_none, case.handle, case.types,
                                 case.indexes, case.case_sensitive)  # fmt: skip
    body = orjson.loads(general)
    echo = case.handle.decode("utf-8", "replace")
    if case.expect == "declined":
        assert fast is None
        assert body["responseCode"] in (ResponseCode.INVALID_HANDLE, ResponseCode.SERVER_NOT_RESP)
        return
    assert fast is not None, "a held prefix's plain resolution must be answered by the hot path"
    if case.expect == "hit":
        assert case.want, "a hit case must expect values"
        assert list(body) == ["responseCode", "handle", "values"]
        assert body["responseCode"] == 1 and body["handle"] == echo
        assert [x["index"] for x in body["values"]] == list(case.want)
    elif case.expect == "miss":
        assert body == {"responseCode": 100, "handle": echo}
    else:
        assert case.expect == "empty"
        assert general == orjson.dumps({"responseCode": 200, "values": [], "handle": echo})


def test_cases_cover_every_kind():
    kinds = {c.expect for c in CASES}
    assert kinds == {"hit", "miss", "empty", "declined"}
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [c for c in CASES if c.id in ("typed-all", "missing", "na",
                                                               "foreign", "invalid-utf8")],
                         ids=lambda c: c.id)  # fmt: skip
def test_general_path_matches_the_server(parity_stores, case):
    """Guard against drift: our general_body is what HandleApi.general really answers."""
    from resolver.servers.http_app import HandleApi

    store = parity_stores[case.case_sensitive]
    api = HandleApi(store, Resolver([AuthorityHandler(store)]),
                    Config(case_sensitive=case.case_sensitive))  # fmt: skip
    resp = asyncio.run(api.general(case.handle, case.types, case.indexes, True, None, False))
    assert resp.body == general_body(store, case.handle, case.types, case.indexes,
                                     case.case_sensitive)  # fmt: skip


def test_non_public_requests_are_declined(parity_stores, cython_twin_or_none):
    store = parity_stores[False]
    twins = [python_twin] + ([cython_twin_or_none] if cython_twin_or_none else [])
    with store.read() as txn:
        for twin in twins:
            assert twin.http_resolve(b"88.118.8/typed", None, None, False, txn, store.records_db,
                                     store.prefixes_db) is None  # fmt: skip


@pytest.mark.parametrize(
    "name, mutate",
    [
        ("version", lambda b: b"\x02" + b[1:]),
        ("truncated", lambda b: b[:-1]),
        ("extended", lambda b: b + b"\0"),
        ("header-only", lambda b: b[:12]),
        ("empty", lambda b: b""),
        ("directory-out-of-bounds", lambda b: b[:12] + b"\0\0\0\4\xff\xff\xff\xff" + b[20:]),
    ],
)
def test_corrupt_records_are_declined(tmp_path, cython_twin_or_none, name, mutate):
    from resolver.store.lmdb_store import LmdbStore

    store = LmdbStore(tmp_path / "s", map_size=8 << 20)
    try:
        good = pack(Record(vectors.MIXED))  # not all public: the directory is read
        store.write([Change(b"88", pack(Record()), prefix=True), Change(b"88/X", mutate(good))])
        for types, indexes in (((), ()), (("URL",), ()), ((), (1,))):
            fast, general = check_parity(store, cython_twin_or_none, b"88/x", types, indexes)
            assert fast is None
            assert orjson.loads(general)["responseCode"] == ResponseCode.ERROR
    finally:
        store.close()


# -- generated cases -----------------------------------------------------------------------

_TYPE_POOL = ["URL", "url", "EMAIL", "PRODUCT", "PRODUCT.BATCH", "product.cost", "PRODUCTX",
              "HS_ADMIN", "DESC", "类型", 'Q"T', "A.B.C"]  # fmt: skip
_FILTER_POOL = _TYPE_POOL + ["PRODUCT.", "product.", "A.", "A.B.", "NOPE", "", ".", "Url"]

_suffix = st.text(
    alphabet=st.one_of(
        st.sampled_from(list('aZz09-_./"\\ ~%+')),
        st.characters(min_codepoint=0xA0, max_codepoint=0x10FFFF,
                      blacklist_categories=("Cs",)),  # fmt: skip
    ),
    min_size=1,
    max_size=24,
)


@st.composite
def _record(draw):
    n = draw(st.integers(1, 12))
    indexes = draw(st.lists(st.integers(1, 2**31 - 1), min_size=n, max_size=n, unique=True))
    out = []
    for i in indexes:
        t = draw(st.one_of(st.sampled_from(_TYPE_POOL), st.text(min_size=1, max_size=8)))
        data = draw(st.one_of(
            st.binary(max_size=48),
            st.text(max_size=32).map(str.encode),
            # multi-KB data, cheap to generate: a repeated seed
            st.tuples(st.binary(min_size=1, max_size=8), st.integers(150, 400)).map(
                lambda x: x[0] * x[1]),
        ))  # fmt: skip
        perms = draw(st.sampled_from([0x0E, 0x0E, 0x0F, 0x02, 0x0C, 0x08, 0x00]))
        out.append(vectors.v(i, t, data, perms, ttl=draw(st.integers(0, 2**31 - 1)),
                             timestamp=draw(st.integers(1, 2**31 - 1))))  # fmt: skip
    return Record(out)


def _oracle(rec: Record, types, indexes) -> list[int]:
    """Independent statement of selection: public, then index-or-type union (ASCII-CI)."""

    def fold(s: str) -> str:
        return "".join(c.upper() if "a" <= c <= "z" else c for c in s)

    def type_ok(vt: str) -> bool:
        for t in types:
            if t.endswith("."):
                if fold(vt).startswith(fold(t)) or fold(vt) == fold(t[:-1]):
                    return True
            elif fold(vt) == fold(t):
                return True
        return False

    return [x.index for x in rec if x.public_read
            and (not (types or indexes) or x.index in indexes or type_ok(x.type))]  # fmt: skip


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(suffix=_suffix, rec=_record(), data=st.data())
def test_generated(scratch_store, cython_twin_or_none, suffix, rec, data):
    handle = "88.118.8/" + suffix
    raw = handle.encode("utf-8")
    assume(native.normalize_key(raw) is not None)
    key = Identifier.parse(raw).key
    scratch_store.write([Change(key, pack(rec))])
    types = tuple(data.draw(st.lists(st.sampled_from(_FILTER_POOL + [x.type for x in rec]),
                                     max_size=3), label="types"))  # fmt: skip
    indexes = tuple(data.draw(st.lists(st.sampled_from([x.index for x in rec] + [0, 7, -1]),
                                       max_size=3), label="indexes"))  # fmt: skip
    # the exact handle and an ASCII-case variant of it resolve to the same record
    variant = "".join(c.swapcase() if c.isascii() else c for c in handle)
    for h in (handle, variant):
        hb = h.encode("utf-8")
        fast, general = check_parity(scratch_store, cython_twin_or_none, hb, types, indexes)
        assert fast is not None
        want = _oracle(rec, types, indexes)
        body = orjson.loads(general)
        if want:
            assert body["responseCode"] == 1 and body["handle"] == h
            assert [x["index"] for x in body["values"]] == want
        else:
            assert body == {"responseCode": 200, "values": [], "handle": h}
    # and a handle next to it that is not stored is an authoritative miss
    missing = (handle + "#missing").encode()  # '#' is not in the generated suffixes
    fast, general = check_parity(scratch_store, cython_twin_or_none, missing, types, indexes)
    assert orjson.loads(general)["responseCode"] == 100 and fast is not None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.text(alphabet=st.sampled_from(list("0189.aZ")), min_size=1, max_size=12),
       suffix=_suffix)  # fmt: skip
def test_generated_foreign_or_invalid(parity_stores, cython_twin_or_none, prefix, suffix):
    handle = f"{prefix}/{suffix}".encode()
    store = parity_stores[False]
    ident = None
    try:
        ident = Identifier.parse(handle)
    except InvalidIdentifier:
        pass
    fast, general = check_parity(store, cython_twin_or_none, handle, (), ())
    rc = orjson.loads(general)["responseCode"]
    if ident is None:
        assert fast is None and rc == ResponseCode.INVALID_HANDLE
    elif store.get_prefix(ident.prefix_key) is None and not ident.is_prefix_handle:
        assert fast is None and rc == ResponseCode.SERVER_NOT_RESP


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=40))
def test_generated_raw_bytes(parity_stores, cython_twin_or_none, raw):
    for handle in (raw, b"88.118.8/" + raw, b"0.NA/" + raw):
        check_parity(parity_stores[False], cython_twin_or_none, handle, (), ())


# -- the smaller functions -------------------------------------------------------------------


def _twins(cython_twin):
    return [python_twin] + ([cython_twin] if cython_twin is not None else [])


_EDGE_INPUTS = [
    b"", b"/", b"a", b"a/", b"/a", b"0.NA/", b"0.NA", b"0.na/x", b"0.NAX/y", b"0.N/y",
    b"1/" + b"x" * 2046, b"1/" + b"x" * 2047, b"a" * 255, b"a" * 256, b"a" * 255 + b"/b",
    b"a" * 256 + b"/b", "ß/é".encode(), b"\xc2\xa0/\xc2\x9f", b"\xc2\x80", b"\xc2\x9f",
]  # fmt: skip


def test_normalize_key_exhaustive_short(cython_twin_or_none):
    if cython_twin_or_none is None:
        pytest.skip("only one twin to compare (IDNODE_NO_EXTENSIONS and no extension)")
    py, cy = python_twin.normalize_key, cython_twin_or_none.normalize_key
    inputs = list(_EDGE_INPUTS)
    inputs += [bytes([a]) for a in range(256)]
    inputs += [b"a/" + bytes([a, b]) for a in range(256) for b in range(256)]
    boundaries = [0x00, 0x2F, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF]
    for lead in range(0xC0, 0x100):
        for b1 in boundaries:
            for b2 in boundaries:
                inputs.append(b"a/" + bytes([lead, b1, b2]))
                inputs.append(b"a/" + bytes([lead, b1, b2]) + b"z")
                for b3 in (0x7F, 0x80, 0xBF, 0xC0):
                    inputs.append(b"a/" + bytes([lead, b1, b2, b3]))
    for raw in inputs:
        for cs in (False, True):
            assert cy(raw, cs) == py(raw, cs), (raw, cs)
    # the pure twin is the strict UTF-8 codec plus the control rule
    for raw in inputs:
        if py(raw) is not None:
            raw.decode("utf-8")


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.binary(max_size=64),
                     st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")),
                     st.text(max_size=20).map(lambda s: ("88.118.8/" + s).encode("utf-8",
                                                                                "surrogatepass"))),
       cs=st.booleans())  # fmt: skip
def test_normalize_key_parity(cython_twin_or_none, raw, cs):
    keys = {t.normalize_key(raw, cs) for t in _twins(cython_twin_or_none)}
    assert len(keys) == 1
    key = keys.pop()
    assert key == native.normalize_key(raw, cs)
    if key is not None:
        assert Identifier.parse(raw, case_sensitive=cs).key == key


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=64))
def test_json_escape_parity(cython_twin_or_none, raw):
    outs = {t.json_escape(raw) for t in _twins(cython_twin_or_none)}
    assert len(outs) == 1


@settings(max_examples=150, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40))
def test_json_escape_is_orjsons_escaping_of_valid_handles(cython_twin_or_none, text):
    raw = ("88/" + text).encode()
    assume(python_twin.normalize_key(raw) is not None)
    for t in _twins(cython_twin_or_none):
        assert b'"' + t.json_escape(raw) + b'"' == orjson.dumps(raw.decode())


def test_json_escape_examples(cython_twin_or_none):
    for t in _twins(cython_twin_or_none):
        assert t.json_escape(b"plain") == b"plain"
        assert t.json_escape(b'a"b') == b'a\\"b'
        assert t.json_escape(b"a\\b") == b"a\\\\b"
        assert t.json_escape(b'\\"') == b'\\\\\\"'
        assert t.json_escape("设备".encode()) == "设备".encode()


def test_constants_match_the_resolver():
    assert C.HEADER_SIZE == record.HEADER.size
    assert C.DIR_SIZE == record.DIRENTRY.size
    assert C.LAYOUT_VERSION == record.LAYOUT_VERSION
    assert C.ALL_PUBLIC == record.FLAG_ALL_PUBLIC
    assert C.VALUE_PERMS == values.VALUE_PERMS_OFFSET
    assert C.VALUE_TYPE == values.VALUE_TYPE_OFFSET
    assert C.VALUE_MIN == values.MIN_VALUE_LENGTH
    assert C.PERM_PUBLIC_READ == values.PERM_PUBLIC_READ
    assert C.MAX_HANDLE == identifier.MAX_HANDLE
    assert C.MAX_PREFIX == identifier.MAX_PREFIX
    assert C.NA_PREFIX == identifier.NA_PREFIX.encode()
    assert C.PROTOCOL_MAJOR == handle_constants.OUR_MAJOR
    assert C.PROTOCOL_MINOR == handle_constants.OUR_MINOR
    assert C.FLAG_REQUEST_DIGEST == handle_constants.FLAG_REQUEST_DIGEST
    assert C.FLAGS_NOT_FAST == handle_constants.FLAG_CERTIFY | handle_constants.FLAG_ENCRYPT
    # the pure twin's message offsets
    assert python_twin._ENV == handle_constants.ENVELOPE_SIZE
    assert python_twin._HEADER_LEN == handle_constants.HEADER_SIZE
    assert python_twin._HDR_END == handle_constants.ENVELOPE_SIZE + handle_constants.HEADER_SIZE


def test_cython_constants_match(cython_twin_or_none):
    """The C constants compiled into the Cython twin are the ones native.constants states."""
    if cython_twin_or_none is None:
        assert native.NO_EXTENSIONS  # not built: allowed only when extensions are off
        return
    compiled = dict(cython_twin_or_none._CONSTANTS)
    assert compiled.pop("ENV") == handle_constants.ENVELOPE_SIZE
    assert compiled.pop("HDR_END") == handle_constants.ENVELOPE_SIZE + handle_constants.HEADER_SIZE
    assert compiled == {name: getattr(C, name) for name in compiled}
    assert set(compiled) == {n for n in vars(C) if n.isupper() and n != "NA_PREFIX"}


def test_value_offsets_are_where_the_encoding_puts_them():
    v = values.HandleValue(0x01020304, "TYPE", b"", permissions=0x0B)
    enc = values.encode_value(v)
    assert enc[C.VALUE_PERMS] == 0x0B
    assert enc[C.VALUE_TYPE : C.VALUE_TYPE + 4] == b"\0\0\0\4"
    assert enc[C.VALUE_TYPE + 4 : C.VALUE_TYPE + 8] == b"TYPE"
    assert len(values.encode_value(dataclasses.replace(v, type=""))) == C.VALUE_MIN
