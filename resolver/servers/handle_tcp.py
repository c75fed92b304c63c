"""Handle protocol over TCP: framed messages, several per connection, answered in order.

Each complete frame goes to ``native.handle_resolve`` first, else to ``HandleFrontEnd`` — in
the order received: once a frame waits for the general path, later frames queue behind it, so
pipelined replies never overtake each other.  Bounds: connections per worker, an idle timeout,
one frame's worth of receive buffer (``FrameBuffer``), a queue of waiting frames and the
transport's write buffer (reading pauses while either is full).  A frame announcing more than
256 KiB is answered RC 4 and the connection closed.

The general path gets the client's address (failed authentications are counted per client;
a challenge is answered from where it was sent) and ``stream=True``.
"""

from __future__ import annotations

import asyncio
import logging
import time

import native
from resolver.protocols.handle import codec
from resolver.protocols.handle import constants as C
from resolver.errors import Outcome
from resolver.protocols.handle.codes import RC_FOR
from resolver.protocols.handle.message import Envelope, Header
from resolver.protocols.handle.tcp import FrameBuffer, FrameTooLong
from resolver.servers.handle_frontend import HandleFrontEnd
from resolver.servers.sockets import listening_socket
from resolver.servers.stream import BoundedStreamProtocol, TcpLimits
from resolver.store.lmdb_store import LmdbStore

log = logging.getLogger("idnode.handle.tcp")
_clock = time.perf_counter


class HandleTcpProtocol(BoundedStreamProtocol):
    def __init__(self, store: LmdbStore, frontend: HandleFrontEnd, case_sensitive: bool,
                 limits: TcpLimits, metrics=None, access=None) -> None:  # fmt: skip
        super().__init__(limits)
        #: ``access_log.AccessLog`` (None: off): a line per answered frame
        self.access = access
        #: ``metrics.FrontEndMetrics`` (None: off): latency and administrative op codes
        self.metrics = metrics
        self.env = store.env
        self.records_db = store.records_db
        self.prefixes_db = store.prefixes_db
        self.frontend = frontend
        self.case_sensitive = case_sensitive
        self.frames = FrameBuffer()
        self.closing_after: bytes | None = None  # the RC 4 reply that ends the connection

    # -- frames --------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._touch()
        if self.closing_after is not None:
            return  # an over-long frame ended this connection; only owed replies remain
        t0, answered = _clock(), 0
        try:
            for env, frame in self.frames.feed(data):
                if self.queue or self.worker is not None:
                    self.queue.append((env, frame))
                    continue
                out = self._fast(frame)
                if out is not None:
                    self.transport.write(out)
                    answered += 1
                    if self.access is not None:
                        self.access.handle_message(self.peer, "TCP", frame, out, t0)
                else:
                    self.queue.append((env, frame))
                    self.worker = asyncio.get_running_loop().create_task(self._drain())
        except FrameTooLong as exc:
            # RC 4 at header level, after every reply still owed, then hang up.
            env = exc.envelope
            version = None if env.major == C.OUR_MAJOR else (C.OUR_MAJOR, C.OUR_MINOR)
            self.closing_after = codec.error(env, b"", Header(0), RC_FOR[Outcome.MALFORMED],
                                             exc.message, version=version)  # fmt: skip
            if self.worker is None:
                self._finish()
        except Exception:
            log.exception("E033 unexpected error on a TCP connection")
            self.transport.abort()
        if answered and self.metrics is not None:
            self.metrics.observe_many(_clock() - t0, answered)
        self._update_reading()

    def _finish(self) -> None:
        if self.closing_after is not None and not self.transport.is_closing():
            self.transport.write(self.closing_after)
            self.transport.close()

    def _fast(self, frame: bytes) -> bytes | None:
        txn = self.env.begin()
        try:
            return native.handle_resolve(frame, txn, self.records_db, self.prefixes_db,
                                         self.case_sensitive, None, self.frontend.tally)  # fmt: skip
        finally:
            txn.abort()

    async def _drain(self) -> None:
        try:
            while self.queue:
                env, frame = self.queue.popleft()
                self._update_reading()
                t0 = _clock()
                out = self._fast(frame)
                if out is None:
                    out = await self.frontend.answer(env, frame[20:], self.peer, stream=True)
                    if self.metrics is not None:
                        self.metrics.handle_op(frame[20:], out)
                if out is not None and not self.transport.is_closing():
                    self.transport.write(out)
                    if self.access is not None:
                        self.access.handle_message(self.peer, "TCP", frame, out, t0)
                if self.metrics is not None:
                    self.metrics.observe(_clock() - t0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("E034 unexpected error answering on TCP")
            self.transport.abort()
        finally:
            self.worker = None
        self._finish()


async def start_tcp(store: LmdbStore, frontend: HandleFrontEnd, host: str, port: int,
                    case_sensitive: bool, limits: TcpLimits,
                    metrics=None, access=None) -> asyncio.Server:  # fmt: skip
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: HandleTcpProtocol(store, frontend, case_sensitive, limits, metrics, access),
        sock=listening_socket(host, port),
    )  # fmt: skip
