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

import logging
import socket
import time

import native
from resolver.protocols.dns import rrl
from resolver.servers.datagram import PumpedDatagramServer
from resolver.servers.dns_frontend import DnsFrontEnd
from resolver.servers.sockets import udp_socket
from resolver.store.lmdb_store import LmdbStore

log = logging.getLogger("idnode.dns.udp")

class DnsUdpServer(PumpedDatagramServer):
    log = log
    error_code = "E041"

    def __init__(self, store: LmdbStore, frontend: DnsFrontEnd, sock: socket.socket, zone,
                 case_sensitive: bool, cache=None, limiter: rrl.RateLimiter | None = None,
                 access=None) -> None:  # fmt: skip
        # RRL and the access log both need every answer back in Python (hand_back).
        hand_back = limiter is not None or access is not None
        super().__init__(store, sock, native.UdpPump(sock, cache, zone, hand_back,
                                                     frontend.tally), case_sensitive)  # fmt: skip
        self.frontend = frontend
        self.limiter = limiter
        self.access = access

    def _reply(self, reply: bytes, addr) -> None:
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
        self._spawn(self._answer(data, addr))

    def _logged(self, data: bytes, addr, reply: bytes, started: float) -> None:
        self.access.dns(addr[0], "UDP", data, reply, started)

    async def _answer(self, data: bytes, addr) -> None:
        started = self.access.clock() if self.access is not None else 0.0
        try:
            out = await self.frontend.answer(data, tcp=False)
        except Exception:
            log.exception("E042 unexpected error answering DNS from %s", addr)
            return
        if out and self.sock.fileno() >= 0:
            self._reply(out, addr)
            if self.access is not None:
                self._logged(data, addr, out, started)


async def start_dns_udp(store: LmdbStore, frontend: DnsFrontEnd, host: str, port: int, zone,
                        case_sensitive: bool, cache=None,
                        limiter: rrl.RateLimiter | None = None,
                        access=None) -> DnsUdpServer:  # fmt: skip
    return DnsUdpServer(store, frontend, udp_socket(host, port), zone, case_sensitive, cache,
                        limiter, access)  # fmt: skip
