"""Process model: a supervisor and N worker processes sharing the listening port.

The supervisor reserves the ports (binding with ``SO_REUSEPORT`` so that ``port = 0`` resolves
to one number for every worker; the Handle port is one number for TCP and UDP), forks the workers, restarts any that die, and on SIGTERM or
SIGINT forwards SIGTERM and waits.  With ``[upstream] servers`` or ``[takeover] sources`` it
first forks the upstream agent (``resolver.upstream.agent``: the node-wide recursor the workers
reach over a Unix socket; the takeover sync), restarts it like a worker, and stops it only after every worker has exited, so that
draining workers can still finish recursive requests.  Each worker opens its own LMDB
environment (never across a fork), listens on its own ``SO_REUSEPORT`` sockets (HTTP, Handle UDP and TCP, DNS UDP and TCP), runs uvloop when available, and on SIGTERM stops
accepting, drains in-flight requests for at most ``drain_seconds``, and exits 0.  The
supervisor makes each worker's sockets and keeps them (``handover``), so that on SIGHUP a new
generation of workers, started with the re-read configuration, takes them over from the old
one without a request lost (``supervise``).
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
from resolver.servers import access_log, handover, http_app
from resolver.servers.dns_frontend import DnsFrontEnd, native_zone
from resolver.servers.dns_tcp import start_dns_tcp
from resolver.servers.dns_udp import start_dns_udp
from resolver.servers.handle_frontend import HandleFrontEnd
from resolver.servers.handle_tcp import start_tcp
from resolver.servers.handle_udp import start_udp
from resolver.servers.http_app import JsonServer
from resolver.servers.metrics import OpsHttp, Readiness, WorkerMetrics
from resolver.servers.http_proxy import HttpProxy
from resolver.servers.sockets import listening_socket
from resolver.servers.stream import TcpLimits
from resolver.store.lmdb_store import LmdbStore

log = logging.getLogger("idnode.serve")

#: Seconds a stopping worker keeps serving what it accepted before closing idle connections.
LAME_DUCK_SECONDS = 0.1


def install_event_loop_policy() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


async def run_worker(store: LmdbStore, resolver: Resolver, config: Config, http_port: int,
                     handle_port: int, admin=None, extensions=(),
                     native_admin=None, dns_port: int = -1,
                     metrics: WorkerMetrics | None = None) -> None:  # fmt: skip
    """Serve HTTP(S), Handle UDP and TCP, and DNS UDP and TCP (``dns_port`` ≥ 0; the ports are
    reserved by the caller) on SO_REUSEPORT sockets until SIGTERM or
    SIGINT; then stop accepting, let in-flight work finish (≤ ``drain_seconds``) and return.
    ``admin``: the REST writes (``http_admin.AdminHttp``), None for a read-only API;
    ``extensions``: the other ``/api/v1/`` drivers (operator, imports, templates);
    ``native_admin``: admin operations over the Handle protocol (``registry.native_admin``);
    ``metrics``: this worker's ``servers.metrics.WorkerMetrics`` (None: ``/metrics`` off;
    ``/healthz`` and ``/readyz`` are served either way)."""
    # A worker runs blocking work (LMDB commits, import jobs) in threads; the event loop that
    # answers UDP and HTTP must get the GIL back within 1 ms, not CPython's default 5 ms, or a
    # running import shows in the resolution p99 (bench/RESULTS.md, import).
    sys.setswitchinterval(0.001)
    tally = stats.Tally(metrics.count_resolutions if metrics is not None else None)
    flusher = stats.Flusher(store, tally.drain, config.stats_flush_interval)
    ready = Readiness(store, config, dns=dns_port >= 0)
    fm = metrics.frontend if metrics is not None else (lambda _name: None)
    access = access_log.open_log(config)  # [log] access_log; None: off
    http = web.ServerRunner(
        JsonServer(access_log.wrap_http(access, http_app.make_handler(
                                         store, resolver, config, admin, extensions,
                                         tally.table("http"),
                                         proxy=HttpProxy(store, resolver, config,
                                                         tally.table("http")),
                                         ops=OpsHttp(ready, metrics, tally),
                                         metrics=fm("http")),
                                        tls=bool(config.tls_cert), admin=admin),
                   access_log=None,
                   max_field_size=16384),
        shutdown_timeout=config.drain_seconds, handle_signals=False,
    )  # fmt: skip
    await http.setup()
    tls = None
    if config.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(config.tls_cert, config.tls_key)
    site = web.SockSite(http, listening_socket(config.host, http_port), ssl_context=tls)
    await site.start()
    # One front-end per transport: each counts in its own table (UDP and TCP apart in /metrics).
    frontend = HandleFrontEnd(resolver, config, admin=native_admin,
                              tally=tally.table("handle_udp"))  # fmt: skip
    udp = await start_udp(store, frontend, config.host, handle_port, config.case_sensitive,
                          config.record_cache, access=access)  # fmt: skip
    udp.metrics = fm("handle_udp")
    limits = TcpLimits(config.max_tcp_connections, config.tcp_idle_seconds)
    tcp_front = HandleFrontEnd(resolver, config, admin=native_admin,
                               tally=tally.table("handle_tcp"))  # fmt: skip
    tcp = await start_tcp(store, tcp_front, config.host, handle_port, config.case_sensitive, limits,
                          fm("handle_tcp"), access=access)  # fmt: skip
    ready.listening("http", "handle_udp", "handle_tcp")
    if metrics is not None:
        metrics.watch_udp("handle_udp", udp)
    dns_udp = dns_tcp = None
    if dns_port >= 0:
        dns_front = DnsFrontEnd(resolver, store, config, tally.table("dns_udp"))
        zone = native_zone(config)
        limiter = rrl.RateLimiter(rrl_config(config)) if config.rrl_rate_limit > 0 else None
        dns_udp = await start_dns_udp(store, dns_front, config.host, dns_port, zone,
                                      config.case_sensitive, udp.cache, limiter,
                                      access=access)  # fmt: skip
        dns_udp.metrics = fm("dns_udp")
        dns_limits = TcpLimits(config.max_tcp_connections, config.dns_tcp_idle_seconds)
        dns_tcp = await start_dns_tcp(store, DnsFrontEnd(resolver, store, config,
                                                         tally.table("dns_tcp")),
                                      config.host, dns_port, zone, dns_limits,
                                      fm("dns_tcp"), access=access)  # fmt: skip
        ready.listening("dns_udp", "dns_tcp")
        if metrics is not None:
            metrics.watch_udp("dns_udp", dns_udp)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    flushing = loop.create_task(flusher.run())
    metering = loop.create_task(metrics.run(tally)) if metrics is not None else None
    logging_task = loop.create_task(access.run()) if access is not None else None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    handover.notify_ready()  # every listener is served: a reload may retire our predecessor
    await stop.wait()
    ready.draining = True  # /readyz: 503 from now on (HTTP answers until http.cleanup())

    # Stop accepting everywhere first (our sockets stay open in the supervisor: what is queued
    # on them goes to our successor), then a lame-duck moment: a connection accepted just
    # before has its request read and answered, instead of being closed as idle by cleanup().
    await site.stop()
    tcp.close()  # stop accepting; open connections finish what they were given
    udp.stop_reading()
    datagram_servers = [udp]
    if dns_udp is not None:
        dns_tcp.close()
        dns_udp.stop_reading()
        datagram_servers.append(dns_udp)
    deadline = loop.time() + config.drain_seconds
    await asyncio.sleep(min(LAME_DUCK_SECONDS, config.drain_seconds))
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
    if metering is not None:
        metering.cancel()
        metrics.sync()  # and into /metrics (flush_now passed the resolutions already)
    if logging_task is not None:
        logging_task.cancel()
        access.close()  # the drained requests' lines too


def rrl_config(config: Config) -> rrl.RrlConfig:
    """``[dns.rrl]`` as the rate limiter takes it."""
    return rrl.RrlConfig(rate_limit=config.rrl_rate_limit, instant_limit=config.rrl_instant_limit,
                         slip=config.rrl_slip, whitelist=config.rrl_whitelist,
                         dry_run=config.rrl_dry_run, table_size=config.rrl_table_size)  # fmt: skip


#: ``children`` value of the upstream agent (workers are numbered from 0).
AGENT = -1


#: Seconds a reload waits for its new workers to serve before it gives up on them.
RELOAD_READY_TIMEOUT = 30.0


def supervise(workers: int, target: Callable[[int], None], banner: str = "",
              started: Callable[[], None] | None = None,
              agent: Callable[[], None] | None = None,
              sockets: handover.WorkerSockets | None = None,
              reload: Callable[[], tuple[int, Callable[[int], None]]] | None = None,
              ) -> int:  # fmt: skip
    """Fork ``workers`` children running ``target(i)``; restart crashes; exit 0 on SIGTERM.

    ``agent``: the upstream agent's main, forked before the workers, restarted like them, and
    sent SIGTERM once every worker has exited.  ``started`` runs once all are forked (the
    caller releases reservations there).  Exit 1 when children keep dying (more than five
    restarts per child within 10 s).  ``sockets``: the workers' listening sockets, kept here
    and inherited by worker *i* and its successors (``handover``); closed on SIGTERM.

    SIGHUP (issue 8 §5): ``reload()`` re-reads the configuration and returns the new
    ``(workers, target)``, or raises (an invalid file, a setting only a restart can change):
    logged (E024), and the node keeps running as it was.  Otherwise a new generation of workers
    is forked beside the old one, on the same sockets; once every new worker serves
    (``handover.notify_ready``), the old ones get SIGTERM and drain as on a stop, and are not
    restarted when they exit.  New workers that die or stay silent for
    ``RELOAD_READY_TIMEOUT`` seconds are stopped instead, and the old ones keep serving (E025).
    The upstream agent is not restarted by a reload.
    """
    children: dict[int, int] = {}  # pid → worker number, or AGENT
    retiring: set[int] = set()  # workers of a previous generation, or of a failed reload
    stopping = False
    agent_stopped = False
    reloading = reload_again = early_hup = False
    generation = 0  # successful reloads so far

    def spawn(i: int, ready_pipe: bool = False) -> tuple[int, int | None]:
        """Fork child ``i``; with ``ready_pipe``, also the read end it reports serving on."""
        r, w = os.pipe() if ready_pipe else (None, None)
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)  # reloads are the supervisor's
                if r is not None:
                    os.close(r)
                handover.expect_ready(w)
                if sockets is not None:
                    sockets.adopt(None if i == AGENT else i)
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
        if w is not None:
            os.close(w)
        children[pid] = i
        return pid, r

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
        if sockets is not None:
            sockets.close()  # new connections are refused once the workers close theirs
        signal_children(lambda i: i != AGENT)
        stop_agent_when_workers_gone()

    def reload_once() -> None:
        nonlocal target, workers, generation
        try:
            new_workers, new_target = reload()
        except Exception as exc:  # ConfigError, an unreadable file: keep serving as we are
            log.error("E024 reload refused: %s; still serving with the previous configuration",
                      exc)  # fmt: skip
            return
        old = [pid for pid, i in children.items() if i != AGENT and pid not in retiring]
        if sockets is not None:
            sockets.ensure(new_workers)
        previous, target = target, new_target
        pipes = dict(spawn(i, ready_pipe=True) for i in range(new_workers))
        silent = handover.wait_ready(pipes, RELOAD_READY_TIMEOUT)
        if stopping:
            return  # stop() told every child, the new ones included
        if silent:
            log.error("E025 reload failed: new worker(s) %s did not start serving; the previous "
                      "ones keep serving", ", ".join(map(str, silent)))  # fmt: skip
            target = previous
            retiring.update(pipes)
            for pid in pipes:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            if sockets is not None:
                sockets.trim(workers)
            return
        retiring.update(old)
        for pid in old:
            try:
                os.kill(pid, signal.SIGTERM)  # drains what it accepted; its sockets live on
            except ProcessLookupError:
                pass
        if sockets is not None:
            sockets.trim(new_workers)
        workers = new_workers
        generation += 1
        log.info("reloaded the configuration: %d new worker(s) serving, %d old one(s) draining",
                 new_workers, len(old))  # fmt: skip

    def hup(signum, _frame) -> None:
        # Runs in the main thread, between two bytecodes of the wait loop (os.wait is resumed
        # afterwards): a SIGHUP during a reload asks for one more once it is done.
        nonlocal reloading, reload_again
        if reload is None or stopping:
            return
        if reloading:
            reload_again = True
            return
        reloading = True
        try:
            while True:
                reload_again = False
                try:
                    reload_once()
                except Exception:  # fork or socket failure: the running workers stay
                    log.exception("E026 reload failed")
                if not reload_again or stopping:
                    break
        finally:
            reloading = False

    def hup_while_starting(signum, _frame) -> None:
        nonlocal early_hup
        early_hup = True  # served once the first generation is forked

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup_while_starting)
    if sockets is not None:
        sockets.ensure(workers)
    if agent is not None:
        spawn(AGENT)  # first: the workers' links find it listening sooner
    for i in range(workers):
        spawn(i)
    if started is not None:
        started()
    if banner:
        print(banner, flush=True)
    signal.signal(signal.SIGHUP, hup)
    if early_hup:
        hup(signal.SIGHUP, None)
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
        if pid in retiring:  # replaced by a reload: drained and gone, as it should
            retiring.discard(pid)
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
        before = generation
        time.sleep(0.2)
        if stopping:  # SIGTERM during the pause: a child forked now would never be told
            stop_agent_when_workers_gone()
            continue
        if before != generation and i != AGENT:
            continue  # a reload during the pause started worker i's successor already
        spawn(i)
    if sockets is not None:
        sockets.close()
    return 1 if gave_up else 0
