"""REST endpoints of the operator tools, for server admins (the CLI's ``idnode prefix`` and
``idnode identity`` commands over HTTP).

``OperatorHttp(operator, admin)``: ``operator`` is the composition root's
``registry.operator.Operator`` (duck-typed: ``resolver`` never imports ``registry``); ``admin``
the ``http_admin.AdminHttp`` whose ``identity(request)`` authenticates — Basic credentials,
the session cookie and the ``auth_requires_tls`` rule are the REST writes' own, not a copy.
Every endpoint needs a server admin (``operator.is_server_admin``), and each operation checks
it again inside its write transaction.

=======================================  ==================================================
``GET  /api/v1/prefixes``                ``{"responseCode":1,"prefixes":[{prefix,enabled,org}]}``
``POST /api/v1/prefixes``                body ``{"prefix","org"[,"pubkey" PEM][,"index"]}`` →
                                         201 ``{"responseCode":1,"prefix","org","identity",
                                         "secret"}`` (``secret`` null with a public key)
``GET  /api/v1/prefixes/{p}``            ``{"responseCode":1,prefix,enabled,org,identifiers,
                                         admins,values}``
``POST /api/v1/prefixes/{p}/disable``    ``{"responseCode":1,"prefix","enabled","changed",
``POST /api/v1/prefixes/{p}/enable``     "txnId"}`` (``changed`` false: it already was)
``POST /api/v1/identities``              body ``{"handle","index"[,"pubkey"]}`` → 201
                                         ``{"responseCode":1,"identity","secret"}``
``POST /api/v1/identities/rotate``       body ``{"handle","index"}`` → 200, the same shape
=======================================  ==================================================

Errors are the REST API's (``http_admin.error_response``): 401 rc 402 without credentials,
403 rc 401 for an identity that is not a server admin, 404 rc 100 for an unknown prefix, 409
rc 101 when it exists, 400 for a bad body.  POST bodies must be ``application/json`` (a
cross-site form cannot send that without a CORS preflight, which gets no CORS grant here).  A
secret appears in exactly one response, sent with ``Cache-Control: no-store``; it is never
logged.  Operations run in a thread: an LMDB commit waits for the disk.
"""

from __future__ import annotations

import asyncio
from urllib.parse import unquote

import orjson
from aiohttp import web

from resolver.errors import (
    AuthenticationNeeded, Forbidden, IdnodeError, InvalidValue, MalformedRequest, Outcome,
)  # fmt: skip
from resolver.protocols.handle.codes import RC_FOR
from resolver.protocols.http import codec
from resolver.servers.http_admin import error_response, not_allowed

PREFIXES = "/api/v1/prefixes"
IDENTITIES = "/api/v1/identities"
#: Paths this module answers (all of them and below); ``dispatch`` returns None for others.
PATHS = (PREFIXES, IDENTITIES)
MAX_BODY = 64 << 10  # a PEM public key of 16384 bits fits many times over

_HEADERS = {"Content-Type": codec.CONTENT_TYPE, "Cache-Control": "no-store"}


def _ok(obj: dict, status: int = 200) -> web.Response:
    body = orjson.dumps({"responseCode": 1, **obj})
    return web.Response(body=body, status=status, headers=_HEADERS)


def _endpoint_error(request: web.BaseRequest, status: int, extra: dict | None = None
                    ) -> web.Response:  # fmt: skip
    message = f"Unknown HTTP API endpoint {request.method} {request.path}"
    body = codec.error_body(RC_FOR[Outcome.MALFORMED], None, message)
    return web.Response(body=body, status=status, headers={**_HEADERS, **(extra or {})})


_not_allowed = not_allowed  # http_admin's 405


def _under(path: str, base: str) -> str | None:
    """The rest of ``path`` after ``base`` ("" or "/..."), or None when not under it."""
    if path == base or path.startswith(base + "/"):
        return path[len(base) :]
    return None


class OperatorHttp:
    def __init__(self, operator, admin) -> None:
        self.operator = operator
        self.admin = admin

    async def dispatch(self, request: web.BaseRequest) -> web.Response | None:
        """The answer to an operator endpoint; None when the path is not one (the caller
        goes on with its own routes)."""
        raw = request.raw_path
        path = raw.split("?", 1)[0]
        rest = _under(path, PREFIXES)
        if rest is not None:
            return await self._guarded(request, self._prefixes, rest)
        rest = _under(path, IDENTITIES)
        if rest is not None:
            return await self._guarded(request, self._identities, rest)
        return None

    async def _guarded(self, request: web.BaseRequest, route, rest: str) -> web.Response:
        try:
            found = route(request, rest)
            if isinstance(found, web.Response):  # 405 / 404 before any authentication
                return found
            identity, token = await self.admin.identity(request)
            if identity is None:
                raise AuthenticationNeeded("Authentication needed")
            if not await self._run(self.operator.is_server_admin, identity):
                raise Forbidden(f"{identity} is not a server administrator")
            resp = await found(request, identity)
            return self.admin._with_session(resp, request, token)
        except IdnodeError as exc:
            return error_response(exc, None)

    async def _run(self, fn, *args, **kw):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: fn(*args, **kw))

    async def _body(self, request: web.BaseRequest) -> dict:
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise MalformedRequest("Unsupported media type: use application/json")
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise MalformedRequest("Request body too large")
        chunks, size = [], 0
        while size <= MAX_BODY:  # read(n) returns what has arrived, not n bytes: loop to EOF
            chunk = await request.content.read(MAX_BODY + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > MAX_BODY:
            raise MalformedRequest("Request body too large")
        data = b"".join(chunks)
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise MalformedRequest(f"Request body is not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise MalformedRequest("Request body must be a JSON object")
        return obj

    # -- routes: each returns a handler ``(request, identity) -> Response`` or a Response ------
    def _prefixes(self, request: web.BaseRequest, rest: str):
        method = request.method
        if rest in ("", "/"):
            if method in ("GET", "HEAD"):
                return self._list
            if method == "POST":
                return self._create
            return _not_allowed(request, "GET, HEAD, POST")
        name, _, action = rest[1:].partition("/")
        prefix = unquote(name)
        if not action:
            if method in ("GET", "HEAD"):
                return lambda req, who: self._show(who, prefix)
            return _not_allowed(request, "GET, HEAD")
        if action in ("disable", "enable"):
            if method == "POST":
                return lambda req, who: self._switch(who, prefix, action)
            return _not_allowed(request, "POST")
        return self._unknown(request)

    def _identities(self, request: web.BaseRequest, rest: str):
        if rest in ("", "/", "/rotate"):
            if request.method != "POST":
                return _not_allowed(request, "POST")
            return self._add if rest != "/rotate" else self._rotate
        return self._unknown(request)

    @staticmethod
    def _unknown(request: web.BaseRequest) -> web.Response:
        return _endpoint_error(request, 404)

    # -- handlers -------------------------------------------------------------------------------
    async def _list(self, request, identity) -> web.Response:
        infos = await self._run(self.operator.list_prefixes, identity=identity)
        return _ok({"prefixes": [i.to_json() for i in infos]})

    async def _show(self, identity, prefix: str) -> web.Response:
        info = await self._run(self.operator.show_prefix, prefix, identity=identity)
        return _ok(info.to_json())

    async def _switch(self, identity, prefix: str, action: str) -> web.Response:
        fn = self.operator.disable_prefix if action == "disable" else self.operator.enable_prefix
        txn = await self._run(fn, prefix, identity=identity)
        name = self.operator.prefix_key(prefix).decode("utf-8")
        return _ok({"prefix": name, "enabled": action == "enable", "changed": bool(txn),
                    "txnId": txn})  # fmt: skip

    async def _create(self, request, identity) -> web.Response:
        body = await self._body(request)
        prefix, org = _text(body, "prefix"), _text(body, "org")
        pubkey = _text(body, "pubkey", required=False)
        index = _int(body, "index", 300)
        who, secret = await self._run(self.operator.create_prefix, prefix, org,
                                      pubkey_pem=pubkey, admin_index=index,
                                      identity=identity)  # fmt: skip
        name = self.operator.prefix_key(prefix).decode("utf-8")
        return _ok({"prefix": name, "org": org.strip(), "identity": str(who), "secret": secret},
                   201)  # fmt: skip

    async def _add(self, request, identity) -> web.Response:
        body = await self._body(request)
        handle, index = _text(body, "handle"), _int(body, "index", None)
        pubkey = _text(body, "pubkey", required=False)
        who, secret = await self._run(self.operator.identity_add, handle, index,
                                      pubkey_pem=pubkey, identity=identity)  # fmt: skip
        return _ok({"identity": str(who), "secret": secret}, 201)

    async def _rotate(self, request, identity) -> web.Response:
        body = await self._body(request)
        handle, index = _text(body, "handle"), _int(body, "index", None)
        who, secret = await self._run(self.operator.identity_rotate, handle, index,
                                      identity=identity)  # fmt: skip
        return _ok({"identity": str(who), "secret": secret})


def _text(body: dict, name: str, *, required: bool = True) -> str | None:
    v = body.get(name)
    if v is None and not required:
        return None
    if not isinstance(v, str):
        raise MalformedRequest(f'"{name}" must be a string')
    return v


def _int(body: dict, name: str, default: int | None) -> int:
    v = body.get(name, default)
    if isinstance(v, str) and v.isdigit():  # tolerant, as the REST value parser is
        v = int(v)
    if type(v) is not int:
        raise InvalidValue(f'"{name}" must be an integer')
    return v
