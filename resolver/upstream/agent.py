"""The upstream agent: the one process per node that owns recursion (issue 7 §3–5).

The answer cache must be shared by every worker of a node and single-flight must hold
node-wide, so the supervisor forks this process beside the workers (``servers.lifecycle``)
when ``[upstream] servers`` is set.  It owns the recursor — with its ``AnswerCache``,
``SingleFlight`` and ``UpstreamHealth`` — and serves the workers' ``UpstreamLink``s on a Unix
stream socket; the socket name, the frames and the messages are specified in
``resolver.upstream.link``.

``run_agent(config, socket_name, make_recursor)`` is the process's main:

* an asyncio event loop (uvloop when installed); ``make_recursor()`` is called inside it — the
  recursor's asyncio objects belong to that loop — and must return an object with
  ``async resolve(key, *, fresh=False) -> ResolveResult`` (``fresh``: bypass the cache) and
  ``status() -> dict``; optional:
  ``async probe_due()`` (probe the upstream nodes that are down, issue 7 §5) and
  ``close()`` / ``async close()`` (shutdown);
* each connection's requests run concurrently (``MAX_PENDING`` per connection; more are
  answered ``busy``), each reply written as its request completes;
* every ``STATUS_INTERVAL`` (1 s): ``<data>/upstream-status.json`` is rewritten atomically
  (temporary file, then rename: a reader never sees half a file) with the recursor's status
  plus ``time`` (UNIX time of writing) and ``pid`` — what ``idnode upstream status`` prints —
  and ``probe_due()`` is started unless the previous probe round still runs;
* ``background``: factories called inside the loop, each returning a service with ``name``,
  ``async run()`` (started as a task, cancelled at shutdown) and ``status() -> dict`` (filed
  in the status file under ``name``), optionally ``close()`` / ``async close()`` (called at
  shutdown, after the recursor's) — e.g. ``registration.PrefixRegistrar`` (issue 7 §2);
* SIGTERM: stop accepting, drop the connections, close the recursor, remove the status file,
  return.  SIGINT is ignored: on Ctrl-C the supervisor stops the agent after its workers
  drained, so their last recursive requests still get answers.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
import socket
import struct
import time
from typing import Any, Callable, Sequence

import orjson

from resolver.core.request import ResolveResult
from resolver.errors import IdnodeError, Outcome
from resolver.upstream.link import (FrameError, encode_frame, listening_socket, read_frame,
                                    result_message)  # fmt: skip

log = logging.getLogger("idnode.upstream")

STATUS_FILE = "upstream-status.json"
STATUS_INTERVAL = 1.0
#: Requests in flight per worker connection; a worker has its own bounds, this one only stops
#: a runaway client from piling up tasks.
MAX_PENDING = 4096
_PEERCRED = struct.Struct("3i")


def run_agent(config, socket_name: str, make_recursor: Callable[[], Any],
              background: Sequence[Callable[[], Any]] = ()) -> None:  # fmt: skip
    """The agent process: serve ``socket_name`` until SIGTERM (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import uvloop
    except ImportError:
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve(config.data, socket_name, make_recursor, signals=True,
                      background=background))  # fmt: skip


async def serve(data_dir: str, socket_name: str, make_recursor: Callable[[], Any], *,
                stop: asyncio.Event | None = None, signals: bool = False,
                interval: float = STATUS_INTERVAL,
                background: Sequence[Callable[[], Any]] = ()) -> None:  # fmt: skip
    """Run an agent in the current event loop until ``stop`` is set (or SIGTERM, with
    ``signals``)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    if signals:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    agent = Agent(make_recursor(), data_dir)
    for make in background:
        agent.start_service(make())
    sock = listening_socket(socket_name)
    server = await asyncio.start_unix_server(agent.connection, sock=sock)
    ticker = loop.create_task(agent.tick_forever(interval))
    try:
        await stop.wait()
    finally:
        ticker.cancel()
        server.close()
        await agent.close()
        await server.wait_closed()
        if signals:
            loop.remove_signal_handler(signal.SIGTERM)


class Agent:
    """Serves the workers' requests with one recursor; writes its status file."""

    def __init__(self, recursor, data_dir: str) -> None:
        self.recursor = recursor
        self.status_path = os.path.join(data_dir, STATUS_FILE)
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()
        self._probe: asyncio.Task | None = None
        self._status_failed = False
        self.uid = os.getuid() if hasattr(os, "getuid") else None
        self.services: list = []

    def start_service(self, service) -> None:
        """Run ``service.run()`` until shutdown; its ``status()`` joins ours (module doc)."""
        self.services.append(service)
        self._tasks.add(asyncio.get_running_loop().create_task(service.run()))

    # -- connections ---------------------------------------------------------------------------
    async def connection(self, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> None:  # fmt: skip
        if not self._peer_allowed(writer):
            writer.close()
            return
        self._writers.add(writer)
        tasks: set[asyncio.Task] = set()
        loop = asyncio.get_running_loop()
        try:
            while True:
                message = await read_frame(reader)
                if len(tasks) >= MAX_PENDING:
                    busy = ResolveResult(Outcome.BUSY, message="upstream agent busy")
                    self._send(writer, result_message(message.get("id"), busy))
                    continue
                task = loop.create_task(self._answer(message, writer))
                tasks.add(task)
                self._tasks.add(task)
                task.add_done_callback(tasks.discard)
                task.add_done_callback(self._tasks.discard)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except FrameError as exc:
            log.warning("E061 upstream agent: closing a connection: %s", exc)
        finally:
            self._writers.discard(writer)
            for task in tasks:
                task.cancel()
            writer.close()

    def _peer_allowed(self, writer: asyncio.StreamWriter) -> bool:
        """Only our own user (or root) may ask: an abstract socket has no file permissions."""
        sock = writer.get_extra_info("socket")
        if self.uid is None or sock is None or not hasattr(socket, "SO_PEERCRED"):
            return True
        try:
            _pid, uid, _gid = _PEERCRED.unpack(
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
        except OSError:
            return True
        if uid in (self.uid, 0):
            return True
        log.warning("E062 upstream agent: refused a connection from uid %d", uid)
        return False

    async def _answer(self, message: dict, writer: asyncio.StreamWriter) -> None:
        rid = message.get("id")
        op = message.get("op")
        if op == "status":
            reply = {"id": rid, "outcome": Outcome.OK.value, "status": self.status()}
        elif op == "resolve" and isinstance(message.get("key"), str):
            result = await self._resolve(message["key"], message.get("fresh") is True)
            try:
                reply = result_message(rid, result)
            except IdnodeError as exc:  # values no record can hold: upstream sent nonsense
                reply = result_message(rid, ResolveResult(
                    Outcome.UPSTREAM_UNAVAILABLE, message=f"unusable upstream answer: {exc}"))
        else:
            reply = result_message(rid, ResolveResult(
                Outcome.MALFORMED, message=f"unknown request {op!r} or no key"))
        self._send(writer, reply)

    async def _resolve(self, key: str, fresh: bool = False) -> ResolveResult:
        try:
            if fresh:
                return await self.recursor.resolve(key, fresh=True)
            return await self.recursor.resolve(key)
        except IdnodeError as exc:
            return ResolveResult(exc.outcome, message=exc.message)
        except Exception:
            log.exception("E060 upstream agent: unexpected error resolving %r", key)
            return ResolveResult(Outcome.INTERNAL, message="Internal error")

    def _send(self, writer: asyncio.StreamWriter, reply: dict) -> None:
        if writer.is_closing():
            return
        try:
            frame = encode_frame(reply)
        except FrameError as exc:  # too many values for one frame
            frame = encode_frame(result_message(reply.get("id"), ResolveResult(
                Outcome.UPSTREAM_UNAVAILABLE, message=f"upstream answer too large: {exc}")))
        writer.write(frame)

    # -- status and probes ---------------------------------------------------------------------
    def status(self) -> dict:
        doc = dict(self.recursor.status())
        for service in self.services:
            doc[service.name] = service.status()
        return _plain(doc)

    async def tick_forever(self, interval: float) -> None:
        while True:
            self.tick()
            await asyncio.sleep(interval)

    def tick(self) -> None:
        """Write the status file; start a probe round unless one still runs."""
        self.write_status()
        probe = getattr(self.recursor, "probe_due", None)
        if probe is not None and (self._probe is None or self._probe.done()):
            self._probe = asyncio.get_running_loop().create_task(self._run_probe(probe))

    async def _run_probe(self, probe) -> None:
        try:
            await probe()
        except Exception:
            log.exception("E063 upstream agent: probing the upstream nodes failed")

    def write_status(self) -> None:
        try:
            doc = dict(self.status(), time=time.time(), pid=os.getpid())
            body = orjson.dumps(doc, default=str, option=orjson.OPT_NON_STR_KEYS)
            tmp = f"{self.status_path}.{os.getpid()}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(body)
            os.replace(tmp, self.status_path)  # atomic: readers see the old or the new file
            self._status_failed = False
        except Exception:
            if not self._status_failed:  # once per failure streak, not every second
                log.exception("E064 upstream agent: cannot write %s", self.status_path)
            self._status_failed = True

    # -- shutdown ------------------------------------------------------------------------------
    async def close(self) -> None:
        for writer in list(self._writers):
            writer.close()
        tasks = list(self._tasks)
        if self._probe is not None:
            tasks.append(self._probe)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for owner in (self.recursor, *self.services):  # the recursor first: its last counts
            closer = getattr(owner, "close", None)
            if closer is not None:
                try:
                    result = closer()
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("E065 upstream agent: closing %s failed",
                                  getattr(owner, "name", "the recursor"))  # fmt: skip
        try:
            os.unlink(self.status_path)
        except OSError:
            pass


def _plain(value):
    """``value`` with every map key a string — ``("192.0.2.1", 2641)`` → ``"192.0.2.1:2641"``
    — so that the status is JSON (and CBOR a JSON reader can take)."""
    if isinstance(value, dict):
        return {_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _key(k) -> str:
    if isinstance(k, str):
        return k
    if isinstance(k, tuple) and len(k) == 2 and isinstance(k[1], int):
        host = str(k[0])
        return f"[{host}]:{k[1]}" if ":" in host else f"{host}:{k[1]}"
    return str(k)
