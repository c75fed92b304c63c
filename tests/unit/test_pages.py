"""The proxy's HTML pages (``protocols.http.pages``), its RFC 9264 linkset
(``protocols.http.linkset``) and the pure helpers of its driver (``servers.http_proxy``):
escaping, links, accessibility landmarks, size, the stylesheet's CSP hash, negotiation."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

import pytest

from resolver.protocols.http import linkset, pages
from resolver.servers import http_proxy
from resolver.values import TTL_ABSOLUTE, AdminRecord, HandleValue

TS = 1767225600  # 2026-01-01T00:00:00Z
XSS = "<script>alert('x')</script>"


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside each element kind."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: dict[str, list[str]] = {}
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in ("meta", "link", "input", "br"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.stack:
            while self.stack.pop() != tag:
                pass

    def handle_data(self, data):
        for tag in self.stack:
            self.text.setdefault(tag, []).append(data)

    def all(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]

    def joined(self, tag: str) -> str:
        return "".join(self.text.get(tag, []))


def parse(body: bytes) -> Tags:
    p = Tags()
    p.feed(body.decode("utf-8"))
    p.close()
    return p


def demo_values() -> list[HandleValue]:
    return [
        HandleValue(100, "HS_ADMIN", AdminRecord("0.NA/88.118.8", 200, 0x7FF).to_bytes(),
                    timestamp=TS),
        HandleValue(2, "EMAIL", b"quality@example.com", timestamp=TS),
        HandleValue(1, "URL", b"https://example.com/sn/demo-1", timestamp=TS),
        HandleValue(3, "DESC", XSS.encode(), ttl=3600),
        HandleValue(4, "URL.ALT", b"javascript:alert(1)"),
        HandleValue(5, "BLOB", b"\x00\x01\xfe\xff", ttl=1798761600, ttl_type=TTL_ABSOLUTE),
    ]  # fmt: skip


# -- record page -------------------------------------------------------------------------------
def test_record_page_shows_every_value_in_index_order():
    body = pages.record_page("88.118.8/demo-1", demo_values(), prefix="88.118.8", org="Example Co")
    doc = parse(body)
    assert doc.joined("h1").strip() == "88.118.8/demo-1"
    assert doc.joined("title").startswith("88.118.8/demo-1")
    rows = [a for a in doc.all("th") if a.get("scope") == "row"]
    assert len(rows) == 6
    text = body.decode()
    order = [text.index(f'<th scope="row">{i}</th>') for i in (1, 2, 3, 4, 5, 100)]
    assert order == sorted(order)
    assert "Example Co" in doc.joined("dd") and "88.118.8" in doc.joined("dd")
    # timestamp ISO, TTL relative and absolute
    assert '<time datetime="2026-01-01T00:00:00Z">' in text
    assert "86400 s (1 d)" in text and "3600 s (1 h)" in text
    assert "until 2027-01-01T00:00:00Z" in text
    # typed data readable, binary as base64 and said so
    assert "0.NA/88.118.8 index 200, permissions 011111111111" in text
    assert base64.b64encode(b"\x00\x01\xfe\xff").decode() in text and "binary, base64" in text


def test_url_values_are_links_and_harmful_schemes_are_not():
    doc = parse(pages.record_page("88.118.8/demo-1", demo_values(), prefix="88.118.8"))
    hrefs = [a["href"] for a in doc.all("a")]
    assert "https://example.com/sn/demo-1" in hrefs
    assert "mailto:quality@example.com" in hrefs
    assert not any(h.lower().startswith("javascript") for h in hrefs)
    assert "javascript:alert(1)" in doc.joined("td")  # shown as text
    assert "/api/handles/88.118.8/demo-1" in hrefs  # the JSON of the record


def test_every_identifier_and_value_is_escaped():
    values = [HandleValue(1, XSS, XSS.encode()),
              HandleValue(2, "URL", f'https://x/"{XSS}'.encode())]
    body = pages.record_page(f"88.1/{XSS}", values, prefix="88.1", org=XSS)
    text = body.decode()
    assert "<script" not in text.lower()
    assert text.count("&lt;script&gt;") >= 5  # title, h1, org, type, data (and the input)
    assert 'href="https://x/&#34;&lt;script&gt;' in text  # the quote cannot end the attribute
    doc = parse(body)
    assert doc.all("script") == []
    assert XSS in doc.joined("h1")  # what the reader sees is the text as written
    err = pages.error_page("Identifier not found", f"no {XSS}", XSS).decode()
    assert "<script" not in err.lower() and "&lt;script&gt;" in err
    land = pages.landing_page([pages.PrefixEntry(f"88.9{XSS}", XSS)]).decode()
    assert "<script" not in land.lower()


def test_accessible_layout():
    body = pages.record_page("88.118.8/demo-1", demo_values(), prefix="88.118.8")
    doc = parse(body)
    assert doc.all("html")[0].get("lang") == "en"
    assert len(doc.all("h1")) == 1 and doc.all("main") and doc.all("caption")
    cols = [a for a in doc.all("th") if a.get("scope") == "col"]
    assert len(cols) == 5
    (inp,) = doc.all("input")
    (label,) = doc.all("label")
    assert label["for"] == inp["id"] == "identifier"
    assert doc.all("meta")[0].get("charset") == "utf-8"


def test_no_script_no_external_assets_and_the_csp_hash_matches_the_stylesheet():
    for body in (pages.record_page("88.1/x", demo_values(), prefix="88.1"),
                 pages.landing_page([pages.PrefixEntry("88.1", "Org")]),
                 pages.error_page("Oops", "Something"),
                 pages.redirect_page("https://x/")):  # fmt: skip
        doc = parse(body)
        assert not doc.all("script") and not doc.all("img") and not doc.all("iframe")
        assert not any(a.get("rel") == "stylesheet" for a in doc.all("link"))
        assert not any("src" in a for _, a in doc.tags)
    text = pages.record_page("88.1/x", [], prefix="88.1").decode()
    css = re.search(r"<style>(.*?)</style>", text, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in pages.CSP
    assert "default-src 'none'" in pages.CSP and "script-src" not in pages.CSP


def test_pages_are_small():
    assert len(pages.record_page("88.118.8/demo-1", demo_values(), prefix="88.118.8",
                                 org="Example Co")) < 10_000  # fmt: skip
    many = [pages.PrefixEntry(f"88.118.{i}", f"Enterprise number {i}") for i in range(50)]
    assert len(pages.landing_page(many, more=12)) < 10_000
    huge = [HandleValue(1, "DESC", b"x" * 100_000)]
    body = pages.record_page("88.1/big", huge, prefix="88.1").decode()
    assert len(body) < 10_000 and "100000 bytes in all" in body


def test_record_without_values():
    doc = parse(pages.record_page("88.1/empty", [], prefix="88.1"))
    assert not doc.all("table") and "no public values" in doc.joined("p")


def test_landing_page_has_the_resolve_box_and_the_prefixes():
    body = pages.landing_page([pages.PrefixEntry("88.118.8", "Example Co"),
                               pages.PrefixEntry("88.118.9")], more=3)  # fmt: skip
    doc = parse(body)
    (form,) = doc.all("form")
    assert form["method"] == "get" and form["action"] == "/"
    (inp,) = doc.all("input")
    assert inp["name"] == "identifier" and inp["id"] == "identifier"
    assert [b for b in doc.all("button") if b.get("id") == "resolve-button"]
    assert "/0.NA/88.118.8?noredirect" in [a["href"] for a in doc.all("a")]
    items = doc.joined("li")
    assert "Example Co" in items and "88.118.9" in items and "and 3 more" in items
    empty = parse(pages.landing_page([]))
    assert "No prefix is served here yet." in empty.joined("p")


def test_url_path_escapes_what_a_path_cannot_hold():
    assert pages.url_path("88.1/a b?c#d%e/设") == "88.1/a%20b%3Fc%23d%25e/%E8%AE%BE"


# -- linkset -----------------------------------------------------------------------------------
def test_linkset_shape():
    links = linkset.record_links([("https://a/", "URL, index 1"), ("urn:x:1", "URN, index 2")],
                                 "https://node/api/handles/88.1/x")  # fmt: skip
    doc = json.loads(linkset.body("https://node/88.1/x", links))
    assert doc == {"linkset": [{
        "anchor": "https://node/88.1/x",
        "alternate": [{"href": "https://a/", "title": "URL, index 1"},
                      {"href": "urn:x:1", "title": "URN, index 2"}],
        "describedby": [{"href": "https://node/api/handles/88.1/x", "type": "application/json"}],
    }]}  # fmt: skip
    only = json.loads(linkset.body("https://n/88.1/y", linkset.record_links([], "https://n/r")))
    assert "alternate" not in only["linkset"][0]  # no empty relation arrays (RFC 9264 §4.2.2)


# -- the driver's pure helpers -----------------------------------------------------------------
@pytest.mark.parametrize("accept,kind", [
    (None, "text/html"), ("", "text/html"), ("*/*", "text/html"),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"),
    ("application/json", "application/json"), ("application/*", "application/json"),
    ("application/cbor", "application/cbor"),
    ("application/linkset+json", "application/linkset+json"),
    ("application/json;q=0.4, application/cbor", "application/cbor"),
    ("image/png", None), ("text/html;q=0", None), ("nonsense", "text/html"),
])  # fmt: skip
def test_negotiate(accept, kind):
    assert http_proxy.negotiate(accept) == kind


@pytest.mark.parametrize("url,query,out", [
    ("https://e/x", "", "https://e/x"),
    ("https://e/x", "a=1", "https://e/x?a=1"),
    ("https://e/x?k=v", "a=1", "https://e/x?k=v&a=1"),
    ("https://e/x?", "a=1", "https://e/x?a=1"),
    ("https://e/x?k=v#frag", "a=1&b=%20", "https://e/x?k=v&a=1&b=%20#frag"),
])  # fmt: skip
def test_with_query(url, query, out):
    assert http_proxy.with_query(url, query) == out


def test_pass_through_drops_only_the_proxy_parameters():
    assert http_proxy.pass_through("a=1&noredirect&b=x%20y&locatt=id:1&noredirect=1&c") \
        == "a=1&b=x%20y&c"  # fmt: skip
    assert http_proxy.pass_through("") == ""


def test_reserved_paths():
    for p in ("/api", "/api/", "/api/x?y", "/metrics", "/metrics?x", "/healthz", "/readyz"):
        assert http_proxy.reserved(p), p
    for p in ("/", "/88.1/x", "/metrics/x", "/apix/1", "/healthz2", "/0.NA/api"):
        assert not http_proxy.reserved(p), p


def test_max_age_is_the_least_ttl():
    vals = demo_values()
    assert http_proxy.max_age(tuple(vals), now=1798761600 - 100) == 100  # the absolute one
    assert http_proxy.max_age(tuple(vals[:4]), now=0) == 3600
    assert http_proxy.max_age((), now=0) is None
    assert http_proxy.max_age((vals[5],), now=1798761600 + 5) == 0


def test_client_country():
    assert http_proxy.client_country({"X-Client-Country": "cn", "CF-IPCountry": "DE"}) == "cn"
    assert http_proxy.client_country({"CF-IPCountry": "DE"}) == "DE"
    assert http_proxy.client_country({"CF-IPCountry": "XX"}) is None
    assert http_proxy.client_country({}) is None
