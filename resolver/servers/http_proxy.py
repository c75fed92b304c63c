"""The proxy face of the HTTP port (issue 8 §1; reliability.md B8): ``GET /{identifier}`` as
hdl.handle.net and the GS1 resolver answer it, and the landing page ``GET /``.

``HttpProxy.dispatch(request)`` answers every path outside ``/api`` (and ``/api/…``),
``/metrics``, ``/healthz`` and ``/readyz`` — for those it returns None and the front-end goes
on.  Only GET and HEAD (HEAD: the same headers, no body).

``GET /{identifier}`` — the identifier is the percent-decoded path without its leading ``/``
(so identifiers of a prefix named ``api`` are reached under ``/api/handles/`` only).  It is
resolved through the engine, public values only, recursing upstream when ``[upstream]
recursion`` is on (as the REST API).  The representation follows ``Accept``
(``mimeparse.best_match``; no header, an unparsable one or ``*/*`` count as ``text/html``):

* ``text/html``: 302 to the redirect target (``core.locations.choose``: the first URL value,
  or the ``10320/loc`` choice) with the request's query string appended (``?`` or ``&``,
  before any ``#fragment``), less the proxy's own ``noredirect`` and ``locatt`` parameters;
  with ``?noredirect``, or when there is no target, 200 and the record page.
* ``application/json``: the Handle REST JSON, exactly as ``GET /api/handles/{identifier}``
  (body and status, errors included).
* ``application/cbor``: the same document in CBOR (RFC 8949), same status.
* ``application/linkset+json``: the RFC 9264 linkset (``protocols.http.linkset``); errors as
  JSON.
* anything else: 406, JSON ``{"message", "supported": [...]}``.

Pages for errors: unknown identifier 404 "not found"; a prefix not held here (or delegated
elsewhere) 404 saying so; an invalid identifier 400; anything else the REST status.  Every
answer to ``/{identifier}`` carries ``Vary: Accept`` and ``Cache-Control: max-age=<the least
TTL of the values>`` (absolute TTLs count down to now; ``no-cache`` for errors and records
with no public value).  HTML carries a ``Content-Security-Policy`` that allows nothing but the
page's own stylesheet.

Redirect selection knows the client by: its IP address (``request.remote``; behind a reverse
proxy that is the proxy's), its country from the ``X-Client-Country`` header, else
``CF-IPCountry`` (ISO 3166 alpha-2, set by a front proxy or CDN; ``XX`` and ``T1`` count as
unknown; taken as given — it only steers the choice among the record's own targets), and the
``locatt`` parameters.  The ``Location`` header is a URI: an IRI value is
percent-encoded, so no value can split the header.

``GET /`` — the landing page: the resolve box and the prefixes held here (``store.prefixes()``,
at most ``MAX_LISTED``, each with the ``ORG`` value of its prefix handle).
``GET /?identifier=X`` — 302 to ``/X?noredirect``, so the box always shows the record page.

A resolution through the proxy is counted in the HTTP front-end's statistics (``core.stats``)
like one through the REST API; the organisation look-ups of the pages are not.
"""

from __future__ import annotations

import random
import time
from typing import Callable
from urllib.parse import parse_qsl, unquote_plus, unquote_to_bytes

import cbor2
import mimeparse
import orjson
from aiohttp import web
from multidict import CIMultiDict

from resolver.config import Config
from resolver.core import locations, stats
from resolver.core.engine import Resolver
from resolver.core.request import ResolveRequest, ResolveResult
from resolver.errors import InvalidIdentifier, Outcome
from resolver.identifier import NA_PREFIX, Identifier
from resolver.protocols.handle.codes import RC_FOR
from resolver.protocols.http import codec, linkset, pages
from resolver.protocols.http.codes import STATUS_FOR
from resolver.store.lmdb_store import LmdbStore
from resolver.values import TTL_ABSOLUTE, HandleValue

HTML = "text/html"
JSON = "application/json"
CBOR = "application/cbor"
LINKSET = linkset.CONTENT_TYPE
#: In increasing order of preference: ``mimeparse.best_match`` breaks ties by the later one, so
#: ``*/*`` is the page (or redirect) and ``application/*`` the JSON.
SUPPORTED = (LINKSET, CBOR, JSON, HTML)
#: Paths other front-end parts own (exact; and everything under ``/api/``).
RESERVED = ("/api", "/metrics", "/healthz", "/readyz")
#: Proxy parameters consumed here and not passed on to the redirect target.
OWN_PARAMS = ("noredirect", "locatt")
#: Request headers that may carry the client's country (first present wins).
COUNTRY_HEADERS = ("X-Client-Country", "CF-IPCountry")
MAX_LISTED = 50
LANDING_MAX_AGE = 60


def reserved(raw_path: str) -> bool:
    """True for the paths the proxy leaves to the rest of the front-end."""
    path = raw_path.partition("?")[0]
    return path in RESERVED or path.startswith("/api/")


def pass_through(query: str) -> str:
    """The raw query string less the proxy's own parameters, otherwise byte for byte."""
    kept = [p for p in query.split("&")
            if p and unquote_plus(p.partition("=")[0]) not in OWN_PARAMS]  # fmt: skip
    return "&".join(kept)


def with_query(url: str, query: str) -> str:
    """``url`` with ``query`` appended (``?`` or ``&``), before any fragment."""
    if not query:
        return url
    base, hash_, fragment = url.partition("#")
    sep = "" if base.endswith(("?", "&")) else ("&" if "?" in base else "?")
    return base + sep + query + hash_ + fragment


def max_age(values: tuple[HandleValue, ...], now: float) -> int | None:
    """The least TTL of ``values`` in seconds (absolute TTLs as time left), None for none."""
    ages = [max(0, int(v.ttl - now) if v.ttl_type == TTL_ABSOLUTE else v.ttl) for v in values]
    return min(ages) if ages else None


def client_country(headers) -> str | None:
    for name in COUNTRY_HEADERS:
        value = headers.get(name, "").strip()
        if value:
            return None if value.upper() in ("XX", "T1") else value
    return None


class HttpProxy:
    """The ``/{identifier}`` and ``/`` driver over one store and one engine."""

    def __init__(self, store: LmdbStore, resolver: Resolver, config: Config,
                 tally: dict | None = None, rand: Callable[[], float] = random.random
                 ) -> None:  # fmt: skip
        self.store = store
        self.resolver = resolver
        self.case_sensitive = config.case_sensitive
        self.recursion = config.upstream_recursion
        self.tally = tally if tally is not None else {}
        self.rand = rand

    async def dispatch(self, request: web.BaseRequest) -> web.StreamResponse | None:
        raw = request.raw_path
        path, _, query = raw.partition("?")
        if reserved(raw):
            return None
        if request.method not in ("GET", "HEAD"):
            message = f"Method {request.method} not allowed on {path}"
            resp = _json(405, codec.error_body(RC_FOR[Outcome.MALFORMED], None, message))
            resp.headers["Allow"] = "GET, HEAD"
            return resp
        if path == "/":
            return await self.landing(query)
        return await self.identifier(request, path[1:], query)

    # -- GET / -------------------------------------------------------------------------------
    async def landing(self, query: str) -> web.Response:
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name == "identifier":
                wanted = value.strip()
                if wanted[:4].lower() == "hdl:":
                    wanted = wanted[4:]
                # never "//host": a path that starts with two slashes names another site
                wanted = wanted.lstrip("/")
                if wanted:
                    resp = web.Response(status=302, headers={
                        "Location": "/" + pages.url_path(wanted) + "?noredirect",
                        "Cache-Control": "no-cache"})  # fmt: skip
                    return resp
        keys = sorted(self.store.prefixes())
        entries = []
        for key in keys[:MAX_LISTED]:
            name = key.decode("utf-8", "replace")
            entries.append(pages.PrefixEntry(name, await self.organisation(name)))
        body = pages.landing_page(entries, max(0, len(keys) - MAX_LISTED))
        return _html(200, body, f"max-age={LANDING_MAX_AGE}")

    async def organisation(self, prefix: str) -> str | None:
        """The ``ORG`` value of ``0.NA/<prefix>``, read through the engine; None without one."""
        try:
            ident = Identifier.parse(f"{NA_PREFIX}/{prefix}", case_sensitive=self.case_sensitive)
        except InvalidIdentifier:
            return None
        result = await self.resolver.resolve(ResolveRequest(ident, ("ORG",), (), True,
                                                            recursive=self.recursion))  # fmt: skip
        if result.outcome is not Outcome.OK:
            return None
        for v in sorted(result.values, key=lambda v: v.index):
            if v.has_type("ORG") and v.data:
                return v.data.decode("utf-8", "replace")
        return None

    # -- GET /{identifier} -------------------------------------------------------------------
    async def identifier(self, request: web.BaseRequest, path: str, query: str
                         ) -> web.Response:  # fmt: skip
        kind = negotiate(request.headers.get("Accept"))
        if kind is None:
            return _vary(_json(406, orjson.dumps({
                "message": "None of the requested media types is available",
                "supported": list(reversed(SUPPORTED))})), "no-cache")  # fmt: skip
        try:
            raw = unquote_to_bytes(path)
            ident = Identifier.parse(raw, case_sensitive=self.case_sensitive)
        except (InvalidIdentifier, UnicodeEncodeError) as exc:
            if not isinstance(exc, InvalidIdentifier):  # a lone surrogate in the request line
                raw, exc = path.encode("utf-8", "replace"), InvalidIdentifier("Not UTF-8")
            stats.count(self.tally, b"", exc.outcome)
            shown = raw.decode("utf-8", "replace")
            return _vary(self.failure(kind, ResolveResult(exc.outcome, message=exc.message),
                                      shown, shown), "no-cache")  # fmt: skip
        result = await self.resolver.resolve(ResolveRequest(ident, public_only=True,
                                                            recursive=self.recursion))  # fmt: skip
        stats.count(self.tally, ident.prefix_key, result.outcome)
        if result.outcome not in (Outcome.OK, Outcome.VALUES_NOT_FOUND):
            # for 0.NA/<p> the prefix in question is <p>
            prefix = ident.prefix
            if ident.is_prefix_handle:
                prefix = ident.text.partition("/")[2] if "/" in ident.text else ident.text
            return _vary(self.failure(kind, result, ident.text, prefix), "no-cache")
        values = result.values if result.outcome is Outcome.OK else ()
        age = max_age(values, time.time())
        cache = f"max-age={age}" if age is not None else "no-cache"
        if kind == HTML:
            return _vary(await self.human(request, ident, values, query), cache)
        if kind == LINKSET:
            return _vary(self.links(request, ident, values), cache)
        if result.outcome is Outcome.OK:
            body = codec.resolution_body(ident.text, values)
        else:  # every value withheld: the REST API's 200 with responseCode 200 and no values
            body = codec.error_body(RC_FOR[result.outcome], ident.text, result.message,
                                    empty_values=True)  # fmt: skip
        return _vary(_document(kind, STATUS_FOR[result.outcome], body), cache)

    async def human(self, request: web.BaseRequest, ident: Identifier,
                    values: tuple[HandleValue, ...], query: str) -> web.Response:  # fmt: skip
        params = parse_qsl(query, keep_blank_values=True)
        if not any(name == "noredirect" for name, _ in params):
            client = locations.Client(client_country(request.headers), request.remote,
                                      tuple(v for k, v in params if k == "locatt"))  # fmt: skip
            target = locations.choose(values, client, ident.text, self.rand)
            if target is not None:
                url = with_query(locations.to_uri(target.href), pass_through(query))
                resp = _html(302, pages.redirect_page(url))
                resp.headers["Location"] = url
                return resp
        org = None if ident.is_prefix_handle else await self.organisation(
            ident.prefix_key.decode("utf-8", "replace"))  # fmt: skip
        return _html(200, pages.record_page(ident.text, values, prefix=ident.prefix, org=org))

    def links(self, request: web.BaseRequest, ident: Identifier,
              values: tuple[HandleValue, ...]) -> web.Response:  # fmt: skip
        base = f"{request.scheme}://{request.host}/"
        targets = [(locations.to_uri(loc.href), f"{loc.type}, index {loc.index}")
                   for loc in locations.url_like(values, ident.text)]  # fmt: skip
        record = base + "api/handles/" + pages.url_path(ident.text)
        body = linkset.body(base + pages.url_path(ident.text),
                            linkset.record_links(targets, record))  # fmt: skip
        return web.Response(body=body, status=200, headers=CIMultiDict({
            "Content-Type": LINKSET, "Access-Control-Allow-Origin": "*"}))  # fmt: skip

    def failure(self, kind: str, result: ResolveResult, shown: str, prefix: str) -> web.Response:
        """An identifier that did not resolve: a page for people, the REST body for programs."""
        outcome = result.outcome
        if kind != HTML:
            if outcome is Outcome.PREFIX_REFERRAL:
                body = codec.referral_body(shown, result.values)
            else:
                body = codec.error_body(RC_FOR[outcome], shown, result.message)
            return _document(CBOR if kind == CBOR else JSON, STATUS_FOR[outcome], body)
        if outcome is Outcome.NOT_FOUND:
            status, heading = 404, "Identifier not found"
            message = f"No identifier {shown} is registered under prefix {prefix} here."
            if shown.endswith("/"):  # as hdl.handle.net warns: links often gain one
                message += " Note the slash at its end: try it without."
            else:
                message += " Check the spelling."
        elif outcome in (Outcome.NOT_RESPONSIBLE, Outcome.PREFIX_REFERRAL):
            status, heading = 404, "Prefix not served here"
            message = (f"Prefix {prefix} is not served by this node, so {shown} cannot be "
                       "resolved here. Try the node that serves that prefix.")  # fmt: skip
        elif outcome in (Outcome.INVALID_IDENTIFIER, Outcome.MALFORMED):
            status, heading = 400, "Not a valid identifier"
            message = (f"{result.message or 'The identifier is not valid'}. An identifier is "
                       "written prefix/suffix, for example 88.118.8/demo-1.")  # fmt: skip
        else:
            status, heading = STATUS_FOR[outcome], "The identifier could not be resolved"
            message = result.message or outcome.value.replace("_", " ")
        return _html(status, pages.error_page(heading, message, shown))


def negotiate(accept: str | None) -> str | None:
    """The representation for an ``Accept`` header (RFC 9110 §12.5.1); None: none acceptable.
    No header and an unparsable one count as ``*/*`` (a server may ignore a bad Accept)."""
    if accept is None or not accept.strip():
        return HTML
    try:
        return mimeparse.best_match(SUPPORTED, accept) or None
    except (mimeparse.MimeTypeParseException, ValueError):
        return HTML


def _html(status: int, body: bytes, cache: str | None = None) -> web.Response:
    headers = CIMultiDict({"Content-Type": pages.CONTENT_TYPE,
                           "Content-Security-Policy": pages.CSP,
                           "X-Content-Type-Options": "nosniff"})  # fmt: skip
    if cache is not None:
        headers["Cache-Control"] = cache
    return web.Response(body=body, status=status, headers=headers)


def _json(status: int, body: bytes) -> web.Response:
    return web.Response(body=body, status=status, headers=CIMultiDict({
        "Content-Type": codec.CONTENT_TYPE, "Access-Control-Allow-Origin": "*"}))  # fmt: skip


def _document(kind: str, status: int, json_body: bytes) -> web.Response:
    """The REST JSON body, or the same content as CBOR."""
    if kind != CBOR:
        return _json(status, json_body)
    return web.Response(body=cbor2.dumps(orjson.loads(json_body)), status=status,
                        headers=CIMultiDict({"Content-Type": CBOR,
                                             "Access-Control-Allow-Origin": "*"}))  # fmt: skip


def _vary(resp: web.Response, cache: str) -> web.Response:
    resp.headers["Vary"] = "Accept"
    resp.headers["Cache-Control"] = cache
    return resp
