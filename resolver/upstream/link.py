"""The workers' side of the node's upstream agent, and the agent protocol both sides speak.

The answer cache and single-flight must hold node-wide, so one upstream agent process per node
(``resolver.upstream.agent``, forked by the supervisor) owns the recursor; every worker asks it
through an ``UpstreamLink``: one persistent Unix stream connection per worker process, many
requests in flight on it at once.

Socket
======

``agent_socket_name(supervisor_pid, data_dir)``: on Linux the abstract-namespace name
``"\\0idnode-upstream-<supervisor pid>"`` (no file to clean up after a crash; one name per node
on the host, as the supervisor's pid is unique while it lives); elsewhere a socket file
``upstream-<pid>.sock`` in the data directory.  The agent accepts connections only from its own
user (or root), checked with ``SO_PEERCRED`` where the system has it.

Frames
======

Both directions: ``u32 length`` (big-endian, 1..``MAX_FRAME``) then ``length`` bytes holding
one CBOR map (RFC 8949; ``cbor2``).  CBOR rather than JSON because the values travel as bytes.

Requests (worker → agent); ``id`` is any integer the worker chooses, unique among its requests
in flight on the connection::

    {"id": n, "op": "resolve", "key": "88.119.5/X"}     # key: Identifier.key as text
    {"id": n, "op": "resolve", "key": "...", "fresh": true}   # AT: not from the cache
    {"id": n, "op": "status"}

Replies (agent → worker), written as each request completes — out of order, matched by ``id``::

    {"id": n, "outcome": "<Outcome value>", "record": <bytes> | null, "message": "..."}
    {"id": n, "outcome": "ok", "status": {...}}          # the recursor's status()

``record`` is ``resolver.record.pack`` of the result's values (stored layout v1; ``null`` when
there are none), so the values cross the process boundary in the encoding every other part of
the node already reads and checks (``record.unpack`` treats the bytes as untrusted).  An
unknown op or a request without a string ``key`` is answered ``"malformed"``.  A frame that is
too long, or not a CBOR map, ends the connection; so does a reply whose ``id`` is no integer.

Worker side
===========

``UpstreamLink.resolve(key) -> ResolveResult`` never raises for transport trouble: it connects
lazily, and answers ``UPSTREAM_UNAVAILABLE`` when the agent cannot be reached (then it waits
``retry_after`` seconds before connecting again, so a restarting agent is not hammered), when
the connection drops with the request in flight (every pending request fails at once; the next
request reconnects), or when no reply came within ``timeout`` seconds (the request is forgotten:
a late reply is dropped).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import struct
import sys

import cbor2

from resolver.core.request import ResolveResult
from resolver.errors import IdnodeError, Outcome
from resolver.record import Record, pack, unpack
from resolver.upstream.client import UpstreamUnavailable

#: Largest frame either side accepts.  A Handle message is at most 256 KiB (handle.md §3); its
#: values packed with their JSON section stay well below this.
MAX_FRAME = 4 << 20
_LENGTH = struct.Struct(">I")


class FrameError(Exception):
    """A frame that breaks the protocol: the connection is closed."""


def agent_socket_name(supervisor_pid: int, data_dir: str) -> str:
    """Where the agent of the node supervised by ``supervisor_pid`` listens (see above)."""
    if sys.platform.startswith("linux"):
        return f"\0idnode-upstream-{supervisor_pid}"
    return os.path.join(data_dir, f"upstream-{supervisor_pid}.sock")


def listening_socket(name: str) -> socket.socket:
    """A bound, listening Unix stream socket at ``name`` (a stale socket file is replaced).

    Built by hand and handed to asyncio as ``sock=``: uvloop refuses abstract names as paths."""
    if not name.startswith("\0"):
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(name)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_connection(name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, name)
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_unix_connection(sock=sock, limit=MAX_FRAME + _LENGTH.size)


def encode_frame(message: dict) -> bytes:
    body = cbor2.dumps(message)
    if len(body) > MAX_FRAME:
        raise FrameError(f"message of {len(body)} bytes exceeds {MAX_FRAME}")
    return _LENGTH.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict:
    """The next message; ``asyncio.IncompleteReadError`` at the end of the stream,
    ``FrameError`` for a frame that breaks the protocol."""
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if not 0 < length <= MAX_FRAME:
        raise FrameError(f"frame length {length} outside 1..{MAX_FRAME}")
    body = await reader.readexactly(length)
    try:
        message = cbor2.loads(body)
    except Exception as exc:  # cbor2 raises CBORDecodeError, but also ValueError/TypeError/...
        raise FrameError(f"undecodable frame: {exc}") from None
    if not isinstance(message, dict):
        raise FrameError("a frame must hold a CBOR map")
    return message


def result_message(request_id: int, result: ResolveResult) -> dict:
    """The agent's reply carrying ``result`` (``InvalidValue`` when its values cannot be packed:
    the caller answers an upstream failure instead)."""
    record = pack(Record(result.values)) if result.values else None
    return {"id": request_id, "outcome": result.outcome.value, "record": record,
            "message": result.message}  # fmt: skip


def result_of(message: dict) -> ResolveResult:
    """A reply → the ``ResolveResult`` it carries; anything unreadable is an upstream failure."""
    try:
        outcome = Outcome(message.get("outcome"))
    except ValueError:
        return ResolveResult(Outcome.UPSTREAM_UNAVAILABLE,
                             message=f"upstream agent: unknown outcome {message.get('outcome')!r}")
    blob = message.get("record")
    values = ()
    if blob is not None:
        try:
            if not isinstance(blob, bytes):
                raise TypeError(type(blob).__name__)
            values = tuple(unpack(blob))
        except (IdnodeError, TypeError) as exc:
            return ResolveResult(Outcome.UPSTREAM_UNAVAILABLE,
                                 message=f"upstream agent: unreadable record ({exc})")  # fmt: skip
    text = message.get("message")
    return ResolveResult(outcome, values, text if isinstance(text, str) else "")


class _Connection:
    """One connection to the agent and the requests waiting on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.pending: dict[int, asyncio.Future] = {}
        self.closed = False
        self.reader_task = asyncio.get_running_loop().create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        reason = "the upstream agent closed the connection"
        try:
            while True:
                message = await read_frame(reader)
                rid = message.get("id")
                if not isinstance(rid, int):
                    raise FrameError("a reply without an integer id")
                future = self.pending.pop(rid, None)
                if future is not None and not future.done():
                    future.set_result(message)
        except asyncio.IncompleteReadError:
            pass
        except (OSError, FrameError) as exc:
            reason = f"connection to the upstream agent lost: {exc}"
        finally:
            self.close(reason)

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(UpstreamUnavailable(reason))


class UpstreamLink:
    """A worker's connection to the node's upstream agent (contract in the module docstring).

    Belongs to one event loop.  ``counters``: ``requests``, ``connects``, ``disconnects``,
    ``timeouts``, ``unavailable`` (requests answered ``UPSTREAM_UNAVAILABLE`` by the link)."""

    def __init__(self, socket_name: str, timeout: float = 3.0, *,
                 retry_after: float = 0.1) -> None:  # fmt: skip
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, not {timeout}")
        self.socket_name = socket_name
        self.timeout = timeout
        self.retry_after = retry_after
        self._conn: _Connection | None = None
        self._lock: asyncio.Lock | None = None
        self._retry_at = 0.0
        self._ids = itertools.count(1)
        self.counters = dict.fromkeys(
            ("requests", "connects", "disconnects", "timeouts", "unavailable"), 0)

    async def resolve(self, key: str, *, fresh: bool = False) -> ResolveResult:
        """The agent's answer for ``key`` (``fresh``: asked upstream now, not from the cache);
        ``UPSTREAM_UNAVAILABLE`` when there is none."""
        self.counters["requests"] += 1
        message = {"op": "resolve", "key": key}
        if fresh:
            message["fresh"] = True
        try:
            reply = await self._ask(message)
        except UpstreamUnavailable as exc:
            self.counters["unavailable"] += 1
            return ResolveResult(Outcome.UPSTREAM_UNAVAILABLE, message=exc.message)
        return result_of(reply)

    async def status(self) -> dict:
        """The recursor's status; ``UpstreamUnavailable`` when the agent does not answer."""
        reply = await self._ask({"op": "status"})
        status = reply.get("status")
        if not isinstance(status, dict):
            raise UpstreamUnavailable(f"upstream agent: {reply.get('message') or 'no status'}")
        return status

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close("the link was closed")
            conn.reader_task.cancel()
            try:
                await conn.reader_task
            except asyncio.CancelledError:
                pass

    async def _ask(self, message: dict) -> dict:
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._connection()
                rid = next(self._ids)
                future = asyncio.get_running_loop().create_future()
                conn.pending[rid] = future
                try:
                    conn.writer.write(encode_frame({"id": rid, **message}))
                    await conn.writer.drain()
                    return await future
                finally:
                    conn.pending.pop(rid, None)
        except TimeoutError:
            self.counters["timeouts"] += 1
            raise UpstreamUnavailable(f"the upstream agent did not answer within "
                                      f"{self.timeout:g} s") from None  # fmt: skip
        except (OSError, FrameError) as exc:
            raise UpstreamUnavailable(f"cannot talk to the upstream agent: {exc}") from None

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one connect at a time; the others wait for its outcome
            conn = self._conn
            if conn is not None and not conn.closed:
                return conn
            if conn is not None:
                self.counters["disconnects"] += 1
                self._conn = None
            loop = asyncio.get_running_loop()
            if loop.time() < self._retry_at:
                raise UpstreamUnavailable("the upstream agent is unreachable")
            try:
                reader, writer = await open_connection(self.socket_name)
            except OSError as exc:
                self._retry_at = loop.time() + self.retry_after
                raise UpstreamUnavailable(f"the upstream agent is unreachable: {exc}") from None
            self.counters["connects"] += 1
            self._conn = _Connection(reader, writer)
            return self._conn
