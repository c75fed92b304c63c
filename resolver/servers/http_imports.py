"""REST driver of import jobs: ``/api/v1/imports`` (issue 5, deliverable 1).

``ImportsHttp`` streams a request body into the import engine the composition root hands it
(``registry.imports.Importer``, duck-typed: ``resolver`` never imports ``registry``):

* ``POST /api/v1/imports?prefix=P[&format=jsonl|csv][&mode=best-effort|atomic]`` — the body
  (JSON Lines or CSV, ``registry.import_lines``) is read piece by piece and each piece handed
  to the job in a worker thread (parsing, encoding and LMDB commits must not stall the event
  loop: resolution in this worker goes on between pieces).  Answers 200 with the job when the
  body is done; ``Idempotency-Key`` makes a retry answer the first job (``replayed``) or resume
  an interrupted one; 409 while a job of that key runs elsewhere.  ``format`` defaults from the
  Content-Type (``text/csv`` → csv, else jsonl).
* ``GET /api/v1/imports/{id}`` — the job (state, counts, progress, errors);
  ``GET /api/v1/imports/{id}/errors?after=LINE&limit=N`` — a page of its bad lines;
  ``GET /api/v1/imports?key=K`` — the caller's job of Idempotency-Key ``K``.

Every answer is JSON; errors go through the outcome table (``protocols.http.codes``).
"""

from __future__ import annotations

import asyncio
import logging

import orjson
from aiohttp import web

from resolver.errors import AuthenticationNeeded, HandleNotFound, IdnodeError, MalformedRequest

from .http_admin import _response, error_response, not_allowed

log = logging.getLogger("idnode.http.imports")

PATH = "/api/v1/imports"
#: Body bytes handed to the job at a time: large enough to amortise the thread hop, small
#: enough that a piece's lines take milliseconds, not seconds.
PIECE = 1 << 20


class ImportsHttp:
    def __init__(self, admin, importer) -> None:
        self.admin = admin
        self.importer = importer

    async def dispatch(self, request: web.BaseRequest) -> web.StreamResponse | None:
        path = request.path.rstrip("/")
        if path != PATH and not path.startswith(PATH + "/"):
            return None
        try:
            identity, token = await self.admin.identity(request)
            if identity is None:
                raise AuthenticationNeeded("Authentication needed")
            rest = path[len(PATH) :].strip("/").split("/") if path != PATH else []
            if not rest:
                if request.method == "POST":
                    resp = await self._post(request, identity)
                elif request.method == "GET":
                    resp = await self._find(request, identity)
                else:
                    return not_allowed(request, "GET, POST")
            elif request.method != "GET":
                return not_allowed(request, "GET")
            elif len(rest) == 1:
                job = await asyncio.to_thread(self.importer.get, identity, rest[0])
                resp = _job(job, rest[0])
            elif len(rest) == 2 and rest[1] == "errors":
                resp = await self._errors(request, identity, rest[0])
            else:
                return None
            return self.admin._with_session(resp, request, token)
        except IdnodeError as exc:
            return error_response(exc, None)

    async def _post(self, request: web.BaseRequest, identity) -> web.Response:
        q = request.query
        prefix = q.get("prefix")
        if not prefix:
            raise MalformedRequest("prefix parameter required")
        ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        fmt = q.get("format") or ("csv" if ctype == "text/csv" else "jsonl")
        mode = q.get("mode", "best-effort")
        key = request.headers.get("Idempotency-Key")
        session = await asyncio.to_thread(self.importer.open, identity, prefix, fmt, mode, key)
        if isinstance(session, dict):  # a finished job of that key: its answer, nothing written
            await _drain(request)
            return _response(200, orjson.dumps(session), {"Idempotent-Replay": "true"})
        loop, pool = asyncio.get_running_loop(), self.importer.executor
        try:
            buf, size = [], 0
            async for data in request.content.iter_any():
                buf.append(data)
                size += len(data)
                if size >= PIECE:
                    await loop.run_in_executor(pool, session.feed, b"".join(buf))
                    buf, size = [], 0
            if buf:
                await loop.run_in_executor(pool, session.feed, b"".join(buf))
            job = await loop.run_in_executor(pool, session.close)
        except ConnectionError:  # the client went away mid-body: the job waits to be resumed
            log.info("import job %s: the client went away; lines up to %d are handled, the "
                     "same Idempotency-Key resumes it", session.state.id, session.state.done)
            return error_response(MalformedRequest("connection lost"), None)
        finally:
            await loop.run_in_executor(pool, session.release)
        return _response(200, orjson.dumps(job))

    async def _find(self, request: web.BaseRequest, identity) -> web.Response:
        key = request.query.get("key")
        if not key:
            raise MalformedRequest("key parameter required (or GET /api/v1/imports/{id})")
        job = await asyncio.to_thread(self.importer.find, identity, key)
        return _job(job, key)

    async def _errors(self, request: web.BaseRequest, identity, job_id: str) -> web.Response:
        try:
            after = int(request.query.get("after", "0"))
            limit = max(1, min(int(request.query.get("limit", "1000")), 10_000))
        except ValueError:
            raise MalformedRequest("after and limit must be integers") from None
        job = await asyncio.to_thread(self.importer.get, identity, job_id)
        if job is None:
            return _job(None, job_id)
        errors = await asyncio.to_thread(self.importer.errors, job_id, after, limit)
        return _response(200, orjson.dumps({"id": job_id, "errors": errors}))


def _job(job: dict | None, name: str) -> web.Response:
    if job is None:  # unknown, or another identity's: the same answer
        return error_response(HandleNotFound(f"no import job {name[:100]}"), None)
    return _response(200, orjson.dumps(job))


async def _drain(request: web.BaseRequest) -> None:
    """Read and drop a body we do not need, so the connection can be reused."""
    async for _data in request.content.iter_any():
        pass
