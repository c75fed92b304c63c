"""REST writes and authenticated reads of the Handle.net v9 API (handle.md §7.1, §7.3, §8).

``AdminHttp`` is the thin driver between aiohttp requests and the registration service the
composition root hands it (``registry.service.Registry``, ``registry.identities.Authenticator``,
``registry.sessions.SessionTokens`` — duck-typed here: ``resolver`` never imports ``registry``).

* ``PUT /api/handles/{h}``: whole record (``overwrite``, default true → 200; false → 201 when
  created, 409 rc 101 when it exists), or with ``index=`` only those values (409 rc 201 for an
  existing one without overwrite); ``mintNewSuffix=true`` on ``{prefix}/`` makes a UUID suffix.
  Needs ``Content-Type: application/json``.
* ``DELETE /api/handles/{h}``: the handle (404 rc 100), or with ``index=`` those values (400 rc
  200 for a missing one).
* ``GET`` with credentials: the values the identity may read (``registry.read``), filtered
  like any resolution.
* ``GET /api/handles?prefix=``: listing, LIST_HANDLES on ``0.NA/<prefix>``.
* ``GET /api/v1/changes?after=N&limit=M``: the change log, for server admins.

Credentials: ``Authorization: Basic`` (percent-encoded ``index:handle`` user, HS_SECKEY
password), or the session cookie set after a successful authentication.  Over plain HTTP from a
non-loopback client with ``auth_requires_tls``, credentials are refused as Handle.net does
(403, rc 402 "authentication requires HTTPS").  Writes run in a thread: an LMDB commit waits
for the disk and must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import logging
import uuid
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from resolver.core.request import ResolveRequest
from resolver.core.select import select
from resolver.errors import (
    AuthenticationNeeded, IdnodeError, InvalidIdentifier, MalformedRequest, Outcome, TlsRequired,
)  # fmt: skip
from resolver.identifier import Identifier
from resolver.protocols.handle.auth import parse_authorization_header, parse_basic
from resolver.protocols.handle.codes import RC_FOR
from resolver.protocols.http import codec
from resolver.protocols.http.codes import STATUS_FOR

log = logging.getLogger("idnode.http.admin")

_JSON_HEADERS = {"Content-Type": codec.CONTENT_TYPE, "Access-Control-Allow-Origin": "*"}
_CHALLENGE = 'Basic realm="handle"'
MAX_BODY = 4 << 20  # a whole record of the largest allowed size fits with room


def _response(status: int, body: bytes, extra: dict | None = None) -> web.Response:
    headers = dict(_JSON_HEADERS)
    if extra:
        headers.update(extra)
    return web.Response(body=body, status=status, headers=headers)


def not_allowed(request: web.BaseRequest, allow: str) -> web.Response:
    """405 with the Handle.net message and ``Allow``."""
    body = codec.error_body(RC_FOR[Outcome.MALFORMED], None,
                            f"Unknown HTTP API endpoint {request.method} {request.path}")
    return _response(405, body, {"Allow": allow})


def error_response(exc: IdnodeError, handle: str | None) -> web.Response:
    body = codec.error_body(RC_FOR[exc.outcome], handle, exc.message,
                            errors=getattr(exc, "errors", None))  # per-field (templates)
    extra = None
    if isinstance(exc, _Challenge):
        extra = {"WWW-Authenticate": exc.header}
    elif exc.outcome in (Outcome.AUTH_NEEDED, Outcome.AUTH_FAILED):
        extra = {"WWW-Authenticate": _CHALLENGE}
    return _response(STATUS_FOR[exc.outcome], body, extra)


async def read_body(request: web.BaseRequest, limit: int) -> bytes:
    """The whole body, however many segments it came in; ``MalformedRequest`` past ``limit``."""
    chunks, size = [], 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise MalformedRequest("Request body too large")
        chunks.append(chunk)


async def json_body(request: web.BaseRequest, limit: int = MAX_BODY) -> bytes:
    """The body of a JSON write: ``Content-Type: application/json`` and at most ``limit``."""
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise MalformedRequest("Unsupported media type: use application/json")
    if request.content_length is not None and request.content_length > limit:
        raise MalformedRequest("Request body too large")
    return await read_body(request, limit)


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False


def _indexes(values: list[str]) -> list[int]:
    out = []
    for v in values:
        try:
            out.append(int(v))
        except ValueError:
            raise MalformedRequest(f"Bad index parameter {v!r}") from None
    return out


def _flag(params: dict, name: str, default: bool) -> bool:
    v = params.get(name)
    if v is None:
        return default
    return v == "" or v.lower() in ("yes", "true")


class AdminHttp:
    def __init__(self, registry, authenticator, sessions, *, case_sensitive: bool = False,
                 auth_requires_tls: bool = True, handle_sessions=None) -> None:  # fmt: skip
        self.registry = registry
        self.authenticator = authenticator
        self.sessions = sessions
        self.handle_sessions = handle_sessions
        self.case_sensitive = case_sensitive
        self.auth_requires_tls = auth_requires_tls

    # -- authentication --------------------------------------------------------------------
    def has_credentials(self, request: web.BaseRequest) -> bool:
        # on every GET: parse cookies only when there is a Cookie header at all
        headers = request.headers
        return "Authorization" in headers or (
            "Cookie" in headers and self.sessions.COOKIE in request.cookies)

    async def identity(self, request: web.BaseRequest):
        """(identity or None, session token to set or None); raises on bad credentials."""
        header = request.headers.get("Authorization")
        token = request.cookies.get(self.sessions.COOKIE)
        if header is None and not token:
            return None, None
        if self.auth_requires_tls and not request.secure and not _is_loopback(request.remote):
            # handle.md §7.3: Handle.net ignores credentials over plain HTTP, 401 becomes 403 —
            # session cookies included: they are credentials too
            raise TlsRequired("Authentication requires HTTPS")
        if header is None:
            return self.sessions.check(token), None
        scheme, _, rest = header.strip().partition(" ")
        if scheme.lower() == "handle" and self.handle_sessions is not None:
            return await self._handle_scheme(request, header), None
        if scheme.lower() != "basic":
            # never echo it: a client may have sent a bare key as the header
            raise AuthenticationNeeded("Unsupported authorization scheme (use Basic or Handle)")
        user, password = parse_basic(header)
        identity = self.authenticator.secret(user, password, request.remote or "")
        return identity, self.sessions.issue(identity)

    async def _handle_scheme(self, request: web.BaseRequest, header: str):
        """``Authorization: Handle`` (handle.md §7.3): a signature over the session's nonce
        authenticates it; a bare ``sessionId`` names an authenticated session; anything else
        gets a new challenge (401, ``WWW-Authenticate: Handle sessionId=.., nonce=..``)."""
        params = parse_authorization_header(header)
        sid = params.get("sessionId")
        if sid and "signature" in params:
            # in a thread: a successful authentication commits the session to the store
            return await self._run(self.handle_sessions.authenticate, sid, params,
                                   request.remote or "")  # fmt: skip
        if sid:
            identity = self.handle_sessions.identity_of(sid)
            if identity is not None:
                return identity
        raise _Challenge(*self.handle_sessions.new())

    def _with_session(self, resp: web.Response, request: web.BaseRequest, token) -> web.Response:
        if token:
            resp.set_cookie(self.sessions.COOKIE, token, httponly=True, samesite="Strict",
                            secure=request.secure, path="/api/")  # fmt: skip
        return resp

    # -- dispatch -------------------------------------------------------------------------
    async def write(self, request: web.BaseRequest, handle: str, query: str) -> web.Response:
        try:
            identity, token = await self.identity(request)
            if identity is None:
                raise AuthenticationNeeded("Authentication needed")
            pairs = parse_qsl(query, keep_blank_values=True)
            params = dict(pairs)
            indexes = [v for k, v in pairs if k == "index"]
            if request.method == "PUT":
                resp = await self._put(request, identity, handle, params, indexes)
            else:
                resp = await self._delete(identity, handle, indexes)
            return self._with_session(resp, request, token)
        except IdnodeError as exc:
            return error_response(exc, handle)

    async def _run(self, fn, *args, **kw):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: fn(*args, **kw))

    async def _put(self, request, identity, handle: str, params: dict, indexes: list[str]):
        body = await json_body(request)
        if _flag(params, "mintNewSuffix", False):
            if not handle.endswith("/"):
                raise MalformedRequest("mintNewSuffix needs a handle ending in '/'")
            handle = handle + str(uuid.uuid4())
        target = Identifier.parse(handle, case_sensitive=self.case_sensitive)
        values = codec.parse_values_body(body, lambda named: self._same(named, target))
        if indexes:
            if indexes != ["various"]:
                wanted = sorted(_indexes(indexes))
                if sorted(v.index for v in values) != wanted:
                    raise MalformedRequest("Mismatched indexes")
            overwrite = _flag(params, "overwrite", True)
            res = await self._run(self.registry.put_values, identity, handle, values,
                                  overwrite=overwrite)  # fmt: skip
            return _response(200, codec.ok_body(res.handle))
        overwrite = _flag(params, "overwrite", True)
        res = await self._run(self.registry.create_handle, identity, handle, values,
                              overwrite=overwrite)  # fmt: skip
        return _response(201 if res.created and not overwrite else 200, codec.ok_body(res.handle))

    def _same(self, named: str, target: Identifier) -> bool:
        try:
            return Identifier.parse(named, case_sensitive=self.case_sensitive).key == target.key
        except InvalidIdentifier:
            return False

    async def _delete(self, identity, handle: str, indexes: list[str]):
        if indexes:
            res = await self._run(self.registry.remove_values, identity, handle,
                                  _indexes(indexes))  # fmt: skip
        else:
            res = await self._run(self.registry.delete_handle, identity, handle)
        return _response(200, codec.ok_body(res.handle))

    async def read(self, request: web.BaseRequest, handle: str, types: tuple[str, ...],
                   indexes: tuple[int, ...]) -> web.Response:  # fmt: skip
        """GET with credentials: what this identity may read, filtered like a resolution."""
        try:
            identity, token = await self.identity(request)
            ident = Identifier.parse(handle, case_sensitive=self.case_sensitive)
            record = self.registry.read(identity, handle, tls=request.secure)
            if record is None:
                body = codec.error_body(RC_FOR[Outcome.NOT_FOUND], ident.text)
                return _response(STATUS_FOR[Outcome.NOT_FOUND], body)
            req = ResolveRequest(ident, types, indexes, public_only=False,
                                 authenticated=identity is not None)  # fmt: skip
            result = select(tuple(record), req)
            if result.outcome is Outcome.OK:
                body = codec.resolution_body(ident.text, result.values)
            else:
                body = codec.error_body(RC_FOR[result.outcome], ident.text, result.message,
                                        empty_values=result.outcome is Outcome.VALUES_NOT_FOUND)
            return self._with_session(_response(STATUS_FOR[result.outcome], body), request,
                                      token)  # fmt: skip
        except IdnodeError as exc:
            return error_response(exc, handle)

    async def session_endpoint(self, request: web.BaseRequest) -> web.Response:
        """``POST /api/sessions`` → a new session (sessionId, nonce); ``/api/sessions/this``:
        GET its state, PUT to authenticate it (``Authorization: Handle`` with a signature),
        DELETE to end it (handle.md §7.1, §7.3)."""
        if self.handle_sessions is None:
            return error_response(MalformedRequest("Unknown HTTP API endpoint"), None)
        path = request.path.rstrip("/")
        try:
            if path == "/api/sessions" and request.method == "POST":
                sid, nonce = self.handle_sessions.new()
                body = orjson.dumps({"sessionId": sid,
                                     "nonce": base64.b64encode(nonce).decode()})  # fmt: skip
                return _response(201, body)
            if path != "/api/sessions/this" or request.method not in ("GET", "PUT", "DELETE"):
                allow = "POST" if path == "/api/sessions" else "GET, PUT, DELETE"
                return not_allowed(request, allow)
            header = request.headers.get("Authorization", "")
            params = parse_authorization_header(header)
            sid = params.get("sessionId")
            opened = self.handle_sessions.open(sid) if sid else None
            if opened is None:
                raise _Challenge(*self.handle_sessions.new())
            if request.method == "DELETE":
                self.handle_sessions.delete(sid)
                return web.Response(status=204)
            if request.method == "PUT" or "signature" in params:
                await self.identity(request)  # the TLS rule, then the signature
            identity = self.handle_sessions.identity_of(sid)
            state = {"sessionId": sid, "nonce": base64.b64encode(opened[0]).decode(),
                     "authenticated": identity is not None}  # fmt: skip
            if identity is not None:
                state["id"] = str(identity)
            return _response(200, orjson.dumps(state))
        except IdnodeError as exc:
            return error_response(exc, None)

    async def batches(self, request: web.BaseRequest) -> web.Response:
        """``POST /api/v1/batches``: ``{"items": [{"op": "create"|"update"|"delete",
        "handle": H, "values": [...]}, ...]}`` (≤ 2000), one transaction, a result per item:
        ``{"responseCode":1,"txnId":N,"results":[{"handle":H,"responseCode":rc[,"message":M]}]}``.
        ``Idempotency-Key``: a retry answers the first request's results (``Idempotent-Replay:
        true``) and changes nothing."""
        if request.method != "POST":
            return not_allowed(request, "POST")
        try:
            identity, token = await self.identity(request)
            if identity is None:
                raise AuthenticationNeeded("Authentication needed")
            ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype != "application/json":
                raise MalformedRequest("Unsupported media type: use application/json")
            body = await read_body(request, MAX_BODY * 4)
            items = codec.parse_batch_body(body, self.registry.batch_item)
            key = request.headers.get("Idempotency-Key")
            if key is not None and not 0 < len(key) <= 255:
                raise MalformedRequest("Idempotency-Key must be 1 to 255 characters")
            res = await self._run(self.registry.apply_batch, identity, items,
                                  idempotency_key=key,
                                  fingerprint=hashlib.sha256(body).digest())  # fmt: skip
            out = codec.batch_body(res.txn_id, [(r.handle, RC_FOR[r.outcome], r.message)
                                                for r in res.results])  # fmt: skip
            resp = _response(200, out, {"Idempotent-Replay": "true"} if res.replayed else None)
            return self._with_session(resp, request, token)
        except IdnodeError as exc:
            return error_response(exc, None)

    async def changes(self, request: web.BaseRequest) -> web.Response:
        """``GET /api/v1/changes?after=N&limit=M`` for server admins (issue 4 §5)."""
        try:
            identity, token = await self.identity(request)
            q = request.query
            try:
                after = int(q.get("after", "0"))
                limit = int(q.get("limit", "1000"))
            except ValueError:
                raise MalformedRequest("after and limit must be integers") from None
            if not all(-(1 << 63) <= v < 1 << 63 for v in (after, limit)):  # the store packs u64
                raise MalformedRequest("after and limit must be 64-bit integers")
            changes = self.registry.changes(identity, after, limit)
            return self._with_session(_response(200, codec.changes_body(changes)), request, token)
        except IdnodeError as exc:
            return error_response(exc, None)

    async def listing(self, request: web.BaseRequest, prefix: str, offset: int,
                      limit: int | None) -> tuple[int, list[str]] | web.Response:  # fmt: skip
        try:
            identity, _token = await self.identity(request)
            return self.registry.list_handles(identity, prefix, offset=offset, limit=limit)
        except IdnodeError as exc:
            return error_response(exc, None)


class _Challenge(IdnodeError):
    """Authentication needed"""

    outcome = Outcome.AUTH_NEEDED

    def __init__(self, session_id: str, nonce: bytes) -> None:
        super().__init__("Authentication needed")
        self.header = f'Handle sessionId="{session_id}", nonce="{base64.b64encode(nonce).decode()}"'
