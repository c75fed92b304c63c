"""Handing a worker's place to its successor without losing a request (issue 8 §5, SIGHUP
reload): the listening sockets the supervisor keeps per worker number, and the pipe a new
worker says "serving" on.

**Sockets per worker number.**  Every worker listens on its own ``SO_REUSEPORT`` sockets (HTTP,
Handle UDP and TCP, DNS UDP and TCP): the kernel spreads connections and datagrams over them.
If a new worker bound new sockets and the old one then closed its own, whatever the kernel had
already queued on the old sockets — connections completed but not yet accepted, datagrams not
yet read — would be lost: Linux resets those connections unless ``net.ipv4.tcp_migrate_req``
is on (5.14+, off by default).  So the *supervisor* makes worker *i*'s sockets
(``WorkerSockets``) and keeps them; worker *i*, and after a reload its successor, inherits
them across ``fork`` (``adopt``: ``sockets.listening_socket`` / ``udp_socket`` hand them out
instead of binding).  For a moment both processes serve the same sockets; the old one then
stops accepting and drains, and nothing queued is lost, because the sockets never close.
(The nginx model: listening sockets live in the master.)  Consequences: a worker that dies
leaves its sockets open in the supervisor, so what the kernel queues on them waits for the
restarted worker (≈ 0.2 s + start-up) instead of being reset; the supervisor closes all of
them the moment it is told to stop, so that a stopping node refuses new connections; and a
reload that lowers ``workers`` closes the surplus sockets (what is queued on those is reset).

**Readiness.**  A worker started by a reload gets the write end of a pipe (``expect_ready``);
``notify_ready()``, called by the worker once every listener is served by its event loop,
writes one byte and closes it.  ``wait_ready`` in the supervisor sees the byte, or end of
file when the worker died first.
"""

from __future__ import annotations

import os
import select
import socket
import time
from typing import Callable

from resolver.servers import sockets


class WorkerSockets:
    """The listening sockets of each worker number, made and kept by the supervisor.

    ``dns_port`` −1: no DNS sockets.  Ports are the resolved ones (never 0): every worker's
    sockets join the same ``SO_REUSEPORT`` groups as the supervisor's reservations."""

    def __init__(self, host: str, http_port: int, handle_port: int, dns_port: int = -1) -> None:
        self.host = host
        self.ports = (http_port, handle_port, dns_port)
        self.slots: dict[int, list[socket.socket]] = {}

    def _make(self) -> list[socket.socket]:
        http_port, handle_port, dns_port = self.ports
        made: list[socket.socket] = []
        try:
            made.append(sockets.listening_socket(self.host, http_port))
            made.append(sockets.listening_socket(self.host, handle_port))
            made.append(sockets.udp_socket(self.host, handle_port))
            if dns_port >= 0:
                made.append(sockets.listening_socket(self.host, dns_port))
                made.append(sockets.udp_socket(self.host, dns_port))
        except OSError:
            for sock in made:
                sock.close()
            raise
        return made

    def ensure(self, n: int) -> None:
        """Sockets for worker numbers 0 … n−1 (those missing are made)."""
        for i in range(n):
            if i not in self.slots:
                self.slots[i] = self._make()

    def trim(self, n: int) -> None:
        """Close the sockets of worker numbers ≥ n."""
        for i in [i for i in self.slots if i >= n]:
            for sock in self.slots.pop(i):
                sock.close()

    def close(self) -> None:
        self.trim(0)

    def adopt(self, i: int | None) -> None:
        """In a freshly forked child: keep worker ``i``'s sockets for ``sockets.listening_socket``
        / ``udp_socket`` to hand out, close every other worker's (``None``: all — the upstream
        agent serves none), so that a socket closed by the supervisor is closed everywhere."""
        for j, socks in list(self.slots.items()):
            if j != i:
                for sock in socks:
                    sock.close()
        mine = self.slots.get(i, []) if i is not None else []
        self.slots = {}
        sockets.inherit(mine)


# -- readiness -------------------------------------------------------------------------------

_ready_fd: int | None = None


def expect_ready(fd: int | None) -> None:
    """In a child: ``fd`` is the pipe to say "serving" on (None: nobody waits)."""
    global _ready_fd
    _ready_fd = fd


def notify_ready() -> None:
    """In a worker whose listeners are all served: tell the supervisor, if it waits."""
    global _ready_fd
    fd, _ready_fd = _ready_fd, None
    if fd is None:
        return
    try:
        os.write(fd, b"R")
    except OSError:
        pass  # the supervisor gave up waiting
    finally:
        os.close(fd)


def wait_ready(pipes: dict[int, int], timeout: float,
               clock: Callable[[], float] = time.monotonic) -> list[int]:  # fmt: skip
    """Wait until every pipe (pid → read end) said "serving"; returns the pids that did not (died
    first: end of file; or still silent after ``timeout`` seconds) — empty when all did.  The
    read ends are closed."""
    waiting = {fd: pid for pid, fd in pipes.items()}
    failed: list[int] = []
    deadline = clock() + timeout
    try:
        while waiting and not failed:
            left = deadline - clock()
            if left <= 0:
                break
            readable, _, _ = select.select(list(waiting), [], [], left)
            for fd in readable:
                pid = waiting.pop(fd)
                if not os.read(fd, 1):
                    failed.append(pid)
        return failed + list(waiting.values())
    finally:
        for fd in pipes.values():
            os.close(fd)
