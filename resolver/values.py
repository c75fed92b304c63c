"""Handle values: the model and its RFC 3652 wire encoding, plus the typed data payloads.

Owns ``HandleValue`` and the byte layouts of a value and of the structured data of the
standard types (HS_ADMIN, HS_VLIST, HS_SITE, HS_PUBKEY).  Pure: no I/O, no store, no protocol
framing (envelopes and headers belong to ``resolver.protocols.handle``).  Imports ``errors`` only.

Encoded handle value (RFC 3651 §3.1, wire order of the CNRI reference ``Encoder``; handle.md §2.1)::

    int4   index            > 0, unique within a record
    int4   timestamp        seconds since 1970 UTC of the last change (set by the server)
    u8     ttl type         0 relative (seconds), 1 absolute (ttl is a UNIX time)
    int4   ttl              default 86400
    u8     permissions      0x08 admin read, 0x04 admin write, 0x02 public read, 0x01 public write
    str    type             UTF8-String = int4 length + UTF-8 bytes
    bytes  data             int4 length + bytes
    int4   reference count, then per reference: str handle, int4 index

All integers are big-endian; int4 fields are signed 32-bit as in the reference implementation.
"""

from __future__ import annotations

import base64
import dataclasses
import ipaddress
import re
import struct

from resolver.errors import InvalidValue

PERM_ADMIN_READ = 0x08
PERM_ADMIN_WRITE = 0x04
PERM_PUBLIC_READ = 0x02
PERM_PUBLIC_WRITE = 0x01
#: Default value permissions ``1110``: admin read/write, public read (handle.md §2.1).
DEFAULT_PERMISSIONS = PERM_ADMIN_READ | PERM_ADMIN_WRITE | PERM_PUBLIC_READ
DEFAULT_TTL = 86400
TTL_RELATIVE = 0
TTL_ABSOLUTE = 1

#: Offsets inside an encoded value, used by readers that filter without decoding.
VALUE_INDEX_OFFSET = 0
VALUE_PERMS_OFFSET = 13
VALUE_TYPE_OFFSET = 14
#: Smallest possible encoded value: fixed fields + empty type + empty data + no references.
MIN_VALUE_LENGTH = 14 + 4 + 4 + 4

#: HNv9 limits (Common.java): values per record, bytes of one message.
MAX_VALUES = 2048
MAX_DATA_LENGTH = 262144

ADMIN_TYPE = "HS_ADMIN"
VLIST_TYPE = "HS_VLIST"
SITE_TYPES = ("HS_SITE", "HS_SITE.6", "HS_SITE.PREFIX", "HS_NA_DELEGATE")
PUBKEY_TYPE = "HS_PUBKEY"

_INT4 = struct.Struct(">i")
_UINT4 = struct.Struct(">I")
_INT2 = struct.Struct(">H")
_FIXED = struct.Struct(">iiBiB")  # index, timestamp, ttl type, ttl, permissions


@dataclasses.dataclass(frozen=True, slots=True)
class HandleValue:
    """One typed value of a handle record (RFC 3651 §3.1)."""

    index: int
    type: str
    data: bytes
    ttl: int = DEFAULT_TTL
    ttl_type: int = TTL_RELATIVE
    timestamp: int = 0
    permissions: int = DEFAULT_PERMISSIONS
    references: tuple[tuple[str, int], ...] = ()

    @property
    def public_read(self) -> bool:
        return bool(self.permissions & PERM_PUBLIC_READ)

    def has_type(self, name: str) -> bool:
        """ASCII-case-insensitive type equality, as the reference ``HandleValue.hasType``."""
        return self.type.upper() == name.upper()

    def validate(self) -> "HandleValue":
        """Raise ``InvalidValue`` unless every field fits its wire field."""
        if not 0 < self.index <= 0x7FFFFFFF:
            raise InvalidValue(f"value index must be positive: {self.index}")
        if self.ttl_type not in (TTL_RELATIVE, TTL_ABSOLUTE):
            raise InvalidValue(f"bad ttl type {self.ttl_type} at index {self.index}")
        if not -0x80000000 <= self.ttl <= 0x7FFFFFFF:
            raise InvalidValue(f"ttl out of range at index {self.index}")
        if not 0 <= self.timestamp <= 0x7FFFFFFF:
            raise InvalidValue(f"timestamp out of range at index {self.index}")
        if not 0 <= self.permissions <= 0x0F:
            raise InvalidValue(f"bad permissions at index {self.index}")
        if not self.type:
            raise InvalidValue(f"empty type at index {self.index}")
        if len(self.data) > MAX_DATA_LENGTH:
            raise InvalidValue(f"data longer than {MAX_DATA_LENGTH} bytes at index {self.index}")
        for handle, index in self.references:
            if not -0x80000000 <= index <= 0x7FFFFFFF:
                raise InvalidValue(f"bad reference index at index {self.index}")
        return self

    def replace(self, **changes) -> "HandleValue":
        return dataclasses.replace(self, **changes)


def _str(s: str) -> bytes:
    b = s.encode("utf-8")
    return _INT4.pack(len(b)) + b


def encode_value(v: HandleValue) -> bytes:
    """Encode one value in the RFC 3652 layout described at the top of this module."""
    parts = [
        _FIXED.pack(v.index, v.timestamp, v.ttl_type, v.ttl, v.permissions),
        _str(v.type),
        _INT4.pack(len(v.data)),
        v.data,
        _INT4.pack(len(v.references)),
    ]
    for handle, index in v.references:
        parts.append(_str(handle))
        parts.append(_INT4.pack(index))
    return b"".join(parts)


class Reader:
    """Bounds-checked big-endian reader over bytes; every overrun raises ``InvalidValue``."""

    __slots__ = ("buf", "pos", "end")

    def __init__(self, buf: bytes, pos: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.pos = pos
        self.end = len(buf) if end is None else end

    def _take(self, n: int) -> int:
        p = self.pos
        if n < 0 or p + n > self.end:
            raise InvalidValue("truncated data")
        self.pos = p + n
        return p

    def u8(self) -> int:
        return self.buf[self._take(1)]

    def u16(self) -> int:
        return _INT2.unpack_from(self.buf, self._take(2))[0]

    def i32(self) -> int:
        return _INT4.unpack_from(self.buf, self._take(4))[0]

    def u32(self) -> int:
        return _UINT4.unpack_from(self.buf, self._take(4))[0]

    def raw(self, n: int) -> bytes:
        p = self._take(n)
        return bytes(self.buf[p : p + n])

    def blob(self) -> bytes:
        return self.raw(self.i32())

    def text(self) -> str:
        try:
            return self.blob().decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidValue("string is not UTF-8") from None

    def count(self, limit: int = 1 << 20) -> int:
        n = self.i32()
        if not 0 <= n <= limit:
            raise InvalidValue(f"bad element count {n}")
        return n

    def at_end(self) -> bool:
        return self.pos == self.end


def read_value(r: Reader) -> HandleValue:
    """Decode one value at the reader's position (inverse of ``encode_value``)."""
    index = r.i32()
    timestamp = r.i32()
    ttl_type = r.u8()
    ttl = r.i32()
    perms = r.u8()
    vtype = r.text()
    data = r.blob()
    refs = tuple((r.text(), r.i32()) for _ in range(r.count(MAX_VALUES)))
    return HandleValue(index, vtype, data, ttl, ttl_type, timestamp, perms, refs)


def decode_value(buf: bytes) -> HandleValue:
    r = Reader(buf)
    v = read_value(r)
    if not r.at_end():
        raise InvalidValue("trailing bytes after value")
    return v


# ---------------------------------------------------------------------------------------------
# Structured data of the standard types.  Layouts from handle.md §2.2–§2.4.

#: HS_ADMIN permission bits (handle.md §2.3); the JSON string is the 12-bit mask, MSB first.
ADMIN_PERMISSION_NAMES = (
    "add_handle", "delete_handle", "add_derived_prefix", "delete_derived_prefix",
    "modify_value", "remove_value", "add_value", "modify_admin", "remove_admin",
    "add_admin", "read_value", "list_handles",
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class AdminRecord:
    """HS_ADMIN data: ``u16 permissions, str admin handle, int4 admin index``."""

    handle: str
    index: int
    permissions: int
    legacy_byte_length: bool = False  # HN ≤ 7.3 appended two zero bytes

    def to_bytes(self) -> bytes:
        out = _INT2.pack(self.permissions & 0xFFFF) + _str(self.handle) + _INT4.pack(self.index)
        return out + b"\0\0" if self.legacy_byte_length else out

    @classmethod
    def from_bytes(cls, data: bytes) -> "AdminRecord":
        r = Reader(data)
        perms = r.u16()
        handle = r.text()
        index = r.i32()
        legacy = False
        if not r.at_end():
            if r.raw(r.end - r.pos) != b"\0\0":
                raise InvalidValue("trailing bytes in HS_ADMIN")
            legacy = True
        return cls(handle, index, perms, legacy)


def encode_vlist(refs: list[tuple[str, int]]) -> bytes:
    """HS_VLIST data: ``int4 count, then per member: str handle, int4 index``."""
    return _INT4.pack(len(refs)) + b"".join(_str(h) + _INT4.pack(i) for h, i in refs)


def decode_vlist(data: bytes) -> list[tuple[str, int]]:
    r = Reader(data)
    refs = [(r.text(), r.i32()) for _ in range(r.count())]
    if not r.at_end():
        raise InvalidValue("trailing bytes in HS_VLIST")
    return refs


@dataclasses.dataclass(frozen=True, slots=True)
class Interface:
    type: int  # 0 out of service, 1 admin, 2 query, 3 admin+query
    protocol: int  # 0 UDP, 1 TCP, 2 HTTP, 3 HTTPS
    port: int


@dataclasses.dataclass(frozen=True, slots=True)
class ServerInfo:
    server_id: int
    address: bytes  # 16 bytes; IPv4 right-aligned after 12 zero bytes (handle.md §2.4)
    public_key: bytes
    interfaces: tuple[Interface, ...]

    @property
    def address_text(self) -> str:
        if self.address[:12] == bytes(12):
            return str(ipaddress.IPv4Address(self.address[12:]))
        return str(ipaddress.IPv6Address(self.address))

    @staticmethod
    def pack_address(text: str) -> bytes:
        addr = ipaddress.ip_address(text)
        return addr.packed.rjust(16, b"\0")


@dataclasses.dataclass(frozen=True, slots=True)
class SiteInfo:
    """HS_SITE data (RFC 3651 §3.2.2; handle.md §2.4)."""

    version: int = 1
    protocol_major: int = 2
    protocol_minor: int = 11
    serial: int = 1
    primary: bool = True
    multi_primary: bool = False
    hash_option: int = 2
    hash_filter: str = ""
    attributes: tuple[tuple[str, str], ...] = ()
    servers: tuple[ServerInfo, ...] = ()

    def to_bytes(self) -> bytes:
        mask = (0x80 if self.primary else 0) | (0x40 if self.multi_primary else 0)
        parts = [
            struct.pack(">HBBHBB", self.version, self.protocol_major, self.protocol_minor,
                        self.serial, mask, self.hash_option),
            _str(self.hash_filter),
            _INT4.pack(len(self.attributes)),
        ]  # fmt: skip
        for name, value in self.attributes:
            parts += [_str(name), _str(value)]
        parts.append(_INT4.pack(len(self.servers)))
        for s in self.servers:
            parts += [_INT4.pack(s.server_id), s.address, _INT4.pack(len(s.public_key)), s.public_key]
            parts.append(_INT4.pack(len(s.interfaces)))
            for i in s.interfaces:
                parts.append(struct.pack(">BBi", i.type, i.protocol, i.port))
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> "SiteInfo":
        r = Reader(data)
        version, major, minor, serial, mask, hash_option = (
            r.u16(), r.u8(), r.u8(), r.u16(), r.u8(), r.u8())  # fmt: skip
        hash_filter = r.text()
        attributes = tuple((r.text(), r.text()) for _ in range(r.count()))
        servers = []
        for _ in range(r.count()):
            sid = r.i32()
            address = r.raw(16)
            key = r.blob()
            interfaces = tuple(Interface(r.u8(), r.u8(), r.i32()) for _ in range(r.count()))
            servers.append(ServerInfo(sid, address, key, interfaces))
        if not r.at_end():
            raise InvalidValue("trailing bytes in HS_SITE")
        return cls(version, major, minor, serial, bool(mask & 0x80), bool(mask & 0x40),
                   hash_option, hash_filter, attributes, tuple(servers))  # fmt: skip


# HS_PUBKEY: UTF8-String key type, u16 flags, then the key's integers as int4-length byte
# strings: RSA_PUB_KEY → exponent, modulus, int4 0; DSA_PUB_KEY → q, p, g, y
# (reference Util.getBytesFromPublicKey).  Integers are unsigned big-endian magnitudes.


def decode_public_key(data: bytes) -> dict:
    """HS_PUBKEY data → JWK dict (the REST ``"format":"key"`` value); raises ``InvalidValue``."""
    r = Reader(data)
    kind = r.text()
    r.u16()
    if kind == "RSA_PUB_KEY":
        e, n = r.blob(), r.blob()
        return {"kty": "RSA", "n": _b64url(n), "e": _b64url(e)}
    if kind == "DSA_PUB_KEY":
        q, p, g, y = r.blob(), r.blob(), r.blob(), r.blob()
        return {"kty": "DSA", "y": _b64url(y), "p": _b64url(p), "q": _b64url(q), "g": _b64url(g)}
    raise InvalidValue(f"unsupported key type {kind!r}")


def encode_public_key(jwk: dict) -> bytes:
    kty = str(jwk.get("kty", "")).upper()
    if kty == "RSA":
        e, n = _unb64url(jwk["e"]), _unb64url(jwk["n"])
        return _str("RSA_PUB_KEY") + _INT2.pack(0) + _blob(e) + _blob(n) + _INT4.pack(0)
    if kty == "DSA":
        parts = [_unb64url(jwk[k]) for k in ("q", "p", "g", "y")]
        return _str("DSA_PUB_KEY") + _INT2.pack(0) + b"".join(_blob(x) for x in parts)
    raise InvalidValue(f"unsupported key type {kty!r}")


def _blob(b: bytes) -> bytes:
    return _INT4.pack(len(b)) + b


def _b64url(b: bytes) -> str:
    b = b.lstrip(b"\0") or b"\0"  # unsigned magnitude, as the reference does
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _unb64url(s: str) -> bytes:
    s = str(s)
    if not re.fullmatch(r"[A-Za-z0-9_-]+", s):
        raise InvalidValue(f"bad base64url integer {s[:20]!r}")
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
