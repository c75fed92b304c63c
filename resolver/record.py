"""A handle record and its stored binary layout (format v1).

Owns ``Record`` (the ordered values of one identifier) and ``pack``/``unpack`` between a record
and the bytes kept in LMDB.  Both the Handle wire form and the REST JSON form are produced here
once, at write time, so that every front-end answers a hit with a copy and a splice instead of a
serialization.  ``pack_from_json`` goes straight from parsed JSON values to these bytes (an import
line), through ``native.pack_json_values`` where the values allow.  Imports ``values``,
``valuejson``, ``errors`` and ``native``.

Stored record, format v1 (all integers big-endian, unsigned)::

    offset  size     field
    0       1        layout version = 1
    1       1        flags: 0x01 ALL_PUBLIC — every value has public read
    2       2        n = number of values (≤ 2048, handle.md §1)
    4       4        W = length of the wire section
    8       4        J = length of the JSON section
    12      16 × n   directory, one entry per value, in record order:
                        u32 wire offset   (from the start of the wire section)
                        u32 wire length
                        u32 JSON offset   (from the start of the JSON section)
                        u32 JSON length
    12+16n  W        wire section: int4 n, then the n encoded values (RFC 3652 §2.2,
                     resolver.values) — exactly the tail of an OC_RESOLUTION response body
    ..      J        JSON section: "[" v1 "," v2 … "]", each v = orjson bytes of
                     valuejson.value_to_json(value) — the "values" member of a REST answer

Readers treat stored bytes as untrusted: ``unpack`` (and the native twins) check that the
header, directory and sections add up to the blob's length before using an offset.
"""

from __future__ import annotations

import struct
from typing import Iterable

import orjson

import native
from resolver.errors import CorruptRecord, InvalidValue
from resolver.values import MAX_VALUES, HandleValue, Reader, encode_value, read_value
from resolver.valuejson import iso_utc, value_from_json, value_to_json

LAYOUT_VERSION = 1
FLAG_ALL_PUBLIC = 0x01
HEADER = struct.Struct(">BBHII")
DIRENTRY = struct.Struct(">IIII")
_COUNT = struct.Struct(">i")


class Record(tuple):
    """The values of one handle, in stored order; a plain tuple of ``HandleValue``."""

    __slots__ = ()

    def __new__(cls, values: Iterable[HandleValue] = ()) -> "Record":
        return super().__new__(cls, values)

    def validate(self) -> "Record":
        """Raise ``InvalidValue`` unless indexes are positive and unique and counts fit."""
        if len(self) > MAX_VALUES:
            raise InvalidValue(f"more than {MAX_VALUES} values")
        seen = set()
        for v in self:
            v.validate()
            if v.index in seen:
                raise InvalidValue(f"duplicate value index {v.index}")
            seen.add(v.index)
        return self


def value_json(v: HandleValue) -> bytes:
    """The canonical JSON bytes of one value (shared by the stored section and the general path)."""
    return orjson.dumps(value_to_json(v))


def pack(record: Record) -> bytes:
    """Record → stored bytes (layout above).  Validates the record first."""
    record.validate()
    wires = [encode_value(v) for v in record]
    jsons = [value_json(v) for v in record]
    directory = []
    woff, joff = 4, 1
    for w, j in zip(wires, jsons):
        directory.append(DIRENTRY.pack(woff, len(w), joff, len(j)))
        woff += len(w)
        joff += len(j) + 1
    wire = _COUNT.pack(len(wires)) + b"".join(wires)
    js = b"[" + b",".join(jsons) + b"]"
    # An empty record is not ALL_PUBLIC: it must answer responseCode 200, not an empty hit.
    flags = FLAG_ALL_PUBLIC if record and all(v.public_read for v in record) else 0
    return b"".join([HEADER.pack(LAYOUT_VERSION, flags, len(record), len(wire), len(js)),
                     *directory, wire, js])  # fmt: skip


#: The IDIS template value (issue 5): lines carrying it take the general path, where the template
#: rules apply.
TEMPLATE_INDEX = 1001

_pack_json_values = native.pack_json_values
_now_text: tuple[int, bytes] = (-1, b"")  # (now, iso_utc(now)): one formatting per second


def pack_from_json(values, now: int) -> bytes:
    """Parsed JSON values of one identifier (handle.md §7.2) → stored bytes, every value stamped
    ``now``; equal to ``pack(Record(value_from_json(v, now=now) for v in values))``.

    The native fast path encodes the common shapes (plain string data, no template index); any
    other value, and any error, goes through ``value_from_json``, which raises ``InvalidValue``.
    """
    global _now_text
    if type(now) is int and 0 <= now <= 0x7FFFFFFF:
        cached = _now_text
        if cached[0] != now:
            cached = _now_text = (now, iso_utc(now).encode("ascii"))
        blob = _pack_json_values(values, now, cached[1], TEMPLATE_INDEX)
        if blob is not None:
            return blob
    if not isinstance(values, list):
        raise InvalidValue("values must be a JSON array")
    record = Record(value_from_json(v, now=now) for v in values).validate()
    try:
        return pack(record)
    except UnicodeEncodeError:  # a type or reference handle with a lone surrogate
        raise InvalidValue("a value holds text that is not valid Unicode") from None


def pack_fast(values, now: int) -> bytes | None:
    """The native encoder alone: ``pack_from_json``'s bytes, or None where it declines (the
    caller then takes the general path — bulk imports, which route template lines apart)."""
    global _now_text
    cached = _now_text
    if cached[0] != now:
        if type(now) is not int or not 0 <= now <= 0x7FFFFFFF:
            return None
        cached = _now_text = (now, iso_utc(now).encode("ascii"))
    return _pack_json_values(values, now, cached[1], TEMPLATE_INDEX)


def fast_jsonl(now: int, case_sensitive: bool, under: bytes, max_line: int):
    """``fast(parts) -> (pairs, taken, other)`` for the lines of a JSON Lines import region
    (``registry.import_lines.LineParser``): ``native.encode_jsonl_lines``, values stamped
    ``now``, only identifiers whose key starts with ``under``; None when ``now`` is out of
    range (the caller then parses every line itself)."""
    if type(now) is not int or not 0 <= now <= 0x7FFFFFFF:
        return None
    encode, text = native.encode_jsonl_lines, iso_utc(now).encode("ascii")
    return lambda parts: encode(parts, now, text, TEMPLATE_INDEX, case_sensitive, under,
                                max_line)  # fmt: skip


class _CsvEncoder:
    """CSV import records → stored records (``registry.import_lines``): ``row`` for one
    record read by the csv module (``native.encode_csv_row``), ``lines`` for the lines of a
    region that are whole records by themselves (``native.encode_csv_lines``)."""

    __slots__ = ("now", "text", "case_sensitive", "under", "max_line")

    def __init__(self, now: int, case_sensitive: bool, under: bytes, max_line: int) -> None:
        self.now, self.text = now, iso_utc(now).encode("ascii")
        self.case_sensitive, self.under, self.max_line = case_sensitive, under, max_line

    def row(self, row, handle_at: int, columns: tuple):
        return native.encode_csv_row(row, handle_at, columns, self.now, self.text,
                                     TEMPLATE_INDEX, self.case_sensitive)  # fmt: skip

    def lines(self, parts: list, width: int, handle_at: int, columns: tuple):
        return native.encode_csv_lines(parts, width, handle_at, columns, self.now, self.text,
                                       TEMPLATE_INDEX, self.case_sensitive, self.under,
                                       self.max_line)  # fmt: skip


def fast_csv(now: int, case_sensitive: bool, under: bytes, max_line: int):
    """The native encoder of CSV import records (``_CsvEncoder``), values stamped ``now``."""
    if type(now) is not int or not 0 <= now <= 0x7FFFFFFF:
        return None
    return _CsvEncoder(now, case_sensitive, under, max_line)


def sections(blob: bytes) -> tuple[int, int, list[tuple[int, int, int, int]], bytes, bytes]:
    """Validate the framing of a stored record; → (flags, n, directory, wire, json)."""
    if len(blob) < HEADER.size:
        raise CorruptRecord("stored record shorter than its header")
    version, flags, n, wlen, jlen = HEADER.unpack_from(blob, 0)
    if version != LAYOUT_VERSION:
        raise CorruptRecord(f"unknown record layout version {version}")
    wstart = HEADER.size + DIRENTRY.size * n
    if wstart + wlen + jlen != len(blob):
        raise CorruptRecord("stored record length does not match its header")
    directory = [DIRENTRY.unpack_from(blob, HEADER.size + DIRENTRY.size * i) for i in range(n)]
    wire = blob[wstart : wstart + wlen]
    js = blob[wstart + wlen :]
    for wo, wl, jo, jl in directory:
        if wo + wl > wlen or jo + jl > jlen or wl < 26:
            raise CorruptRecord("stored record directory points outside its sections")
    return flags, n, directory, wire, js


def unpack(blob: bytes) -> Record:
    """Stored bytes → Record, decoding the wire section (the normative copy)."""
    _flags, n, directory, wire, _js = sections(bytes(blob))
    try:
        r = Reader(wire)
        if r.i32() != n:
            raise CorruptRecord("stored value count disagrees with the header")
        values = []
        for wo, wl, _jo, _jl in directory:
            r.pos, r.end = wo, wo + wl
            values.append(read_value(r))
            if not r.at_end():
                raise CorruptRecord("stored value has trailing bytes")
    except InvalidValue as exc:
        raise CorruptRecord(f"stored value does not decode: {exc}") from None
    return Record(values)


def wire_values(blob: bytes) -> bytes:
    """The wire section (``int4 n`` + values) of a stored record, validated."""
    return sections(blob)[3]
