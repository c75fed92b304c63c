"""Record data of DNS answers (``resolver.protocols.dns.answers``, issue 6 §2).

Exact RDATA bytes for a small table; dnspython reads every RDATA back to the expected fields
(and its presentation form round-trips to the same bytes, as a zone file would); TTL rules;
TXT splitting at 255 bytes without cutting a UTF-8 character; which data counts as a URI;
NAPTR regexp escaping (RFC 3402 §3.2), read back with an independent unescaper; and a property
test over arbitrary values: never raises, never serves a non-public value, every TXT string
≤ 255 bytes and UTF-8 on its own, everything parses with dnspython.
"""

from __future__ import annotations

import base64
from urllib.parse import quote

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.errors import InvalidValue, Outcome
from resolver.protocols.dns.answers import (
    ANY, MAX_RDATA, NAPTR, RR, TXT, URI, parse_txt, rrsets_for, txt_text,
)  # fmt: skip
from resolver.values import HandleValue

PUBLIC = 0x0E  # admin read/write + public read
PRIVATE = 0x0C  # admin read/write only


def V(index, vtype, data, **kw) -> HandleValue:
    return HandleValue(index, vtype, data.encode() if isinstance(data, str) else data, **kw)


def parse(rr: RR):
    """dnspython's reading of the RDATA; also checks text form → wire gives the same bytes."""
    rd = dns.rdata.from_wire(dns.rdataclass.IN, rr.rtype, rr.rdata, 0, len(rr.rdata))
    again = dns.rdata.from_text(dns.rdataclass.IN, rr.rtype, rd.to_text())
    assert again.to_wire() == rr.rdata
    return rd


def naptr_target(regexp: bytes) -> bytes:
    """RFC 3402 §3.2 read of ``<delim>ere<delim>repl<delim>`` with ``ere`` = ``^.*$``."""
    delim = regexp[:1]
    assert delim == b"!" and regexp.endswith(delim)
    parts, cur, i, body = [], bytearray(), 0, regexp[1:]
    while i < len(body):
        c = body[i : i + 1]
        if c == b"\\":
            nxt = body[i + 1 : i + 2]
            assert nxt in (b"\\", delim), "only the escape and the delimiter are escaped here"
            cur += nxt
            i += 2
            continue
        if c == delim:
            parts.append(bytes(cur))
            cur = bytearray()
        else:
            cur += c
        i += 1
    assert not cur and len(parts) == 2 and parts[0] == b"^.*$"
    return parts[1]


# ---------------------------------------------------------------------------------------------
# exact bytes

EXACT = [
    (V(1, "URL", "https://x.test/"), TXT, b"\x25type=URL;index=1;data=https://x.test/"),
    (V(2, "EMAIL", "a;b=c"), TXT, b"\x1dtype=EMAIL;index=2;data=a;b=c"),
    (V(3, "BIN", b"\x00\xff"), TXT, b"\x1etype=BIN;index=3;data.b64=AP8="),
    (V(4, "DESC", "tab\there"), TXT, b"\x27type=DESC;index=4;data.b64=dGFiCWhlcmU="),
    (V(5, "a;b", "x"), TXT, b"\x1ctype.b64=YTti;index=5;data=x"),
    (V(6, "URL", "https://x.test/"), URI, b"\x00\x01\x00\x01https://x.test/"),
    (V(7, "url", "urn:isbn:1"), URI, b"\x00\x01\x00\x01urn:isbn:1"),
    (V(8, "URL", "https://x.test/"), NAPTR,
     b"\x00\x64\x00\x0a\x01U\x03URL\x16!^.*$!https://x.test/!\x00"),
    (V(9, "URL", "https://x.test/a!b"), NAPTR,
     b"\x00\x64\x00\x0a\x01U\x03URL\x1a!^.*$!https://x.test/a\\!b!\x00"),
    (V(10, "URL", "https://x.test/"), ANY, b"\x26type=URL;index=10;data=https://x.test/"),
]  # fmt: skip


@pytest.mark.parametrize(("value", "qtype", "rdata"), EXACT)
def test_exact_rdata(value, qtype, rdata):
    rrs = rrsets_for([value], qtype, now=0)
    expected_type = TXT if qtype == ANY else qtype
    assert rrs == [RR(expected_type, 86400, rdata)]
    parse(rrs[0])


def test_dnspython_reads_the_fields():
    values = [
        V(1, "URL", "https://a.test/x?q=1&r=2"),
        V(2, "EMAIL", "ops@a.test"),
        V(3, "URL", "https://b.test/it!s"),
        V(4, "URL", "https://c.test/", permissions=PRIVATE),
    ]
    txt = rrsets_for(values, TXT, now=0)
    assert [b"".join(parse(rr).strings) for rr in txt] == [
        b"type=URL;index=1;data=https://a.test/x?q=1&r=2",
        b"type=EMAIL;index=2;data=ops@a.test",
        b"type=URL;index=3;data=https://b.test/it!s",
    ]
    uri = [parse(rr) for rr in rrsets_for(values, URI, now=0)]
    assert [(u.priority, u.weight, u.target) for u in uri] == [
        (1, 1, b"https://a.test/x?q=1&r=2"),
        (2, 1, b"https://b.test/it!s"),
    ]
    naptr = [parse(rr) for rr in rrsets_for(values, NAPTR, now=0)]
    assert [(n.order, n.preference, n.flags, n.service) for n in naptr] == [
        (100, 10, b"U", b"URL"),
        (101, 10, b"U", b"URL"),
    ]
    assert all(n.replacement == dns.name.root for n in naptr)
    assert [naptr_target(n.regexp) for n in naptr] == [
        b"https://a.test/x?q=1&r=2",
        b"https://b.test/it!s",
    ]


def test_only_public_values_and_known_types():
    values = [V(1, "URL", "https://a.test/", permissions=PRIVATE),
              V(2, "HS_SECKEY", "secret", permissions=0x08),
              V(3, "EMAIL", "x@y.test", permissions=0x01)]  # fmt: skip
    for qtype in (TXT, URI, NAPTR, ANY):
        assert rrsets_for(values, qtype, now=0) == []
    shown = [V(1, "URL", "https://a.test/")]
    for qtype in (1, 2, 6, 15, 28, 33, 99, 252, 257, 65535):  # A NS SOA MX AAAA SRV SPF AXFR …
        assert rrsets_for(shown, qtype, now=0) == []


def test_any_is_the_txt_set():
    values = [V(1, "URL", "https://a.test/"), V(2, "EMAIL", "e@a.test")]
    assert rrsets_for(values, ANY, now=5) == rrsets_for(values, TXT, now=5)
    assert {rr.rtype for rr in rrsets_for(values, ANY, now=5)} == {TXT}


def test_values_keep_caller_order():
    values = [V(9, "EMAIL", "z"), V(2, "EMAIL", "a"), V(5, "EMAIL", "m")]
    got = [parse_txt(rr.rdata[1:])[0] for rr in rrsets_for(values, TXT, now=0)]
    assert got == [9, 2, 5]


# ---------------------------------------------------------------------------------------------
# TTL


@pytest.mark.parametrize(
    ("ttl", "ttl_type", "now", "expected"),
    [
        (3600, 0, 10**9, 3600),
        (0, 0, 0, 0),
        (-5, 0, 0, 0),
        (2**40, 0, 0, 2**31 - 1),
        (1_000_600, 1, 1_000_000, 600),  # absolute: expiry − now
        (1_000_000, 1, 1_000_000, 0),
        (999_000, 1, 1_000_000, 0),  # already expired
        (2**40, 1, 0, 2**31 - 1),
        (300, 7, 10**9, 300),  # unknown ttl type: read as relative
    ],
)
def test_ttl(ttl, ttl_type, now, expected):
    v = V(1, "URL", "https://a.test/", ttl=ttl, ttl_type=ttl_type)
    for qtype in (TXT, URI, NAPTR):
        assert [rr.ttl for rr in rrsets_for([v], qtype, now=now)] == [expected]


def test_one_ttl_per_rrset_the_minimum():
    values = [V(1, "URL", "https://a.test/", ttl=900),
              V(2, "URL", "https://b.test/", ttl=100_300, ttl_type=1),
              V(3, "EMAIL", "e@a.test", ttl=60),
              V(4, "URL", "https://c.test/", ttl=1, permissions=PRIVATE)]  # fmt: skip
    assert [rr.ttl for rr in rrsets_for(values, TXT, now=100_000)] == [60, 60, 60]
    assert [rr.ttl for rr in rrsets_for(values, URI, now=100_000)] == [300, 300]
    assert [rr.ttl for rr in rrsets_for(values, NAPTR, now=100_000)] == [300, 300]


# ---------------------------------------------------------------------------------------------
# TXT form and splitting


def strings_of(rdata: bytes) -> list[bytes]:
    out, i = [], 0
    while i < len(rdata):
        n = rdata[i]
        out.append(rdata[i + 1 : i + 1 + n])
        i += 1 + n
    assert i == len(rdata)
    return out


@pytest.mark.parametrize("extra", [0, 1, 254, 255, 256, 600])
def test_txt_split_ascii(extra):
    head = b"type=X;index=1;data="
    data = b"d" * (255 - len(head) + extra)
    (rr,) = rrsets_for([V(1, "X", data)], TXT, now=0)
    parts = strings_of(rr.rdata)
    assert b"".join(parts) == head + data
    assert all(len(p) == 255 for p in parts[:-1]) and 0 < len(parts[-1]) <= 255
    assert len(parts) == -(-(len(head) + len(data)) // 255)
    assert [bytes(s) for s in parse(rr).strings] == parts


def test_txt_split_never_cuts_a_character():
    for shift in range(4):
        data = ("a" * shift + "汉字𝄞é" * 200).encode()
        (rr,) = rrsets_for([V(1, "T", data)], TXT, now=0)
        parts = strings_of(rr.rdata)
        assert all(0 < len(p) <= 255 for p in parts)
        for p in parts:
            p.decode("utf-8")  # each string is UTF-8 on its own
        assert parse_txt(b"".join(parts)) == (1, "T", data)
        assert any(len(p) < 255 for p in parts[:-1])  # a cut really moved


def test_txt_text_and_parse_round_trip():
    cases = [V(1, "URL", "https://a.test/;x=1"), V(2, "t=y", "日本語 text"),
             V(3, "a;b\n", b"\x00\x01"), V(4, "E", ""), V(5, "E", "\x85"),  # C1 control
             V(2147483647, "HS_ADMIN", b"\x0f\xff")]  # fmt: skip
    for v in cases:
        assert parse_txt(txt_text(v).encode()) == (v.index, v.type, v.data)
    assert txt_text(cases[4]).endswith("data.b64=woU=")
    assert txt_text(cases[5]).endswith("data.b64=D/8=")
    assert txt_text(cases[2]).startswith("type.b64=" + base64.b64encode(b"a;b\n").decode())


@pytest.mark.parametrize(
    "text",
    [b"", b"type=URL", b"type=URL;index=1", b"kind=URL;index=1;data=x", b"type=U;index=;data=x",
     b"type=U;index=-1;data=x", b"type=U;idx=1;data=x", b"type=U;index=1;body=x",
     b"type=U;index=1;data.b64=@@", b"type.b64=//8=;index=1;data=x", b"\xff;index=1;data=x",
     b"type=U;index=\xd9\xa1;data=x"],
)  # fmt: skip
def test_parse_txt_rejects(text):
    with pytest.raises(InvalidValue) as e:
        parse_txt(text)
    assert e.value.outcome is Outcome.INVALID_VALUE


def test_oversized_values_are_skipped():
    fits = V(1, "D", b"a" * 64_000)
    too_big = V(2, "D", b"a" * 65_000)  # text + length bytes > MAX_RDATA
    binary = V(3, "D", b"\xff" * 60_000)  # base64 grows it to 80 000
    rrs = rrsets_for([fits, too_big, binary], TXT, now=0)
    assert len(rrs) == 1 and MAX_RDATA >= len(rrs[0].rdata) > 64_000
    assert b"".join(parse(rrs[0]).strings) == b"type=D;index=1;data=" + b"a" * 64_000


# ---------------------------------------------------------------------------------------------
# what is a URI


@pytest.mark.parametrize(
    ("data", "target"),
    [
        ("https://a.test/p?q=1#f", b"https://a.test/p?q=1#f"),
        ("urn:isbn:0451450523", b"urn:isbn:0451450523"),
        ("mailto:ops@a.test", b"mailto:ops@a.test"),
        ("HTTP://A.TEST/%7Euser", b"HTTP://A.TEST/%7Euser"),
        ("https://[2001:db8::1]:8080/", b"https://[2001:db8::1]:8080/"),
        ("https://a.test/ü", b"https://a.test/%C3%BC"),  # RFC 3987 §3.1
        ("x+y.z-w:rest", b"x+y.z-w:rest"),
    ],
)
def test_uri_accepted(data, target):
    (rr,) = rrsets_for([V(1, "URL", data)], URI, now=0)
    assert parse(rr).target == target
    (nr,) = rrsets_for([V(1, "URL", data)], NAPTR, now=0)
    assert naptr_target(parse(nr).regexp) == target


@pytest.mark.parametrize(
    "data",
    ["", "/relative/path", "a.test/x", "http:", "1http://a.test/", "http://a b/",
     "https://a.test/\n", "https://a.test/%zz", "https://a.test/%", 'https://a.test/"',
     "https://a.test/<x>", "https://a.test/a\\b", "https://a.test/{x}", "ht tp://a.test/",
     b"https://a.test/\xff", "\u200bhttps://a.test/"],
)  # fmt: skip
def test_not_a_uri(data):
    v = V(1, "URL", data)
    assert rrsets_for([v], URI, now=0) == []
    assert rrsets_for([v], NAPTR, now=0) == []
    assert len(rrsets_for([v], TXT, now=0)) == 1  # still served as text


def test_only_url_typed_values_give_uri_and_naptr():
    values = [V(1, "EMAIL", "mailto:a@b.test"), V(2, "URL.ALT", "https://a.test/"),
              V(3, "uRl", "https://b.test/"), V(4, "ＵＲＬ", "https://c.test/")]  # fmt: skip
    assert [parse(rr).target for rr in rrsets_for(values, URI, now=0)] == [b"https://b.test/"]
    assert len(rrsets_for(values, NAPTR, now=0)) == 1


def test_naptr_skips_urls_too_long_for_a_regexp():
    longest = "https://a.test/" + "p" * (255 - 7 - len("https://a.test/"))
    values = [V(1, "URL", "https://a.test/" + "x" * 300), V(2, "URL", longest + "!"),
              V(3, "URL", longest), V(4, "URL", "https://b.test/")]  # fmt: skip
    assert len(rrsets_for(values, URI, now=0)) == 4
    naptr = [parse(rr) for rr in rrsets_for(values, NAPTR, now=0)]
    assert [n.order for n in naptr] == [100, 101]  # positions stay contiguous
    assert len(naptr[0].regexp) == 255
    assert [naptr_target(n.regexp) for n in naptr] == [longest.encode(), b"https://b.test/"]


# ---------------------------------------------------------------------------------------------
# property: arbitrary values

URLISH = st.builds(
    lambda scheme, rest: f"{scheme}:{rest}",
    st.sampled_from(["https", "http", "urn", "ftp", "x-y+z.w", "1bad", ""]),
    st.text(max_size=120),
)
DATA = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    URLISH.map(str.encode),
    st.builds(
        lambda n, c: c * n, st.integers(0, 65536), st.sampled_from([b"a", b"\xff", "é".encode()])
    ),
)  # fmt: skip
VALUES = st.lists(
    st.builds(
        HandleValue,
        index=st.integers(1, 2**31 - 1),
        type=st.one_of(st.sampled_from(["URL", "url", "EMAIL", "HS_ADMIN"]), st.text(max_size=20)),
        data=DATA,
        ttl=st.integers(-(2**31), 2**31 - 1),
        ttl_type=st.sampled_from([0, 1, 2]),
        permissions=st.integers(0, 15),
    ),
    max_size=6,
)


@settings(max_examples=100, deadline=None)
@given(values=VALUES, now=st.integers(0, 2**31 - 1))
def test_arbitrary_values(values, now):
    public = [v for v in values if v.public_read]
    for qtype in (TXT, URI, NAPTR, ANY):
        rrs = rrsets_for(values, qtype, now=now)
        assert len({rr.ttl for rr in rrs}) <= 1
        for rr in rrs:
            assert rr.rtype == (TXT if qtype == ANY else qtype)
            assert 0 <= rr.ttl <= 2**31 - 1 and len(rr.rdata) <= MAX_RDATA
        parsed = [parse(rr) for rr in rrs]
        if rr_type(qtype) == TXT:
            fields = []
            for rr, rd in zip(rrs, parsed):
                assert all(len(s) <= 255 for s in rd.strings)
                for s_ in rd.strings:
                    bytes(s_).decode("utf-8")  # never cut inside a character
                assert strings_of(rr.rdata) == [bytes(s) for s in rd.strings]
                fields.append(parse_txt(b"".join(rd.strings)))
            # served values are the public ones, in order; the only ones left out are huge
            it = iter(public)
            for f in fields:
                skipped = []
                for v in it:
                    if (v.index, v.type, v.data) == f:
                        break
                    skipped.append(v)
                else:
                    pytest.fail(f"served something not public, or out of order: {f[:2]}")
                assert all(len(v.data) > 40_000 for v in skipped)
        else:
            # targets are the public URL values' URIs, in order (non-ASCII percent-encoded)
            urls = iter([v.data for v in public if v.type.upper() == "URL"])
            for rd in parsed:
                t = rd.target if qtype == URI else naptr_target(rd.regexp)
                assert t.isascii() and b":" in t
                assert any(t == iri_to_uri(u) for u in urls), t


def iri_to_uri(data: bytes) -> bytes | None:
    try:
        return quote(data.decode("utf-8"), safe=ASCII).encode("ascii")
    except UnicodeDecodeError:
        return None


ASCII = "".join(map(chr, range(128)))


def rr_type(qtype: int) -> int:
    return TXT if qtype == ANY else qtype
