"""REST endpoints of the metadata templates (issue 5 §5; IDIS 元数据模板, idis.md §1.5).

``TemplatesHttp(admin, templates)``: ``templates`` is the composition root's
``registry.templates.Templates`` (duck-typed: ``resolver`` never imports ``registry``);
``admin`` the ``http_admin.AdminHttp`` whose ``identity(request)`` authenticates (Basic
credentials, the session cookie, ``Authorization: Handle`` sessions and the
``auth_requires_tls`` rule are the REST writes' own).  Who may do what is decided by
``templates`` inside its transactions; this module only parses and answers.

=================================================================  ===============================
``GET    /api/v1/templates?scope=S``                              ``{"responseCode":1,"scope",
                                                                   "templates":[{"name","latest",
                                                                   "versions":[{"version",
                                                                   "state"}]}]}``
``POST   /api/v1/templates?scope=S``  body ``{"name",              201, the new draft:
         "description","industry","fields":[…]}``                  ``{"responseCode":1,"scope",
                                                                   "name","version","state",
                                                                   "description","industry",
                                                                   "ref","fields","created",
                                                                   "updated","author"}``
``GET    /api/v1/templates/{S}/{name}[/{version}]``               that template (the newest the
                                                                   caller may see without
                                                                   version)
``POST   /api/v1/templates/{S}/{name}/{version}/publish``         the template in its new state
``POST   /api/v1/templates/{S}/{name}/{version}/withdraw``
``DELETE /api/v1/templates/{S}/{name}/{version}``                 a draft: ``{"responseCode":1,
                                                                   "scope","name","version",
                                                                   "deleted":true}``
=================================================================  ===============================

``S`` is an enterprise prefix (``88.118.8``) or ``node``.  Reading needs no credentials for
published and withdrawn templates; drafts and every change need an identity that may manage
the scope (server admins; for a prefix, its enterprise admins).  Errors are the REST API's
(``http_admin.error_response``; outcome tables ``protocols/http/codes``): 401 rc 402 without
credentials, 403 rc 401 refused, 404 rc 100 no such template, 400 rc 301 prefix not homed
here; a definition that is not valid is 400 rc 202 with ``"errors":[{"path","field","index",
"message"}]`` (paths into the body: ``name``, ``fields[3].type`` …).  POST bodies must be
``application/json``.  Operations run in a thread: an LMDB commit waits for the disk.
"""

from __future__ import annotations

import asyncio
from urllib.parse import unquote

import orjson
from aiohttp import web

from resolver.errors import AuthenticationNeeded, IdnodeError, MalformedRequest, Outcome
from resolver.protocols.handle.codes import RC_FOR
from resolver.protocols.http import codec
from resolver.servers.http_admin import error_response, json_body, not_allowed

TEMPLATES = "/api/v1/templates"
#: Paths this module answers (it and below); ``dispatch`` returns None for others.
PATHS = (TEMPLATES,)
MAX_BODY = 1 << 20  # 500 fields with long enumerations fit

_HEADERS = {"Content-Type": codec.CONTENT_TYPE, "Access-Control-Allow-Origin": "*"}


def _ok(obj: dict, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps({"responseCode": 1, **obj}), status=status,
                        headers=_HEADERS)  # fmt: skip


def _not_found(request: web.BaseRequest) -> web.Response:
    message = f"Unknown HTTP API endpoint {request.method} {request.path}"
    body = codec.error_body(RC_FOR[Outcome.MALFORMED], None, message)
    return web.Response(body=body, status=404, headers=_HEADERS)


def _version(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 10 else None


class TemplatesHttp:
    def __init__(self, admin, templates) -> None:
        self.admin = admin
        self.templates = templates

    async def dispatch(self, request: web.BaseRequest) -> web.Response | None:
        """The answer to a template endpoint; None when the path is not one."""
        path = request.raw_path.split("?", 1)[0]
        if path != TEMPLATES and not path.startswith(TEMPLATES + "/"):
            return None
        rest = path[len(TEMPLATES) :].strip("/")
        parts = [unquote(p) for p in rest.split("/")] if rest else []
        method = request.method
        try:
            if not parts:
                if method in ("GET", "HEAD"):
                    return await self._run_as(request, self._list, need=False)
                if method == "POST":
                    return await self._run_as(request, self._define, need=True)
                return not_allowed(request, "GET, HEAD, POST")
            if len(parts) == 2:
                if method in ("GET", "HEAD"):
                    return await self._run_as(request, self._get(parts[0], parts[1], None),
                                              need=False)  # fmt: skip
                return not_allowed(request, "GET, HEAD")
            version = _version(parts[2]) if len(parts) >= 3 else None
            if version is None or len(parts) > 4:
                return _not_found(request)
            scope, name = parts[0], parts[1]
            if len(parts) == 3:
                if method in ("GET", "HEAD"):
                    return await self._run_as(request, self._get(scope, name, version),
                                              need=False)  # fmt: skip
                if method == "DELETE":
                    return await self._run_as(request, self._delete(scope, name, version),
                                              need=True)  # fmt: skip
                return not_allowed(request, "GET, HEAD, DELETE")
            if parts[3] not in ("publish", "withdraw"):
                return _not_found(request)
            if method != "POST":
                return not_allowed(request, "POST")
            return await self._run_as(request, self._transition(scope, name, version, parts[3]),
                                      need=True)  # fmt: skip
        except IdnodeError as exc:
            return error_response(exc, None)

    async def _run_as(self, request: web.BaseRequest, handler, *, need: bool) -> web.Response:
        """Authenticate (``need``: an identity is required), run ``handler(request,
        identity)``, set a new session cookie if the authentication issued one."""
        try:
            identity, token = await self.admin.identity(request)
            if need and identity is None:
                raise AuthenticationNeeded("Authentication needed")
            resp = await handler(request, identity)
            return self.admin._with_session(resp, request, token)
        except IdnodeError as exc:
            return error_response(exc, None)

    async def _call(self, fn, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, lambda: fn(*args))

    @staticmethod
    def _scope_param(request: web.BaseRequest) -> str:
        scope = request.query.get("scope")
        if not scope:
            raise MalformedRequest("the scope parameter is needed: a prefix or 'node'")
        return scope

    # -- handlers -------------------------------------------------------------------------------
    async def _list(self, request, identity) -> web.Response:
        scope = self.templates.scope(self._scope_param(request))
        listed = await self._call(self.templates.list, identity, scope)
        return _ok({"scope": scope, "templates": listed})

    async def _define(self, request, identity) -> web.Response:
        scope = self._scope_param(request)
        raw = await json_body(request, MAX_BODY)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise MalformedRequest(f"Request body is not JSON: {exc}") from None
        t = await self._call(self.templates.define, identity, scope, body)
        return _ok(t.to_json(), 201)

    def _get(self, scope: str, name: str, version: int | None):
        async def handler(request, identity) -> web.Response:
            t = await self._call(self.templates.get, identity, scope, name, version)
            return _ok(t.to_json())

        return handler

    def _transition(self, scope: str, name: str, version: int, action: str):
        async def handler(request, identity) -> web.Response:
            fn = self.templates.publish if action == "publish" else self.templates.withdraw
            t = await self._call(fn, identity, scope, name, version)
            return _ok(t.to_json())

        return handler

    def _delete(self, scope: str, name: str, version: int):
        async def handler(request, identity) -> web.Response:
            t = await self._call(self.templates.delete, identity, scope, name, version)
            return _ok({"scope": t.scope, "name": t.name, "version": t.version,
                        "deleted": True})  # fmt: skip

        return handler
