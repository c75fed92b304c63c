"""Handle protocol over UDP: one datagram socket per worker (SO_REUSEPORT, port 2641).

The socket is read by ``native.UdpPump`` whenever the event loop sees it readable: a burst of
datagrams at a time, each answered by ``native.handle_resolve`` where it can (plain resolution
→ reply bytes, sent in the same burst) under one read transaction per burst, begun once the
burst has arrived, through the worker's ``native.RecordCache`` (``[store] record_cache``).  The pump hands
back the rest: multi-packet reassembly, then ``HandleFrontEnd``; replies longer than 512 bytes
are split into packets (handle.md §3.1).  Truncated or inconsistent datagrams are dropped without
a reply (a reply to a forged source would be a reflection); nothing a peer sends escapes this
class.  The general path gets the sender's IP address (administration counts failed
authentications per client and answers a challenge only from where it was sent).
"""

from __future__ import annotations

import logging
import socket

import native
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import Envelope, HandleProtocolError
from resolver.protocols.handle.udp import Reassembler, split
from resolver.servers.datagram import PumpedDatagramServer
from resolver.servers.handle_frontend import HandleFrontEnd
from resolver.servers.sockets import udp_socket
from resolver.store.lmdb_store import LmdbStore

log = logging.getLogger("idnode.handle.udp")

class HandleUdpServer(PumpedDatagramServer):
    log = log
    error_code = "E031"

    def __init__(self, store: LmdbStore, frontend: HandleFrontEnd, sock: socket.socket,
                 case_sensitive: bool, record_cache: int = 0, access=None) -> None:  # fmt: skip
        self.cache = native.RecordCache(record_cache, store.changes_db) if record_cache else None
        # With the access log on, every fast answer comes back to be sent and logged here.
        pump = native.UdpPump(sock, self.cache, tally=frontend.tally, hand_back=access is not None)
        super().__init__(store, sock, pump, case_sensitive)
        self.access = access
        self.frontend = frontend
        self.reassembler = Reassembler()

    def _reply(self, reply: bytes, addr) -> None:
        self._send(split(reply), addr)

    def _send(self, packets, addr) -> None:
        for packet in packets:
            try:
                self.sock.sendto(packet, addr)
            except OSError:
                self.dropped += 1  # full send buffer or unreachable sender: UDP may drop

    def _general(self, data: bytes, addr) -> None:
        if len(data) < C.ENVELOPE_SIZE:
            self.dropped += 1
            return
        env = Envelope.from_wire(data)
        if env.truncated:
            try:
                whole = self.reassembler.feed(addr, data)
            except HandleProtocolError:
                self.dropped += 1
                return
            if whole is None:
                return
            env, payload = whole
        else:
            if env.length != len(data) - C.ENVELOPE_SIZE:
                self.dropped += 1  # truncated or oversized datagram
                return
            payload = data[C.ENVELOPE_SIZE :]
        self._spawn(self._answer(env, payload, addr))

    def _logged(self, data: bytes, addr, reply: bytes, started: float) -> None:
        self.access.handle_message(addr[0], "UDP", data, reply, started)

    async def _answer(self, env: Envelope, payload: bytes, addr) -> None:
        started = self.access.clock() if self.access is not None else 0.0
        try:
            out = await self.frontend.answer(env, payload, addr[0] if addr else None)
        except Exception:
            log.exception("E032 unexpected error answering %s", addr)
            return
        if self.metrics is not None:
            self.metrics.handle_op(payload, out)  # administrative op codes (issue 8 §3)
        if out is not None and self.sock.fileno() >= 0:
            self._send(split(out), addr)
            if self.access is not None:
                self.access.handle(addr[0], "UDP", env.major, env.minor, env.flags, payload, out,
                                   started)  # fmt: skip


async def start_udp(store: LmdbStore, frontend: HandleFrontEnd, host: str, port: int,
                    case_sensitive: bool, record_cache: int = 0,
                    access=None) -> HandleUdpServer:  # fmt: skip
    return HandleUdpServer(store, frontend, udp_socket(host, port), case_sensitive, record_cache,
                           access)  # fmt: skip
