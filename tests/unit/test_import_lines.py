"""registry.import_lines: JSON Lines and CSV import bodies parsed incrementally (issue 5 §1)."""

from __future__ import annotations

import csv
import tracemalloc

import orjson
import pytest

from registry.import_lines import CsvHeaderError, Encoded, Line, LineParser
from resolver.errors import IdnodeError, InvalidValue, MalformedRequest


def parse(fmt: str, body: bytes, pieces: int | None = None, max_line: int = 1 << 20) -> list:
    """Every Line of ``body`` fed whole, or in pieces of ``pieces`` bytes."""
    p = LineParser(fmt, max_line=max_line)
    out = []
    step = pieces or max(len(body), 1)
    for i in range(0, len(body), step):
        out += p.feed(body[i : i + step])
    return out + p.close()


def good(lines) -> list[tuple]:
    return [(n, h, v) for n, h, v, e in lines if e is None]


def bad(lines) -> list[tuple]:
    return [(n, h, type(e), e.message) for n, h, v, e in lines if e is not None]


def every_split(fmt: str, body: bytes, max_line: int = 1 << 20) -> list:
    """The Lines of ``body`` fed whole; asserts that every cut in two pieces, and feeding one
    byte at a time, gives the same Lines."""
    whole = parse(fmt, body, max_line=max_line)
    key = [(n, h, v, type(e), e and e.message) for n, h, v, e in whole]
    for cut in range(len(body) + 1):
        p = LineParser(fmt, max_line=max_line)
        got = p.feed(body[:cut]) + p.feed(body[cut:]) + p.close()
        assert [(n, h, v, type(e), e and e.message) for n, h, v, e in got] == key, cut
    one = parse(fmt, body, 1, max_line=max_line)
    assert [(n, h, v, type(e), e and e.message) for n, h, v, e in one] == key
    return whole


# -- JSON Lines ------------------------------------------------------------------------------

URL1 = {"index": 1, "type": "URL", "data": "https://example.com/1"}


def jl(handle, values) -> bytes:
    return orjson.dumps({"handle": handle, "values": values}) + b"\n"


def test_jsonl_lines_numbers_blank_and_comment_lines():
    body = (jl("88.118.8/A", [URL1]) + b"\n   \n# a comment\n  # another\n"
            + jl("88.118.8/B", []) + b"\r\n".join([b"", jl("88.118.8/C", [URL1]).strip(), b""]))
    lines = every_split("jsonl", body)
    assert good(lines) == [(1, "88.118.8/A", [URL1]), (6, "88.118.8/B", []),
                           (8, "88.118.8/C", [URL1])]  # fmt: skip
    assert bad(lines) == []


def test_jsonl_values_pass_through_unconverted():
    odd = [{"index": "7", "type": 5, "data": {"format": "whatever", "value": [1, 2]}}, "x", None]
    (line,) = parse("jsonl", jl("88.118.8/X", odd))
    assert line == (1, "88.118.8/X", odd, None)  # the engine validates values, not the parser
    assert Line(*line).values == odd


def test_jsonl_last_line_without_a_line_break_and_a_bom():
    body = b"\xef\xbb\xbf" + jl("88.118.8/A", [URL1]) + jl("88.118.8/B", [URL1]).rstrip(b"\n")
    assert [n for n, *_ in every_split("jsonl", body)] == [1, 2]
    assert parse("jsonl", b"") == [] and parse("jsonl", b"\n\n") == []


def test_jsonl_bad_lines_are_reported_with_their_number_and_reason():
    body = b"".join([
        b"{not json\n",                                   # 1
        b"[1, 2]\n",                                      # 2 not an object
        b'{"handle": 5, "values": []}\n',                 # 3 handle not a string
        b'{"values": []}\n',                              # 4 no handle
        b'{"handle": "88.118.8/E", "values": {}}\n',      # 5 values not a list
        b'{"handle": "88.118.8/F"}\n',                    # 6 no values
        b'{"handle": "88.118.8/\xff", "values": []}\n',   # 7 not UTF-8
        b'"text"\n',                                      # 8 a JSON string
        jl("88.118.8/OK", [URL1]),                        # 9
        b'{"handle": "88.118.8/G", "values": []} x\n',    # 10 trailing garbage
    ])  # fmt: skip
    lines = every_split("jsonl", body)
    assert good(lines) == [(9, "88.118.8/OK", [URL1])]
    errors = bad(lines)
    assert [(n, h, t) for n, h, t, _ in errors] == [
        (1, None, MalformedRequest), (2, None, MalformedRequest), (3, None, MalformedRequest),
        (4, None, MalformedRequest), (5, "88.118.8/E", InvalidValue),
        (6, "88.118.8/F", InvalidValue), (7, None, MalformedRequest), (8, None, MalformedRequest),
        (10, None, MalformedRequest)]  # fmt: skip
    messages = {n: m for n, _, _, m in errors}
    assert messages[1].startswith("not JSON")
    assert "values" in messages[5] and "handle" in messages[3]
    assert "UTF-8" in messages[7]


def test_jsonl_a_line_too_long_is_one_error_and_the_next_line_is_read():
    long = b'{"handle": "88.118.8/L", "values": [' + b" " * 500 + b"]}\n"
    body = jl("88.118.8/A", []) + long + jl("88.118.8/B", []) + long + long.rstrip(b"\n")
    for pieces in (None, 1, 7, 64, 100, 1000):
        lines = parse("jsonl", body, pieces, max_line=200)
        assert good(lines) == [(1, "88.118.8/A", []), (3, "88.118.8/B", [])], pieces
        assert [(n, m) for n, _, _, m in bad(lines)] == [
            (2, "line longer than 200 bytes"), (4, "line longer than 200 bytes"),
            (5, "line longer than 200 bytes")], pieces  # fmt: skip
    # exactly max_line bytes (not counting the line break) is still fine
    exact = jl("88.118.8/X", [])
    assert good(parse("jsonl", exact, max_line=len(exact) - 1)) == [(1, "88.118.8/X", [])]
    assert bad(parse("jsonl", exact, max_line=len(exact) - 2))[0][0] == 1


def test_memory_stays_bounded_by_max_line_whatever_the_line_length():
    piece = b"x" * 65536
    p = LineParser("jsonl", max_line=4096)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        errors = []
        for _ in range(256):  # one 16 MiB line
            errors += p.feed(piece)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert [n for n, *_ in errors] == [1]
    assert peak < 1 << 20  # never the 16 MiB line, never a growing buffer
    assert good(p.feed(b"\n" + jl("88.118.8/after", [])) + p.close()) == [(2, "88.118.8/after", [])]


def test_parser_misuse():
    with pytest.raises(MalformedRequest):
        LineParser("xml")
    p = LineParser("jsonl")
    p.close()
    with pytest.raises(ValueError):
        p.feed(b"{}\n")
    assert p.close() == []


def test_lines_read_counts_physical_lines():
    p = LineParser("jsonl")
    p.feed(b"\n#c\n" + jl("88.118.8/A", []) + b'{"hand')
    assert p.lines_read == 3
    p.close()
    assert p.lines_read == 4


# -- CSV -------------------------------------------------------------------------------------


def v(index, vtype, data, ttl=None) -> dict:
    d = {"index": index, "type": vtype, "data": data}
    if ttl is not None:
        d["ttl"] = ttl
    return d


def test_csv_header_convention_and_rows():
    body = (b"# exported 2024-05-01\n"
            b"handle,1:URL,2:EMAIL,2000:model\n"
            b"88.118.8/SN-1,https://e.com/1,ops@e.com,X-100\n"
            b"88.118.8/SN-2,https://e.com/2,,X-200\n")  # fmt: skip
    lines = every_split("csv", body)
    assert bad(lines) == []
    assert good(lines) == [
        (3, "88.118.8/SN-1", [v(1, "URL", "https://e.com/1"), v(2, "EMAIL", "ops@e.com"),
                              v(2000, "model", "X-100")]),
        (4, "88.118.8/SN-2", [v(1, "URL", "https://e.com/2"), v(2000, "model", "X-200")]),
    ]  # fmt: skip


def test_csv_bare_types_take_free_indexes_in_column_order():
    body = b"URL, HANDLE ,1:EMAIL,model,3:DESC:600,note:60\nu,88.118.8/A,e,m,d,n\n"
    (line,) = parse("csv", body)
    assert line == (2, "88.118.8/A", [
        v(2, "URL", "u"), v(1, "EMAIL", "e"), v(4, "model", "m"), v(3, "DESC", "d", 600),
        v(5, "note", "n", 60)], None)  # fmt: skip


def test_csv_quoted_cells_span_lines_and_pieces():
    body = (b'handle,1:URL,2:DESC\r\n'
            b'88.118.8/A,"https://e.com/a,b","first line\r\nsecond ""quoted"" line\n\nfourth"\r\n'
            b'88.118.8/B,u,"x"\r\n'
            b'"88.118.8/C","",""\r\n')  # fmt: skip
    lines = every_split("csv", body)
    assert good(lines) == [
        (2, "88.118.8/A", [v(1, "URL", "https://e.com/a,b"),
                           v(2, "DESC", 'first line\r\nsecond "quoted" line\n\nfourth')]),
        (6, "88.118.8/B", [v(1, "URL", "u"), v(2, "DESC", "x")]),
        (7, "88.118.8/C", []),
    ]  # fmt: skip


def test_csv_bom_blank_rows_and_comments():
    body = "\ufeffhandle,URL\n\n,\n  # note, with a comma\n88.118.8/Ä,ü\n#x,y\n".encode()
    lines = every_split("csv", body)
    assert good(lines) == [(5, "88.118.8/Ä", [v(1, "URL", "ü")])] and bad(lines) == []


def test_csv_bad_rows_are_errors_and_the_next_rows_are_read():
    body = (b"handle,URL,EMAIL\n"
            b"88.118.8/A,u\n"                 # 2 two cells
            b"88.118.8/B,u,e,extra\n"         # 3 four cells
            b",u,e\n"                         # 4 no handle
            b'"88.118.8/C" ,u,e\n'            # 5 text after a closing quote
            b"88.118.8/D,u\xff,e\n"           # 6 not UTF-8
            b"88.118.8/E,u,e\n")  # fmt: skip
    lines = every_split("csv", body)
    assert good(lines) == [(7, "88.118.8/E", [v(1, "URL", "u"), v(2, "EMAIL", "e")])]
    errors = bad(lines)
    assert [(n, h) for n, h, _, _ in errors] == [
        (2, "88.118.8/A"), (3, "88.118.8/B"), (4, None), (5, None), (6, None)]
    assert all(t is MalformedRequest for _, _, t, _ in errors)
    assert "2 cells" in errors[0][3] and "UTF-8" in errors[4][3]


def test_csv_quote_left_open_at_the_end():
    body = b'handle,URL\n88.118.8/A,u\n88.118.8/B,"never closed\nmore\n'
    lines = every_split("csv", body)
    assert good(lines) == [(2, "88.118.8/A", [v(1, "URL", "u")])]
    assert [(n, m) for n, _, _, m in bad(lines)] == [
        (3, "quoted cell not closed at the end of the body")]


def test_csv_record_longer_than_max_line_is_dropped_whole():
    body = (b'handle,URL\n88.118.8/A,"' + b"a,\n" * 30 + b'"\n'   # lines 2-32: one record
            b"88.118.8/B,u\n")  # fmt: skip
    lines = every_split("csv", body, max_line=50)
    assert good(lines) == [(33, "88.118.8/B", [v(1, "URL", "u")])]
    assert [(n, m.split(" (")[0]) for n, _, _, m in bad(lines)] == [
        (2, "record longer than 50 characters")]


def test_csv_a_line_that_cannot_be_read_fails_its_whole_record():
    long_cell = b'88.118.8/A,"' + b"x" * 60 + b"\n" + b'more ""q""\nend"\n'   # lines 2-4
    body = b"handle,URL\n" + long_cell + b"88.118.8/B,u\n"                       # line 5
    lines = every_split("csv", body, max_line=50)
    assert good(lines) == [(5, "88.118.8/B", [v(1, "URL", "u")])]
    assert [n for n, *_ in bad(lines)] == [2]
    # the over-long line is the record's second: the record fails at its first line
    body = b'handle,URL\n88.118.8/A,"first\n' + b"y" * 60 + b'\nlast"\n88.118.8/B,u\n'
    lines = every_split("csv", body, max_line=50)
    assert good(lines) == [(5, "88.118.8/B", [v(1, "URL", "u")])]
    assert [(n, m) for n, _, _, m in bad(lines)] == [(2, "line 3: line longer than 50 bytes")]
    body = b'handle,URL\n88.118.8/A,"first\nbad \xff\nlast"\n88.118.8/B,u\n'
    lines = every_split("csv", body)
    assert good(lines) == [(5, "88.118.8/B", [v(1, "URL", "u")])]
    assert [(n, m) for n, _, _, m in bad(lines)] == [(2, "line 3: line is not valid UTF-8")]


@pytest.mark.parametrize("header, reason", [
    (b"URL,EMAIL", "no 'handle' column"),
    (b"handle,URL,Handle", "two 'handle' columns"),
    (b"handle,URL,", "has no name"),
    (b"handle,0:URL", "index must be"),
    (b"handle,2147483648:URL", "index must be"),
    (b"handle,1:URL:2147483648", "ttl must be"),
    (b"handle,1:URL,1:EMAIL", "two columns for index 1"),
    (b"handle,1:", "expected TYPE"),
    (b"handle,2000", "expected TYPE"),
    (b"handle,1 : URL", "expected TYPE"),
])  # fmt: skip
def test_csv_bad_header_fails_the_import(header, reason):
    p = LineParser("csv")
    assert p.feed(b"# comment\n\n") == []
    with pytest.raises(CsvHeaderError) as info:
        p.feed(header + b"\n88.118.8/A,u,e\n")
    assert isinstance(info.value, MalformedRequest)
    assert info.value.line == 3 and reason in info.value.message
    with pytest.raises(CsvHeaderError):  # the parser stays failed
        p.feed(b"88.118.8/B,u\n")
    with pytest.raises(CsvHeaderError):
        p.close()


def test_csv_header_split_across_pieces_and_a_type_with_colons():
    p = LineParser("csv")
    assert p.feed(b"hand") == [] and p.feed(b"le,3:urn:x:60\n88.118.8/A,d") == []
    assert p.close() == [(2, "88.118.8/A", [v(3, "urn:x", "d", 60)], None)]
    assert parse("csv", b"handle,URL\n") == []  # a header and no rows: nothing to import


# -- the native encoders inside the parser: the same lines, records and errors -----------------

def _normalised(lines, now):
    """Lines → sorted (number, key, record) for encoded or encodable lines, (number, error)
    for the others: what the import engine makes of them."""
    from resolver.identifier import key_of
    from resolver.record import pack_from_json

    out = []
    for number, handle, values, error in lines:
        if error is not None:
            out.append((number, "error", type(error).__name__, error.message))
        elif isinstance(values, Encoded):
            out += [(values.first + i, "ok", k, b) for (k, b), i in zip(values.pairs, values.taken)]
            assert [values.handle(j) for j in range(len(values.pairs))] == [
                _reference_handle(values, i) for i in values.taken]
        elif isinstance(values, tuple):
            out.append((number, "ok", *values))
        else:
            try:
                out.append((number, "ok", key_of(handle), pack_from_json(values, now)))
            except IdnodeError as exc:
                out.append((number, "error", type(exc).__name__, exc.message))
    return sorted(out)


def _reference_handle(block, i):
    line = block.parts[i].decode()
    if block.handle_at >= 0:
        return next(csv.reader([line]))[block.handle_at]
    return orjson.loads(line)["handle"]


FAST_BODIES = {
    "csv": [
        'handle,1:URL,2:EMAIL,3:DESC:600\n88.118.8/A,https://a,a@x,"one, two"\n'
        '88.118.8/B,https://b,,"multi\nline ""cell"""\n88.118.8/C,https://c,c@x,plain\n'
        '88.118.8/D,https://d,d@x,"ok"\n# comment,,,\n,,,\n88.118.8/E,https://e\n'
        '88.118.8/F,"bad"x,f@x,z\r\n88.118.8/G,https://g,g@x,"\xe7\x94\xb5\xe6\xb1\xa0"\r\n'
        '88.118.9/H,https://h,h@x,h\n88.118.8/I,https://i,"open\n88.118.8/J,https://j,j@x,j\n'
        'k",k\n88.118.8/L,https://l,l@x,l\n',
        "handle,URL\n" + "".join(f"88.118.8/S-{i},https://s/{i}\n" for i in range(300)),
    ],
    "jsonl": [
        b'{"handle":"88.118.8/A","values":[{"index":1,"type":"URL","data":"https://a"}]}\n'
        b'\n# c\n{"handle":"88.118.8/B","values":[{"index":1001,"type":"TEMPLATE","data":"x"}]}\n'
        b'not json\n{"handle":"88.118.9/C","values":[{"index":1,"type":"URL","data":"c"}]}\n'
        b'{"values":[{"index":1,"type":"URL","data":"d"}],"handle":"88.118.8/D"}\r\n'.decode(),
    ],
}


@pytest.mark.parametrize("fmt, body", [(f, b) for f, bs in FAST_BODIES.items() for b in bs])
@pytest.mark.parametrize("piece", [1, 7, 64, 1 << 20])
def test_native_encoders_change_nothing_but_speed(fmt, body, piece):
    from resolver.record import fast_csv, fast_jsonl

    now = 1_800_000_000
    fast = (fast_csv(now, False, b"88.118.8/", 1 << 20) if fmt == "csv"
            else fast_jsonl(now, False, b"88.118.8/", 1 << 20))  # fmt: skip
    data = body.encode()
    plain, quick = LineParser(fmt), LineParser(fmt, fast=fast)
    a, b = [], []
    for i in range(0, len(data), piece):
        a += plain.feed(data[i : i + piece])
        b += quick.feed(data[i : i + piece])
    a += plain.close()
    b += quick.close()
    # the encoders did take lines: whole regions (after the CSV header's region), and CSV
    # records the csv module read
    assert any(isinstance(v, Encoded) for _n, _h, v, _e in b) or (fmt, piece) == ("csv", 1 << 20)
    assert fmt == "jsonl" or any(isinstance(v, tuple) for _n, _h, v, _e in b)
    assert _normalised(b, now) == _normalised(a, now)
