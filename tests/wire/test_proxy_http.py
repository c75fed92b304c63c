"""The proxy face of the HTTP port against a running node (issue 8 §1): ``GET /{identifier}``
redirects (302, query string passed through, ``10320/loc`` by country), shows the record page
(``?noredirect``, no URL value), answers JSON, CBOR and RFC 9264 linksets by ``Accept``, 406
otherwise; readable 404/400 pages; HEAD; the landing page and its resolve box."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import cbor2
import pytest

pytestmark = pytest.mark.wire

DEMO = Path(__file__).resolve().parents[2] / "registry" / "demo.jsonl"

XSS = "<script>alert('x')</script>"
LOC = ('<locations chooseby="locatt,country,weighted">'
       '<location href="https://eu.example.com/p/1" country="DE" weight="1" view="html"/>'
       '<location href="https://cn.example.com/p/1" country="CN" weight="0" view="text"/>'
       "</locations>")  # fmt: skip
EXTRA = [
    {"handle": "88.118.8/loc", "values": [
        {"index": 1, "type": "URL", "data": "https://legacy.example.com/p/1"},
        {"index": 2, "type": "10320/loc", "data": LOC, "ttl": 600}]},
    {"handle": "88.118.8/no-url", "values": [
        {"index": 1, "type": "DESC", "data": "A compressor, serial 0001", "ttl": 120},
        {"index": 2, "type": "URN", "data": "urn:example:compressor:0001"}]},
    {"handle": "88.118.8/xss", "values": [
        {"index": 1, "type": "DESC", "data": XSS},
        {"index": 2, "type": "URL", "data": "javascript:alert(1)"}]},
    {"handle": "88.118.8/query", "values": [
        {"index": 1, "type": "URL", "data": "https://example.com/q?x=1#top"}]},
    {"handle": "88.118.8/secret-only", "values": [
        {"index": 1, "type": "URL", "data": "https://hidden.example/", "permissions": "1100"}]},
]  # fmt: skip
ORG = "Example <Compressors> Co"
LONG = "88.118.8/设备-压缩机/批次-2026-11/序列号-0001-温州工厂-二号生产线-质检合格-出口型号-αβγ"
HTML_CT = "text/html; charset=utf-8"
JSON_CT = "application/json; charset=UTF-8"


@pytest.fixture(scope="module")
def pnode(start_node, tmp_path_factory, load_lines):
    lines = [json.loads(x) for x in DEMO.read_text().splitlines() if x.strip()]
    for line in lines:
        if line["handle"] == "0.NA/88.118.8":
            line["values"].append({"index": 10, "type": "ORG", "data": ORG})
    data = load_lines(tmp_path_factory.mktemp("proxy") / "data", lines + EXTRA)
    return start_node(data=data, workers=1)


def get(node, path: str, accept: str | None = None, method: str = "GET", **headers):
    if accept is not None:
        headers["Accept"] = accept
    return node.get(path, method=method, headers={k.replace("_", "-"): v
                                                  for k, v in headers.items()})  # fmt: skip


def test_head_redirects_to_the_url_value(pnode):
    # curl -I localhost:8000/88.118.8/demo-1
    r = get(pnode, "/88.118.8/demo-1", method="HEAD")
    assert (r.status, r.body) == (302, b"")
    assert r.headers["Location"] == "https://example.com/sn/demo-1"
    assert r.headers["Vary"] == "Accept" and r.headers["Cache-Control"] == "max-age=86400"


def test_browser_accept_redirects_and_passes_the_query_through(pnode):
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    r = get(pnode, "/88.118.8/demo-1?utm=a%20b&lot=7&locatt=id:1", browser)
    assert r.status == 302
    assert r.headers["Location"] == "https://example.com/sn/demo-1?utm=a%20b&lot=7"
    assert b'href="https://example.com/sn/demo-1?utm=a%20b&amp;lot=7"' in r.body
    r = get(pnode, "/88.118.8/query?lot=7")  # the target has a query and a fragment
    assert r.headers["Location"] == "https://example.com/q?x=1&lot=7#top"
    # a lower-case spelling of the identifier and an IRI target
    r = get(pnode, "/88.118.8/DEMO-2")
    assert (r.status, r.headers["Location"]) == (302, "https://example.com/sn/demo-2")
    r = get(pnode, "/" + quote(LONG))
    assert r.headers["Location"] == "https://example.com/%E8%AE%BE%E5%A4%87/0001"
    assert r.headers["Cache-Control"] == "max-age=86400"


def test_10320_loc_chooses_by_country_then_weight(pnode):
    assert get(pnode, "/88.118.8/loc").headers["Location"] == "https://eu.example.com/p/1"
    r = get(pnode, "/88.118.8/loc", X_Client_Country="CN")
    assert r.headers["Location"] == "https://cn.example.com/p/1"
    assert r.headers["Cache-Control"] == "max-age=600"
    r = get(pnode, "/88.118.8/loc", CF_IPCountry="cn")
    assert r.headers["Location"] == "https://cn.example.com/p/1"
    r = get(pnode, "/88.118.8/loc?locatt=view:text")
    assert r.headers["Location"] == "https://cn.example.com/p/1"  # locatt, not passed on


def test_noredirect_shows_the_record_page(pnode):
    r = get(pnode, "/88.118.8/demo-1?noredirect")
    assert (r.status, r.content_type) == (200, HTML_CT)
    text = r.body.decode()
    assert "<h1>88.118.8/demo-1</h1>" in text
    assert '<a href="https://example.com/sn/demo-1">https://example.com/sn/demo-1</a>' in text
    assert '<th scope="row">2</th><td>EMAIL</td>' in text
    assert "Example &lt;Compressors&gt; Co" in text  # the ORG of 0.NA/88.118.8, escaped
    assert '<time datetime="2026-01-01T00:00:00Z">' in text
    assert r.headers["Vary"] == "Accept" and r.headers["Cache-Control"] == "max-age=86400"
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert len(r.body) < 10_000


def test_no_url_value_shows_the_page_to_a_browser(pnode):
    r = get(pnode, "/88.118.8/no-url", "text/html")
    assert (r.status, r.content_type) == (200, HTML_CT)
    assert b"<h1>88.118.8/no-url</h1>" in r.body and b"A compressor, serial 0001" in r.body
    assert r.headers["Cache-Control"] == "max-age=120"
    # values without public read are not shown and give no redirect
    r = get(pnode, "/88.118.8/secret-only")
    assert r.status == 200 and b"hidden.example" not in r.body
    assert b"no public values" in r.body and r.headers["Cache-Control"] == "no-cache"


def test_values_are_escaped_on_the_served_page(pnode):
    r = get(pnode, "/88.118.8/xss")  # its URL is javascript: — a 302 there would be harmless,
    assert r.status == 302  # but the page must not link it
    r = get(pnode, "/88.118.8/xss?noredirect")
    assert r.status == 200 and b"<script" not in r.body.lower()
    assert b"&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in r.body
    assert b'href="javascript' not in r.body


def test_json_is_the_rest_answer(pnode):
    for ident in ("88.118.8/demo-1", "88.118.8/no-url", "88.118.8/nope", "77.1/x", "88.118.8/"):
        want = get(pnode, "/api/handles/" + ident)
        r = get(pnode, "/" + ident, "application/json")
        assert (r.status, r.body, r.content_type) == (want.status, want.body, JSON_CT), ident
        assert r.headers["Vary"] == "Accept"
    r = get(pnode, "/88.118.8/demo-1", "application/json")
    assert json.loads(r.body)["values"][0]["data"]["value"] == "https://example.com/sn/demo-1"


def test_cbor_holds_the_same_content_as_the_json(pnode):
    for ident in ("88.118.8/demo-2", "88.118.8/nope"):
        j = get(pnode, "/" + ident, "application/json")
        c = get(pnode, "/" + ident, "application/cbor")
        assert (c.status, c.content_type) == (j.status, "application/cbor")
        assert cbor2.loads(c.body) == json.loads(j.body)
    assert get(pnode, "/88.118.8/demo-2", "application/cbor").headers["Cache-Control"] \
        == "max-age=3600"  # fmt: skip


def test_linkset(pnode):
    r = get(pnode, "/88.118.8/loc", "application/linkset+json")
    assert (r.status, r.content_type) == (200, "application/linkset+json")
    base = pnode.base_url
    (ctx,) = json.loads(r.body)["linkset"]
    assert ctx["anchor"] == f"{base}/88.118.8/loc"
    assert [x["href"] for x in ctx["alternate"]] == [
        "https://legacy.example.com/p/1", "https://eu.example.com/p/1",
        "https://cn.example.com/p/1"]  # fmt: skip
    assert ctx["alternate"][0]["title"] == "URL, index 1"
    assert ctx["describedby"] == [{"href": f"{base}/api/handles/88.118.8/loc",
                                   "type": "application/json"}]  # fmt: skip
    (ctx,) = json.loads(get(pnode, "/88.118.8/no-url", "application/linkset+json").body)["linkset"]
    assert ctx["alternate"] == [{"href": "urn:example:compressor:0001", "title": "URN, index 2"}]
    r = get(pnode, "/88.118.8/nope", "application/linkset+json")
    assert (r.status, r.content_type) == (404, JSON_CT)


def test_unsupported_accept_is_406(pnode):
    r = get(pnode, "/88.118.8/demo-1", "image/png")
    assert (r.status, r.content_type) == (406, JSON_CT)
    assert json.loads(r.body)["supported"] == ["text/html", "application/json", "application/cbor",
                                               "application/linkset+json"]  # fmt: skip
    assert r.headers["Vary"] == "Accept"


def test_error_pages(pnode):
    r = get(pnode, "/88.118.8/no-such-thing")
    assert (r.status, r.content_type) == (404, HTML_CT)
    assert b"<h1>Identifier not found</h1>" in r.body and b"88.118.8/no-such-thing" in r.body
    assert r.headers["Cache-Control"] == "no-cache"
    r = get(pnode, "/88.118.8/demo-1/")
    assert r.status == 404 and b"Note the slash at its end" in r.body
    r = get(pnode, "/77.1/x")
    assert r.status == 404 and b"<h1>Prefix not served here</h1>" in r.body
    assert b"Prefix 77.1 is not served by this node" in r.body
    r = get(pnode, "/88.118.8/")
    assert r.status == 400 and b"<h1>Not a valid identifier</h1>" in r.body
    r = get(pnode, "/%FF/x")
    assert r.status == 400 and r.content_type == HTML_CT
    r = get(pnode, "/88.118.8/no-such-thing", method="HEAD")
    assert (r.status, r.body, r.content_type) == (404, b"", HTML_CT)
    r = get(pnode, "/88.118.8/demo-1", method="POST")
    assert (r.status, r.headers["Allow"]) == (405, "GET, HEAD")


def test_the_api_keeps_its_json_404_and_other_paths_are_not_taken(pnode):
    r = get(pnode, "/api/no-such-endpoint")
    assert (r.status, r.content_type) == (404, JSON_CT)
    assert json.loads(r.body)["responseCode"] == 4
    for path in ("/api", "/metrics", "/healthz", "/readyz"):
        r = get(pnode, path)
        assert "Content-Security-Policy" not in r.headers, path  # not a proxy page


def test_landing_page_lists_the_prefixes(pnode):
    r = get(pnode, "/")
    assert (r.status, r.content_type) == (200, HTML_CT)
    text = r.body.decode()
    assert '<input id="identifier" name="identifier"' in text
    assert 'id="resolve-button"' in text and '<form method="get" action="/"' in text
    assert '<a href="/0.NA/88.118.8?noredirect">88.118.8</a> — Example &lt;Compressors&gt; Co' \
        in text  # fmt: skip
    assert len(r.body) < 10_000
    assert get(pnode, "/", method="HEAD").body == b""


def test_the_resolve_box_redirects_to_the_record_page(pnode):
    r = get(pnode, "/?identifier=88.118.8%2Fdemo-1")
    assert (r.status, r.headers["Location"]) == (302, "/88.118.8/demo-1?noredirect")
    r = get(pnode, "/?identifier=+hdl%3A88.118.8%2Fa%3Fb%23c+")
    assert r.headers["Location"] == "/88.118.8/a%3Fb%23c?noredirect"
    r = get(pnode, "/?identifier=%2F%2Fevil.example%2Fx")  # never a protocol-relative URL
    assert r.headers["Location"] == "/evil.example/x?noredirect"
    r = get(pnode, "/?identifier=")
    assert r.status == 200 and b"Prefixes served here" in r.body
    # following the box's redirect shows the record
    page = get(pnode, "/88.118.8/demo-1?noredirect")
    assert page.status == 200 and b"<h1>88.118.8/demo-1</h1>" in page.body
