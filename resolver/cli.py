"""The ``idnode`` command line and the composition root: the one place that wires config,
store, engine, registry and servers together.

Commands: ``serve`` (supervisor + workers, and the upstream agent when ``[upstream] servers``
or ``[takeover] sources`` are set), ``load FILE.jsonl``, ``check-config FILE``, ``stat``, ``upstream status`` (the
upstream agent's status file), ``resolve HANDLE`` (a client of any node),
``dns-name IDENTIFIER`` / ``dns-identifier NAME`` (the DNS mapping); the registry's tools
``prefix``, ``identity``, ``create``/``modify``/``delete`` and ``import FILE --prefix P`` (bulk import jobs,
``registry.import_cli``).  Exit codes: 0 success, 1 operational
failure (bad records, store full; for ``resolve``: any response code but 1), 2 bad usage or
configuration (for ``resolve``: also an unreachable server).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time

import native
from resolver import __version__, config as config_mod
from resolver.errors import ConfigError, IdnodeError, StoreError

log = logging.getLogger("idnode")


_config_args = config_mod.add_store_arguments


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idnode", description="Identifier resolution node")
    parser.add_argument("--version", action="version", version=f"idnode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the node")
    _config_args(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--http-port", dest="http_port", type=int, help="REST API port (8000)")
    serve.add_argument("--record-cache", dest="record_cache",
                       help="memory per worker for records answered over UDP, e.g. 128MiB; 0 off")
    serve.add_argument("--handle-port", dest="handle_port", type=int,
                       help="Handle protocol port, UDP and TCP (2641; 0 = any free port)")  # fmt: skip
    serve.add_argument("--dns-port", dest="dns_port", type=int,
                       help="DNS port, UDP and TCP (5353; 0 = any free port; -1 = no DNS)")
    serve.add_argument("--dns-apex", dest="dns_apex",
                       help="DNS name the identifiers' names live under (id.idnode.test.)")
    serve.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    serve.add_argument("--home", dest="homed_prefixes", action="append",
                       help="home this prefix at start-up if missing (repeatable)")  # fmt: skip
    serve.add_argument("--role", help="peering tier: secondary (default) or top-level")
    serve.add_argument("--upstream", dest="upstream_servers", action="append",
                       metavar="HOST:PORT",
                       help="a top-level node to ask for prefixes not held (repeatable; "
                            "replaces [upstream] servers)")  # fmt: skip

    upstream = sub.add_parser("upstream", help="the upstream agent of a running node (peering)")
    upstream_sub = upstream.add_subparsers(dest="upstream_command", required=True)
    ustatus = upstream_sub.add_parser("status", help="print the upstream agent's status")
    ustatus.add_argument("--config", help="TOML configuration file")
    ustatus.add_argument("--data", help="data directory (default ./var/idnode)")

    load = sub.add_parser("load", help="load records from a JSON Lines file")
    _config_args(load)
    load.add_argument("file", help="JSON Lines file, '-' for standard input")
    load.add_argument("--batch", type=int, default=10_000, help="records per write transaction")

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file")

    stat = sub.add_parser("stat", help="print store statistics")
    _config_args(stat)

    res = sub.add_parser("resolve", help="resolve an identifier at a node (Handle or REST)")
    res.add_argument("handle", help="identifier, e.g. 88.118.8/demo-1")
    res.add_argument("--proto", choices=("auto", "udp", "tcp", "http"), default="auto",
                     help="auto (default): UDP, then TCP; or only udp, tcp or http")  # fmt: skip
    res.add_argument("--server", help="HOST:PORT (127.0.0.1:2641; 127.0.0.1:8000 for http)")
    res.add_argument("--type", dest="types", action="append", default=[],
                     help="only values of this type (repeatable; 'X.': sub-types)")  # fmt: skip
    res.add_argument("--index", dest="indexes", action="append", type=_int4, default=[],
                     help="only the value at this index (repeatable)")  # fmt: skip
    res.add_argument("--json", action="store_true",
                     help="print the Handle.net v9 REST JSON of the answer")  # fmt: skip
    res.add_argument("--timeout", type=float, default=10.0, help="seconds to wait in all (10)")
    dname = sub.add_parser("dns-name", help="print the DNS name of an identifier")
    dname.add_argument("identifier", help="identifier, e.g. 88.118.8/SN-2026-0001")
    dident = sub.add_parser("dns-identifier", help="print the identifier a DNS name stands for")
    dident.add_argument("name", help="DNS name, e.g. sn-2026-0001.8.118.88.id.idnode.test.")
    for p in (dname, dident):
        p.add_argument("--apex", help="DNS apex the names live under (default id.idnode.test.)")
        p.add_argument("--case-sensitive", dest="case_sensitive", action="store_true",
                       help="suffixes are case-sensitive (as the node's case_sensitive setting)")

    from registry import admin_cli, import_cli, operator_cli  # the composition root wires them

    operator_cli.register(sub)
    admin_cli.register(sub)
    import_cli.register(sub)
    return parser


def _int4(text: str) -> int:
    n = int(text)
    if not -(1 << 31) <= n < 1 << 31:
        raise ValueError(text)
    return n


def _overrides(args: argparse.Namespace) -> dict:
    names = ("data", "map_size", "record_cache", "case_sensitive", "host", "http_port",
             "handle_port", "dns_port", "dns_apex", "workers", "homed_prefixes",
             "role", "upstream_servers")  # fmt: skip
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _open_store(cfg):
    from resolver.store.lmdb_store import LmdbStore

    return LmdbStore(cfg.data, map_size=cfg.map_size)


_agent_stores: dict = {}


def _agent_store(cfg):
    """The upstream agent process's one store handle, shared by its background services
    (LMDB: never open one environment twice in a process — closing either drops the other's
    locks).  Opened on first use, after the fork; closed when the process exits."""
    store = _agent_stores.get(cfg.data)
    if store is None:
        store = _agent_stores[cfg.data] = _open_store(cfg)
    return store


def _check_serve(cfg) -> None:
    """What ``serve`` checks beyond ``config.load``, before binding anything (and a reload
    before starting workers): ConfigError."""
    from resolver.servers import access_log, dns_frontend, lifecycle

    if cfg.dns_port >= 0:
        try:
            dns_frontend.zone_of(cfg)  # the apex and the zone's names: before binding anything
        except ValueError as exc:
            raise ConfigError("dns", str(exc)) from None
        try:
            lifecycle.rrl_config(cfg)  # rate-limit against instant-limit, whitelist ranges
        except ValueError as exc:
            raise ConfigError("dns.rrl", str(exc)) from None
    try:
        access_log.check_destination(cfg.access_log)  # unwritable: fail before binding
    except OSError as exc:
        raise ConfigError("log.access_log", f"cannot open {cfg.access_log}: "
                                            f"{exc.strerror}") from None  # fmt: skip
    if cfg.tls_cert:  # the workers load it after binding: a bad pair must fail here
        import ssl

        try:
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cfg.tls_cert,
                                                                                cfg.tls_key)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError("http.tls_cert", f"cannot load the certificate and key: "
                                               f"{getattr(exc, 'reason', None) or exc}") from None


#: Settings a SIGHUP reload cannot change (config.py docstring): the supervisor's — what it
#: binds and opens — and what decides whether and how the upstream agent runs.
_RESTART_ONLY = ("data", "map_size", "host", "http_port", "handle_port", "dns_port", "role",
                 "metrics_enabled")  # fmt: skip
_AGENT_PREFIXES = ("upstream_", "takeover_", "stats_report_")


def _restart_only_changes(old, new) -> list[str]:
    """The settings (as file keys) that differ between ``old`` and ``new`` and need a restart."""
    keys = {field: key for key, field in config_mod._FILE_KEYS.items()}
    return [keys.get(f.name, f.name) for f in dataclasses.fields(old)
            if (f.name in _RESTART_ONLY or f.name.startswith(_AGENT_PREFIXES))
            and getattr(old, f.name) != getattr(new, f.name)]  # fmt: skip


def cmd_serve(cfg, reread=None) -> int:
    """``reread()``: the configuration as the command line and file now say (SIGHUP)."""
    from resolver.servers import handover, lifecycle, sockets

    _check_serve(cfg)
    # Unreadable credentials: fail before binding anything (and before forking).
    registration_auth = _registration_auth(cfg)
    takeover_secret = _takeover_secret(cfg)
    report_token = _report_token(cfg)
    store = _open_store(cfg)  # create/verify the store once before forking
    _home_prefixes(store, cfg)
    store.close()
    if cfg.metrics_enabled:  # before any fork: every child writes its metric files there
        from resolver.servers import metrics

        metrics.prepare(cfg.data)
    reserved = [sockets.reserve_port(cfg.host, cfg.http_port)]
    reserved += sockets.reserve_tcp_udp(cfg.host, cfg.handle_port)
    if cfg.dns_port >= 0:
        reserved += sockets.reserve_tcp_udp(cfg.host, cfg.dns_port)
    http_port = reserved[0].getsockname()[1]
    handle_port = reserved[1].getsockname()[1]
    dns_port = reserved[3].getsockname()[1] if cfg.dns_port >= 0 else -1
    configured = cfg  # as written (port 0 = "any free"): what a reload compares with
    cfg = dataclasses.replace(cfg, http_port=http_port, handle_port=handle_port, dns_port=dns_port)
    dns_text = f"dns://{cfg.host}:{dns_port} (udp+tcp, {cfg.dns_apex}) " if dns_port >= 0 else ""
    agent_socket = None
    upstream_text = ""
    if cfg.upstream_servers:
        from resolver.upstream.link import agent_socket_name

        agent_socket = agent_socket_name(os.getpid(), cfg.data)  # os.getpid(): the supervisor
        upstream_text = (f"upstream {', '.join(cfg.upstream_servers)} (recursion "
                         f"{'on' if cfg.upstream_recursion else 'off'}) ")  # fmt: skip
    if cfg.takeover_sources:  # the agent pulls the copy, with or without [upstream] servers
        from resolver.upstream.link import agent_socket_name

        agent_socket = agent_socket or agent_socket_name(os.getpid(), cfg.data)
        upstream_text += (f"takeover {', '.join(cfg.takeover_sources)} (answering "
                          f"{'on' if cfg.takeover_enabled else 'off'}) ")  # fmt: skip
    if cfg.stats_report_url or cfg.stats_report_dir:  # the agent reports the statistics
        from resolver.upstream.link import agent_socket_name

        agent_socket = agent_socket or agent_socket_name(os.getpid(), cfg.data)
        targets = [t for t in (cfg.stats_report_url, cfg.stats_report_dir) if t]
        upstream_text += f"stats report → {', '.join(targets)} "
    loop_kind = "uvloop" if _has_uvloop() else "asyncio"
    scheme = "https" if cfg.tls_cert else "http"
    banner = (f"idnode {__version__}: {scheme}://{cfg.host}:{http_port}/api/handles/ "
              f"handle://{cfg.host}:{handle_port} (udp+tcp) {dns_text}{upstream_text}— "
              f"{cfg.worker_count} worker(s), {native.IMPLEMENTATION} hot path, {loop_kind}, "
              f"record cache {cfg.record_cache >> 20} MiB, data {cfg.data}")  # fmt: skip

    def worker_with(conf):
        def worker(_i: int) -> None:
            for sock in reserved:
                sock.close()
            _run_worker(conf, agent_socket)

        return worker

    def reload():
        # In the supervisor, on SIGHUP: ConfigError (logged there) leaves everything as it is.
        new = reread()
        changed = _restart_only_changes(configured, new)
        if changed:
            raise ConfigError(", ".join(changed), "changed; only a restart can apply that")
        _check_serve(new)
        new = dataclasses.replace(new, http_port=http_port, handle_port=handle_port,
                                  dns_port=dns_port)  # fmt: skip
        store = _open_store(new)
        try:
            _home_prefixes(store, new)
        finally:
            store.close()
        return new.worker_count, worker_with(new)

    def agent() -> None:
        for sock in reserved:
            sock.close()
        _run_agent(cfg, agent_socket, registration_auth, takeover_secret, report_token)

    def started() -> None:
        # A bound UDP socket in a SO_REUSEPORT group receives its share of datagrams even when
        # nobody reads it (unlike a TCP socket that does not listen): release it now.
        for sock in reserved[2::2]:  # the UDP reservations: Handle, DNS
            sock.close()

    try:
        return lifecycle.supervise(cfg.worker_count, worker_with(cfg), banner, started,
                                   agent=agent if agent_socket else None,
                                   sockets=handover.WorkerSockets(cfg.host, http_port,
                                                                  handle_port, dns_port),
                                   reload=reload if reread is not None else None)  # fmt: skip
    finally:
        for sock in reserved:
            sock.close()


def _run_worker(cfg, agent_socket: str | None = None) -> None:
    import asyncio

    from resolver.core.authority import AuthorityHandler
    from resolver.core.engine import Resolver
    from resolver.servers import lifecycle

    lifecycle.install_event_loop_policy()
    store = _open_store(cfg)
    handlers = [AuthorityHandler(store)]
    if cfg.takeover_enabled:  # after authority: a secondary that is down, from the copy
        from resolver.core.takeover import TakeoverHandler

        handlers.append(TakeoverHandler(store, cfg.takeover_sources))
    if agent_socket is not None and cfg.upstream_servers:  # only prefixes not held are forwarded
        from resolver.core.forwarder import ForwarderHandler
        from resolver.upstream.link import UpstreamLink

        handlers.append(ForwarderHandler(UpstreamLink(agent_socket)))
    resolver = Resolver(handlers)
    try:
        from registry.native_admin import NativeAdmin

        admin = _admin_http(store, cfg)
        # one authenticator: REST and native failed logins count together
        native = NativeAdmin(admin.registry, admin.authenticator)
        asyncio.run(lifecycle.run_worker(store, resolver, cfg, cfg.http_port, cfg.handle_port,
                                         admin=admin, extensions=_extensions(admin),
                                         native_admin=native,
                                         dns_port=cfg.dns_port,
                                         metrics=_worker_metrics(store, cfg)))  # fmt: skip
    finally:
        store.close()


def _worker_metrics(store, cfg):
    """A worker's ``/metrics`` (issue 8 §3), with the import jobs read from the store; None
    with ``[metrics] enabled = false``."""
    if not cfg.metrics_enabled:
        return None
    from registry.imports import job_figures
    from resolver.servers.metrics import WorkerMetrics

    return WorkerMetrics(store, import_jobs=lambda: job_figures(store))


def _run_agent(cfg, agent_socket: str, registration_auth=None, takeover_secret=None,
               report_token: str = "") -> None:  # fmt: skip
    """The upstream agent process: the node's one recursor, its cache, single-flight and
    upstream health, built inside the agent's event loop; and its background services: with
    ``[upstream] prefixes`` the prefix registrar (issue 7 §2), with ``[takeover] sources`` the
    takeover sync (§7), with upstream servers the flush of the upstream-query counters and with
    a ``[stats]`` report target the statistics report (§6)."""
    from resolver.core import stats
    from resolver.upstream.agent import run_agent

    made = []

    def make_recursor():
        made.append(_make_recursor(cfg))
        return made[0]

    def upstream_queries():
        hour = int(time.time()) // 3600
        return {(prefix, hour, stats.UPSTREAM_QUERY): n
                for prefix, n in made[0].drain_prefix_queries().items()}  # fmt: skip

    background = []
    if registration_auth is not None:
        background.append(lambda: _make_registrar(cfg, registration_auth))
    if takeover_secret is not None:
        background.append(lambda: _make_takeover(cfg, takeover_secret))
    if cfg.upstream_servers:
        background.append(lambda: stats.Flusher(_agent_store(cfg), upstream_queries,
                                                cfg.stats_flush_interval))  # fmt: skip
    if cfg.stats_report_url or cfg.stats_report_dir:
        background.append(lambda: _make_reporter(cfg, report_token))
    if cfg.upstream_servers and cfg.metrics_enabled:  # issue 8 §3: upstream health, cache
        from resolver.servers.metrics import UpstreamMetrics

        background.append(lambda: UpstreamMetrics(made[0]))
    run_agent(cfg, agent_socket, make_recursor, background=background)


def _report_token(cfg) -> str:
    """The bearer token of ``[stats] report_token_file`` ("" without one); ConfigError when
    unreadable."""
    if not cfg.stats_report_token_file:
        return ""
    try:
        with open(cfg.stats_report_token_file, encoding="utf-8") as fh:
            token = fh.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("stats.report_token_file", f"cannot read: {exc}") from None
    if not token or any(c in token for c in "\r\n"):
        raise ConfigError("stats.report_token_file", "expected one line holding the token")
    return token


def _make_reporter(cfg, token: str):
    """The statistics report (issue 7 §6) in the agent, on its store handle."""
    from resolver.upstream.report import StatsReporter

    site = f"{cfg.handle_advertise or cfg.host}:{cfg.handle_port}"
    node = {"role": cfg.role, "site": site,
            "prefixes": sorted(p.decode("utf-8") for p in _agent_store(cfg).prefixes())}
    return StatsReporter(_agent_store(cfg), interval=cfg.stats_report_interval,
                         url=cfg.stats_report_url, directory=cfg.stats_report_dir, token=token,
                         node=node)  # fmt: skip


def _takeover_secret(cfg) -> bytes | None:
    """The HS_SECKEY secret of ``[takeover] identity``; None without ``[takeover] sources``.
    ConfigError when unreadable or empty."""
    if not cfg.takeover_sources:
        return None
    try:
        with open(cfg.takeover_secret_file, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ConfigError("takeover.secret_file", f"cannot read: {exc.strerror}") from None
    data = data[:-2] if data.endswith(b"\r\n") else data.removesuffix(b"\n")  # as admin_cli
    if not data:
        raise ConfigError("takeover.secret_file", "empty secret")
    return data


def _make_takeover(cfg, secret: bytes):
    """The takeover sync (issue 7 §7) in the agent: its own writable store handle."""
    from resolver.upstream.takeover import TakeoverSync

    return TakeoverSync(cfg.takeover_sources, _agent_store(cfg), identity=cfg.takeover_identity,
                        secret=secret, interval=cfg.takeover_interval,
                        down_after=cfg.takeover_down_after,
                        enabled=cfg.takeover_enabled)  # fmt: skip


def _registration_auth(cfg):
    """``[upstream] identity`` with its secret_file (HS_SECKEY) or key_file (HS_PUBKEY) as a
    client credential; None without ``[upstream] prefixes``.  ConfigError when unreadable."""
    if not cfg.upstream_prefixes:
        return None
    from resolver.protocols.handle import auth as A
    from resolver.upstream.client import PublicKeyAuth, SecretKeyAuth

    key = "upstream.secret_file" if cfg.upstream_secret_file else "upstream.key_file"
    try:
        with open(cfg.upstream_secret_file or cfg.upstream_key_file, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ConfigError(key, f"cannot read: {exc.strerror}") from None
    if cfg.upstream_secret_file:  # one trailing line break is not part of it (as admin_cli)
        data = data[:-2] if data.endswith(b"\r\n") else data.removesuffix(b"\n")
        if not data:
            raise ConfigError(key, "empty secret")
        return SecretKeyAuth(cfg.upstream_identity, data)
    try:
        return PublicKeyAuth(cfg.upstream_identity, A.load_private_key(data))
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None


def _make_registrar(cfg, auth):
    """Our prefix handles at the top-level nodes, pointing at our HS_SITE; the enterprise
    prefixes to register are the ones homed in the store (read at every check)."""
    from resolver.servers.handle_frontend import site_info
    from resolver.upstream.registration import PrefixRegistrar

    site = site_info(cfg)
    loopback = ("0.0.0.0", "", "::", "127.0.0.1", "::1", "localhost")
    if not cfg.handle_advertise and cfg.host in loopback and any(
            host not in loopback for host, _ in cfg.upstream_addresses):  # fmt: skip
        log.warning("prefix registration: our HS_SITE names a loopback address; set [handle] "
                    "advertise to the address the top-level nodes should give out")  # fmt: skip
    return PrefixRegistrar(cfg.upstream_addresses, auth, site, cfg.upstream_prefixes,
                           held=lambda: _agent_store(cfg).prefixes(),
                           interval=cfg.upstream_register_interval)  # fmt: skip


def _make_recursor(cfg):
    from resolver.upstream.cache import AnswerCache
    from resolver.upstream.health import UpstreamHealth
    from resolver.upstream.recursor import Recursor
    from resolver.upstream.singleflight import SingleFlight

    upstreams = cfg.upstream_addresses
    if not upstreams:  # an agent for [takeover] only: no worker forwards to it
        from resolver.upstream.takeover import NoRecursor

        return NoRecursor()
    cache = AnswerCache(max_ttl=cfg.upstream_max_ttl, negative_max=cfg.upstream_negative_max,
                        stale_answer_ttl=cfg.upstream_stale_answer_ttl,
                        max_stale_ttl=cfg.upstream_max_stale_ttl,
                        max_entries=cfg.upstream_cache_entries)  # fmt: skip
    client = None
    if cfg.metrics_enabled:  # upstream latency per top-level node (issue 8 §3)
        from resolver.servers.metrics import TimedClient
        from resolver.upstream.recursor import default_client

        client = TimedClient(default_client(), upstreams)
    return Recursor(upstreams, client=client, cache=cache, health=UpstreamHealth(upstreams),
                    flight=SingleFlight(), recursion_limit=cfg.upstream_recursion_limit,
                    case_sensitive=cfg.case_sensitive)  # fmt: skip


def cmd_upstream_status(cfg) -> int:
    """``idnode upstream status``: the agent's status file, pretty-printed; 1 when there is
    none or it is stale (no agent running for this data directory)."""
    import orjson

    from resolver.upstream.agent import STATUS_FILE, STATUS_INTERVAL

    path = os.path.join(cfg.data, STATUS_FILE)
    try:
        with open(path, "rb") as fh:
            doc = orjson.loads(fh.read())
    except FileNotFoundError:
        print(f"idnode upstream status: no upstream agent is running for {cfg.data} "
              f"(no {STATUS_FILE}; it needs `idnode serve` with [upstream] servers or "
              "[takeover] sources or a [stats] report target)",
              file=sys.stderr)  # fmt: skip
        return 1
    except (OSError, orjson.JSONDecodeError) as exc:
        print(f"idnode upstream status: cannot read {path}: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
    sys.stdout.flush()
    written = doc.get("time") if isinstance(doc, dict) else None
    age = time.time() - written if isinstance(written, (int, float)) else None
    if age is None or age > 10 * STATUS_INTERVAL:
        # the agent rewrites it every second and removes it when it stops: it died
        shown = f"{age:.0f} s old" if age is not None else "undated"
        print(f"idnode upstream status: {path} is {shown}: the upstream agent is not running",
              file=sys.stderr)  # fmt: skip
        return 1
    return 0


def _admin_http(store, cfg):
    """The registration service behind the REST writes (registry wired into the servers)."""
    from registry.authz import Identity
    from registry.identities import Authenticator
    from registry.service import Registry
    from registry.sessions import HandleSessions, SessionTokens, key_tag
    from resolver.servers.http_admin import AdminHttp

    registry = Registry(store, server_admins=[Identity.parse(a) for a in cfg.server_admins],
                        case_sensitive=cfg.case_sensitive,
                        allow_anonymous_list=cfg.allow_anonymous_list)  # fmt: skip
    authenticator = Authenticator(store, case_sensitive=cfg.case_sensitive)
    tokens = SessionTokens(store, keytag=key_tag(authenticator))  # a key rotation ends sessions
    return AdminHttp(registry, authenticator, tokens, case_sensitive=cfg.case_sensitive,
                     auth_requires_tls=cfg.auth_requires_tls,
                     handle_sessions=HandleSessions(store, authenticator, tokens))  # fmt: skip


def _operator_http(admin):
    """The operator endpoints for server admins (registry.operator behind REST)."""
    from registry.operator import Operator
    from resolver.servers.http_operator import OperatorHttp

    return OperatorHttp(Operator(admin.registry), admin)


def _extensions(admin) -> tuple:
    """The ``/api/v1/`` drivers beyond the Handle.net API: operator endpoints, import jobs,
    metadata templates, statistics."""
    from registry.imports import Importer
    from registry.stats import Statistics
    from resolver.servers.http_imports import ImportsHttp
    from resolver.servers.http_stats import StatsHttp
    from resolver.servers.http_templates import TemplatesHttp

    return (_operator_http(admin), ImportsHttp(admin, Importer(admin.registry)),
            TemplatesHttp(admin, admin.registry.templates),
            StatsHttp(admin, Statistics(admin.registry)))


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _home_prefixes(store, cfg) -> None:
    """Home each configured prefix that is not homed yet, with an HS_ADMIN-only prefix handle."""
    from registry.prefixes import default_prefix_handle
    from resolver.identifier import Identifier
    from resolver.store import Change

    changes = []
    for p in cfg.homed_prefixes:
        key = Identifier.parse(p).suffix_key  # "p" means 0.NA/p: one normalisation rule
        # a disabled prefix stays disabled until the operator enables it
        if store.get_prefix(key) is None and store.get_disabled(key) is None:
            changes.append(Change(key, default_prefix_handle(p), prefix=True))
    if changes:
        store.write(changes)


def cmd_load(cfg, path: str, batch: int) -> int:
    from registry import bulk

    store = _open_store(cfg)
    try:
        if path == "-":
            report = bulk.load(store, sys.stdin, case_sensitive=cfg.case_sensitive, batch_size=batch)
        else:
            with open(path, encoding="utf-8") as fh:
                report = bulk.load(store, fh, case_sensitive=cfg.case_sensitive, batch_size=batch)
    finally:
        store.close()
    for number, reason in report.errors[:50]:
        print(f"{path}:{number}: {reason}", file=sys.stderr)
    if len(report.errors) > 50:
        print(f"... and {len(report.errors) - 50} more bad lines", file=sys.stderr)
    print(f"idnode load: {report.lines} lines, {report.prefixes} prefix handles, "
          f"{report.loaded} records, {len(report.errors)} rejected; "
          f"last transaction {report.last_txn_id}")  # fmt: skip
    return 0 if report.ok else 1


def _server_address(text: str | None, default_port: int) -> tuple[str, int]:
    if not text:
        return "127.0.0.1", default_port
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--server {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)  # [::1]:2641 → ::1


def _resolve_handle(args, host: str, port: int) -> tuple[int, bytes]:
    """Resolve over the Handle protocol; the answer as the REST JSON a node would give."""
    import asyncio

    from resolver.protocols.handle.message import (ErrorResponse, ReferralResponse,
                                                   ResolutionResponse)
    from resolver.protocols.http import codec as rest
    from resolver.upstream.client import HandleClient

    client = HandleClient(total_timeout=args.timeout, tcp_timeout=args.timeout)
    reply = asyncio.run(client.resolve(args.handle, types=args.types, indexes=args.indexes,
                                       server=(host, port), proto=args.proto))  # fmt: skip
    rc = reply.header.rc
    if rc == 1 and isinstance(reply.body, ResolutionResponse):
        handle = reply.body.handle.decode("utf-8", "replace")
        return rc, rest.resolution_body(handle, reply.body.values)
    if rc == 303 and isinstance(reply.body, ReferralResponse):  # where the prefix is delegated
        return rc, rest.referral_body(args.handle, reply.body.values)
    message = ""
    if isinstance(reply.body, ErrorResponse):
        message = reply.body.message.decode("utf-8", "replace")
    return rc, rest.error_body(rc, args.handle, message, empty_values=rc == 200)


def _resolve_http(args, host: str, port: int) -> tuple[int, bytes]:
    """GET /api/handles/HANDLE at a node's REST API; the body as the node wrote it."""
    import urllib.error
    import urllib.parse
    import urllib.request

    import orjson

    from resolver.upstream.client import UpstreamUnavailable

    query = [("type", t) for t in args.types] + [("index", str(i)) for i in args.indexes]
    netloc = f"[{host}]" if ":" in host else host
    url = (f"http://{netloc}:{port}/api/handles/" + urllib.parse.quote(args.handle, safe="/")
           + ("?" + urllib.parse.urlencode(query) if query else ""))  # fmt: skip
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as exc:  # 4xx/5xx still carry the JSON answer
        body = exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise UpstreamUnavailable(f"{url}: {getattr(exc, 'reason', exc)}") from None
    try:
        rc = orjson.loads(body)["responseCode"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise UpstreamUnavailable(f"{url}: the answer is not Handle REST JSON") from None
    return int(rc), body


def _resolve_table(body: bytes) -> str:
    import orjson

    from resolver.protocols.handle.codes import ResponseCode

    doc = orjson.loads(body)
    rc = doc.get("responseCode")
    handle = doc.get("handle", "")
    if rc != 1:
        try:
            name = ResponseCode(rc).name
        except ValueError:
            name = "unknown"
        text = f"{handle}: response code {rc} ({name})"
        return text + (f": {doc['message']}" if doc.get("message") else "")
    rows = [("index", "type", "ttl", "data")]
    for v in doc.get("values", []):
        data = v.get("data", {})
        shown = data.get("value") if isinstance(data, dict) else data
        if not isinstance(shown, str):
            shown = orjson.dumps(shown).decode("utf-8")
        rows.append((str(v.get("index")), str(v.get("type")), str(v.get("ttl", "")), shown))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{handle}"]
    for r in rows:
        lines.append(f"{r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}")
    return "\n".join(lines)


def cmd_resolve(args) -> int:
    """``idnode resolve``: 0 found, 1 any other response code, 2 bad usage or no answer."""
    try:
        host, port = _server_address(args.server, 8000 if args.proto == "http" else 2641)
        if not 0 < args.timeout <= 3600:
            raise ValueError(f"--timeout {args.timeout:g}: expected 0 < seconds <= 3600")
    except ValueError as exc:
        print(f"idnode resolve: {exc}", file=sys.stderr)
        return 2
    try:
        if args.proto == "http":
            rc, body = _resolve_http(args, host, port)
        else:
            rc, body = _resolve_handle(args, host, port)
    except IdnodeError as exc:
        print(f"idnode resolve: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        sys.stdout.buffer.write(body + b"\n")
        sys.stdout.flush()
    else:
        print(_resolve_table(body))
    return 0 if rc == 1 else 1


def cmd_dns(args) -> int:
    """``idnode dns-name`` / ``dns-identifier`` (resolver.protocols.dns.mapping): 0 printed,
    1 no identifier has that name, 2 bad identifier or apex."""
    from resolver.protocols.dns import mapping

    apex = args.apex or mapping.DEFAULT_APEX
    try:
        if args.command == "dns-name":
            print(mapping.to_dns_name(args.identifier, apex, case_sensitive=args.case_sensitive))
            return 0
        ident = mapping.from_dns_name(args.name, apex, case_sensitive=args.case_sensitive)
    except (IdnodeError, ValueError) as exc:
        print(f"idnode {args.command}: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    if ident is None:
        print(f"idnode dns-identifier: {args.name}: not an identifier's name under {apex}",
              file=sys.stderr)  # fmt: skip
        return 1
    print(ident)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "check-config":
        try:
            cfg = config_mod.load(args.file)
        except ConfigError as exc:
            print(f"idnode: {args.file}: {exc.key}: {exc.reason}", file=sys.stderr)
            return 2
        print(f"idnode: {args.file}: OK")
        return 0
    if args.command == "resolve":
        return cmd_resolve(args)
    if args.command in ("dns-name", "dns-identifier"):
        return cmd_dns(args)
    if args.command in ("prefix", "identity"):
        from registry import operator_cli

        return operator_cli.run(args)
    from registry import admin_cli

    if args.command in admin_cli.COMMANDS:
        return admin_cli.run(args)
    from registry import import_cli

    if args.command in import_cli.COMMANDS:
        return import_cli.run(args)
    try:
        cfg = config_mod.load(args.config, _overrides(args))
    except ConfigError as exc:
        print(f"idnode: configuration: {exc.key}: {exc.reason}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(cfg.log_level.upper())
    try:
        if args.command == "serve":
            return cmd_serve(cfg, lambda: config_mod.load(args.config, _overrides(args)))
        if args.command == "load":
            return cmd_load(cfg, args.file, args.batch)
        if args.command == "upstream":
            return cmd_upstream_status(cfg)
        if args.command == "stat":
            store = _open_store(cfg)
            print(store.stat(), f"last transaction {store.last_txn_id()}")
            store.close()
            return 0
    except ConfigError as exc:  # found by serve's own checks, before binding: exit 2 as above
        print(f"idnode: configuration: {exc.key}: {exc.reason}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"idnode: {exc.message}", file=sys.stderr)
        return 1
    except IdnodeError as exc:
        print(f"idnode: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"idnode: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
