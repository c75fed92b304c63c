"""What the two UDP drivers (Handle, DNS) share: a socket read in bursts by ``native.UdpPump``
whenever the event loop sees it readable, the general-path tasks it spawns, and stopping.

``PumpedDatagramServer`` owns the readiness callback: up to ``BURSTS_PER_WAKEUP`` bursts of
datagrams per wake-up (so TCP and HTTP on the same loop get their turn), each burst answered by
the pump under one read transaction; what the pump hands back goes to the subclass's
``_reply(reply, addr)`` (a fast answer the pump did not send itself) or ``_general(data,
addr)`` (no fast answer).  ``_spawn`` runs a general-path answer as a task, shedding load beyond
``MAX_IN_FLIGHT``; ``stop_reading`` / ``close`` end it.  Nothing a peer sends escapes
``_readable``: errors are logged with the subclass's ``error_code``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import native

#: General-path requests being answered at once; beyond it datagrams are dropped (load shed).
MAX_IN_FLIGHT = 1024
#: Bursts read per readiness callback before the loop gets to run other work (TCP, HTTP).
BURSTS_PER_WAKEUP = 4

_clock = time.perf_counter


class PumpedDatagramServer:
    log = logging.getLogger("idnode.udp")
    error_code = "E031"
    #: ``metrics.FrontEndMetrics`` (set by the worker; None: off): each datagram the pump
    #: answered is observed as its burst's duration, each handed back from then to its reply.
    metrics = None
    #: ``access_log.AccessLog`` (set by the subclass; None: off): each datagram the pump hands
    #: back with its reply goes to ``_logged(data, addr, reply, started)`` once sent.
    access = None

    def __init__(self, store, sock: socket.socket, pump, case_sensitive: bool) -> None:
        self.env = store.env
        self.records_db = store.records_db
        self.prefixes_db = store.prefixes_db
        self.case_sensitive = case_sensitive
        self.sock = sock
        self.pump = pump
        self.in_flight: set[asyncio.Task] = set()
        self.dropped = 0
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(sock.fileno(), self._readable)
        self.reading = True

    def _readable(self) -> None:
        for _ in range(BURSTS_PER_WAKEUP):
            t0 = _clock()
            try:
                read, rest = self.pump.run(self.env, self.records_db, self.prefixes_db,
                                           self.case_sensitive)  # fmt: skip
            except OSError as exc:
                # ICMP errors queued on the socket by a gone client: not ours to fix.
                self.log.debug("UDP receive error: %s", exc)
                return
            except Exception:  # a worker must survive any datagram
                self.log.exception("%s unexpected error reading datagrams", self.error_code)
                return
            general = 0
            for data, addr, reply in rest:
                try:
                    if reply is None:
                        general += 1
                        self._general(data, addr)
                    else:
                        self._reply(reply, addr)
                        if self.access is not None:
                            self._logged(data, addr, reply, t0)
                except Exception:
                    self.log.exception("%s unexpected error on a datagram from %s",
                                       self.error_code, addr)  # fmt: skip
            if self.metrics is not None and read > general:
                self.metrics.observe_many(_clock() - t0, read - general)
            if read < native.BATCH:
                return

    def _reply(self, reply: bytes, addr) -> None:
        raise NotImplementedError

    def _general(self, data: bytes, addr) -> None:
        raise NotImplementedError

    def _logged(self, data: bytes, addr, reply: bytes, started: float) -> None:
        raise NotImplementedError

    def _spawn(self, coro) -> None:
        """Run one general-path answer as a task, unless ``MAX_IN_FLIGHT`` already run."""
        if len(self.in_flight) >= MAX_IN_FLIGHT:
            coro.close()
            self.dropped += 1
            return
        task = self.loop.create_task(coro)
        self.in_flight.add(task)
        task.add_done_callback(self.in_flight.discard)
        if self.metrics is not None:
            t0, observe = _clock(), self.metrics.observe
            task.add_done_callback(lambda _task: observe(_clock() - t0))

    def stop_reading(self) -> None:
        """Take no new datagrams; answers already under way are still sent."""
        if self.reading:
            self.loop.remove_reader(self.sock.fileno())
            self.reading = False

    def close(self) -> None:
        self.stop_reading()
        self.sock.close()
