"""The HTML pages of the proxy (issue 8 §1; reliability.md B8): the record page, the landing
page with the resolve box, error pages and the body of a redirect.

Owns the templates (inline jinja2, autoescaped: every identifier and value is escaped) and how
a value is shown: index, type, data (URL values as links when their scheme is harmless, e-mail
as ``mailto:``, binary as base64, typed data — HS_ADMIN, HS_VLIST, HS_SITE, keys — as its REST
JSON), TTL and timestamp in ISO 8601 UTC.  Pages are small (a few KB), server-rendered, work
without JavaScript, load nothing from elsewhere (one inline stylesheet, allowed by hash in
``CSP``), and are accessible: ``lang``, a title per page, one ``h1``, tables with a caption and
``th scope``, a labelled input.  Pure: values in, bytes out.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from typing import Iterable, Sequence
from urllib.parse import quote

import jinja2
import orjson
from markupsafe import Markup

from resolver.valuejson import data_to_json, iso_utc
from resolver.values import TTL_ABSOLUTE, HandleValue

CONTENT_TYPE = "text/html; charset=utf-8"
#: Data longer than this is cut on the page (the JSON representation has it whole).
MAX_SHOWN = 2000
LINKABLE_SCHEMES = ("http", "https", "ftp", "ftps", "mailto")
#: Characters left as they are in an identifier used as a URL path (RFC 3986 pchar and "/").
PATH_SAFE = "/:@!$&'()*+,;=-._~"

CSS = (
    "body{font-family:system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fff;"
    "line-height:1.45}"
    "header,main,footer{max-width:60rem;margin:0 auto;padding:.75rem 1rem}"
    "header{border-bottom:1px solid #ccc}"
    "a{color:#0645ad}a:focus,input:focus,button:focus{outline:3px solid #f90;outline-offset:1px}"
    ".home{font-weight:700;text-decoration:none;margin-right:1rem}"
    "form{display:inline-flex;flex-wrap:wrap;gap:.5rem;align-items:center}"
    "input{font:inherit;padding:.35rem .5rem;min-width:16rem;border:1px solid #767676}"
    "button{font:inherit;padding:.35rem .9rem;border:1px solid #0645ad;background:#0645ad;"
    "color:#fff;cursor:pointer}"
    "h1{font-size:1.5rem;overflow-wrap:anywhere}h2{font-size:1.15rem}"
    "table{border-collapse:collapse;width:100%}caption{text-align:left;font-weight:600;"
    "padding:.25rem 0}"
    "th,td{border:1px solid #ccc;padding:.35rem .5rem;text-align:left;vertical-align:top}"
    "thead th{background:#f2f2f2}"
    "td.data{white-space:pre-wrap;overflow-wrap:anywhere;font-family:ui-monospace,monospace}"
    "td.when{white-space:nowrap}.note{color:#555;font-size:.9em}footer{color:#555;font-size:.9em}"
)
#: The Content-Security-Policy of every page: nothing but this stylesheet, forms to this origin.
CSP = ("default-src 'none'; style-src 'sha256-"
       + base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
       + "'; img-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")  # fmt: skip

_TEMPLATES = {
    "base": """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{% endblock %} · idnode</title>
{% block head %}{% endblock %}
<style>{{ css }}</style>
</head>
<body>
<header>
<a class="home" href="/">idnode</a>
{% block search %}{{ search_form(query) }}{% endblock %}
</header>
<main>
{% block main %}{% endblock %}
</main>
<footer>
<p>Identifier resolution node (Handle protocol). Programs: send <code>Accept:
application/json</code>, <code>application/cbor</code> or <code>application/linkset+json</code>
to <code>/{identifier}</code>, or use the REST API under <code>/api/handles/</code>.</p>
</footer>
</body>
</html>
""",
    "form": """{% macro search_form(query="") -%}
<form method="get" action="/" role="search">
<label for="identifier">Identifier</label>
<input id="identifier" name="identifier" type="text" value="{{ query }}" required
 placeholder="prefix/suffix" autocomplete="off" autocapitalize="off" spellcheck="false">
<button type="submit" id="resolve-button">Resolve</button>
</form>
{%- endmacro %}""",
    "record": """{% extends "base" %}
{% block title %}{{ identifier }}{% endblock %}
{% block head %}<link rel="alternate" type="application/json" href="{{ json_href }}">{% endblock %}
{% block main %}
<p class="note">Handle record</p>
<h1>{{ identifier }}</h1>
<dl>
<dt>Prefix</dt><dd>{{ prefix }}{% if org %} — {{ org }}{% endif %}</dd>
</dl>
{% if rows %}
<table>
<caption>Public values</caption>
<thead><tr><th scope="col">Index</th><th scope="col">Type</th><th scope="col">Data</th>
<th scope="col">TTL</th><th scope="col">Timestamp</th></tr></thead>
<tbody>
{% for r in rows %}
<tr><th scope="row">{{ r.index }}</th><td>{{ r.type }}</td><td class="data">
{%- if r.href %}<a href="{{ r.href }}">{{ r.data }}</a>{% else %}{{ r.data }}{% endif %}
{%- if r.note %} <span class="note">({{ r.note }})</span>{% endif %}</td>
<td class="when">{{ r.ttl }}</td><td class="when">
{%- if r.timestamp %}<time datetime="{{ r.timestamp }}">{{ r.timestamp }}</time>
{%- else %}—{% endif %}</td></tr>
{% endfor %}
</tbody>
</table>
{% else %}
<p>This identifier has no public values.</p>
{% endif %}
<p>This record as <a href="{{ json_href }}">JSON</a> (Handle REST API).</p>
{% endblock %}
""",
    "landing": """{% extends "base" %}
{% block title %}Resolve an identifier{% endblock %}
{% block search %}{% endblock %}
{% block main %}
<h1>Resolve an identifier</h1>
<p>Enter an identifier such as <code>{{ example }}</code> to see its record.
<code>/{identifier}</code> on this site takes a browser to the identifier's URL.</p>
{{ search_form("") }}
<h2>Prefixes served here</h2>
{% if prefixes %}
<ul>
{% for p in prefixes %}
<li><a href="/0.NA/{{ p.path }}?noredirect">{{ p.name }}</a>
{%- if p.org %} — {{ p.org }}{% endif %}</li>
{% endfor %}
{% if more %}<li>and {{ more }} more</li>{% endif %}
</ul>
{% else %}
<p>No prefix is served here yet.</p>
{% endif %}
{% endblock %}
""",
    "error": """{% extends "base" %}
{% block title %}{{ heading }}{% endblock %}
{% block main %}
<h1>{{ heading }}</h1>
<p>{{ message }}</p>
{% if identifier %}<p>Identifier: <code>{{ identifier }}</code></p>{% endif %}
<p><a href="/">Resolve another identifier</a></p>
{% endblock %}
""",
    "redirect": """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Redirect · idnode</title></head>
<body><p>Redirecting to <a href="{{ url }}">{{ url }}</a></p></body></html>
""",
}

_ENV = jinja2.Environment(loader=jinja2.DictLoader(_TEMPLATES), autoescape=True,
                          trim_blocks=True, lstrip_blocks=True,
                          undefined=jinja2.StrictUndefined)  # fmt: skip
_ENV.globals["css"] = Markup(CSS)  # a constant of this module, not data: not escaped
_ENV.globals["search_form"] = _ENV.get_template("form").module.search_form
_ENV.globals["query"] = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """One value as the record page shows it.  ``href``: the link target of the data, if any;
    ``note``: what the reader should know about the data (its format, a cut)."""

    index: int
    type: str
    data: str
    href: str | None
    note: str
    ttl: str
    timestamp: str


@dataclasses.dataclass(frozen=True, slots=True)
class PrefixEntry:
    """A prefix on the landing page: its name, URL path form, and organisation (ORG)."""

    name: str
    org: str | None = None

    @property
    def path(self) -> str:
        return url_path(self.name)


def url_path(identifier: str) -> str:
    """An identifier as a URL path (without the leading ``/``): ``?``, ``#``, ``%``, spaces
    and non-ASCII percent-encoded, ``/`` kept."""
    return quote(identifier, safe=PATH_SAFE)


def linkable(href: str) -> bool:
    """True when ``href`` may be a link: absolute, of a harmless scheme (never ``javascript:``)."""
    scheme, colon, _ = href.partition(":")
    return bool(colon) and scheme.strip().lower() in LINKABLE_SCHEMES


def _is(vtype: str, name: str) -> bool:
    t = vtype.upper()
    return t == name or t.startswith(name + ".")


def _duration(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds} s ({seconds // size} {unit})"
    return f"{seconds} s"


def row(v: HandleValue) -> Row:
    """How the record page shows one value."""
    data = data_to_json(v)
    fmt = data["format"]
    note = ""
    if fmt == "string":
        text = data["value"]
    elif fmt == "base64":
        text, note = data["value"], "binary, base64"
    elif fmt == "admin":
        a = data["value"]
        text = f"{a['handle']} index {a['index']}, permissions {a['permissions']}"
    else:
        text, note = orjson.dumps(data["value"]).decode(), f"{fmt}, as JSON"
    href = None
    if fmt == "string":
        target = text.strip()
        if _is(v.type, "EMAIL") and "@" in target and ":" not in target:
            href = "mailto:" + target
        elif (_is(v.type, "URL") or _is(v.type, "URN") or _is(v.type, "URI")) and linkable(target):
            href = target
    if len(text) > MAX_SHOWN:
        text = text[:MAX_SHOWN] + "…"
        note = (note + "; " if note else "") + f"cut; {len(v.data)} bytes in all"
    ttl = f"until {iso_utc(v.ttl)}" if v.ttl_type == TTL_ABSOLUTE else _duration(v.ttl)
    return Row(v.index, v.type, text, href, note, ttl, iso_utc(v.timestamp) if v.timestamp else "")


def record_page(identifier: str, values: Iterable[HandleValue], *, prefix: str,
                org: str | None = None) -> bytes:  # fmt: skip
    """The record page: the identifier, its prefix and organisation, one row per value in
    index order, and a link to the record in the REST JSON."""
    rows = [row(v) for v in sorted(values, key=lambda v: v.index)]
    return _render("record", identifier=identifier, rows=rows, prefix=prefix, org=org,
                   json_href="/api/handles/" + url_path(identifier), query=identifier)  # fmt: skip


def landing_page(prefixes: Sequence[PrefixEntry], more: int = 0) -> bytes:
    """The landing page: the resolve box and the prefixes served here (``more``: how many
    were left off the list)."""
    example = f"{prefixes[0].name}/…" if prefixes else "prefix/suffix"
    return _render("landing", prefixes=list(prefixes), more=more, example=example)


def error_page(heading: str, message: str, identifier: str | None = None) -> bytes:
    """A readable error: a heading (what happened), a sentence (why, what to do)."""
    return _render("error", heading=heading, message=message, identifier=identifier,
                   query=identifier or "")  # fmt: skip


def redirect_page(url: str) -> bytes:
    """The body of a redirect, for clients that do not follow ``Location`` themselves."""
    return _render("redirect", url=url)


def _render(name: str, **context) -> bytes:
    return _ENV.get_template(name).render(**context).encode("utf-8")
