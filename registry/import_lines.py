"""Incremental parsing of import bodies (issue 5 §1): JSON Lines and CSV, fed in byte pieces.

``LineParser(fmt, max_line)`` takes the body of an import in arbitrary pieces (``feed``) and
hands back one ``Line`` per identifier line; ``close()`` flushes the last one.  It keeps only
the unfinished tail of the body (at most ``max_line`` bytes, or one unfinished CSV record of
at most ``max_line`` characters), so memory stays bounded whatever the body's size.  Values
are passed through as parsed: the import engine validates and encodes them.

A Line is the 4-tuple ``(number, handle, values, error)`` (the fields of ``Line``; good lines
come as plain tuples because building a NamedTuple costs more than the rest of the framing, so
unpack them rather than reading attributes).  ``number`` is the 1-based physical line number in
the body (the line where a CSV record starts); a good line has ``handle`` (text) and ``values``
(a list of Handle v9 JSON value objects, handle.md §7.2) and ``error`` None; a bad line has
``error`` (an ``IdnodeError``: ``MalformedRequest`` → Handle RC 4, ``InvalidValue`` → RC 202)
and ``handle`` when it could be read.  Blank lines and comment lines produce nothing but are
counted.  A line longer than ``max_line`` bytes is one error and is skipped without being
buffered.  A UTF-8 byte order mark at the start of the body is ignored.

JSON Lines (``fmt="jsonl"``)
----------------------------

One JSON object per line, as ``idnode load`` (``registry.bulk``)::

    {"handle": "88.118.8/SN-1", "values": [{"index": 1, "type": "URL", "data": "https://…"}]}

A line whose first non-blank character is ``#`` is a comment.  Errors: not UTF-8 / not JSON /
not an object / ``handle`` missing or not a string → ``MalformedRequest``; ``values`` missing
or not a list → ``InvalidValue``.

CSV (``fmt="csv"``)
-------------------

RFC 4180: comma-separated, UTF-8, records end at a line break (``\\n`` or ``\\r\\n``), a cell
holding a comma, a quote or a line break is quoted with ``"`` and a quote inside it is doubled.
Quoting is checked strictly: a quoted cell must be followed by a comma or the end of the record.

* **Comments and blank rows.**  A row whose first cell starts with ``#`` (after blanks) is a
  comment; a row with no cells or only empty cells is blank.  Both are skipped.
* **Header.**  The first other row is the header.  Exactly one column is named ``handle``
  (any case, blanks around it ignored): the identifier.  Every other column names the value it
  fills, as ``TYPE``, ``INDEX:TYPE`` or ``INDEX:TYPE:TTL``; INDEX is 1…2147483647, TTL a
  relative time to live in seconds (0…2147483647; default: the server's, 86400), TYPE the value
  type (``URL``, ``EMAIL``, ``model``…): no blanks, not only digits, not starting or ending
  with ``:``; it may contain ``:`` (``3:urn:x``), but a final ``:DIGITS`` is always the TTL.
* **Indexes of bare ``TYPE`` columns** are assigned in column order from 1 upwards, skipping
  every index that another column of the header names explicitly: ``handle,URL,1:EMAIL,model``
  gives EMAIL index 1, URL index 2, model index 3.
* **A bad header** (no ``handle`` column or two, an empty column name, a bad INDEX or TTL, two
  columns with the same index) raises ``CsvHeaderError`` — a ``MalformedRequest`` carrying the
  header's ``line`` — from ``feed``/``close``, and every later call raises it again: no row can
  be read without its header, so the whole import fails there (the engine marks the job failed
  with one error at that line).
* **Rows.**  Each later row gives the handle cell (as is; empty → error) and one value per
  non-empty cell: ``{"index": INDEX, "type": TYPE, "data": "<cell text>"[, "ttl": TTL]}``; an
  empty cell gives no value.  A row must have exactly as many cells as the header (else an
  error Line).  The cell text is the value's data as text (handle.md §7.2: a string ``data`` is
  the UTF-8 of that text), so CSV suits text types; structured values (HS_ADMIN, …) need JSON
  Lines.  A cell holds at most 131072 characters (Python's csv field limit).  So that no data
  row is taken for a comment, put the ``handle`` column first (a handle never starts with ``#``).
* **Records over several lines** (a quoted cell with line breaks) are numbered by the line
  where they start.  One longer than ``max_line`` characters is an error, and so is a record
  holding a line that cannot be read (longer than ``max_line`` bytes, not UTF-8); such a
  record is dropped whole — its end is found by counting quotes, without buffering it — and
  parsing goes on after it.  A quoted cell still open at the end of the body is an error at
  its record's line.

Example::

    # parts shipped in May
    handle,1:URL,2:EMAIL,2000:model
    88.118.8/SN-1,https://example.com/sn/1,ops@example.com,X-100
    88.118.8/SN-2,https://example.com/sn/2,,"X-200, ""B"" rev"
"""

from __future__ import annotations

import bisect
import codecs
import csv
import io
import re
from typing import NamedTuple

import orjson

from resolver.errors import IdnodeError, InvalidValue, MalformedRequest

FORMATS = ("jsonl", "csv")
DEFAULT_MAX_LINE = 1 << 20
_MAX_INT4 = 0x7FFFFFFF
_BOM = codecs.BOM_UTF8
_SHAPE = 'expected {"handle": "...", "values": [...]}'


class Line(NamedTuple):
    """One identifier line of an import body (module docstring)."""

    number: int
    handle: str | None
    values: list | None
    error: IdnodeError | None


class CsvHeaderError(MalformedRequest):
    """The CSV header cannot be read: the import cannot go on (``line``: the header's line)."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(f"CSV header (line {line}): {message}")
        self.line = line


class Encoded(NamedTuple):
    """JSON Lines a fast encoder turned into stored records: ``pairs[j]`` is the ``(key,
    record)`` of line ``first + taken[j]``, whose text is ``parts[taken[j]]``."""

    first: int
    pairs: list
    taken: list
    parts: list
    handle_at: int = -1  # CSV: the handle's column; -1: JSON Lines

    def handle(self, j: int) -> str | None:
        """The handle of the j-th encoded line, as written (for its error report)."""
        line = self.parts[self.taken[j]]
        try:
            if self.handle_at >= 0:
                return next(csv.reader([line.decode("utf-8")], strict=True))[self.handle_at]
            return orjson.loads(line)["handle"]
        except (ValueError, KeyError, TypeError, IndexError, csv.Error):
            return None


def _error(number: int, exc: IdnodeError, handle: str | None = None) -> Line:
    return Line(number, handle, None, exc)


def _jsonl_error(number: int, line: bytes, exc: Exception) -> Line | None:
    """The error Line for a line orjson refused; None for blank and comment lines."""
    stripped = line.strip()
    if not stripped or stripped[:1] == b"#":
        return None
    text = str(exc)
    if "UTF-8" in text:
        return _error(number, MalformedRequest("line is not valid UTF-8"))
    return _error(number, MalformedRequest(f"not JSON: {text}"))


def _shape_error(number: int, obj) -> Line:
    if not isinstance(obj, dict):
        return _error(number, MalformedRequest(_SHAPE))
    handle = obj.get("handle")
    if not isinstance(handle, str):
        return _error(number, MalformedRequest('"handle" must be a string: ' + _SHAPE))
    return _error(number, InvalidValue('"values" must be a list of handle values'), handle)


_COLUMN = re.compile(r"(?:([0-9]+):)?(.+?)(?::([0-9]+))?")


class _Column(NamedTuple):
    position: int
    index: int
    type: str
    ttl: int | None


def _header(row: list[str], number: int) -> tuple[int, list[_Column]]:
    """The header row → (position of the handle column, value columns)."""
    handle_at = None
    named: list[tuple[int, int | None, str, int | None]] = []
    for pos, cell in enumerate(row):
        name = cell.strip()
        if name.lower() == "handle":
            if handle_at is not None:
                raise CsvHeaderError("two 'handle' columns", number)
            handle_at = pos
            continue
        if not name:
            raise CsvHeaderError(f"column {pos + 1} has no name", number)
        m = _COLUMN.fullmatch(name)
        vtype = m.group(2) if m else ""
        if (not vtype or vtype.isdigit() or vtype[0] == ":" or vtype[-1] == ":"
                or any(c.isspace() for c in name)):  # fmt: skip
            raise CsvHeaderError(f"column {pos + 1} {name!r}: expected TYPE, INDEX:TYPE or "
                                 "INDEX:TYPE:TTL", number)  # fmt: skip
        index = ttl = None
        if m.group(1) is not None:
            index = int(m.group(1))
            if not 0 < index <= _MAX_INT4:
                raise CsvHeaderError(f"column {name!r}: index must be 1..{_MAX_INT4}", number)
        if m.group(3) is not None:
            ttl = int(m.group(3))
            if ttl > _MAX_INT4:
                raise CsvHeaderError(f"column {name!r}: ttl must be 0..{_MAX_INT4}", number)
        named.append((pos, index, vtype, ttl))
    if handle_at is None:
        raise CsvHeaderError("no 'handle' column", number)
    taken: set[int] = set()
    for pos, index, _, _ in named:
        if index is not None:
            if index in taken:
                raise CsvHeaderError(f"two columns for index {index}", number)
            taken.add(index)
    columns, free = [], 1
    for pos, index, vtype, ttl in named:
        if index is None:
            while free in taken:
                free += 1
            index = free
            taken.add(index)
        columns.append(_Column(pos, index, vtype, ttl))
    return handle_at, columns


class LineParser:
    """Incremental parser of one import body; see the module docstring for the formats."""

    def __init__(self, fmt: str, max_line: int = DEFAULT_MAX_LINE, fast=None) -> None:
        """``fast``: an optional encoder that turns lines straight into stored records (the
        import engine's native code, ``resolver.record.fast_jsonl`` / ``fast_csv``).

        JSON Lines: ``fast(parts) -> (pairs, taken, other)`` for the lines of a region; its
        ``(key, record)`` pairs come back as ONE Line ``(last line number, None, Encoded(...),
        None)``, and only the lines listed in ``other`` are parsed here (blank lines are in
        neither list).  CSV: ``fast.row(row, handle_at, columns) -> (key, record) | None`` per
        record, ``columns`` the tuple of ``(position, index, type, ttl)`` of the header; a
        result is the Line's ``values``; and ``fast.lines(parts, width, handle_at, columns)
        -> (pairs, taken, other)`` for whole regions, like JSON Lines.  Either way the caller tells encoded Lines apart by
        the type of ``values`` (``Encoded``, a tuple, or the usual list)."""
        self.fast = fast
        if fmt not in FORMATS:
            raise MalformedRequest(f"unknown import format {fmt!r}: expected jsonl or csv")
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self.fmt = fmt
        self.max_line = max_line
        self._n = 0  # physical lines completed (including the pending CSV record's)
        self._tail: list[bytes] = []  # the unfinished last line, in pieces
        self._tail_len = 0
        self._skipping = False  # dropping an over-long line up to its newline
        self._started = False  # the first line has been seen (BOM check done)
        self._closed = False
        # CSV state
        self._pending = ""  # text of an unfinished record (a quoted cell spans the chunk end)
        self._pending_start = 0  # its first line
        # A record already reported as an error is dropped line by line, without buffering,
        # until it ends: in RFC 4180 a line break ends the record exactly when the record so
        # far holds an even number of '"' (quotes only open/close cells or come doubled).
        self._dropping = False
        self._parity = 0
        self._handle_at = -1
        self._columns: list[_Column] | None = None
        self._width = 0
        self._plain = True
        self._triples: list[tuple[int, int, str]] = []
        self._fast_columns: tuple = ()
        self._row_start = 0
        self._failed: CsvHeaderError | None = None

    @property
    def lines_read(self) -> int:
        """Physical lines completed so far."""
        return self._n

    # -- the byte level, shared -------------------------------------------------------------

    def feed(self, data: bytes) -> list[Line]:
        """The Lines completed by this piece of the body (possibly none)."""
        if self._failed is not None:
            raise self._failed
        if self._closed:
            raise ValueError("feed() after close()")
        if type(data) is not bytes:
            data = bytes(data)
        out: list[Line] = []
        if self._skipping:
            i = data.find(b"\n")
            self._parity ^= data.count(b'"', 0, len(data) if i < 0 else i) & 1
            if i < 0:
                return out
            self._end_skip()
            data = data[i + 1 :]
        j = data.rfind(b"\n")
        if j < 0:
            self._tail.append(data)
            self._tail_len += len(data)
        else:
            region = data[: j + 1]
            if self._tail:
                region = b"".join(self._tail) + region
            rest = data[j + 1 :]
            self._tail = [rest] if rest else []
            self._tail_len = len(rest)
            self._region(region, out)
        if self._tail_len > self.max_line:
            quotes = sum(piece.count(b'"') for piece in self._tail)
            self._tail, self._tail_len, self._skipping = [], 0, True
            self._bad_line(self._n + 1, quotes & 1, self._too_long(), out)
        return out

    def close(self) -> list[Line]:
        """The Lines left at the end of the body: its last line when it has no line break,
        and the error of a CSV record left open."""
        if self._failed is not None:
            raise self._failed
        if self._closed:
            return []
        self._closed = True
        out: list[Line] = []
        if self._skipping:
            self._end_skip()
        elif self._tail:
            region = b"".join(self._tail) + b"\n"
            self._tail, self._tail_len = [], 0
            self._region(region, out)
        if self._pending:
            out.append(_error(self._pending_start,
                              MalformedRequest("quoted cell not closed at the end of the body")))
            self._pending = ""
        return out

    def _end_skip(self) -> None:
        """The over-long line being skipped has ended (its error was given when it overflowed)."""
        self._skipping = False
        self._n += 1
        self._dropping = self.fmt == "csv" and self._parity == 1

    def _region(self, region: bytes, out: list[Line]) -> None:
        """Complete lines, each ending with ``\\n``."""
        if not self._started:
            self._started = True
            if self._n == 0 and region.startswith(_BOM):
                region = region[len(_BOM) :]
        if self.fmt == "jsonl":
            self._jsonl(region, out)
        else:
            self._csv_region(region, out)

    def _bad_line(self, number: int, parity: int, problem: MalformedRequest,
                  out: list[Line]) -> None:  # fmt: skip
        """Line ``number`` cannot be read (too long, not UTF-8); ``parity``: of its '"'.  In
        CSV the record holding it fails, and the rest of that record is dropped."""
        if self.fmt == "jsonl":
            out.append(_error(number, problem))
            return
        if self._dropping:  # part of a record already reported
            self._parity ^= parity
        elif self._pending:  # the unfinished record it belongs to fails
            out.append(_error(self._pending_start, MalformedRequest(
                f"line {number}: {problem.message}")))  # fmt: skip
            self._parity = (self._pending.count('"') & 1) ^ parity
            self._pending = ""
        else:
            out.append(_error(number, problem))
            self._parity = parity
        self._dropping = self._parity == 1

    def _too_long(self) -> MalformedRequest:
        return MalformedRequest(f"line longer than {self.max_line} bytes")

    # -- JSON Lines -------------------------------------------------------------------------

    def _jsonl(self, region: bytes, out: list[Line]) -> None:
        parts = region.split(b"\n")
        parts.pop()  # after the last b"\n"
        n = self._n
        self._n = n + len(parts)
        block = None
        if self.fast is not None:  # the native encoder takes what it can, in one call
            pairs, taken, other = self.fast(parts)
            if pairs:  # after the other lines: a Line list ends with its highest number
                block = (n + len(parts), None, Encoded(n + 1, pairs, taken, parts), None)
            lines = [(n + 1 + i, parts[i]) for i in other]
        else:
            lines = enumerate(parts, n + 1)
        check = len(region) > self.max_line  # no line can be longer than the region
        append = out.append
        loads = orjson.loads
        JSONDecodeError = orjson.JSONDecodeError
        for n, line in lines:
            if check and len(line) > self.max_line:
                append(_error(n, self._too_long()))
                continue
            try:
                obj = loads(line)
                handle = obj["handle"]
                values = obj["values"]
            except JSONDecodeError as exc:
                err = _jsonl_error(n, line, exc)
                if err is not None:
                    append(err)
                continue
            except (KeyError, TypeError):  # not an object, or a key missing
                append(_shape_error(n, obj))
                continue
            if type(handle) is str and type(values) is list:
                append((n, handle, values, None))
            else:
                append(_shape_error(n, obj))
        if block is not None:
            append(block)

    # -- CSV --------------------------------------------------------------------------------

    def _csv_region(self, region: bytes, out: list[Line]) -> None:
        if (self.fast is not None and self._columns is not None and not self._pending
                and not self._dropping):
            self._csv_fast(region, out)
        else:
            self._csv_plain(region, out)

    def _csv_fast(self, region: bytes, out: list[Line]) -> None:
        """The native encoder takes every line that is a whole record by itself; the csv
        module reads the others — and every line from the first one that may open a quoted
        cell spanning lines (an odd number of quotes): after it, a line that looks like a
        record may be the rest of a cell."""
        parts = region.split(b"\n")
        parts.pop()
        n0 = self._n
        pairs, taken, other = self.fast.lines(parts, self._width, self._handle_at,
                                              self._fast_columns)  # fmt: skip
        cut = len(parts)
        for i in other:
            if parts[i].count(b'"') & 1:
                cut = i
                break
        if cut < len(parts):
            keep = bisect.bisect_left(taken, cut)
            pairs, taken = pairs[:keep], taken[:keep]
        for i in other:
            if i >= cut:
                break
            self._n = n0 + i
            self._csv_plain(parts[i] + b"\n", out)
        if cut < len(parts):
            self._n = n0 + cut
            self._csv_plain(b"\n".join(parts[cut:]) + b"\n", out)
        self._n = n0 + len(parts)
        if pairs:  # last: a Line list ends with its highest number
            out.append((n0 + len(parts), None,
                        Encoded(n0 + 1, pairs, taken, parts, self._handle_at), None))

    def _csv_plain(self, region: bytes, out: list[Line]) -> None:
        try:
            text = region.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        if text is not None and len(region) <= self.max_line:
            self._csv_text(text, out)
            return
        # slow path: some line is not UTF-8 or too long; cut the region around those lines
        good: list[str] = []
        for line in region.split(b"\n")[:-1]:
            if len(line) > self.max_line:
                problem = self._too_long()
            else:
                try:
                    good.append(line.decode("utf-8") + "\n")
                    continue
                except UnicodeDecodeError:
                    problem = MalformedRequest("line is not valid UTF-8")
            if good:
                self._csv_text("".join(good), out)
                good = []
            self._n += 1
            self._bad_line(self._n, line.count(b'"') & 1, problem, out)
        if good:
            self._csv_text("".join(good), out)

    def _record_too_long(self) -> MalformedRequest:
        return MalformedRequest(f"record longer than {self.max_line} characters "
                                "(a quoted cell not closed?)")  # fmt: skip

    def _csv_text(self, text: str, out: list[Line]) -> None:
        """Complete lines of text (each ending with ``\\n``) after any pending record."""
        if self._dropping:
            text = self._drop(text)
            if not text:
                return
        if self._pending:
            base = self._pending_start - 1
            text = self._pending + text
            self._pending = ""
        else:
            base = self._n
        self._n = base + text.count("\n")
        source = io.StringIO(text, newline="\n")  # lines end at \n only, and keep it
        offset = 0  # lines read by the readers before the current one
        while True:
            reader = csv.reader(source, strict=True)
            try:
                self._csv_rows(reader, source, text, base + offset, out)
                return
            except csv.Error as exc:
                prev = self._row_start
                start = base + offset + prev + 1
                if str(exc) == "unexpected end of data":  # only ever at the end of the text
                    at = _lines_start(text, len(text), reader.line_num - prev)
                    self._keep_pending(text[at:], start, out)
                    return
                out.append(_error(start, MalformedRequest(f"bad CSV record: {exc}")))
                offset += reader.line_num

    def _drop(self, text: str) -> str:
        """Drop the lines that end the record being dropped; the text after them."""
        pos, n, parity, end = 0, self._n, self._parity, len(text)
        while parity and pos < end:
            i = text.find("\n", pos)
            parity ^= text.count('"', pos, i) & 1
            pos, n = i + 1, n + 1
        self._n, self._parity, self._dropping = n, parity, parity == 1
        return text[pos:]

    def _keep_pending(self, pending: str, start: int, out: list[Line]) -> None:
        """``pending`` (from line ``start``) is a record whose quoted cell goes on."""
        if len(pending) > self.max_line:
            out.append(_error(start, self._record_too_long()))
            self._parity = pending.count('"') & 1
            self._dropping = self._parity == 1
            return
        self._pending, self._pending_start = pending, start

    def _csv_rows(self, reader, source: io.StringIO, text: str, base: int,
                  out: list[Line]) -> None:  # fmt: skip
        """Rows of ``reader``; row numbers are ``base`` + the reader's line of the row's start.
        ``self._row_start`` tells a caller catching ``csv.Error`` where the failed row began."""
        append = out.append
        columns = self._columns
        handle_at, width, triples = self._handle_at, self._width, self._triples
        plain, fast, fast_columns = self._plain, self.fast, self._fast_columns
        max_line = self.max_line
        self._row_start = prev = 0
        for row in reader:
            number = base + prev + 1
            lines = reader.line_num - prev
            prev = self._row_start = reader.line_num
            if lines > 1:  # a quoted cell spans lines: the record's length is bounded too
                end = source.tell()
                if end - _lines_start(text, end, lines) > max_line:
                    append(_error(number, self._record_too_long()))
                    continue
            if not row:
                continue
            first = row[0][:1]
            if first == "#" or (first and first <= " " and row[0].lstrip()[:1] == "#"):
                continue
            if columns is None:
                if not any(c.strip() for c in row):
                    continue
                try:
                    self._handle_at, columns = _header(row, number)
                except CsvHeaderError as exc:
                    self._failed = exc
                    raise
                self._columns, self._width = columns, len(row)
                self._plain = plain = all(c.ttl is None for c in columns)
                self._triples = triples = [(c.position, c.index, c.type) for c in columns]
                self._fast_columns = fast_columns = tuple(
                    (c.position, c.index, c.type, c.ttl) for c in columns)
                handle_at, width = self._handle_at, self._width
                continue
            if len(row) != width:
                if any(row):
                    append(_error(number, MalformedRequest(
                        f"row has {len(row)} cells, the header {width}"),
                        row[handle_at] or None if handle_at < len(row) else None))  # fmt: skip
                continue
            handle = row[handle_at]
            if not handle:
                if any(row):
                    append(_error(number, MalformedRequest("row without a handle")))
                continue
            if fast is not None:
                done = fast.row(row, handle_at, fast_columns)
                if done is not None:
                    append((number, handle, done, None))
                    continue
            if plain:  # a loop, not a comprehension: no frame per row (3.11)
                values = []
                for p, i, t in triples:
                    cell = row[p]
                    if cell:
                        values.append({"index": i, "type": t, "data": cell})
            else:
                values = []
                for c in columns:
                    cell = row[c.position]
                    if cell:
                        v = {"index": c.index, "type": c.type, "data": cell}
                        if c.ttl is not None:
                            v["ttl"] = c.ttl
                        values.append(v)
            append((number, handle, values, None))


def _lines_start(text: str, end: int, lines: int) -> int:
    """Where the ``lines`` lines of ``text`` that end at ``end`` (after a line break) start."""
    cut = end - 1
    for _ in range(lines):
        cut = text.rfind("\n", 0, cut)
    return cut + 1
