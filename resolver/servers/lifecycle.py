"""Process model: a supervisor and N worker processes sharing the listening port.

The supervisor reserves the ports (binding with ``SO_REUSEPORT`` so that ``port = 0`` resolves
to one number for every worker; the Handle port is one number for TCP and UDP), forks the workers, restarts any that die, and on SIGTERM or
SIGINT forwards SIGTERM and waits.  With ``[upstream] servers`` or ``[takeover] sources`` it
first forks the upstream agent (``resolver.upstream.agent``: the node-wide recursor the workers
reach over a Unix socket; the takeover sync), restarts it like a worker, and stops it only after every worker has exited, so that
draining workers can still finish recursive requests.  Each worker opens its own LMDB
environment (never across a fork), binds its own ``SO_REUSEPORT`` sockets (HTTP, Handle UDP and TCP, DNS UDP and TCP), runs uvloop when available, and on SIGTERM stops
accepting, drains in-flight requests for at most ``drain_seconds``, and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import ssl
import sys
import time
from typing import Callable

from aiohttp import web

from resolver.config import Config
from resolver.core import stats
from resolver.core.engine import Resolver
from resolver.protocols.dns import rrl
from resolver.servers import http_app
from resolver.servers.dns_frontend import DnsFrontEnd, native_zone
from resolver.servers.dns_tcp import start_dns_tcp
from resolver.servers.dns_udp import start_dns_udp
from resolver.servers.handle_frontend import HandleFrontEnd
from resolver.servers.handle_tcp import start_tcp
from resolver.servers.handle_udp import start_udp
from resolver.servers.http_app import JsonServer
from resolver.servers.sockets import listening_socket
from resolver.servers.stream import TcpLimits
from resolver.store.lmdb_store import LmdbStore

log = logging.getLogger("idnode.serve")


def install_event_loop_policy() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


async def run_worker(store: LmdbStore, resolver: Resolver, config: Config, http_port: int,
                     handle_port: int, admin=None, extensions=(),
                     native_admin=None, dns_port: int = -1) -> None:  # fmt: skip
    """Serve HTTP(S), Handle UDP and TCP, and DNS UDP and TCP (``dns_port`` ≥ 0; the ports are
    reserved by the caller) on SO_REUSEPORT sockets until SIGTERM or
    SIGINT; then stop accepting, let in-flight work finish (≤ ``drain_seconds``) and return.
    ``admin``: the REST writes (``http_admin.AdminHttp``), None for a read-only API;
    ``extensions``: the other ``/api/v1/`` drivers (operator, imports, templates);
    ``native_admin``: admin operations over the Handle protocol (``registry.native_admin``)."""
    # A worker runs blocking work (LMDB commits, import jobs) in threads; the event loop that
    # answers UDP and HTTP must get the GIL back within 1 ms, not CPython's default 5 ms, or a
    # running import shows in the resolution p99 (bench/RESULTS.md, import).
    sys.setswitchinterval(0.001)
    tally = stats.Tally()
    flusher = stats.Flusher(store, tally.drain, config.stats_flush_interval)
    http = web.ServerRunner(
        JsonServer(http_app.make_handler(store, resolver, config, admin, extensions,
                                         tally.table("http")),
                   access_log=None,
                   max_field_size=16384),
        shutdown_timeout=config.drain_seconds, handle_signals=False,
    )  # fmt: skip
    await http.setup()
    tls = None
    if config.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(config.tls_cert, config.tls_key)
    await web.SockSite(http, listening_socket(config.host, http_port), ssl_context=tls).start()
    frontend = HandleFrontEnd(resolver, config, admin=native_admin, tally=tally.table("handle"))
    udp = await start_udp(store, frontend, config.host, handle_port, config.case_sensitive,
                          config.record_cache)  # fmt: skip
    limits = TcpLimits(config.max_tcp_connections, config.tcp_idle_seconds)
    tcp = await start_tcp(store, frontend, config.host, handle_port, config.case_sensitive, limits)
    dns_udp = dns_tcp = None
    if dns_port >= 0:
        dns_front = DnsFrontEnd(resolver, store, config, tally.table("dns"))
        zone = native_zone(config)
        limiter = rrl.RateLimiter(rrl_config(config)) if config.rrl_rate_limit > 0 else None
        dns_udp = await start_dns_udp(store, dns_front, config.host, dns_port, zone,
                                      config.case_sensitive, udp.cache, limiter)  # fmt: skip
        dns_limits = TcpLimits(config.max_tcp_connections, config.dns_tcp_idle_seconds)
        dns_tcp = await start_dns_tcp(store, dns_front, config.host, dns_port, zone, dns_limits)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    flushing = loop.create_task(flusher.run())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()

    tcp.close()  # stop accepting; open connections finish what they were given
    udp.stop_reading()
    datagram_servers = [udp]
    if dns_udp is not None:
        dns_tcp.close()
        dns_udp.stop_reading()
        datagram_servers.append(dns_udp)
    deadline = loop.time() + config.drain_seconds
    pending = [t for s in datagram_servers for t in s.in_flight if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
    for server in datagram_servers:
        server.close()
    await http.cleanup()  # waits for in-flight HTTP handlers ≤ shutdown_timeout
    for stream_server in (tcp, dns_tcp):
        if stream_server is None:
            continue
        try:
            await asyncio.wait_for(stream_server.wait_closed(), max(0.1, deadline - loop.time()))
        except (asyncio.TimeoutError, TimeoutError):
            pass
    flushing.cancel()
    flusher.flush_now()  # what the drained requests added: nothing counted is lost


def rrl_config(config: Config) -> rrl.RrlConfig:
    """``[dns.rrl]`` as the rate limiter takes it."""
    return rrl.RrlConfig(rate_limit=config.rrl_rate_limit, instant_limit=config.rrl_instant_limit,
                         slip=config.rrl_slip, whitelist=config.rrl_whitelist,
                         dry_run=config.rrl_dry_run, table_size=config.rrl_table_size)  # fmt: skip


#: ``children`` value of the upstream agent (workers are numbered from 0).
AGENT = -1


def supervise(workers: int, target: Callable[[int], None], banner: str = "",
              started: Callable[[], None] | None = None,
              agent: Callable[[], None] | None = None) -> int:  # fmt: skip
    """Fork ``workers`` children running ``target(i)``; restart crashes; exit 0 on SIGTERM.

    ``agent``: the upstream agent's main, forked before the workers, restarted like them, and
    sent SIGTERM once every worker has exited.  ``started`` runs once all are forked (the
    caller releases reservations there).  Exit 1 when children keep dying (more than five
    restarts per child within 10 s).
    """
    children: dict[int, int] = {}  # pid → worker number, or AGENT
    stopping = False
    agent_stopped = False

    def spawn(i: int) -> None:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                if i == AGENT:
                    agent()
                else:
                    target(i)
            except BaseException:
                log.exception("E020 %s failed", "upstream agent" if i == AGENT else f"worker {i}")
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = i

    def signal_children(which) -> None:
        for pid, i in list(children.items()):
            if which(i):
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def stop_agent_when_workers_gone() -> None:
        nonlocal agent_stopped
        if not agent_stopped and all(i == AGENT for i in children.values()):
            agent_stopped = True
            signal_children(lambda i: i == AGENT)

    def stop(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        signal_children(lambda i: i != AGENT)
        stop_agent_when_workers_gone()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if agent is not None:
        spawn(AGENT)  # first: the workers' links find it listening sooner
    for i in range(workers):
        spawn(i)
    if started is not None:
        started()
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
        if i is None:
            continue
        if stopping:
            stop_agent_when_workers_gone()
            continue
        if i == AGENT:
            log.error("E023 upstream agent (pid %d) exited with status %d; restarting", pid,
                      status)  # fmt: skip
        else:
            log.error("E021 worker %d (pid %d) exited with status %d; restarting", i, pid, status)
        now = time.monotonic()
        restarts = [t for t in restarts if now - t < 10] + [now]
        if len(restarts) > 5 * (workers + (agent is not None)):
            log.error("E022 workers keep dying; giving up")
            gave_up = True
            stop(signal.SIGTERM, None)
            continue
        time.sleep(0.2)
        if stopping:  # SIGTERM during the pause: a child forked now would never be told
            stop_agent_when_workers_gone()
            continue
        spawn(i)
    return 1 if gave_up else 0
