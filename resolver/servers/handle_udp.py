"""Handle protocol over UDP: one datagram endpoint per worker (SO_REUSEPORT, port 2641).

A datagram goes to ``native.handle_resolve`` first (plain resolution → reply bytes); else to
the general path: multi-packet reassembly, then ``HandleFrontEnd``.  Replies longer than 512
bytes are split into packets.  Truncated or inconsistent datagrams are dropped without a reply
(a reply to a forged source would be a reflection); nothing a peer sends escapes this class.
"""

from __future__ import annotations

import asyncio
import logging

import native
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import Envelope, HandleProtocolError
from resolver.protocols.handle.udp import Reassembler, split
from resolver.servers.handle_frontend import HandleFrontEnd
from resolver.servers.sockets import udp_socket
from resolver.store.lmdb_store import LmdbStore

log = logging.getLogger("idnode.handle.udp")

#: General-path requests being answered at once; beyond it datagrams are dropped (load shed).
MAX_IN_FLIGHT = 1024


class HandleUdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, store: LmdbStore, frontend: HandleFrontEnd, case_sensitive: bool) -> None:
        self.env = store.env
        self.records_db = store.records_db
        self.prefixes_db = store.prefixes_db
        self.frontend = frontend
        self.case_sensitive = case_sensitive
        self.reassembler = Reassembler()
        self.transport: asyncio.DatagramTransport | None = None
        self.in_flight: set[asyncio.Task] = set()
        self.dropped = 0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            txn = self.env.begin()
            try:
                out = native.handle_resolve(data, txn, self.records_db, self.prefixes_db,
                                            self.case_sensitive)  # fmt: skip
            finally:
                txn.abort()
            if out is not None:
                if len(out) <= C.UDP_PACKET:
                    self.transport.sendto(out, addr)
                else:
                    for packet in split(out):
                        self.transport.sendto(packet, addr)
                return
            self._general(data, addr)
        except Exception:  # a worker must survive any datagram
            log.exception("E031 unexpected error on a datagram from %s", addr)

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
        if len(self.in_flight) >= MAX_IN_FLIGHT:
            self.dropped += 1
            return
        task = asyncio.get_running_loop().create_task(self._answer(env, payload, addr))
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)

    async def _answer(self, env: Envelope, payload: bytes, addr) -> None:
        try:
            out = await self.frontend.answer(env, payload)
        except Exception:
            log.exception("E032 unexpected error answering %s", addr)
            return
        if out is not None and self.transport is not None and not self.transport.is_closing():
            for packet in split(out):
                self.transport.sendto(packet, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)  # ICMP unreachable from a gone client: not ours to fix


async def start_udp(store: LmdbStore, frontend: HandleFrontEnd, host: str, port: int,
                    case_sensitive: bool) -> tuple[asyncio.DatagramTransport, HandleUdpProtocol]:  # fmt: skip
    loop = asyncio.get_running_loop()
    return await loop.create_datagram_endpoint(
        lambda: HandleUdpProtocol(store, frontend, case_sensitive), sock=udp_socket(host, port))
