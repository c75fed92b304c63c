"""DNS over UDP: one datagram socket per worker (SO_REUSEPORT, ``[dns] port``, default 5353).

The socket is read by ``native.UdpPump`` in DNS mode: a burst of datagrams per readiness
callback, the common query answered in C (``native.dns_answer``, one read transaction per
burst, through the worker's record cache) and sent in the same burst; the pump hands back the
rest, which ``DnsFrontEnd`` answers (dnspython, the engine).  A datagram that is itself a
response, or shorter than a header, gets nothing (``responder`` contract): answering it would
make us a reflector.

Response rate limiting (``[dns.rrl]``, off by default; ``resolver.protocols.dns.rrl``): with it
on, the pump sends nothing itself and hands every answer back, so that each one — fast or
general — goes through ``RateLimiter.decide``: sent, sent truncated (slip) or dropped.  TCP
answers are never limited (a TCP client's address is not spoofed).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import native
from resolver.protocols.dns import rrl
from resolver.servers.dns_frontend import DnsFrontEnd
from resolver.servers.sockets import udp_socket
from resolver.store.lmdb_store import LmdbStore

log = logging.getLogger("idnode.dns.udp")

#: General-path queries being answered at once; beyond it datagrams are dropped (load shed).
MAX_IN_FLIGHT = 1024
#: Bursts read per readiness callback before the loop gets to run other work.
BURSTS_PER_WAKEUP = 4


class DnsUdpServer:
    def __init__(self, store: LmdbStore, frontend: DnsFrontEnd, sock: socket.socket, zone,
                 case_sensitive: bool, cache=None, limiter: rrl.RateLimiter | None = None,
                 ) -> None:  # fmt: skip
        self.env = store.env
        self.records_db = store.records_db
        self.prefixes_db = store.prefixes_db
        self.frontend = frontend
        self.case_sensitive = case_sensitive
        self.sock = sock
        self.limiter = limiter
        self.pump = native.UdpPump(sock, cache, zone, limiter is not None)
        self.in_flight: set[asyncio.Task] = set()
        self.dropped = 0
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(sock.fileno(), self._readable)
        self.reading = True

    def _readable(self) -> None:
        for _ in range(BURSTS_PER_WAKEUP):
            try:
                read, rest = self.pump.run(self.env, self.records_db, self.prefixes_db,
                                           self.case_sensitive)  # fmt: skip
            except OSError as exc:
                log.debug("UDP receive error: %s", exc)  # ICMP errors of gone clients
                return
            except Exception:  # a worker must survive any datagram
                log.exception("E041 unexpected error reading DNS datagrams")
                return
            for data, addr, reply in rest:
                try:
                    if reply is None:
                        self._general(data, addr)
                    else:
                        self._send(reply, addr)
                except Exception:
                    log.exception("E041 unexpected error on a DNS datagram from %s", addr)
            if read < native.BATCH:
                return

    def _send(self, reply: bytes, addr) -> None:
        if not reply:
            return
        if self.limiter is not None:
            decision = self.limiter.decide(addr[0], reply, time.monotonic())
            if decision is rrl.Decision.DROP:
                return
            if decision is rrl.Decision.SLIP:
                reply = self.limiter.slip_response(reply)
        try:
            self.sock.sendto(reply, addr)
        except OSError:
            self.dropped += 1  # full send buffer or unreachable sender: UDP may drop

    def _general(self, data: bytes, addr) -> None:
        if len(self.in_flight) >= MAX_IN_FLIGHT:
            self.dropped += 1
            return
        task = self.loop.create_task(self._answer(data, addr))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _answer(self, data: bytes, addr) -> None:
        try:
            out = await self.frontend.answer(data, tcp=False)
        except Exception:
            log.exception("E042 unexpected error answering DNS from %s", addr)
            return
        if out and self.sock.fileno() >= 0:
            self._send(out, addr)

    def stop_reading(self) -> None:
        """Take no new datagrams; answers already under way are still sent."""
        if self.reading:
            self.loop.remove_reader(self.sock.fileno())
            self.reading = False

    def close(self) -> None:
        self.stop_reading()
        self.sock.close()


async def start_dns_udp(store: LmdbStore, frontend: DnsFrontEnd, host: str, port: int, zone,
                        case_sensitive: bool, cache=None,
                        limiter: rrl.RateLimiter | None = None) -> DnsUdpServer:  # fmt: skip
    return DnsUdpServer(store, frontend, udp_socket(host, port), zone, case_sensitive, cache,
                        limiter)  # fmt: skip
