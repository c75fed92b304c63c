"""Record data of DNS answers: Handle values → TXT, URI and NAPTR RRsets (issue 6 §2).

Owns ``rrsets_for`` (values → ``RR`` list, RDATA in wire format), ``txt_text`` (one value's
TXT text) and ``parse_txt`` (its inverse).  Pure: no sockets, store or configuration; the
caller passes the record's values and the clock.  Owner names, message assembly, SOA/NS,
NXDOMAIN/NODATA and truncation belong to the server side, not here.

Contract
========

Which values.  Only values with public read (``HandleValue.public_read``) are ever used; every
other value is skipped silently.  The DNS face is anonymous — no query can authenticate — so
it serves exactly what an unauthenticated Handle resolution would.  (A value whose type is
not encodable as UTF-8 — a lone surrogate, which no value read off the wire has — is skipped
too.)  Values keep the order the caller passes them in (a record's index order); "position"
below is the 0-based position of a record among the records emitted for that RRset.

Which types (``qtype``):

==========  ======================================================================
TXT (16)    one RR per public value (any value type)
URI (256)   one RR per public ``URL`` value whose data is an absolute URI
NAPTR (35)  one RR per public ``URL`` value whose URI fits a NAPTR regexp
ANY (255)   RFC 8482 §4.1 minimal answer (a subset): the TXT RRset only — it alone carries every
            public value, so one RRset answers "everything" without a second lookup
other       ``[]`` (the caller answers NODATA)
==========  ======================================================================

``URL`` is matched ASCII-case-insensitively.  An ANY answer's RRs have ``rtype`` 16: callers
must use ``RR.rtype``, never the query type, when writing the RR header.

TTL.  Per value: relative (``ttl_type`` 0) → the ttl clamped to 0..2³¹−1 (RFC 2181 §8: a TTL
is an unsigned 31-bit number); absolute (``ttl_type`` 1: ttl is a UNIX expiry time) →
``max(0, ttl − now)``, clamped the same way; any other ``ttl_type`` is read as relative.  All
RRs of one RRset then carry the **minimum** of their values' TTLs: RFC 2181 §5.2 forbids
differing TTLs inside an RRset (resolvers merge them to the minimum anyway).

Size.  RDLENGTH is 16 bits, and the whole answer must fit a 65535-byte TCP message with
header, question (≤ 259 bytes), RR header and OPT RR; a record whose RDATA would exceed
``MAX_RDATA`` (65000 bytes) is skipped — it cannot be served whole over DNS.  Fitting the
RRset into a UDP payload (TC=1) is the transport's job.

TXT (RFC 1035 §3.3.14): the RDATA is one or more <character-string>s (a length byte + up to
255 bytes).  The text, in UTF-8, is::

    type=<TYPE>;index=<n>;data=<text>            e.g.  type=URL;index=1;data=https://x.test/

    type=<TYPE>       the value type as stored, when it has no ';' and no control character
    type.b64=<b64>    otherwise: RFC 4648 §4 base64 (padded) of the type's UTF-8 bytes
    index=<n>         decimal value index
    data=<text>       the data as is, when it is UTF-8 without a control character (Unicode
                      category Cc: C0, DEL, C1) — it may contain ';' and '=' freely
    data.b64=<b64>    otherwise: base64 of the data bytes

A reader concatenates the character-strings and splits the text on the first two ';' (the
data field is last and runs to the end); ``parse_txt`` does that.  Splitting into strings is
greedy at ≤ 255 bytes but never inside a UTF-8 sequence, so every string is valid UTF-8 on its
own as well; the cut carries no meaning, concatenation alone rebuilds the text.

URI (RFC 7553 §4.5): ``u16 priority, u16 weight, target`` — the target is the URI's bytes up
to the end of the RDATA (not length-prefixed).  Priority = 1 + position (clients try the
record's first URL first, as Handle clients do), weight = 1.  "Absolute URI": the data is
UTF-8 text of the form ``scheme ":" rest`` (RFC 3986 §3.1 scheme, ``rest`` non-empty); non-ASCII
characters are percent-encoded as UTF-8 (the RFC 3987 §3.1 IRI → URI mapping); then every
character must be an RFC 3986 unreserved, reserved or ``%XX`` character.  Anything else
(spaces, control characters, ``"<>\\^`{|}``, bare ``%``, a relative reference) is not a URI
and gets no URI or NAPTR record (it is still in the TXT set).

NAPTR (RFC 3403 §4.1), in the ONS 2.0 style (reference idis.md §2.3: order 0, preference 0,
flags "U", service naming the service, regexp ``!^.*$!<URL>!``, replacement "."), here::

    u16 order          100 + position
    u16 preference     10
    <character-string> flags        "U"    (terminal: the regexp yields a URI, RFC 3404 §4.3)
    <character-string> services     "URL"  (the Handle value type, upper-cased)
    <character-string> regexp       "!^.*$!" + URL with '\\' → '\\\\' and '!' → '\\!' + "!"
    <domain-name>      replacement  "." (root: b"\\x00"), since the regexp is used

The escaping is RFC 3402 §3.2's (the delimiter and the escape character are escaped inside the
replacement part; the URI character set above has no '\\', so only '!' occurs).  A URI whose
regexp would exceed 255 bytes cannot be expressed and gets no NAPTR record (it keeps its URI RR).
"""

from __future__ import annotations

import base64
import dataclasses
import re
import struct
import unicodedata
from collections.abc import Iterable
from urllib.parse import quote

from resolver.errors import InvalidValue
from resolver.values import TTL_ABSOLUTE, HandleValue

TXT = 16
NAPTR = 35
ANY = 255
URI = 256

#: Largest RDATA emitted: leaves room for header, question, RR header and OPT in 65535 bytes.
MAX_RDATA = 65000
MAX_TTL = 0x7FFFFFFF
URL_TYPE = "URL"
NAPTR_ORDER_BASE = 100
NAPTR_PREFERENCE = 10

_U16X2 = struct.Struct(">HH")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
# RFC 3986 §2: unreserved / reserved / pct-encoded, as whole characters.
_URI_CHARS = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+")


@dataclasses.dataclass(frozen=True, slots=True)
class RR:
    """One RR's type, TTL and RDATA (wire format); the owner name and class IN are the caller's."""

    rtype: int
    ttl: int
    rdata: bytes


def rrsets_for(values: Iterable[HandleValue], qtype: int, *, now: int) -> list[RR]:
    """The RRs answering ``qtype`` from a record's ``values`` (see the module contract)."""
    if qtype == ANY:
        qtype = TXT
    public = [v for v in values if v.public_read and _utf8_ok(v.type)]
    pairs: list[tuple[HandleValue, bytes]] = []
    if qtype == TXT:
        pairs = [(v, _txt_rdata(v)) for v in public]
    elif qtype in (URI, NAPTR):
        for v in public:
            uri = _uri_of(v) if _is_url(v) else None
            if uri is None:
                continue
            if qtype == URI:
                pairs.append((v, _U16X2.pack(min(1 + len(pairs), 0xFFFF), 1) + uri))
            elif (regexp := _naptr_regexp(uri)) is not None:
                pairs.append((v, _naptr_rdata(len(pairs), regexp)))
    pairs = [(v, rdata) for v, rdata in pairs if len(rdata) <= MAX_RDATA]
    if not pairs:
        return []
    ttl = min(_ttl(v, now) for v, _ in pairs)  # RFC 2181 §5.2: one TTL per RRset
    return [RR(qtype, ttl, rdata) for _, rdata in pairs]


def parse_txt(text: bytes) -> tuple[int, str, bytes]:
    """Concatenated TXT strings → ``(index, type, data)``; ``InvalidValue`` if not our form."""
    try:
        fields = text.decode("utf-8").split(";", 2)
        (tk, tv), (ik, iv), (dk, dv) = (f.split("=", 1) for f in fields)
        if ik != "index" or not re.fullmatch(r"[0-9]+", iv, re.ASCII):
            raise ValueError("index")
        if tk == "type.b64":
            tv = _unb64(tv).decode("utf-8")
        elif tk != "type":
            raise ValueError("type")
        if dk == "data.b64":
            data = _unb64(dv)
        elif dk == "data":
            data = dv.encode("utf-8")
        else:
            raise ValueError("data")
    except (UnicodeError, ValueError):  # binascii.Error is a ValueError
        raise InvalidValue("not a type=…;index=…;data=… TXT text") from None
    return int(iv), tv, data


# ---------------------------------------------------------------------------------------------


def _ttl(v: HandleValue, now: int) -> int:
    ttl = v.ttl - now if v.ttl_type == TTL_ABSOLUTE else v.ttl
    return min(max(ttl, 0), MAX_TTL)


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: impossible for a type read off the wire
        return False
    return True


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def _text_of(b: bytes) -> str | None:
    try:
        text = b.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _has_control(text) else text


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s.encode("ascii"), validate=True)


def txt_text(v: HandleValue) -> str:
    """The TXT text of one value (before splitting into character-strings)."""
    if ";" in v.type or _has_control(v.type):
        tfield = "type.b64=" + _b64(v.type.encode("utf-8"))
    else:
        tfield = "type=" + v.type
    data = _text_of(v.data)
    dfield = "data.b64=" + _b64(v.data) if data is None else "data=" + data
    return f"{tfield};index={v.index};{dfield}"


def _txt_rdata(v: HandleValue) -> bytes:
    text = txt_text(v).encode("utf-8")
    out = bytearray()
    pos = 0
    while True:
        end = min(pos + 255, len(text))
        # back off so the cut never lands on a UTF-8 continuation byte (0b10xxxxxx)
        while end < len(text) and text[end] & 0xC0 == 0x80:
            end -= 1
        out.append(end - pos)
        out += text[pos:end]
        pos = end
        if pos >= len(text):
            return bytes(out)


def _is_url(v: HandleValue) -> bool:
    return v.type.isascii() and v.type.upper() == URL_TYPE


def _uri_of(v: HandleValue) -> bytes | None:
    """The value's data as an absolute URI in ASCII, or None (module contract, URI)."""
    text = _text_of(v.data)
    if text is None:
        return None
    uri = "".join(c if c.isascii() else quote(c, safe="") for c in text)
    m = _SCHEME.match(uri)
    if m is None or m.end() == len(uri) or not _URI_CHARS.fullmatch(uri, m.end()):
        return None
    return uri.encode("ascii")


def _naptr_regexp(uri: bytes) -> bytes | None:
    regexp = b"!^.*$!" + uri.replace(b"\\", b"\\\\").replace(b"!", b"\\!") + b"!"
    return regexp if len(regexp) <= 255 else None


def _naptr_rdata(position: int, regexp: bytes) -> bytes:
    order = min(NAPTR_ORDER_BASE + position, 0xFFFF)
    return b"".join((
        _U16X2.pack(order, NAPTR_PREFERENCE),
        b"\x01U",
        bytes([len(URL_TYPE)]) + URL_TYPE.encode("ascii"),
        bytes([len(regexp)]) + regexp,
        b"\x00",
    ))  # fmt: skip
