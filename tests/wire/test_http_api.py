"""The Handle.net v9 REST API over real HTTP (handle.md §7, §3.4) against a running node.

Bodies are compared byte for byte with the reference shapes built from ``registry/demo.jsonl``;
the suite runs with and without ``IDNODE_NO_EXTENSIONS``, so the exact bytes pin both hot-path
twins, and ``test_cython_and_pure_nodes_answer_identically`` runs one node of each side by side.
"""

from __future__ import annotations

import json
import os
import socket
from urllib.parse import quote

import pytest

pytestmark = pytest.mark.wire

JSON_CT = "application/json; charset=UTF-8"
JSONP_CT = "application/javascript; charset=UTF-8"
TS = b'"timestamp":"2026-01-01T00:00:00Z"'

# Values of registry/demo.jsonl in the REST form (handle.md §7.2).
D1_URL = (b'{"index":1,"type":"URL","data":{"format":"string","value":"https://example.com/sn/demo-1"},'
          b'"ttl":86400,' + TS + b"}")  # fmt: skip
D1_EMAIL = (b'{"index":2,"type":"EMAIL","data":{"format":"string","value":"quality@example.com"},'
            b'"ttl":86400,' + TS + b"}")  # fmt: skip
D1_ADMIN = (b'{"index":100,"type":"HS_ADMIN","data":{"format":"admin","value":{"handle":"0.NA/88.118.8",'
            b'"index":200,"permissions":"011111111111"}},"ttl":86400,' + TS + b"}")  # fmt: skip
D2_URL = (b'{"index":1,"type":"URL","data":{"format":"string","value":"https://example.com/sn/demo-2"},'
          b'"ttl":86400,' + TS + b"}")  # fmt: skip
D2_BATCH = (b'{"index":2,"type":"PRODUCT.BATCH","data":{"format":"string",'
            b'"value":"{\\"batch\\":\\"B-2026-11\\",\\"line\\":3}"},"ttl":3600,' + TS + b"}")  # fmt: skip
NA_ADMIN = (b'{"index":100,"type":"HS_ADMIN","data":{"format":"admin","value":{"handle":"0.NA/88.118.8",'
            b'"index":300,"permissions":"011111111111"}},"ttl":86400,' + TS + b"}")  # fmt: skip
NA_DESC = (b'{"index":1,"type":"DESC","data":{"format":"string","value":"Demo enterprise prefix of idnode"},'
           b'"ttl":86400,' + TS + b"}")  # fmt: skip
LONG = "88.118.8/设备-压缩机/批次-2026-11/序列号-0001-温州工厂-二号生产线-质检合格-出口型号-αβγ"
LONG_URL = ('{"index":1,"type":"URL","data":{"format":"string","value":"https://example.com/设备/0001"},'
            '"ttl":86400,"timestamp":"2026-01-01T00:00:00Z"}').encode()  # fmt: skip
LONG_DESC = (b'{"index":2,"type":"DESC","data":{"format":"string","value":"Unicode suffix with slashes in it"},'
             b'"ttl":86400,' + TS + b"}")  # fmt: skip
SECRET = b"412.50 CNY"  # demo-2 index 3, permissions 1100: never shown to anonymous readers


def jstr(s: str) -> bytes:
    return json.dumps(s, ensure_ascii=False).encode()


def hit(handle: str, *values: bytes) -> bytes:
    return b'{"responseCode":1,"handle":' + jstr(handle) + b',"values":[' + b",".join(values) + b"]}"


def not_found(handle: str) -> bytes:
    return b'{"responseCode":100,"handle":' + jstr(handle) + b"}"


def no_values(handle: str) -> bytes:
    return b'{"responseCode":200,"values":[],"handle":' + jstr(handle) + b"}"


def error(rc: int, message: str, handle: str | None = None) -> bytes:
    body = b'{"responseCode":%d,"message":' % rc + jstr(message)
    return body + (b',"handle":' + jstr(handle) if handle is not None else b"") + b"}"


def not_here(handle: str) -> bytes:
    return error(301, "That prefix doesn't live here", handle)


def api(handle: str, query: str = "") -> str:
    """The request path for ``handle`` (percent-encoded, '/' kept) and a raw query string."""
    return "/api/handles/" + quote(handle, safe="/") + (("?" + query) if query else "")


def pretty(body: bytes) -> bytes:
    return json.dumps(json.loads(body), indent=2, ensure_ascii=False).encode()


DEMO1 = hit("88.118.8/demo-1", D1_URL, D1_EMAIL, D1_ADMIN)
DEMO2_PUBLIC = hit("88.118.8/demo-2", D2_URL, D2_BATCH)
NA = (NA_ADMIN, NA_DESC)

# (request path, HTTP status, exact body) — the JSON cases.
CASES = [
    # resolution, echoing the identifier as written (handle.md §1)
    (api("88.118.8/demo-1"), 200, DEMO1),
    (api("88.118.8/DEMO-1"), 200, hit("88.118.8/DEMO-1", D1_URL, D1_EMAIL, D1_ADMIN)),
    (api("88.118.8/Demo-1"), 200, hit("88.118.8/Demo-1", D1_URL, D1_EMAIL, D1_ADMIN)),
    (api("88.118.8/demo-2"), 200, DEMO2_PUBLIC),
    (api("88.118.8/no-such-thing"), 404, not_found("88.118.8/no-such-thing")),
    (api('88.118.8/a"b\\c'), 404, not_found('88.118.8/a"b\\c')),
    # invalid identifiers → 400 rc 102
    ("/api/handles/88.118.8/%ff", 400,
     error(102, "Handle is not valid UTF-8", "88.118.8/\ufffd")),
    ("/api/handles/88.118.8/demo-1%00", 400,
     error(102, "Handle contains a control character", "88.118.8/demo-1\x00")),
    (api("88.118.8/"), 400, error(102, "Handle has an empty suffix", "88.118.8/")),
    # prefixes this node does not hold → 400 rc 301 (reference message)
    (api("99.1/x"), 400, not_here("99.1/x")),
    (api("88.118.9/demo-1"), 400, not_here("88.118.9/demo-1")),
    (api("88.118.80/demo-1"), 400, not_here("88.118.80/demo-1")),
    (api("88.118/demo-1"), 400, not_here("88.118/demo-1")),
    (api("88.118.8.1/demo-1"), 400, not_here("88.118.8.1/demo-1")),
    (api("0.NA/88.118.9"), 400, not_here("0.NA/88.118.9")),
    # type= (repeatable, ASCII-case-insensitive, "X." = X and its sub-types)
    (api("88.118.8/demo-1", "type=URL"), 200, hit("88.118.8/demo-1", D1_URL)),
    (api("88.118.8/demo-1", "type=url"), 200, hit("88.118.8/demo-1", D1_URL)),
    (api("88.118.8/demo-1", "type=URL&type=EMAIL"), 200, hit("88.118.8/demo-1", D1_URL, D1_EMAIL)),
    (api("88.118.8/demo-2", "type=PRODUCT."), 200, hit("88.118.8/demo-2", D2_BATCH)),
    (api("88.118.8/demo-2", "type=PRODUCT.BATCH."), 200, hit("88.118.8/demo-2", D2_BATCH)),
    (api("88.118.8/demo-2", "type=product.batch"), 200, hit("88.118.8/demo-2", D2_BATCH)),
    (api("88.118.8/demo-2", "type=PRODUCT"), 200, no_values("88.118.8/demo-2")),
    # index= (repeatable; union with type=, record order kept)
    (api("88.118.8/demo-1", "index=1&index=100"), 200, hit("88.118.8/demo-1", D1_URL, D1_ADMIN)),
    (api("88.118.8/demo-1", "index=100&type=EMAIL"), 200, hit("88.118.8/demo-1", D1_EMAIL, D1_ADMIN)),
    (api("88.118.8/demo-1", "index=999"), 200, no_values("88.118.8/demo-1")),
    (api("88.118.8/demo-1", "index=abc"), 400, error(4, "Bad index parameter 'abc'", "88.118.8/demo-1")),
    (api("88.118.8/demo-1", "index="), 400, error(4, "Bad index parameter ''", "88.118.8/demo-1")),
    # non-public values: withheld from anonymous readers, never shown
    (api("88.118.8/demo-2", "index=3"), 200, no_values("88.118.8/demo-2")),
    (api("88.118.8/demo-2", "type=PRODUCT.COST"), 200, no_values("88.118.8/demo-2")),
    (api("88.118.8/demo-2", "publicOnly=true"), 200, DEMO2_PUBLIC),
    (api("88.118.8/demo-2", "publicOnly"), 200, DEMO2_PUBLIC),
    (api("88.118.8/demo-2", "publicOnly=false"), 401,
     error(402, "Authentication needed", "88.118.8/demo-2")),
    (api("88.118.8/demo-2", "publicOnly=no&index=3"), 401,
     error(402, "Authentication needed", "88.118.8/demo-2")),
    (api("88.118.8/demo-1", "publicOnly=false"), 200, DEMO1),
    (api("88.118.8/demo-2", "type=NOTHING"), 200, no_values("88.118.8/demo-2")),
    # parameters the hot path leaves to the general path must not change the answer
    (api("88.118.8/demo-1", "auth=true&index=1"), 200, hit("88.118.8/demo-1", D1_URL)),
    (api("88.118.8/demo-1", "doNotRefer&index=1"), 200, hit("88.118.8/demo-1", D1_URL)),
    (api("88.118.8/demo-1", "pretty=false"), 200, DEMO1),
    (api("88.118.8/no-such-thing", "pretty=no"), 404, not_found("88.118.8/no-such-thing")),
    # prefix handles: 0.NA/<prefix>, and a name without '/' means 0.NA/<name>
    (api("0.NA/88.118.8"), 200, hit("0.NA/88.118.8", *NA)),
    (api("0.na/88.118.8"), 200, hit("0.na/88.118.8", *NA)),
    (api("88.118.8"), 200, hit("88.118.8", *NA)),
    (api("0.NA/88.118.8", "type=DESC"), 200, hit("0.NA/88.118.8", NA_DESC)),
    (api("88.118.8", "index=100"), 200, hit("88.118.8", NA_ADMIN)),
    # the long Unicode identifier: '/' inside the suffix, kept raw or percent-encoded
    (api(LONG), 200, hit(LONG, LONG_URL, LONG_DESC)),
    ("/api/handles/" + quote(LONG, safe=""), 200, hit(LONG, LONG_URL, LONG_DESC)),
    (api(LONG, "type=DESC"), 200, hit(LONG, LONG_DESC)),
    # only ASCII is case-folded: Greek capitals name another identifier
    (api(LONG.replace("αβγ", "ΑΒΓ")), 404, not_found(LONG.replace("αβγ", "ΑΒΓ"))),
    # listing without prefix, unknown routes, methods
    ("/api/handles", 400, b'{"responseCode":102,"message":"Empty handle invalid"}'),
    ("/api/handles/", 400, b'{"responseCode":102,"message":"Empty handle invalid"}'),
    ("/api/handles?page=1", 400, b'{"responseCode":102,"message":"Empty handle invalid"}'),
]

#: Paths under /api that are no endpoint: a JSON 404.
UNKNOWN_ROUTES = ["/api", "/api/", "/api/handlesX", "/api/prefixes/x/y"]
#: Paths outside /api are the proxy face's (issue 8 §1: tests/wire/test_proxy_http.py): the
#: landing page, or an identifier's page — HTML for a client that asks for nothing else.
PROXY_ROUTES = ["/", "/favicon.ico", "/index.html", "/hrls/handles?URL=x"]


def _ids(cases):
    return [f"{c[0][:70]}" for c in cases]


@pytest.mark.parametrize("path,status,body", CASES, ids=_ids(CASES))
def test_rest_answer_is_exact(node, path, status, body):
    r = node.get(path)
    assert (r.status, r.body) == (status, body), f"GET {path}"
    assert r.content_type == JSON_CT
    assert r.headers.get("Access-Control-Allow-Origin") == "*"


def test_node_runs_the_hot_path_this_run_selects(node):
    # The suite runs twice; the second run must really exercise the pure twin in the server.
    if os.environ.get("IDNODE_NO_EXTENSIONS", "") not in ("", "0"):
        assert "python hot path" in node.banner, node.banner
    else:
        assert "cython hot path" in node.banner, node.banner


def test_demo_1_parses_as_the_reference_shape(node):
    doc = json.loads(node.get(api("88.118.8/demo-1")).body)
    assert doc["responseCode"] == 1 and doc["handle"] == "88.118.8/demo-1"
    assert [(v["index"], v["type"]) for v in doc["values"]] == [(1, "URL"), (2, "EMAIL"),
                                                                (100, "HS_ADMIN")]  # fmt: skip


@pytest.mark.parametrize("query", ["", "publicOnly=true", "publicOnly=false", "index=3",
                                   "type=PRODUCT.COST", "type=PRODUCT.", "publicOnly=false&index=3",
                                   "index=1&index=2&index=3", "pretty", "callback=cb&index=3"])
def test_non_public_value_never_shown(node, query):
    r = node.get(api("88.118.8/demo-2", query))
    assert SECRET not in r.body
    assert b"PRODUCT.COST" not in r.body
    assert r.status in (200, 401)


def test_identifier_length_limit_is_2048_bytes(node):
    at_limit = "88.118.8/" + "a" * (2048 - 9)
    assert len(at_limit.encode()) == 2048
    r = node.get(api(at_limit))
    assert (r.status, r.body) == (404, not_found(at_limit))
    over = at_limit + "a"
    r = node.get(api(over))
    assert (r.status, r.body) == (400, error(102, "Handle longer than 2048 bytes", over))


def test_identifier_length_counts_utf8_bytes_not_characters(node):
    # 689 characters, 2049 bytes: over the limit although far below 2048 characters.
    over = "88.118.8/" + "设" * 680
    assert len(over.encode()) == 2049
    r = node.get(api(over))
    assert (r.status, r.body) == (400, error(102, "Handle longer than 2048 bytes", over))
    at_limit = "88.118.8/" + "设" * 679 + "ab"
    assert len(at_limit.encode()) == 2048
    r = node.get(api(at_limit))
    assert (r.status, r.body) == (404, not_found(at_limit))


@pytest.mark.parametrize("value", ["1_0_0", "%201", "1%20", "99999999999999999999", "2147483648"])
def test_index_parameter_must_be_a_decimal_int4(node, value):
    # Handle indexes are int4 in decimal (reference Integer.parseInt, which refuses these);
    # Python's int() also takes '_' separators, blanks and unbounded values.
    r = node.get(api("88.118.8/demo-1", f"index={value}"))
    assert r.status == 400, (value, r.body)
    assert json.loads(r.body)["responseCode"] == 4


def test_jsonp_callback(node):
    r = node.get(api("88.118.8/demo-1", "callback=processResponse&type=URL&type=EMAIL"))
    assert r.status == 200
    assert r.content_type == JSONP_CT
    assert r.body == b"processResponse(" + hit("88.118.8/demo-1", D1_URL, D1_EMAIL) + b");"


@pytest.mark.parametrize("raw,scrubbed", [
    ("f%3Co.o", "f_o_o"),
    ("1cb%24_x9", "_cb$_x9"),
    ("alert(1)%3B//", "alert_1____"),
    ("%E5%9B%9E%E8%B0%83", "回调"),
    ("a+b", "a_b"),
])  # fmt: skip
def test_jsonp_callback_name_is_scrubbed(node, raw, scrubbed):
    r = node.get(api("88.118.8/demo-1", f"callback={raw}&type=URL"))
    assert r.status == 200
    assert r.content_type == JSONP_CT
    assert r.body == scrubbed.encode() + b"(" + hit("88.118.8/demo-1", D1_URL) + b");"


def test_jsonp_wraps_errors_too(node):
    r = node.get(api("88.118.8/no-such-thing", "callback=cb"))
    assert (r.status, r.content_type) == (404, JSONP_CT)
    assert r.body == b"cb(" + not_found("88.118.8/no-such-thing") + b");"
    r = node.get(api("99.1/x", "callback=cb"))
    assert (r.status, r.body) == (400, b"cb(" + not_here("99.1/x") + b");")


@pytest.mark.parametrize("path,compact", [
    (api("88.118.8/demo-1", "pretty"), DEMO1),
    (api("88.118.8/demo-1", "pretty=true&type=URL"), hit("88.118.8/demo-1", D1_URL)),
    (api("88.118.8/demo-2", "pretty=yes&index=3"), no_values("88.118.8/demo-2")),
    (api("88.118.8/no-such-thing", "pretty"), not_found("88.118.8/no-such-thing")),
    (api(LONG, "pretty"), hit(LONG, LONG_URL, LONG_DESC)),
])  # fmt: skip
def test_pretty_is_the_same_document_indented(node, path, compact):
    r = node.get(path)
    assert r.content_type == JSON_CT
    assert r.body == pretty(compact)
    assert json.loads(r.body) == json.loads(compact)


def test_listing_refused_to_anonymous_callers_by_default(node):
    for path in ("/api/handles?prefix=88.118.8", "/api/handles/?prefix=88.118.8&page=0&pageSize=1"):
        r = node.get(path)
        assert r.status == 401, path
        assert r.content_type == JSON_CT
        assert r.body == error(402, "Authentication needed to list handles")
        assert b"DEMO" not in r.body.upper()


@pytest.fixture(scope="module")
def listing_node(start_node):
    return start_node(workers=1, config_text="[http]\nallow_anonymous_list = true\n")


DEMO_KEYS = [b"88.118.8/DEMO-1", b"88.118.8/DEMO-2", LONG.encode().upper()]


def _listed(body: bytes) -> list[bytes]:
    # Identifiers are case-insensitive (ASCII): compare them folded the way the store does.
    return [h.encode().upper() for h in json.loads(body)["handles"]]


def test_listing_allowed_by_config(listing_node):
    r = listing_node.get("/api/handles?prefix=88.118.8")
    assert (r.status, r.content_type) == (200, JSON_CT)
    doc = json.loads(r.body)
    assert list(doc) == ["responseCode", "prefix", "totalCount", "handles"]
    assert doc["responseCode"] == 1 and doc["prefix"] == "88.118.8"
    assert doc["totalCount"] == "3"  # a string, as the reference server writes it
    assert _listed(r.body) == DEMO_KEYS


def test_listing_pages(listing_node):
    seen = []
    for page in range(3):
        r = listing_node.get(f"/api/handles?prefix=88.118.8&page={page}&pageSize=2")
        assert r.status == 200
        doc = json.loads(r.body)
        assert list(doc) == ["responseCode", "prefix", "totalCount", "page", "pageSize", "handles"]
        assert (doc["totalCount"], doc["page"], doc["pageSize"]) == ("3", page, 2)
        seen.append(_listed(r.body))
    assert seen == [DEMO_KEYS[:2], DEMO_KEYS[2:], []]


def test_listing_page_size_zero_counts_only(listing_node):
    r = listing_node.get("/api/handles?prefix=88.118.8&pageSize=0")
    assert r.status == 200
    assert r.body == (b'{"responseCode":1,"prefix":"88.118.8","totalCount":"3","page":0,"pageSize":0,'
                      b'"handles":[]}')  # fmt: skip


def test_listing_accepts_prefix_handle_form(listing_node):
    r = listing_node.get("/api/handles?prefix=0.NA/88.118.8")
    assert r.status == 200
    doc = json.loads(r.body)
    assert doc["totalCount"] == "3" and _listed(r.body) == DEMO_KEYS


def test_listing_errors(listing_node):
    r = listing_node.get("/api/handles?prefix=99.1")
    assert (r.status, r.body) == (400, error(301, "That prefix doesn't live here"))
    r = listing_node.get("/api/handles?prefix=88.118.8&page=x&pageSize=2")
    assert (r.status, r.body) == (400, error(4, "page and pageSize must be integers"))
    r = listing_node.get("/api/handles")
    assert (r.status, r.body) == (400, b'{"responseCode":102,"message":"Empty handle invalid"}')


def test_listing_node_still_resolves(listing_node):
    assert listing_node.get(api("88.118.8/demo-1")).body == DEMO1


@pytest.mark.parametrize("path", UNKNOWN_ROUTES)
def test_unknown_route_is_json_404(node, path):
    r = node.get(path)
    assert (r.status, r.content_type) == (404, JSON_CT)
    doc = json.loads(r.body)
    assert doc["responseCode"] == 4
    assert doc["message"].startswith("Unknown HTTP API endpoint GET ")


@pytest.mark.parametrize("path", PROXY_ROUTES)
def test_paths_outside_the_api_are_the_proxy_pages(node, path):
    r = node.get(path)
    assert r.content_type == "text/html; charset=utf-8", (path, r.status)
    assert r.status == (200 if path == "/" else 404), path
    assert r.body.lstrip().lower().startswith(b"<!doctype html>"), path


@pytest.mark.parametrize("method", ["POST", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/api/handles/88.118.8/x", "/api/handles/88.118.8/demo-1"])
def test_other_methods_are_json_405_with_allow(node, method, path):
    body = b'[{"index":1,"type":"URL","data":"https://example.com/x"}]' if method == "POST" else None
    headers = {"Content-Type": "application/json"} if body else {}
    r = node.get(path, method=method, body=body, headers=headers)
    assert r.status == 405
    assert r.content_type == JSON_CT
    assert r.headers.get("Allow") == "GET, HEAD, PUT, DELETE"
    doc = json.loads(r.body)
    assert doc["responseCode"] == 4
    assert doc["message"] == f"Unknown HTTP API endpoint {method} {path.split('?')[0]}"
    # nothing was written: the record is unchanged
    assert node.get(api("88.118.8/demo-1")).body == DEMO1
    assert node.get(api("88.118.8/x")).status == 404


@pytest.mark.parametrize("method", ["PUT", "DELETE", "POST", "PATCH", "OPTIONS"])
def test_listing_takes_only_get(node, method):
    r = node.get("/api/handles?prefix=88.118.8", method=method)
    assert r.status == 405 and r.headers.get("Allow") == "GET, HEAD"
    assert json.loads(r.body)["responseCode"] == 4


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
@pytest.mark.parametrize("path", ["/api/handles/88.118.8/x", "/api/handles/88.118.8/demo-1"])
def test_writes_without_credentials_are_401_rc_402(node, method, path):
    body = b'[{"index":1,"type":"URL","data":"https://example.com/x"}]' if method == "PUT" else None
    headers = {"Content-Type": "application/json"} if body else {}
    r = node.get(path, method=method, body=body, headers=headers)
    assert r.status == 401 and r.headers.get("WWW-Authenticate") == 'Basic realm="handle"'
    doc = json.loads(r.body)
    assert doc["responseCode"] == 402
    assert node.get(api("88.118.8/demo-1")).body == DEMO1
    assert node.get(api("88.118.8/x")).status == 404


def test_head_has_headers_and_no_body(node):
    r = node.get(api("88.118.8/demo-1"), method="HEAD")
    assert (r.status, r.body, r.content_type) == (200, b"", JSON_CT)
    assert int(r.headers["Content-Length"]) == len(DEMO1)
    r = node.get(api("88.118.8/no-such-thing"), method="HEAD")
    assert (r.status, r.body) == (404, b"")


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


MALFORMED_HTTP = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "request line over 8190 bytes": (b"GET /api/handles/88.118.8/" + b"a" * 9000
                                     + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    "raw non-ASCII byte in the path": (b"GET /api/handles/88.118.8/\xff HTTP/1.1\r\nHost: x\r\n"
                                       b"Connection: close\r\n\r\n"),
    "missing Host": b"GET /api/handles/88.118.8/demo-1 HTTP/1.1\r\nConnection: close\r\n\r\n",
}  # fmt: skip


@pytest.mark.parametrize("name", list(MALFORMED_HTTP))
def test_malformed_http_is_never_html(node, name):
    out = _raw(node.port, MALFORMED_HTTP[name])
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1."), out[:200]
    assert b" 400 " in head.split(b"\r\n")[0]
    assert b"text/html" not in head.lower()
    assert b"<html" not in body.lower()


@pytest.mark.parametrize("name", list(MALFORMED_HTTP))
def test_malformed_http_is_answered_in_json(node, name):
    # README: "Every error is JSON with a Handle responseCode" — including requests aiohttp's
    # parser refuses before our handler runs.
    out = _raw(node.port, MALFORMED_HTTP[name])
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), out[:300]
    assert isinstance(json.loads(body)["responseCode"], int)


def test_no_answer_is_html(node):
    paths = [c[0] for c in CASES] + UNKNOWN_ROUTES + ["/api/handles?prefix=88.118.8"]
    for path in paths:
        r = node.get(path)
        assert r.content_type in (JSON_CT, JSONP_CT), path
        assert not r.body.lstrip().startswith(b"<"), path
        json.loads(r.body)


# -- the two hot-path twins behind real servers -------------------------------------------------
PARITY_PATHS = [c[0] for c in CASES] + UNKNOWN_ROUTES + PROXY_ROUTES + [
    api("88.118.8/demo-1", "callback=f%3Co.o&type=URL"),
    api("88.118.8/no-such-thing", "callback=cb"),
    api("88.118.8/demo-1", "pretty"),
    api("88.118.8/demo-2", "index=1_0_0"),
    api("88.118.8/demo-2", "index=99999999999999999999"),
    api("88.118.8/demo-2", "index=-1"),
    api("88.118.8/demo-2", "index=2&index=2&type=URL&type=url"),
    api("88.118.8/demo-1", "type=%ff&index=1"),
    api("88.118.8/" + "a" * 2039),
    api("88.118.8/" + "a" * 2040),
    api("88.118.8/" + "设" * 680),
    api("88.118.8/a\u2028b\u00a0c"),
    "/api/handles/88.118.8/%c2%85",
    "/api/handles/88.118.8/%7f",
    "/api/handles/0.NA/%ff",
    "/api/handles/%2e88.118.8/x",
    "/api/handles/88..118/x",
    "/api/handles/88.118.8./x",
    "/api/handles?prefix=88.118.8",
]  # fmt: skip


@pytest.fixture(scope="module")
def twin_nodes(start_node, idnode_env):
    pure = start_node(workers=1, env=dict(idnode_env, IDNODE_NO_EXTENSIONS="1"))
    ext_env = {k: v for k, v in idnode_env.items() if k != "IDNODE_NO_EXTENSIONS"}
    ext = start_node(workers=1, env=ext_env)
    return pure, ext


def test_twin_nodes_run_the_intended_hot_paths(twin_nodes):
    pure, ext = twin_nodes
    assert "python hot path" in pure.banner, pure.banner
    # `make build` builds the extension; a node without it would compare the twin to itself.
    assert "cython hot path" in ext.banner, ext.banner


def test_cython_and_pure_nodes_answer_identically(twin_nodes):
    pure, ext = twin_nodes
    differences = []
    for path in PARITY_PATHS:
        a, b = pure.get(path), ext.get(path)
        if (a.status, a.content_type, a.body) != (b.status, b.content_type, b.body):
            differences.append(f"{path}: pure {a.status} {a.body[:120]!r} / "
                               f"cython {b.status} {b.body[:120]!r}")  # fmt: skip
    assert not differences, "\n".join(differences)
