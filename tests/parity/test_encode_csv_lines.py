"""Parity of ``encode_csv_lines``: a region of CSV lines → stored records, one record per line.

Both twins are held to the contract's reference, written out here on its own: each line decoded
(strict UTF-8), read by the csv module (``strict=True``, lines ending at "\\n" only, as
registry.import_lines reads them), one row of ``width`` cells, not a comment, not all empty,
then ``encode_csv_row`` (whose answers test_encode_blocks holds to dicts through
``pack_json_values``; taken pairs are checked against that too).  The one rule the contract adds
to the csv module — a '"' inside an unquoted cell leaves the line to the caller — is checked
here by a hand-written walk over the cells, not by the twin's regular expression.  Tables state
which lines are taken, and generated plain rows must mostly be taken, so parity cannot hold by
declining everything.
"""

from __future__ import annotations

import csv
import io
import random
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import native
import test_encode_blocks as blocks
from native import _hotpath_py as python_twin
from native import constants as C
from resolver.valuejson import iso_utc

NOW = 1767225600  # 2026-01-01T00:00:00Z
RESERVED = 1001  # record.TEMPLATE_INDEX: the IDIS template value, the caller's
UNDER = b"88.118.8/"
MAX_LINE = 1 << 20
COLS = ((1, 1, "URL", None), (2, 2, "EMAIL", None), (3, 3, "DESC", None))  # the bench's header
LIMIT = csv.field_size_limit()


def _twins(cython_twin):
    return [python_twin] + ([cython_twin] if cython_twin is not None else [])


def _now_text(now) -> bytes:
    return iso_utc(now).encode() if type(now) is int and 0 <= now <= 0x7FFFFFFF else b"x"


def quotes_in_quoted_cells(text: str) -> bool:
    """Every '"' of a record's text opens, doubles or closes a quoted cell (RFC 4180).  Where
    the csv module fails anyway (a cell left open, text after a closing quote) any answer
    does."""
    i, n = 0, len(text)
    while True:  # at the start of a cell
        if text[i : i + 1] == '"':
            i += 1
            while True:
                j = text.find('"', i)
                if j < 0:
                    return False
                i = j + 1
                if text[i : i + 1] != '"':
                    break
                i += 1
            if text[i : i + 1] != ",":
                return True
            i += 1
            continue
        while i < n and text[i] not in ",\r":
            if text[i] == '"':
                return False
            i += 1
        if i == n or text[i] == "\r":
            return True
        i += 1


def csv_rows(text: str):
    """The csv module's reading of one line, as the caller reads it; None: a csv.Error."""
    try:
        return list(csv.reader(io.StringIO(text + "\n", newline="\n"), strict=True))
    except csv.Error:
        return None


def is_comment(first_cell: str) -> bool:
    """registry.import_lines' test of a row's first cell."""
    first = first_cell[:1]
    return first == "#" or bool(first and first <= " " and first_cell.lstrip()[:1] == "#")


def line_reference(line: bytes, width, handle_at, columns, now=NOW, cs=False):
    """The contract's ``line(b)``."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not quotes_in_quoted_cells(text):
        return None
    rows = csv_rows(text)
    if rows is None or len(rows) != 1 or len(rows[0]) != width or width < 1:
        return None
    row = rows[0]
    if is_comment(row[0]) or not any(row):
        return None
    return python_twin.encode_csv_row(row, handle_at, columns, now, _now_text(now), RESERVED, cs)


def reference(parts, width, handle_at, columns, now=NOW, cs=False, under=UNDER,
              max_line=MAX_LINE):  # fmt: skip
    pairs, taken, other = [], [], []
    for i, line in enumerate(parts):
        if line == b"":
            continue
        r = None
        if len(line) <= max_line:
            r = line_reference(line, width, handle_at, columns, now, cs)
        if r is not None and r[0].startswith(under):
            pairs.append(r)
            taken.append(i)
        else:
            other.append(i)
    return pairs, taken, other


def check(twins, parts, width=4, handle_at=0, columns=COLS, now=NOW, cs=False, under=UNDER,
          max_line=MAX_LINE):  # fmt: skip
    """Assert parity for one region; → its (pairs, taken, other)."""
    outs = [t.encode_csv_lines(parts, width, handle_at, columns, now, _now_text(now), RESERVED,
                               cs, under, max_line) for t in twins]  # fmt: skip
    assert all(o == outs[0] for o in outs), "the twins disagree"
    assert outs[0] == reference(parts, width, handle_at, columns, now, cs, under, max_line)
    pairs, taken, other = outs[0]
    assert type(pairs) is list and type(taken) is list and type(other) is list
    assert len(pairs) == len(taken) and taken == sorted(taken) and other == sorted(other)
    assert sorted(taken + other) == [i for i, ln in enumerate(parts) if ln]
    for (key, blob), i in zip(pairs, taken):
        assert type(key) is bytes and type(blob) is bytes
        row = csv_rows(parts[i].decode())[0]  # the dict reference of encode_csv_row
        assert (key, blob) == blocks.csv_reference(row, handle_at, columns, now, cs)
    return outs[0]


def test_the_selector_exports_the_twin():
    impl = native.cython_twin if native.IMPLEMENTATION == "cython" else native.python_twin
    assert native.encode_csv_lines is impl.encode_csv_lines


H = b"88.118.8/SN-1"
URL = b"https://trace.example-factory.cn/p/SN-1"
MAIL = b"quality@example-factory.cn"
DESC = b'"Li-ion battery pack, model X01"'


def rec(*cells: bytes) -> bytes:
    return b",".join(cells)


PRODUCT = rec(H, URL, MAIL, DESC)

# (name, line, taken) with width 4, the handle first, COLS; None: blank
TABLE = [
    ("a product", PRODUCT, True),
    ("empty", b"", None),
    ("unquoted cells", rec(H, URL, MAIL, b"pack"), True),
    ("every cell quoted", b'"88.118.8/SN-1","u","e","d"', True),
    ("a quoted cell with commas", rec(H, b'"a,b,,c"', MAIL, b'","'), True),
    ("doubled quotes", rec(H, URL, MAIL, b'"X-200, ""B"" rev"'), True),
    ("only a doubled quote", rec(H, URL, MAIL, b'""""'), True),
    ("doubled quotes in two cells", rec(H, b'"a""b"', b'"c""""d"', b'"""e"""'), True),
    ("empty quoted cells", rec(H, b'""', b'""', b"d"), True),
    ("every value cell empty and quoted", rec(H, b'""', b'""', b'""'), False),
    ("every cell empty", b",,,", False),
    ("every cell empty and quoted", b'"","","",""', False),
    ("an empty handle", rec(b"", URL, MAIL, DESC), False),
    ("a quoted empty handle", rec(b'""', URL, MAIL, DESC), False),
    ("a quoted handle", rec(b'"' + H + b'"', URL, MAIL, DESC), True),
    ("a comma in the handle", rec(b'"88.118.8/a,b"', URL, MAIL, DESC), True),
    ("an empty last cell", rec(H, URL, MAIL, b""), True),
    # quotes the contract leaves to the caller (the csv module reads them as text)
    ("a quote inside an unquoted cell", rec(H, URL, b'ma"il', DESC), False),
    ("a quote ending an unquoted cell", rec(H, URL, MAIL, b'pack"'), False),
    ("a blank before a quoted cell", rec(H, URL, MAIL, b' "pack"'), False),
    ("quotes inside an unquoted handle", rec(b'88.118.8/"a"', URL, MAIL, DESC), False),
    # quotes the csv module refuses
    ("text after a closing quote", rec(H, URL, b'"ma"il', DESC), False),
    ("a blank after a closing quote", rec(H, URL, MAIL, b'"pack" '), False),
    ("an unclosed quoted cell", rec(H, URL, MAIL, b'"pack'), False),
    ("an unclosed quoted cell after a doubled quote", rec(H, URL, MAIL, b'"pa""'), False),
    ("a lone quote", rec(H, URL, MAIL, b'"'), False),
    # CR
    ("a CRLF line", PRODUCT + b"\r", True),
    ("a CRLF line, unquoted end", rec(H, URL, MAIL, b"pack") + b"\r", True),
    ("a CRLF line, empty end", rec(H, URL, MAIL, b"") + b"\r", True),
    ("a CRLF line, quoted empty end", rec(H, URL, MAIL, b'""') + b"\r", True),
    ("two CRs", PRODUCT + b"\r\r", True),
    ("a CR ending the record early", rec(H, URL, MAIL) + b"\r", False),
    ("a CR then a cell", rec(H, URL, MAIL) + b"\r,d", False),
    ("a CR inside an unquoted cell", rec(H, URL, MAIL, b"pa\rck"), False),
    ("a CR inside a quoted cell", rec(H, URL, MAIL, b'"pa\rck"'), True),
    ("a CR at the end of a quoted cell", rec(H, URL, MAIL, b'"pack\r"'), True),
    ("a CR then a blank", PRODUCT + b"\r ", False),
    ("a CR first", b"\r" + PRODUCT, False),
    ("only a CR", b"\r", False),
    ("only CRs", b"\r\r", False),
    # comments and blanks
    ("a comment", b"# shipped in May", False),
    ("a comment row of the width", b"#x,u,e,d", False),
    ("an indented comment", b"  \t#x,u,e,d", False),
    ("a quoted comment", b'"#x",u,e,d', False),
    ("a quoted indented comment", b'" #x",u,e,d', False),
    ("a comment after a form feed", b"\x0c#x,u,e,d", False),
    ("a blank", b" ", False),
    ("a tab", b"\t", False),
    # widths
    ("three cells", rec(H, URL, MAIL), False),
    ("five cells", rec(H, URL, MAIL, DESC, b"x"), False),
    ("five cells, the last empty", rec(H, URL, MAIL, DESC, b""), False),
    ("one cell", H, False),
    # UTF-8
    ("unicode cells", rec(H, "https://例子.cn/设备".encode(), "é\u2028ü".encode(),
                          "🚀 pack".encode()), True),  # fmt: skip
    ("a unicode handle", rec("88.118.8/设备-泵-1".encode(), URL, MAIL, DESC), True),
    ("unicode in a quoted cell", rec(H, URL, MAIL, '"设备, ""泵"""'.encode()), True),
    ("not UTF-8", rec(H, URL, MAIL, b"pack\xff"), False),
    ("not UTF-8 in a quoted cell", rec(H, URL, MAIL, b'"pa\xffck"'), False),
    ("an overlong NUL", rec(H, URL, MAIL, b"\xc0\x80"), False),
    ("an encoded surrogate", rec(H, URL, MAIL, b"\xed\xa0\x80"), False),
    ("past U+10FFFF", rec(H, URL, MAIL, b"\xf4\x90\x80\x80"), False),
    ("a truncated sequence at the end", rec(H, URL, MAIL, b"pack\xe2\x82"), False),
    ("a truncated sequence before a comma", rec(H, URL, b"\xe2\x82", DESC), False),
    ("a truncated sequence before a quote", rec(H, URL, MAIL, b'"\xe2\x82"'), False),
    ("a BOM in a cell", rec(H, URL, MAIL, b"\xef\xbb\xbfpack"), True),
    # what the values make of cells
    ("escapes in a cell", rec(H, URL, MAIL, b'"a \\ / \t ""q"""'), True),
    ("a tab in an unquoted cell", rec(H, URL, MAIL, b"a\tb"), True),
    ("a binary-looking cell", rec(H, URL, MAIL, b"a\x01b"), False),
    ("NUL in a cell", rec(H, URL, MAIL, b"a\x00b"), False),
    ("NUL in a quoted cell", rec(H, URL, MAIL, b'"a\x00b"'), False),
    ("NUL in the handle", rec(H + b"\x00", URL, MAIL, DESC), False),
    ("DEL in a cell", rec(H, URL, MAIL, b"a\x7f"), False),
    ("C1 in a cell", rec(H, URL, MAIL, b"a\xc2\x85"), True),
    ("a C1 control in the handle", rec(H + b"\xc2\x85", URL, MAIL, DESC), False),
    ("an invalid handle", rec(b"88..118.8/a", URL, MAIL, DESC), False),
    ("no suffix", rec(b"88.118.8/", URL, MAIL, DESC), False),
    ("another prefix", rec(b"88.118.9/a", URL, MAIL, DESC), False),
    ("a longer prefix", rec(b"88.118.80/a", URL, MAIL, DESC), False),
    ("no slash: a 0.NA key", rec(b"88.118.8", URL, MAIL, DESC), False),
    ("a lower-case suffix", rec(b"88.118.8/sn-a", URL, MAIL, DESC), True),
    ("the longest handle", rec(b"88.118.8/" + b"x" * (C.MAX_HANDLE - 9), URL, MAIL, DESC), True),
    ("a handle too long", rec(b"88.118.8/" + b"x" * (C.MAX_HANDLE - 8), URL, MAIL, DESC), False),
    ("max data", rec(H, URL, MAIL, "é".encode() * (C.MAX_DATA_LENGTH // 2)), True),
    ("data too long", rec(H, URL, MAIL, b"x" * (C.MAX_DATA_LENGTH + 1)), False),
    ("a cell of the field limit", rec(H, URL, MAIL, b"x" * LIMIT), True),
    ("a cell past the field limit", rec(H, URL, MAIL, b"x" * (LIMIT + 1)), False),
    ("a quoted cell past the field limit", rec(H, URL, MAIL, b'"' + b"x" * (LIMIT + 1) + b'"'),
     False),
    ("a cell of the field limit, doubled quotes",
     rec(H, URL, MAIL, b'"' + b'""' * LIMIT + b'"'), True),
    ("a cell past the field limit, doubled quotes",
     rec(H, URL, MAIL, b'"' + b'""' * (LIMIT + 1) + b'"'), False),
    ("a cell past the field limit in bytes only", rec(H, URL, MAIL, "é".encode() * LIMIT), True),
]


@pytest.mark.parametrize("cs", [False, True])
def test_table(cython_twin_or_none, cs):
    parts = [row[1] for row in TABLE]
    pairs, taken, other = check(_twins(cython_twin_or_none), parts, cs=cs)
    assert [TABLE[i][0] for i in taken] == [row[0] for row in TABLE if row[2] is True]
    assert [TABLE[i][0] for i in other] == [row[0] for row in TABLE if row[2] is False]
    assert pairs[0][0] == b"88.118.8/SN-1"
    suffix = b"sn-a" if cs else b"SN-A"
    assert [k for k, _ in pairs if k.endswith((b"/SN-A", b"/sn-a"))] == [b"88.118.8/" + suffix]


@pytest.mark.parametrize("name,line", [(r[0], r[1]) for r in TABLE if r[2] is not None],
                         ids=[r[0] for r in TABLE if r[2] is not None])  # fmt: skip
def test_table_line_by_line(cython_twin_or_none, name, line):
    """Each line alone, so that no line's answer leans on a buffer another one left."""
    taken = check(_twins(cython_twin_or_none), [line])[1]
    assert bool(taken) is dict((r[0], r[2]) for r in TABLE)[name]


def test_the_csv_module_reads_the_quotes_left_to_the_caller():
    """The contract's own rule does work: the csv module alone takes these lines."""
    for name in ("a quote inside an unquoted cell", "a quote ending an unquoted cell",
                 "a blank before a quoted cell", "quotes inside an unquoted handle"):  # fmt: skip
        line = dict((r[0], r[1]) for r in TABLE)[name]
        rows = csv_rows(line.decode())
        assert rows is not None and len(rows) == 1 and len(rows[0]) == 4
        assert python_twin.encode_csv_row(rows[0], 0, COLS, NOW, _now_text(NOW), RESERVED,
                                          False) is not None  # fmt: skip


def test_the_cells_are_the_csv_modules():
    """A taken line's record is the one encode_csv_row makes of the csv module's row."""
    line = rec(H, b'"a ""q"", b"', b"", b'"c\rd"') + b"\r"
    assert csv_rows(line.decode()) == [[H.decode(), 'a "q", b', "", "c\rd"]]
    expected = python_twin.encode_csv_row([H.decode(), 'a "q", b', "", "c\rd"], 0, COLS, NOW,
                                          _now_text(NOW), RESERVED, False)  # fmt: skip
    assert check([python_twin], [line])[0] == [expected]


def test_a_line_feed_inside_a_line(cython_twin_or_none):
    """Not a line's (``parts`` are split at b"\\n"), yet read as the csv module reads it: text in
    a quoted cell, elsewhere the end of a row that more rows follow."""
    parts = [rec(H, URL, MAIL, b'"a\nb"'), rec(H, URL, MAIL, b"a\nb"), rec(H, URL, MAIL, b'"a"\n'),
             b"\n" + PRODUCT, PRODUCT + b"\n", PRODUCT + b"\r\n"]  # fmt: skip
    assert check(_twins(cython_twin_or_none), parts)[1:] == ([0], [1, 2, 3, 4, 5])


# -- comments: str.lstrip() in C -----------------------------------------------------------------

SPACES = [chr(c) for c in range(0x110000) if chr(c).isspace()]
NOT_SPACES = ["\x00", "\x01", "\x08", "\x0e", "\x1b", "\x84", "\x86", "\x9f", "\xa1", "\u167f",
              "\u1681", "\u180e", "\u1fff", "\u200b", "\u2027", "\u202a", "\u202e", "\u2030",
              "\u205e", "\u2060", "\u2fff", "\u3001", "\ufeff", "\U0001f680"]  # fmt: skip
# The first cell is no value (columns 1, 2): a comment or not, the row is otherwise taken.
SIDE = ((1, 1, "URL", None), (2, 2, "EMAIL", None))


def _first_cell(cell: str) -> bytes:
    return rec(('"' + cell + '"').encode(), URL, MAIL, H)


def test_comments_after_every_kind_of_blank(cython_twin_or_none):
    parts, expected = [], []
    for sp in SPACES + NOT_SPACES:
        for cell in (sp + "#x", " " + sp + "#x", "\t" + sp + sp + "#", sp + "x#"):
            parts.append(_first_cell(cell))
            expected.append(not is_comment(cell))
    taken = check(_twins(cython_twin_or_none), parts, handle_at=3, columns=SIDE)[1]
    assert [i in taken for i in range(len(parts))] == expected
    assert 0 < sum(expected) < len(expected)


@pytest.mark.parametrize("cell,taken", [
    ("#", False), ("#x", False), ("  #", False), (" \u3000#", False), ("\u3000#", True),
    ("\xa0#", True), (" \xa0 #x", False), ("\x01#", True), (" \x01#", True), ("x#", True),
    ("", True), (" ", True), ("\u2028\u2029#", True), ("\r#", False), ("\r \u2028#", False),
], ids=repr)  # fmt: skip
def test_comment_table(cython_twin_or_none, cell, taken):
    out = check(_twins(cython_twin_or_none), [_first_cell(cell)], handle_at=3, columns=SIDE)
    assert bool(out[1]) is taken


# -- arguments ----------------------------------------------------------------------------------


def test_max_line(cython_twin_or_none):
    parts = [PRODUCT, b" " * 40, PRODUCT + b"\r"]
    twins = _twins(cython_twin_or_none)
    n = len(PRODUCT)
    assert check(twins, parts, max_line=n)[1:] == ([0], [1, 2])
    assert check(twins, parts, max_line=n + 1)[1:] == ([0, 2], [1])
    assert check(twins, parts, max_line=n - 1)[1:] == ([], [0, 1, 2])
    assert check(twins, [b"", b""], max_line=0) == ([], [], [])  # blanks stay blank


def test_an_empty_region(cython_twin_or_none):
    assert check(_twins(cython_twin_or_none), []) == ([], [], [])


def test_under(cython_twin_or_none):
    parts = [PRODUCT, rec(b"20.500/a", URL, MAIL, DESC), rec(b"20.500", URL, MAIL, DESC),
             rec(b"88.abc/Sn-Ab", URL, MAIL, DESC)]  # fmt: skip
    twins = _twins(cython_twin_or_none)
    assert check(twins, parts, under=b"")[1] == [0, 1, 2, 3]
    assert check(twins, parts, under=b"0.NA/")[1] == [2]
    pairs, taken, _ = check(twins, parts, under=b"88.ABC/")
    assert taken == [3] and pairs[0][0] == b"88.ABC/SN-AB"
    pairs, taken, _ = check(twins, parts, under=b"88.ABC/", cs=True)
    assert taken == [3] and pairs[0][0] == b"88.ABC/Sn-Ab"
    assert check(twins, parts, under=b"88.abc/")[1] == []  # under is a key: upper case


def test_ttl_columns_and_every_column_kind(cython_twin_or_none):
    columns = ((1, 1, "URL", 3600), (2, 2, "EMAIL", 0), (3, 3, "DESC", -1))
    parts = [PRODUCT, rec(H, URL, b"", b"")]
    pairs, taken, _ = check(_twins(cython_twin_or_none), parts, columns=columns)
    assert taken == [0, 1] and b'"ttl":3600' in pairs[0][1] and b'"ttl":-1' in pairs[0][1]


# (name, columns, [taken for PRODUCT, for a row whose last cell is empty])
COLUMN_CASES = [
    ("a structured type", ((1, 1, "URL", None), (3, 3, "HS_ADMIN", None)), [False, True]),
    ("hſ_site by unicode upper", ((1, 1, "URL", None), (3, 3, "hſ_site", None)), [False, True]),
    ("an HS_ type that is not structured", ((3, 3, "HS_SERV", None),), [True, False]),
    ("the reserved index", ((1, 1, "URL", None), (3, RESERVED, "D", None)), [False, True]),
    ("index 0", ((1, 1, "URL", None), (3, 0, "D", None)), [False, True]),
    ("index huge", ((1, 1, "URL", None), (3, 1 << 80, "D", None)), [False, True]),
    ("index a str", ((1, 1, "URL", None), (3, "3", "D", None)), [False, True]),
    ("index a bool", ((1, 1, "URL", None), (3, True, "D", None)), [False, True]),
    ("ttl a str", ((1, 1, "URL", None), (3, 3, "D", "60")), [False, True]),
    ("ttl past int32", ((1, 1, "URL", None), (3, 3, "D", 1 << 31)), [False, True]),
    ("ttl past int64", ((1, 1, "URL", None), (3, 3, "D", 1 << 70)), [False, True]),
    ("an empty type", ((1, 1, "URL", None), (3, 3, "", None)), [False, True]),
    ("a type not a str", ((1, 1, "URL", None), (3, 3, b"D", None)), [False, True]),
    ("a surrogate in a type", ((1, 1, "URL", None), (3, 3, "D\udc80", None)), [False, True]),
    ("escaping in a type", ((1, 1, 'U"R\\L\x01', None),), [True, True]),
    ("a unicode type", ((1, 1, "名称", None),), [True, True]),
    ("duplicate indexes", ((1, 5, "A", None), (3, 5, "B", None)), [False, True]),
    ("one cell in two columns", ((1, 1, "A", None), (1, 2, "B", None)), [True, True]),
    ("the handle as a value", ((0, 1, "HANDLE", None),), [True, True]),
    ("no columns", (), [False, False]),
]


@pytest.mark.parametrize("columns,expected", [c[1:] for c in COLUMN_CASES],
                         ids=[c[0] for c in COLUMN_CASES])  # fmt: skip
def test_column_kinds(cython_twin_or_none, columns, expected):
    parts = [PRODUCT, rec(H, URL, MAIL, b"")]
    for cs in (False, True):
        taken = check(_twins(cython_twin_or_none), parts, columns=columns, cs=cs)[1]
        assert [i in taken for i in range(2)] == expected


# Arguments with which encode_csv_row declines every row: every non-blank line is the caller's.
DECLINED = [
    ("handle_at past the row", {"handle_at": 4}),
    ("handle_at negative", {"handle_at": -4}),
    ("handle_at a bool", {"handle_at": False}),
    ("handle_at a str", {"handle_at": "0"}),
    ("handle_at None", {"handle_at": None}),
    ("a position past the row", {"columns": COLS + ((4, 4, "T", None),)}),
    ("a position negative", {"columns": ((-1, 1, "T", None),)}),
    ("a position huge", {"columns": ((1 << 70, 1, "T", None),)}),
    ("a position a float", {"columns": ((1.0, 1, "T", None),)}),
    ("a column of three", {"columns": ((1, 1, "T"),)}),
    ("a column a list", {"columns": ([1, 1, "T", None],)}),
    ("columns a list", {"columns": list(COLS)}),
    ("columns None", {"columns": None}),
    ("width 0", {"width": 0}),
    ("width negative", {"width": -1}),
    ("width 3", {"width": 3, "columns": COLS[:2]}),
    ("width huge", {"width": 1 << 70}),
    ("now negative", {"now": -1}),
    ("now past int32", {"now": 0x80000000}),
    ("now a float", {"now": 1.0}),
    ("now a bool", {"now": True}),
    ("now None", {"now": None}),
]


@pytest.mark.parametrize("kwargs", [d[1] for d in DECLINED], ids=[d[0] for d in DECLINED])
def test_odd_arguments_leave_every_line_to_the_caller(cython_twin_or_none, kwargs):
    parts = [PRODUCT, b"", PRODUCT + b"\r", b"#"]
    assert check(_twins(cython_twin_or_none), parts, **kwargs) == ([], [], [0, 2, 3])


def test_a_width_past_every_line_allocates_nothing(cython_twin_or_none):
    """The widest row a region can hold is its longest line's commas + 1, whatever max_line."""
    parts = [PRODUCT, rec(H, URL)]
    for width in (len(PRODUCT) + 1, len(PRODUCT) + 2, sys.maxsize, sys.maxsize + 1):
        assert check(_twins(cython_twin_or_none), parts, width=width, max_line=sys.maxsize) == (
            [], [], [0, 1])  # fmt: skip
    line = b"," * 99
    assert check(_twins(cython_twin_or_none), [line], width=100, columns=()) == ([], [], [0])


@pytest.mark.parametrize("now", [0, 1, 0x7FFFFFFF])
def test_every_server_time(cython_twin_or_none, now):
    assert check(_twins(cython_twin_or_none), [PRODUCT, b""], now=now)[1] == [0]


def test_the_reserved_index_is_the_callers(cython_twin_or_none):
    columns = ((1, 7, "URL", None),)
    for twin in _twins(cython_twin_or_none):
        for reserved, taken in ((7, []), (RESERVED, [0])):
            out = twin.encode_csv_lines([PRODUCT], 4, 0, columns, NOW, _now_text(NOW), reserved,
                                        False, UNDER, MAX_LINE)  # fmt: skip
            assert out[1] == taken


@pytest.mark.parametrize("parts", [
    [b"", "a str line"], [bytearray(b"a")], [memoryview(b"a")], [None], [PRODUCT, 1],
    (PRODUCT,), None, PRODUCT,
], ids=["str", "bytearray", "memoryview", "none", "int", "tuple", "no list", "bytes"])  # fmt: skip
def test_lines_must_be_bytes_in_a_list(cython_twin_or_none, parts):
    for twin in _twins(cython_twin_or_none):
        with pytest.raises(TypeError):
            twin.encode_csv_lines(parts, 4, 0, COLS, NOW, _now_text(NOW), RESERVED, False, UNDER,
                                  MAX_LINE)  # fmt: skip


@pytest.mark.parametrize("width,under", [(4, "88.118.8/"), (4, None), (4.0, UNDER),
                                         (None, UNDER), ("4", UNDER), (True, UNDER)])
def test_width_must_be_an_int_and_under_bytes(cython_twin_or_none, width, under):
    for twin in _twins(cython_twin_or_none):
        with pytest.raises(TypeError):
            twin.encode_csv_lines([PRODUCT], width, 0, COLS, NOW, _now_text(NOW), RESERVED,
                                  False, under, MAX_LINE)  # fmt: skip


def test_a_lowered_field_limit_is_read_per_call(cython_twin_or_none):
    """csv.field_size_limit() counts characters, of a cell's text after unquoting."""
    n = len(MAIL)  # the longest other cell
    parts = []
    for k in (n, n + 1):
        parts += [rec(H, b"x" * k, MAIL, b""), rec(H, "é".encode() * k, MAIL, b""),
                  rec(H, b'"' + b'""' * k + b'"', MAIL, b"")]  # fmt: skip
    twins = _twins(cython_twin_or_none)
    old = csv.field_size_limit(n)
    try:
        assert check(twins, parts)[1] == [0, 1, 2]
        csv.field_size_limit(n - 1)
        assert check(twins, parts)[1] == []  # MAIL too is past the limit
        csv.field_size_limit(n + 1)
        assert check(twins, parts)[1] == [0, 1, 2, 3, 4, 5]
    finally:
        csv.field_size_limit(old)
    assert csv.field_size_limit() == LIMIT


# -- the scratch buffer, many cells and columns ---------------------------------------------------


def test_doubled_quotes_in_growing_lines(cython_twin_or_none):
    """Unquoting into a buffer that grows with the lines, and that later lines reuse."""
    parts = []
    for n in (1, 3, 100, 5000, 2, 60000, 10):  # 60000: 120000 characters, in the limit
        q = b'"' + b'a""' * n + b'"'
        parts += [rec(H, q, q, b'"' + b'b""' * (n // 2 + 1) + b'"'), rec(H, URL, MAIL, q)]
    pairs, taken, other = check(_twins(cython_twin_or_none), parts)
    assert taken == list(range(len(parts)))


def test_many_cells_and_columns(cython_twin_or_none):
    """More cells (32) and columns (16) than the stack holds."""
    for width in (17, 33, 300):
        columns = tuple((p, p, f"T{p}", None) for p in range(1, width))
        parts = [rec(H, *[f"c{p}".encode() for p in range(1, width)]),
                 rec(H, *[b'"x,""y"' if p % 5 == 0 else b"" for p in range(1, width)]),
                 rec(H, *[b"c"] * width)]  # fmt: skip
        taken = check(_twins(cython_twin_or_none), parts, width=width, columns=columns)[1]
        assert taken == [0, 1]


def test_the_bench_layout(cython_twin_or_none):
    """Lines as the bench's products-N.csv writes them, LF and CRLF."""
    parts = []
    for n in range(300):
        handle = f"88.118.8/SN-2026-{n:07d}".encode()
        line = rec(handle, b"https://trace.example-factory.cn/p/" + handle[9:], MAIL,
                   f'"Li-ion battery pack, model X{n % 100:02d}"'.encode())  # fmt: skip
        parts.append(line + (b"\r" if n % 3 == 0 else b""))
    pairs, taken, other = check(_twins(cython_twin_or_none), parts)
    assert taken == list(range(300)) and other == []


# -- generated regions ----------------------------------------------------------------------------

_CHAR = st.one_of(st.sampled_from(list(',"\r\n#  \t\\\x00\x01\x7fé设🚀\xa0\u3000')),
                  st.characters(blacklist_categories=("Cs",)))  # fmt: skip
_CELL = st.one_of(st.just(""), st.text(_CHAR, max_size=8))
_CLEAN = st.characters(blacklist_categories=("Cc", "Cs"))  # no control, no surrogate
# (no CR: csv.writer quotes a cell holding one only when the line terminator holds one too)
_PLAIN_CELL = st.one_of(st.just(""), st.text(st.one_of(_CLEAN, st.sampled_from(list(',"'))),
                                             max_size=10))  # fmt: skip
_TYPE = st.sampled_from(["URL", "EMAIL", "DESC", "名称", "HS_SERV", "HS_ADMIN"])
_TTL = st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1))
_HANDLE = st.one_of(
    st.builds(lambda s: f"88.118.8/{s}", st.text(_CLEAN, min_size=1, max_size=10)),
    st.builds(lambda p, s: f"{p}/{s}", st.sampled_from(["88.abc", "0.NA", "88.118.9"]),
              st.text(_CHAR, min_size=1, max_size=6)),
    st.sampled_from(["", "88.1", "#88.118.8/a", " #x", "88.118.8/\x01", '88.118.8/"a"']))
_QUOTING = st.sampled_from([
    {"quoting": csv.QUOTE_MINIMAL}, {"quoting": csv.QUOTE_ALL},
    {"quoting": csv.QUOTE_NONNUMERIC},
    {"quoting": csv.QUOTE_NONE, "escapechar": "\\"},
    {"quoting": csv.QUOTE_MINIMAL, "doublequote": False, "escapechar": "\\"},
])  # fmt: skip
_TERMINATOR = st.sampled_from(["\n", "\r\n", "\r"])
_NOISE = st.sampled_from(list(b'",\r\x00#  a') + [0xFF, 0xC3, 0xE2, 0x80])


def _write(rows, quoting: dict, terminator: str) -> bytes:
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator=terminator, **quoting)
    for r in rows:
        try:
            writer.writerow(r)
        except csv.Error:  # QUOTE_NONE and a cell that needs quoting
            writer = csv.writer(out, lineterminator=terminator, quoting=csv.QUOTE_ALL)
            writer.writerow(r)
    return out.getvalue().encode("utf-8")


@st.composite
def _layout(draw, plain: bool):
    n = draw(st.integers(1, 5))  # value columns
    at = draw(st.integers(0, n))
    indexes = draw(st.lists(st.integers(1, 40).filter(lambda i: i != RESERVED), min_size=n,
                            max_size=n, unique=plain or draw(st.booleans())))
    columns = tuple((i if i < at else i + 1, indexes[i], draw(_TYPE if not plain else
                                                             st.just(f"T{i}")), draw(_TTL))
                    for i in range(n))  # fmt: skip
    return n + 1, at, columns


@st.composite
def _region(draw):
    width, at, columns = draw(_layout(False))
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        cells = [draw(_CELL) for _ in range(width + draw(st.sampled_from([0, 0, 0, -1, 1])))]
        if at < len(cells):
            cells[at] = draw(_HANDLE)
        rows.append(cells)
    body = bytearray(_write(rows, draw(_QUOTING), draw(_TERMINATOR)))
    rnd = draw(st.randoms(use_true_random=False))
    for _ in range(draw(st.integers(0, 3)) if body else 0):
        i = rnd.randrange(len(body) + 1)
        op = rnd.randrange(3)
        if op == 0:
            body.insert(i, draw(_NOISE))
        elif i < len(body):
            if op == 1:
                del body[i]
            else:
                body[i] = draw(_NOISE)
    parts = bytes(body).split(b"\n")
    return parts, width, at, columns


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_region(), st.booleans(), st.sampled_from([b"", UNDER, b"0.NA/"]),
       st.sampled_from([MAX_LINE, 40]))  # fmt: skip
def test_generated_regions(cython_twin_or_none, case, cs, under, max_line):
    parts, width, at, columns = case
    check(_twins(cython_twin_or_none), parts, width, at, columns, cs=cs, under=under,
          max_line=max_line)  # fmt: skip


def test_generated_plain_rows_are_mostly_taken(cython_twin_or_none):
    """Rows csv.writer writes (quoted where they must be, LF or CRLF) of clean text under
    ``under``: taken, so parity is not by declining."""
    twins = _twins(cython_twin_or_none)
    cases = []

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(_layout(True), st.lists(st.lists(_PLAIN_CELL, min_size=6, max_size=6), min_size=2,
                                   max_size=6),
           st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd", "Lo")), min_size=1,
                   max_size=8),
           st.sampled_from([{"quoting": csv.QUOTE_MINIMAL}, {"quoting": csv.QUOTE_ALL}]),
           st.sampled_from(["\n", "\r\n"]))  # fmt: skip
    def run(layout, rows, suffix, quoting, terminator):
        width, at, columns = layout
        rows = [r[:width] for r in rows]
        for k, r in enumerate(rows):
            r[at] = f"88.118.8/{suffix}-{k}"
        cases.append((rows, _write(rows, quoting, terminator).split(b"\n")[:-1], layout))

    run()
    records = taken = 0
    for rows, parts, (width, at, columns) in cases:
        assert len(parts) == len(rows)  # no cell holds a line break
        out = check(twins, parts, width, at, columns)
        for k, r in enumerate(rows):
            if any(r[p] for p, *_ in columns) and not is_comment(r[0]):
                records += 1
                taken += k in out[1]
            else:
                assert k not in out[1]
    assert records >= 60 and taken >= 0.95 * records


def test_random_bytes(cython_twin_or_none):
    """Short lines of the bytes that matter, in every arrangement a seeded generator gives."""
    rnd = random.Random(5)
    alphabet = [b'"', b",", b"\r", b"\x00", b"#", b" ", b"a", b"\xc3\xa9", b"\xff", b"\xc3",
                b"88.118.8/", b'""']  # fmt: skip
    parts = [b"".join(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 12)))
             for _ in range(3000)]  # fmt: skip
    columns = ((1, 1, "A", None), (2, 2, "B", 60))
    twins = _twins(cython_twin_or_none)
    for width, at in ((3, 0), (3, 2), (2, 0), (1, 0)):
        cols = tuple(c for c in columns if c[0] < width)
        check(twins, parts, width, at, cols, under=b"")
