"""DNS over TCP (RFC 1035 §4.2.2, RFC 7766): length-prefixed messages, pipelined, in order.

Each message is a two-byte length and that many bytes.  A connection may carry any number of
queries back to back without waiting (pipelining, RFC 7766 §6.2.1.1); they are answered in the
order received — ``native.dns_answer`` first (one read transaction per received chunk), else
``DnsFrontEnd`` — and once one waits for the general path, later ones queue behind it.
Bounds: connections per worker (``[handle] max_tcp_connections``, shared limit object), the idle
time (``[dns] tcp_idle_seconds``, RFC 7766 §6.2.3: a connection with nothing outstanding is
closed), a queue of waiting queries and the transport's write buffer (reading pauses while
either is full).  A zero-length message is skipped; a message the responder drops (a response,
or shorter than a header) gets nothing, as over UDP.
"""

from __future__ import annotations

import asyncio
import logging
import time

import native
from resolver.servers.dns_frontend import DnsFrontEnd
from resolver.servers.sockets import listening_socket
from resolver.servers.stream import BoundedStreamProtocol, TcpLimits
from resolver.store.lmdb_store import LmdbStore

log = logging.getLogger("idnode.dns.tcp")
_clock = time.perf_counter

class DnsTcpProtocol(BoundedStreamProtocol):
    def __init__(self, store: LmdbStore, frontend: DnsFrontEnd, zone,
                 limits: TcpLimits, metrics=None, access=None) -> None:  # fmt: skip
        super().__init__(limits)
        #: ``access_log.AccessLog`` (None: off): a line per answered query
        self.access = access
        #: ``metrics.FrontEndMetrics`` (None: off): latency
        self.metrics = metrics
        self.env = store.env
        self.records_db = store.records_db
        self.prefixes_db = store.prefixes_db
        self.frontend = frontend
        self.zone = zone
        self.buffer = bytearray()

    # -- messages ------------------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self._touch()
        buf = self.buffer
        buf += data
        t0 = _clock()
        try:
            txn = None
            pos = 0
            out = []
            while len(buf) - pos >= 2:
                size = (buf[pos] << 8) | buf[pos + 1]
                if len(buf) - pos - 2 < size:
                    break
                query = bytes(buf[pos + 2 : pos + 2 + size])
                pos += 2 + size
                if not query:
                    continue
                if self.queue or self.worker is not None:
                    self.queue.append(query)
                    continue
                if txn is None:
                    txn = self.env.begin()
                reply = self._fast(query, txn)
                if reply is not None:
                    out.append(_framed(reply))
                    if self.access is not None:
                        self.access.dns(self.peer, "TCP", query, reply, t0)
                else:
                    self.queue.append(query)
                    self.worker = asyncio.get_running_loop().create_task(self._drain())
            del buf[:pos]
            if txn is not None:
                txn.abort()
            if out:
                self.transport.write(b"".join(out))
                if self.metrics is not None:
                    self.metrics.observe_many(_clock() - t0, len(out))
        except Exception:
            log.exception("E043 unexpected error on a DNS TCP connection")
            self.transport.abort()
        self._update_reading()

    def _fast(self, query: bytes, txn) -> bytes | None:
        return native.dns_answer(query, txn, self.records_db, self.prefixes_db, self.zone,
                                 int(time.time()), True, None, None, self.frontend.tally)  # fmt: skip

    async def _drain(self) -> None:
        try:
            while self.queue:
                query = self.queue.popleft()
                self._update_reading()
                t0 = _clock()
                txn = self.env.begin()
                try:
                    reply = self._fast(query, txn)
                finally:
                    txn.abort()
                if reply is None:
                    reply = await self.frontend.answer(query, tcp=True)
                if reply and not self.transport.is_closing():
                    self.transport.write(_framed(reply))
                    if self.access is not None:
                        self.access.dns(self.peer, "TCP", query, reply, t0)
                if self.metrics is not None:
                    self.metrics.observe(_clock() - t0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("E044 unexpected error answering DNS on TCP")
            self.transport.abort()
        finally:
            self.worker = None


def _framed(reply: bytes) -> bytes:
    return len(reply).to_bytes(2, "big") + reply


async def start_dns_tcp(store: LmdbStore, frontend: DnsFrontEnd, host: str, port: int, zone,
                        limits: TcpLimits, metrics=None,
                        access=None) -> asyncio.Server:  # fmt: skip
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: DnsTcpProtocol(store, frontend, zone, limits, metrics, access),
        sock=listening_socket(host, port),
    )  # fmt: skip
