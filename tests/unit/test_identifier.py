"""Unit tests of the identifier rules: ``native.normalize_key`` (each twin) and ``identifier``.

The rules are those of handle.md §1: split at the first ``/``, a name without ``/`` is
``0.NA/<name>``, ASCII-only upper-casing for the storage key, UTF-8 only, length limits.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import native
from resolver.errors import InvalidIdentifier, Outcome
from resolver.identifier import MAX_HANDLE, MAX_PREFIX, Identifier, ancestry, explain_invalid

# -- normalize_key: the rule itself, on every available twin ---------------------------------


@pytest.mark.parametrize(
    "raw, key",
    [
        (b"88.118.8/SN-2026-0001", b"88.118.8/SN-2026-0001"),
        (b"88.118.8/sn-2026-0001", b"88.118.8/SN-2026-0001"),
        # split at the first '/': the suffix keeps its own slashes
        (b"88.118.8/a/b/c", b"88.118.8/A/B/C"),
        (b"88.118.8//", b"88.118.8//"),
        (b"88.118.8/a/", b"88.118.8/A/"),
        # a name without '/' is the prefix handle 0.NA/<name>
        (b"88.118.8", b"0.NA/88.118.8"),
        (b"test", b"0.NA/TEST"),
        (b"0.na/88.118.8", b"0.NA/88.118.8"),
        (b"0.NA/0.NA", b"0.NA/0.NA"),
        (b"abc.Def/xYz", b"ABC.DEF/XYZ"),
        # ASCII-only folding: non-ASCII bytes are left exactly as written
        ("88.118.8/straße-é-ÿ-ǆ".encode(), "88.118.8/STRAßE-é-ÿ-ǆ".encode()),
        ("中国.a/设备-b".encode(), "中国.A/设备-B".encode()),
        # U+00A0 (C2 A0) is the first non-control code point after C1
        ("a/x\u00a0y".encode(), "A/X\u00a0Y".encode()),
        ('88.118.8/q"b\\s'.encode(), '88.118.8/Q"B\\S'.encode()),
        (b"1/ ", b"1/ "),
    ],
)
def test_normalize_key_valid(twin, raw, key):
    assert twin.normalize_key(raw) == key
    assert twin.normalize_key(raw, False) == key


@pytest.mark.parametrize(
    "raw, key",
    [
        # only the prefix is folded ...
        (b"abc.def/MiXeD", b"ABC.DEF/MiXeD"),
        (b"88.118.8/sn-1/a/B", b"88.118.8/sn-1/a/B"),
        ("中国.a/设备-b".encode(), "中国.A/设备-b".encode()),
        # ... but all of a 0.NA/ handle, whose suffix is itself a prefix
        (b"0.na/abc.def", b"0.NA/ABC.DEF"),
        (b"0.NA/abc", b"0.NA/ABC"),
        (b"abc.def", b"0.NA/ABC.DEF"),
    ],
)
def test_normalize_key_case_sensitive(twin, raw, key):
    assert twin.normalize_key(raw, True) == key


def test_ascii_upper_differs_from_unicode_upper(twin):
    # str.upper() would turn ß into SS and é into É; the key must not.
    raw = "x/ßéıﬀ".encode()
    key = twin.normalize_key(raw)
    assert key == "X/ßéıﬀ".encode()
    assert key != raw.decode().upper().encode()


def _handle_of_len(n: int, prefix: bytes = b"1") -> bytes:
    return prefix + b"/" + b"s" * (n - len(prefix) - 1)


def test_handle_length_limit(twin):
    assert MAX_HANDLE == 2048
    assert twin.normalize_key(_handle_of_len(2048)) == _handle_of_len(2048).upper()
    assert twin.normalize_key(_handle_of_len(2049)) is None
    # the limit counts UTF-8 bytes, not characters
    two_byte = b"1/" + "é".encode() * 1023  # 2 + 2046 bytes
    assert len(two_byte) == 2048
    assert twin.normalize_key(two_byte) == two_byte
    assert twin.normalize_key(two_byte + b"x") is None


def test_prefix_length_limit(twin):
    assert MAX_PREFIX == 255
    p255 = b"a." * 127 + b"b"
    assert len(p255) == 255
    assert twin.normalize_key(p255 + b"/x") == p255.upper() + b"/X"
    assert twin.normalize_key(p255 + b"b/x") is None
    # a slash-less name is a prefix: the same limit applies to it
    assert twin.normalize_key(p255) == b"0.NA/" + p255.upper()
    assert twin.normalize_key(p255 + b"b") is None
    # ... but not to the suffix of a 0.NA/ handle, which is only bound by the handle limit
    assert twin.normalize_key(b"0.NA/" + p255 + b"b") == b"0.NA/" + p255.upper() + b"B"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"/",
        b"/x",
        b"88.118.8/",
        b".a/x",
        b"a./x",
        b"a..b/x",
        b".",
        b"..",
        b"a..b",
        b".a",
        b"a.",
        b"./x",
    ],
)
def test_empty_parts_are_invalid(twin, raw):
    assert twin.normalize_key(raw) is None
    assert twin.normalize_key(raw, True) is None


@pytest.mark.parametrize("c", [*range(0x20), 0x7F])
@pytest.mark.parametrize("where", ["prefix", "suffix", "name"])
def test_ascii_controls_are_invalid(twin, c, where):
    ch = bytes([c])
    raw = {"prefix": b"88" + ch + b"/x", "suffix": b"88/x" + ch + b"y", "name": b"88" + ch}[where]
    assert twin.normalize_key(raw) is None


@pytest.mark.parametrize("cp", range(0x80, 0xA0))
def test_c1_controls_are_invalid(twin, cp):
    assert twin.normalize_key(("88/x" + chr(cp)).encode()) is None
    assert twin.normalize_key((chr(cp) + "88/x").encode()) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"88/\xff",
        b"88/\xfe",
        b"88/\x80",  # lone continuation byte
        b"88/\xbf",
        b"88/\xc3",  # truncated 2-byte sequence at the end
        b"88/\xc3x",
        b"88/\xe4\xb8",  # truncated 3-byte sequence
        b"88/\xf0\x9f\x98",  # truncated 4-byte sequence
        b"88/\xed\xa0\x80",  # surrogate U+D800
        b"88/\xed\xbf\xbf",  # surrogate U+DFFF
        b"88/\xed\xa0\xbd\xed\xb8\x80",  # CESU-8 surrogate pair
        b"88/\xc0\xaf",  # overlong '/'
        b"88/\xc1\xbf",  # overlong
        b"88/\xe0\x80\xaf",  # overlong 3-byte
        b"88/\xe0\x9f\xbf",  # overlong 3-byte, upper edge
        b"88/\xf0\x80\x80\xaf",  # overlong 4-byte
        b"88/\xf0\x8f\xbf\xbf",
        b"88/\xf4\x90\x80\x80",  # > U+10FFFF
        b"88/\xf5\x80\x80\x80",
        b"88/\xf8\x88\x80\x80\x80",
        b"\xc0\xaf",
        b"\xff/x",
    ],
)
def test_invalid_utf8(twin, raw):
    assert twin.normalize_key(raw) is None


@pytest.mark.parametrize(
    "text",
    ["88/\u0800", "88/\ud7ff", "88/\ue000", "88/\uffff", "88/\U00010000", "88/\U0010ffff", "88/😀"],
)
def test_valid_utf8_edges(twin, text):
    raw = text.encode()
    assert twin.normalize_key(raw) == raw


def _oracle(raw: bytes, case_sensitive: bool = False) -> bytes | None:
    """An independent statement of the rule, written with str operations."""
    if not 0 < len(raw) <= 2048:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text):
        return None
    prefix, slash, suffix = text.partition("/")
    if not slash:
        prefix, suffix = "0.NA", text
        checked = text
    else:
        if not suffix:
            return None
        checked = prefix
    if len(checked.encode()) > 255 or "" in checked.split("."):
        return None

    def up(s: str) -> str:
        return "".join(c.upper() if "a" <= c <= "z" else c for c in s)

    prefix = up(prefix)
    if not case_sensitive or prefix == "0.NA":
        suffix = up(suffix)
    return (prefix + "/" + suffix).encode()


_handle_text = st.text(
    alphabet=st.sampled_from(list("aZ09./-_ é中\"\\\t\x7f\x85\u00a0😀")), max_size=12
)


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.binary(max_size=16), _handle_text.map(str.encode)), cs=st.booleans())
def test_normalize_key_matches_oracle(twin, raw, cs):
    assert twin.normalize_key(raw, cs) == _oracle(raw, cs)


# -- resolver.identifier ---------------------------------------------------------------------


def test_identifier_parse_fields():
    ident = Identifier.parse("88.118.8/sn-1/part")
    assert ident.text == "88.118.8/sn-1/part"
    assert ident.key == b"88.118.8/SN-1/PART"
    assert ident.prefix_key == b"88.118.8"
    assert ident.suffix_key == b"SN-1/PART"
    assert ident.prefix == "88.118.8"
    assert not ident.is_prefix_handle
    assert str(ident) == "88.118.8/sn-1/part"


def test_identifier_parse_bytes_and_str_agree():
    text = "88.118.8/设备/αβγ"
    assert Identifier.parse(text) == Identifier.parse(text.encode())


def test_identifier_prefix_handle():
    for raw in ("88.118.8", "0.NA/88.118.8", "0.na/88.118.8"):
        ident = Identifier.parse(raw)
        assert ident.is_prefix_handle
        assert ident.key == b"0.NA/88.118.8"
        assert ident.prefix_key == b"0.NA"
        assert ident.suffix_key == b"88.118.8"
        assert ident.text == raw  # the echo is what the client wrote
    assert Identifier.parse("88.118.8").prefix == "0.NA"
    assert Identifier.parse("0.na/88").prefix == "0.na"


def test_identifier_case_sensitive():
    ident = Identifier.parse("ab.c/MiXeD", case_sensitive=True)
    assert ident.key == b"AB.C/MiXeD"
    assert Identifier.parse("0.na/ab.c", case_sensitive=True).key == b"0.NA/AB.C"


@pytest.mark.parametrize(
    "raw",
    ["", "88/", "/x", "a..b/x", "88/\x00", "88/\ud800", b"88/\xff", b"88/\xc0\xaf", "x" * 2049],
)
def test_identifier_parse_invalid(raw):
    with pytest.raises(InvalidIdentifier) as info:
        Identifier.parse(raw)
    assert info.value.outcome is Outcome.INVALID_IDENTIFIER
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    assert info.value.message == explain_invalid(data)


def test_ancestry():
    assert ancestry(b"88.118.8") == [b"88.118.8", b"88.118", b"88"]
    assert ancestry(b"88") == [b"88"]
    assert ancestry(b"0.NA") == [b"0.NA", b"0"]
    assert ancestry(b"A.B.C.D") == [b"A.B.C.D", b"A.B.C", b"A.B", b"A"]


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"", "Empty handle invalid"),
        (b"1/" + b"x" * 2047, "Handle longer than 2048 bytes"),
        (b"88/\xff", "Handle is not valid UTF-8"),
        (b"88/\xed\xa0\x80", "Handle is not valid UTF-8"),
        (b"88/\xc0\xaf", "Handle is not valid UTF-8"),
        (b"88/a\tb", "Handle contains a control character"),
        (b"88/a\x7fb", "Handle contains a control character"),
        ("88/a\u0085b".encode(), "Handle contains a control character"),
        (b"88.118.8/", "Handle has an empty suffix"),
        (b"a" * 256 + b"/x", "Prefix longer than 255 bytes"),
        (b"a" * 256, "Prefix longer than 255 bytes"),
        (b"/x", "Prefix has an empty segment"),
        (b"a..b/x", "Prefix has an empty segment"),
        (b".a/x", "Prefix has an empty segment"),
        (b"a./x", "Prefix has an empty segment"),
        (b"a..b", "Prefix has an empty segment"),
    ],
)
def test_explain_invalid_messages(raw, message):
    assert native.normalize_key(raw) is None
    assert explain_invalid(raw) == message


_SPECIFIC = {
    "Empty handle invalid",
    "Handle longer than 2048 bytes",
    "Handle is not valid UTF-8",
    "Handle contains a control character",
    "Handle has an empty suffix",
    "Prefix longer than 255 bytes",
    "Prefix has an empty segment",
}


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.binary(max_size=12), _handle_text.map(str.encode)))
def test_every_refusal_has_a_specific_reason(raw):
    if native.normalize_key(raw) is None:
        assert explain_invalid(raw) in _SPECIFIC
    else:
        assert Identifier.parse(raw).key == native.normalize_key(raw)
