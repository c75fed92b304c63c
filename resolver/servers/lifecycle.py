"""Process model: a supervisor and N worker processes sharing the listening port.

The supervisor reserves the port (binding with ``SO_REUSEPORT`` so that ``port = 0`` resolves
to one number for every worker), forks the workers, restarts any that die, and on SIGTERM or
SIGINT forwards SIGTERM and waits.  Each worker opens its own LMDB environment (never across a
fork), binds its own ``SO_REUSEPORT`` socket, runs uvloop when available, and on SIGTERM stops
accepting, drains in-flight requests for at most ``drain_seconds``, and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import time
from typing import Callable

from aiohttp import web

from resolver.servers.http_app import JsonServer

log = logging.getLogger("idnode.serve")


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) a SO_REUSEPORT socket: fixes the port number the workers will share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def listening_socket(host: str, port: int) -> socket.socket:
    sock = reserve_port(host, port)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def install_event_loop_policy() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


async def run_http(handler, host: str, port: int, drain_seconds: float) -> None:
    """Serve ``handler`` (a low-level aiohttp handler) on a SO_REUSEPORT socket until SIGTERM
    or SIGINT, then stop accepting, drain in-flight requests (≤ ``drain_seconds``) and return."""
    server = JsonServer(handler, access_log=None, max_field_size=16384)
    runner = web.ServerRunner(server, shutdown_timeout=drain_seconds, handle_signals=False)
    await runner.setup()
    site = web.SockSite(runner, listening_socket(host, port))
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def supervise(workers: int, target: Callable[[int], None], banner: str = "") -> int:
    """Fork ``workers`` children running ``target(i)``; restart crashes; exit 0 on SIGTERM."""
    children: dict[int, int] = {}  # pid → worker number
    stopping = False

    def spawn(i: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                target(i)
            except BaseException:
                log.exception("E020 worker %d failed", i)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = i

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for i in range(workers):
        spawn(i)
    if banner:
        print(banner, flush=True)
    restarts: list[float] = []
    gave_up = False
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        i = children.pop(pid, None)
        if i is None or stopping:
            continue
        log.error("E021 worker %d (pid %d) exited with status %d; restarting", i, pid, status)
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < 10] + [now]
        if len(restarts) > 5 * workers:
            log.error("E022 workers keep dying; giving up")
            gave_up = True
            stop(signal.SIGTERM, None)
            continue
        time.sleep(0.2)
        spawn(i)
    return 1 if gave_up else 0
