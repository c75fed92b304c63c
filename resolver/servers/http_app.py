"""The HTTP front-end: the Handle.net v9 REST API on aiohttp (handle.md §7).

``make_handler(store, resolver, config)`` builds the low-level aiohttp request handler.  ``GET /api/handles/{handle}``
first asks ``native.http_resolve`` (one read transaction, bytes out); when it declines, the
general path parses the identifier, runs the engine and encodes through the codec and the
outcome table.  Every answer, errors included, is JSON; nothing here raises to aiohttp.
"""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import parse_qsl, unquote_to_bytes

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict

import native
from resolver.config import Config
from resolver.core import stats
from resolver.core.engine import NOT_HERE, Resolver
from resolver.core.request import ResolveRequest
from resolver.errors import IdnodeError, InvalidIdentifier, MalformedRequest, Outcome
from resolver.identifier import Identifier, NA_PREFIX
from resolver.protocols.handle.codes import RC_FOR
from resolver.protocols.http import codec, openapi
from resolver.protocols.http.codes import STATUS_FOR
from resolver.servers.http_admin import AdminHttp
from resolver.store.lmdb_store import LmdbStore

log = logging.getLogger("idnode.http")

API = "/api/handles"
CHANGES = "/api/v1/changes"
SESSIONS = "/api/sessions"
BATCHES = "/api/v1/batches"
OPENAPI = "/api/openapi.json"
_API_SLASH = len(API) + 1
_clock = time.perf_counter
# Pre-built multidicts: aiohttp copies the headers of every Response, and copying a CIMultiDict
# is ~0.5 µs cheaper than building one from a dict.
_JSON = CIMultiDict({"Content-Type": codec.CONTENT_TYPE, "Access-Control-Allow-Origin": "*"})
_JSONP = CIMultiDict({"Content-Type": codec.JSONP_CONTENT_TYPE, "Access-Control-Allow-Origin": "*"})
_NOT_FOUND_PREFIX = b'{"responseCode":%d,' % RC_FOR[Outcome.NOT_FOUND]
_STATUS_NOT_FOUND = STATUS_FOR[Outcome.NOT_FOUND]
# The hot path answers only responseCode 1 (OK) or 200 (values filtered away, a resolution
# success in HTTP terms) besides 100; both map to the same status.
_STATUS_OK = STATUS_FOR[Outcome.OK]
assert STATUS_FOR[Outcome.VALUES_NOT_FOUND] == _STATUS_OK
#: Query parameters the hot path understands; any other sends the request down the general path.
_FAST_PARAMS = frozenset(("type", "index", "publicOnly", "auth"))


_INT4 = re.compile(r"[+-]?[0-9]{1,10}")


def _int4(value: str) -> int:
    # As Java's Integer.parseInt: optional sign, ASCII digits, 32-bit range; nothing else.
    if _INT4.fullmatch(value):
        n = int(value)
        if -0x80000000 <= n <= 0x7FFFFFFF:
            return n
    raise MalformedRequest(f"Bad index parameter {value!r}")


def _filter_param(name: str, value: str, types: list[str], indexes: list[int]
                  ) -> MalformedRequest | None:  # fmt: skip
    """Collect one ``type`` or ``index`` parameter; a bad index comes back as the error."""
    if name == "type":
        types.append(value)
        return None
    try:
        indexes.append(_int4(value))
    except MalformedRequest as exc:
        return exc
    return None


def _fast_status(body: bytes) -> int:
    return _STATUS_NOT_FOUND if body.startswith(_NOT_FOUND_PREFIX) else _STATUS_OK


def _true(value: str) -> bool:
    # Reference getBooleanParameter: present-and-empty, "yes" or "true" (any case) is true.
    return value == "" or value.lower() in ("yes", "true")


def _json(status: int, body: bytes, headers=_JSON) -> web.Response:
    return web.Response(body=body, status=status, headers=headers)


def _error(outcome: Outcome, handle: str | None, message: str = "", status: int | None = None,
           headers=_JSON, **kw) -> web.Response:  # fmt: skip
    rc = RC_FOR[outcome]
    body = codec.error_body(rc, handle, message, **kw)
    return _json(STATUS_FOR[outcome] if status is None else status, body, headers)


class HandleApi:
    """Request handlers of the REST API over one store and one engine."""

    def __init__(self, store: LmdbStore, resolver: Resolver, config: Config,
                 admin: AdminHttp | None = None, tally: dict | None = None) -> None:  # fmt: skip
        self.store = store
        #: resolutions counted (``core.stats``), by the fast path and the general path
        self.tally = tally if tally is not None else {}
        self.admin = admin
        self.env = store.env
        self.records_db = store.records_db
        self.prefixes_db = store.prefixes_db
        self.resolver = resolver
        self.case_sensitive = config.case_sensitive
        self.allow_anonymous_list = config.allow_anonymous_list
        # REST has no REC flag: with [upstream] recursion on, every foreign identifier recurses.
        self.recursion = config.upstream_recursion

    # -- GET /api/handles/{handle} --------------------------------------------------------
    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        method = request.method
        raw = request.raw_path
        q = raw.find("?")
        path = raw[_API_SLASH:q] if q >= 0 else raw[_API_SLASH:]
        try:
            handle = unquote_to_bytes(path) if "%" in path else path.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            handle = path.encode("utf-8", "replace")
        if method not in ("GET", "HEAD"):
            if self.admin is None:
                return self.not_allowed(request)
            if method not in ("PUT", "DELETE"):
                return self.not_allowed(request, "GET, HEAD, PUT, DELETE")
            text = _strict(handle)
            if text is None:
                return _error(Outcome.INVALID_IDENTIFIER, None, "Invalid handle: not UTF-8")
            return await self.admin.write(request, text, raw[q + 1 :] if q >= 0 else "")
        if self.admin is not None and self.admin.has_credentials(request):
            if _strict(handle) is None:
                return _error(Outcome.INVALID_IDENTIFIER, None, "Invalid handle: not UTF-8")
            return await self.authenticated_read(request, handle, raw[q + 1 :] if q >= 0 else "")
        if q < 0:
            txn = self.env.begin()  # not a with-block: the context manager costs ~0.4 µs
            try:
                body = native.http_resolve(handle, None, None, True, txn, self.records_db,
                                           self.prefixes_db, self.case_sensitive,
                                           self.tally)  # fmt: skip
            finally:
                txn.abort()
            if body is not None:
                return _json(_fast_status(body), body)
            return await self.general(handle, (), (), True, None, False)
        return await self.with_query(handle, raw[q + 1 :])

    async def with_query(self, handle: bytes, query: str) -> web.StreamResponse:
        types: list[str] = []
        indexes: list[int] = []
        public_only, callback, pretty, fast, do_not_refer = True, None, False, True, False
        authoritative = False
        bad: MalformedRequest | None = None
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name in ("type", "index"):
                err = _filter_param(name, value, types, indexes)
                bad = bad or err  # the first bad index is the one reported
            elif name == "publicOnly":
                public_only = _true(value)
            elif name == "callback":
                callback = value
            elif name == "pretty":
                pretty = _true(value)
            elif name == "doNotRefer":  # reference getBooleanParameter (handle.md §7.1)
                do_not_refer = _true(value)
            elif name == "auth":  # authoritative: bypass caches (handle.md §7.1, §3.2 AT)
                authoritative = _true(value)
            if name not in _FAST_PARAMS:
                fast = False
        if bad is not None:
            stats.count(self.tally, b"", bad.outcome)
            body = codec.error_body(RC_FOR[bad.outcome], _echo(handle), bad.message)
            if callback is not None:
                return _json(STATUS_FOR[bad.outcome], codec.jsonp(callback, body), _JSONP)
            return _json(STATUS_FOR[bad.outcome], body)
        if fast and public_only:
            t = tuple(x.encode("utf-8", "surrogateescape") for x in types)
            txn = self.env.begin()
            try:
                body = native.http_resolve(handle, t, tuple(indexes), True, txn, self.records_db,
                                           self.prefixes_db, self.case_sensitive,
                                           self.tally)  # fmt: skip
            finally:
                txn.abort()
            if body is not None:
                return _json(_fast_status(body), body)
        return await self.general(handle, tuple(types), tuple(indexes), public_only, callback,
                                  pretty, do_not_refer=do_not_refer,
                                  authoritative=authoritative)  # fmt: skip

    async def general(self, handle: bytes, types: tuple[str, ...], indexes: tuple[int, ...],
                      public_only: bool, callback: str | None, pretty: bool, *,
                      do_not_refer: bool = False,
                      authoritative: bool = False) -> web.Response:  # fmt: skip
        """The general path: parse → engine → codec; same bytes as the hot path where both answer."""
        headers = _JSON if callback is None else _JSONP
        try:
            ident = Identifier.parse(handle, case_sensitive=self.case_sensitive)
        except InvalidIdentifier as exc:
            stats.count(self.tally, b"", exc.outcome)
            status = STATUS_FOR[exc.outcome]
            body = codec.error_body(RC_FOR[exc.outcome], _echo(handle), exc.message)
        else:
            req = ResolveRequest(ident, types, indexes, public_only, do_not_refer=do_not_refer,
                                 recursive=self.recursion,
                                 authoritative=authoritative)  # fmt: skip
            result = await self.resolver.resolve(req)
            stats.count(self.tally, ident.prefix_key, result.outcome)
            status = STATUS_FOR[result.outcome]
            if result.outcome is Outcome.OK:
                body = codec.resolution_body(ident.text, result.values)
            elif result.outcome is Outcome.PREFIX_REFERRAL:  # HTTP 300, responseCode 303
                body = codec.referral_body(ident.text, result.values)
            else:
                body = codec.error_body(
                    RC_FOR[result.outcome], ident.text, result.message,
                    empty_values=result.outcome is Outcome.VALUES_NOT_FOUND,
                )  # fmt: skip
        if pretty:
            body = codec.pretty(body)
        if callback is not None:
            body = codec.jsonp(callback, body)
        return _json(status, body, headers)

    async def authenticated_read(self, request: web.BaseRequest, handle: bytes,
                                 query: str) -> web.StreamResponse:  # fmt: skip
        types: list[str] = []
        indexes: list[int] = []
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name in ("type", "index"):
                bad = _filter_param(name, value, types, indexes)
                if bad is not None:
                    return _error(bad.outcome, _echo(handle), bad.message)
        return await self.admin.read(request, _echo(handle), tuple(types), tuple(indexes))

    # -- GET /api/handles?prefix=P --------------------------------------------------------
    async def listing(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return self.not_allowed(request)
        query = request.query
        prefix = query.get("prefix")
        if prefix is None:
            return _error(Outcome.INVALID_IDENTIFIER, None, "Empty handle invalid")
        if not self.allow_anonymous_list and self.admin is None:
            # LIST_HANDLES needs an authenticated administrator (handle.md §7.1).
            resp = _error(Outcome.AUTH_NEEDED, None, "Authentication needed to list handles")
            resp.headers["WWW-Authenticate"] = 'Basic realm="handle"'
            return resp
        try:
            page = int(query["page"]) if "page" in query else None
            size = int(query["pageSize"]) if "pageSize" in query else None
        except ValueError:
            return _error(Outcome.MALFORMED, None, "page and pageSize must be integers")
        if not all(-0x80000000 <= v <= 0x7FFFFFFF for v in (page or 0, size or 0)):
            # Java ints in the reference; a larger one also overflowed the JSON answer (500)
            return _error(Outcome.MALFORMED, None, "page and pageSize must be 32-bit integers")
        name = prefix[len(NA_PREFIX) + 1 :] if prefix.upper().startswith("0.NA/") else prefix
        try:
            ident = Identifier.parse(f"{NA_PREFIX}/{name}", case_sensitive=self.case_sensitive)
        except InvalidIdentifier as exc:
            return _error(Outcome.INVALID_IDENTIFIER, None, exc.message)
        key = ident.suffix_key
        offset, limit = (0, None) if size is None or size < 0 else (max(page or 0, 0) * size, size)
        if self.admin is not None:
            listed = await self.admin.listing(request, name, offset, limit)
            if isinstance(listed, web.Response):
                return listed
            total, handles = listed
        else:
            if self.store.get_prefix(key) is None:
                return _error(Outcome.NOT_RESPONSIBLE, None, NOT_HERE)
            total, keys = self.store.list_keys(key, offset, limit)
            handles = [k.decode("utf-8", "replace") for k in keys]
        if size is not None and size < 0:
            size = None
        if size is not None and page is None:
            page = 0
        return _json(200, codec.listing_body(prefix, total, handles, page, size))

    # -- GET /api/v1/changes -------------------------------------------------------------------
    async def changes(self, request: web.BaseRequest) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return self.not_allowed(request)
        if self.admin is None:
            return await self.unknown(request)
        return await self.admin.changes(request)

    # -- errors ------------------------------------------------------------------------------
    def not_allowed(self, request: web.BaseRequest, allow: str = "GET, HEAD") -> web.Response:
        resp = _error(Outcome.MALFORMED, None,
                      f"Unknown HTTP API endpoint {request.method} {request.path}", status=405)  # fmt: skip
        resp.headers["Allow"] = allow
        return resp

    async def unknown(self, request: web.BaseRequest) -> web.Response:
        return _error(Outcome.MALFORMED, None,
                      f"Unknown HTTP API endpoint {request.method} {request.path}", status=404)  # fmt: skip


def _echo(handle: bytes) -> str:
    return handle.decode("utf-8", "replace")


def _strict(handle: bytes) -> str | None:
    """The handle as text for writes and authenticated reads; None if it is not UTF-8 (a
    replacement character would turn an invalid name into another, valid one)."""
    try:
        return handle.decode("utf-8")
    except UnicodeDecodeError:
        return None


class HttpFrontEnd:
    """The low-level aiohttp request handler: a fixed dispatch on the path, no router.

    aiohttp's ``Application`` (router, middleware chain, match info) costs more per request than
    the whole hot-path lookup (bench/RESULTS.md); a resolver answers one route almost always, so
    dispatch is a string test.  Nothing escapes: any exception becomes a JSON 500, logged once.
    """

    def __init__(self, api: HandleApi, extensions=(), proxy=None, ops=None,
                 metrics=None) -> None:  # fmt: skip
        self.api = api
        #: ``/api/v1/`` drivers (operator, imports, templates): each ``dispatch(request)``
        #: answers a path it owns, None for any other.
        self.extensions = tuple(extensions)
        #: ``http_proxy.HttpProxy``: ``/`` and ``/{identifier}`` outside ``/api/`` (None: off)
        self.proxy = proxy
        #: ``metrics.OpsHttp``: ``/metrics``, ``/healthz``, ``/readyz`` (None: off)
        self.ops = ops
        #: ``metrics.FrontEndMetrics``: each request's latency and operation (None: off)
        self.metrics = metrics

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        t0 = _clock()
        resp = await self.dispatch(request)
        if self.metrics is not None:
            self.metrics.http_done(request, resp, _clock() - t0)
        return resp

    async def dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        try:
            path = request.raw_path
            if path.startswith(API):
                rest = path[len(API) :]
                if rest[:1] == "/" and rest[1:2] not in ("", "?"):
                    return await self.api.handle(request)
                if rest in ("", "/") or rest[:1] == "?" or rest[:2] == "/?":
                    return await self.api.listing(request)
            if self.ops is not None:  # issue 8 §3, §5
                resp = await self.ops.dispatch(request)
                if resp is not None:
                    return resp
            if path.startswith(CHANGES) and path[len(CHANGES) : len(CHANGES) + 1] in ("", "?"):
                return await self.api.changes(request)
            if path.rstrip("/") == BATCHES and self.api.admin is not None:
                return await self.api.admin.batches(request)
            if path.startswith(SESSIONS) and self.api.admin is not None:
                return await self.api.admin.session_endpoint(request)
            if path.split("?", 1)[0] == OPENAPI:  # the API's OpenAPI 3.1 document (issue 8 §6)
                if request.method not in ("GET", "HEAD"):
                    return self.api.not_allowed(request)
                return _json(200, openapi.document_bytes())
            if path.startswith("/api/v1/"):
                for ext in self.extensions:
                    resp = await ext.dispatch(request)
                    if resp is not None:
                        return resp
            if self.proxy is not None and not path.startswith("/api/"):  # issue 8 §1
                resp = await self.proxy.dispatch(request)
                if resp is not None:
                    return resp
            return await self.api.unknown(request)
        except IdnodeError as exc:
            log.warning("E010 %s on %s %s: %s", type(exc).__name__, request.method, request.path, exc)
            return _error(exc.outcome, None, exc.message)
        except Exception:
            log.exception("E011 unexpected error on %s %s", request.method, request.path_qs)
            return _error(Outcome.INTERNAL, None, "Internal error")


def make_handler(store: LmdbStore, resolver: Resolver, config: Config,
                 admin: AdminHttp | None = None, extensions=(),
                 tally: dict | None = None, proxy=None, ops=None,
                 metrics=None) -> HttpFrontEnd:  # fmt: skip
    """The request handler for ``JsonServer`` (see ``lifecycle.run_http``); ``admin`` brings
    writes and authenticated reads (None: a read-only API), ``extensions`` the other
    ``/api/v1/`` drivers (``http_operator.OperatorHttp``, ``http_imports.ImportsHttp``, ...),
    ``tally`` the table resolutions are counted in (``core.stats``), ``proxy`` the
    ``/{identifier}`` driver (``http_proxy.HttpProxy``), ``ops`` and ``metrics`` those of
    ``servers.metrics`` (``OpsHttp``, the ``FrontEndMetrics`` of "http")."""
    return HttpFrontEnd(HandleApi(store, resolver, config, admin, tally), extensions, proxy,
                        ops, metrics)  # fmt: skip


class _JsonErrorRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering unparseable HTTP in JSON instead of text/plain.

    aiohttp replies to a bad request line, oversized headers or a missing Host itself, before
    our handler runs, and logs each at ERROR with a traceback — a log any client could flood.
    """

    def handle_error(self, request, status=500, exc=None, message=None):
        # Only the kind of error: aiohttp's message quotes the offending line, which may be an
        # Authorization header with its credentials.
        self.logger.debug("E012 bad HTTP request from %s: %s (status %d)", request.remote,
                          type(exc).__name__ if exc is not None else "error", status)  # fmt: skip
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        outcome = Outcome.MALFORMED if status < 500 else Outcome.INTERNAL
        text = "Bad HTTP request" if status < 500 else "Internal error"
        reason = str(message or exc or "").strip().splitlines()[0][:200] if (message or exc) else ""
        resp = _error(outcome, None, f"{text}: {reason}" if reason else text, status=status)
        resp.force_close()
        return resp


class JsonServer(web.Server):
    """``aiohttp.web.Server`` whose protocol-level errors are JSON like every other answer."""

    def __call__(self) -> RequestHandler:
        return _JsonErrorRequestHandler(self, loop=self._loop, **self._kwargs)
