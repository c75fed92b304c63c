"""Typed, validated configuration: a TOML file, overridden by command-line flags, parsed once.

``load(path, overrides)`` returns a frozen ``Config`` or raises ``ConfigError`` naming the
offending key and the reason.  The file's layout (every key optional)::

    [store]
    path = "./var/idnode"        # data directory (flag --data)
    map_size = "16GiB"           # LMDB map size: bytes, or a number with KiB/MiB/GiB/TiB
    record_cache = "128MiB"      # per worker: records answered over UDP kept in memory; 0 = off

    [http]
    host = "127.0.0.1"           # flag --host
    port = 8000                  # flag --http-port; 0 picks a free port
    allow_anonymous_list = false # GET /api/handles?prefix= without LIST_HANDLES rights
    auth_requires_tls = true     # credentials over plain HTTP only from loopback clients (§7.3)
    tls_cert = ""                # PEM certificate (chain): serve HTTPS instead of HTTP
    tls_key = ""                 # PEM private key of tls_cert

    [handle]
    port = 2641                  # Handle protocol, UDP and TCP (flag --handle-port; 0 = free port)
    advertise = ""               # address in our HS_SITE (default: host; 127.0.0.1 for 0.0.0.0)
    site_serial = 1              # HS_SITE serial number: bump on every change of the site
    site_description = "idnode"  # HS_SITE "desc" attribute
    site_public_key = ""         # base64 of the server's HS_PUBKEY bytes (optional)
    max_tcp_connections = 1024   # per worker; more are closed at once
    tcp_idle_seconds = 60        # an idle TCP connection is closed after this long

    [dns]
    port = 5353                  # DNS, UDP and TCP (flag --dns-port; 0 = free port; -1 = off)
    apex = "id.idnode.test."     # identifiers' names live under it (flag --dns-apex)
    max_udp = 1232               # largest UDP answer, ≤ the client's EDNS size (RFC 6891)
    tcp_idle_seconds = 10        # an idle DNS TCP connection is closed after this long (RFC 7766)
    ns = []                      # the zone's NS names (default: ns1.<apex>)
    hostmaster = ""              # SOA RNAME (default: hostmaster.<apex>)
    soa_serial = 1               # SOA serial, refresh, retry, expire, minimum (negative TTL)
    soa_refresh = 3600
    soa_retry = 600
    soa_expire = 604800
    soa_minimum = 300
    soa_ttl = 3600               # TTL of the SOA and NS RRsets

    [dns.rrl]                    # response rate limiting, Knot mod-rrl's options; off by default
    rate-limit = 0               # responses per second per client network and class; 0 = off
    instant-limit = 125          # burst allowance
    slip = 1                     # every slip-th limited response is sent truncated (0 = drop all)
    whitelist = []               # addresses / networks never limited
    dry-run = false              # count what would be limited, limit nothing
    table-size = 524288          # buckets kept

    [node]
    workers = 0                  # 0 = one per core (flag --workers)
    drain_seconds = 10           # SIGTERM: finish in-flight requests for at most this long
    case_sensitive = false       # true: only prefixes are case-folded (Handle.net option)
    homed_prefixes = []          # prefixes homed at start-up if missing (auto_homed_prefixes)
    server_admins = []           # identities with every right, e.g. ["300:0.NA/88.118"]
    role = "secondary"           # or "top-level" (flag --role); peering tier (issue 7)
    log_level = "info"

    [upstream]                   # peering: the national top-level nodes (issue 7)
    servers = []                 # ["host:port", ...] Handle protocol (flag --upstream, repeatable)
    recursion = false            # resolve identifiers of prefixes not held by asking upstream
    max_ttl = 86400              # cap on the TTL of a cached answer (seconds; ≤ 7 days)
    negative_max = 300           # cap on caching "handle not found" (RFC 2308 §7.1)
    max_stale_ttl = 86400        # serve expired answers this long when upstream fails (RFC 8767)
    stale_answer_ttl = 30        # TTL given with a stale answer (RFC 8767 §4)
    cache_entries = 100000       # answers (and, separately, prefixes' sites) kept
    recursion_limit = 10         # referrals followed for one identifier (beyond: RC 6)
    prefixes = []                # our prefixes to register upstream, e.g. ["88.118"] (issue 7 §2)
    identity = ""                # our admin identity at the upstreams, e.g. "300:0.NA/88.118"
    secret_file = ""             # its HS_SECKEY secret (one trailing line break is not part of it)
    key_file = ""                # or: PEM RSA private key of its HS_PUBKEY
    register_interval = 300      # seconds between checks of the registrations (drift repair)

``servers`` and ``recursion`` go together: recursion without a server to ask is refused.
``prefixes`` need ``servers``, ``identity`` and exactly one of ``secret_file`` / ``key_file``
(``resolver.upstream.registration``).
With servers, ``idnode serve`` runs one upstream agent process beside the workers
(``resolver.upstream.agent``).

    [takeover]                   # a top-level node's copy of its secondaries (issue 7 §7)
    sources = []                 # the secondaries' REST base URLs, ["http://192.0.2.7:8000"]
    identity = ""                # a server admin at every source, e.g. "300:0.NA/88.118"
    secret_file = ""             # its HS_SECKEY secret (one trailing line break is not part of it)
    interval = 10                # seconds between two pulls of a source's change log
    enabled = false              # answer for an unreachable source's prefixes from the copy
    down_after = 3               # seconds of failed pulls before a source counts as unreachable

``sources`` need ``identity`` and ``secret_file`` (``GET /api/v1/changes`` is for server
admins); ``enabled`` needs ``sources``.  With sources, ``idnode serve`` runs the upstream agent
(it pulls; ``resolver.upstream.takeover``), with or without ``[upstream] servers``.
``down_after``: a source is unreachable once its pulls have failed (no HTTP answer), with no
success in between, for that many seconds from the first failure; failing sources are tried
every ``min(interval, 1)`` seconds.

    [stats]                      # counters per prefix and hour (issue 7 §6)
    flush_interval = 10          # seconds a worker keeps its counts in memory before writing
    report_url = ""              # POST a JSON report here (http[s]://host[:port]/path)
    report_dir = ""              # and/or write each report as a file into this directory
    report_interval = 3600       # seconds between two reports
    report_token_file = ""       # bearer token sent with the POST (one line)

Counters are served by ``GET /api/v1/stats``; reports (``resolver.upstream.report``) are made
by the upstream agent, which ``idnode serve`` runs when a report target is set.

    [metrics]                    # Prometheus metrics (issue 8 §3; resolver.servers.metrics)
    enabled = true               # GET /metrics on the HTTP port; false: no /metrics, no counting

``/healthz`` and ``/readyz`` are served either way.

    [log]                        # the access log (issue 8 §4; resolver.servers.access_log)
    access_log = ""              # "" off, "-" standard error, else a file (appended to)
    access_format = "text"       # "text" (Handle.net access.log fields) or "json" (JSON lines)
    access_rate = 1000           # lines/s per worker, beyond: one "N suppressed" line; 0 = no limit

A SIGHUP to ``idnode serve`` re-reads this file (``resolver.servers.lifecycle.supervise``):
new workers start with it, then the old ones drain.  The supervisor's own settings cannot
change that way (a reload changing them is refused with a log line): ``[store] path`` and
``map_size``, ``[http] host`` and ``port``, ``[handle] port``, ``[dns] port``, ``[metrics]
enabled``, and what the upstream agent runs with (``[upstream]``, ``[takeover]``, ``[node]
role``, the ``[stats]`` report settings).  Flags given to ``idnode serve`` keep overriding the
file.  New workers open the access log anew: SIGHUP after rotating it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import ipaddress
import os
import re
import tomllib
import urllib.parse
from typing import Any, Mapping

from resolver.errors import ConfigError, InvalidIdentifier
from resolver.identifier import Identifier


@dataclasses.dataclass(frozen=True, slots=True)
class Config:
    data: str = "./var/idnode"
    map_size: int = 16 << 30
    record_cache: int = 128 << 20
    host: str = "127.0.0.1"
    http_port: int = 8000
    allow_anonymous_list: bool = False
    auth_requires_tls: bool = True
    tls_cert: str = ""
    tls_key: str = ""
    handle_port: int = 2641
    handle_advertise: str = ""
    site_serial: int = 1
    site_description: str = "idnode"
    site_public_key: bytes = b""
    max_tcp_connections: int = 1024
    tcp_idle_seconds: float = 60.0
    dns_port: int = 5353
    dns_apex: str = "id.idnode.test."
    dns_max_udp: int = 1232
    dns_tcp_idle_seconds: float = 10.0
    dns_ns: tuple[str, ...] = ()
    dns_hostmaster: str = ""
    dns_soa_serial: int = 1
    dns_soa_refresh: int = 3600
    dns_soa_retry: int = 600
    dns_soa_expire: int = 604800
    dns_soa_minimum: int = 300
    dns_soa_ttl: int = 3600
    rrl_rate_limit: int = 0
    rrl_instant_limit: int = 125
    rrl_slip: int = 1
    rrl_whitelist: tuple[str, ...] = ()
    rrl_dry_run: bool = False
    rrl_table_size: int = 524288
    workers: int = 0
    drain_seconds: float = 10.0
    case_sensitive: bool = False
    homed_prefixes: tuple[str, ...] = ()
    server_admins: tuple[str, ...] = ()
    role: str = "secondary"
    log_level: str = "info"
    upstream_servers: tuple[str, ...] = ()
    upstream_recursion: bool = False
    upstream_max_ttl: int = 86400
    upstream_negative_max: int = 300
    upstream_max_stale_ttl: int = 86400
    upstream_stale_answer_ttl: int = 30
    upstream_cache_entries: int = 100_000
    upstream_recursion_limit: int = 10
    upstream_prefixes: tuple[str, ...] = ()
    upstream_identity: str = ""
    upstream_secret_file: str = ""
    upstream_key_file: str = ""
    upstream_register_interval: int = 300
    takeover_sources: tuple[str, ...] = ()
    takeover_identity: str = ""
    takeover_secret_file: str = ""
    takeover_interval: float = 10.0
    takeover_enabled: bool = False
    takeover_down_after: float = 3.0
    stats_flush_interval: float = 10.0
    stats_report_url: str = ""
    stats_report_dir: str = ""
    stats_report_interval: float = 3600.0
    stats_report_token_file: str = ""
    metrics_enabled: bool = True
    access_log: str = ""
    access_format: str = "text"
    access_rate: int = 1000

    @property
    def dns_ns_names(self) -> tuple[str, ...]:
        """The zone's NS names: ``[dns] ns``, else ``ns1.<apex>``."""
        return self.dns_ns or (_under_apex("ns1", self.dns_apex),)

    @property
    def dns_rname(self) -> str:
        """The SOA RNAME: ``[dns] hostmaster``, else ``hostmaster.<apex>``."""
        return self.dns_hostmaster or _under_apex("hostmaster", self.dns_apex)

    @property
    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1

    @property
    def upstream_addresses(self) -> tuple[tuple[str, int], ...]:
        """``[upstream] servers`` as (host, port) pairs, in configured order (failover order)."""
        return tuple(split_host_port(s) for s in self.upstream_servers)


#: file key (section.name) → Config field
_FILE_KEYS = {
    "store.path": "data",
    "store.map_size": "map_size",
    "store.record_cache": "record_cache",
    "http.host": "host",
    "http.port": "http_port",
    "http.allow_anonymous_list": "allow_anonymous_list",
    "http.auth_requires_tls": "auth_requires_tls",
    "http.tls_cert": "tls_cert",
    "http.tls_key": "tls_key",
    "handle.port": "handle_port",
    "handle.advertise": "handle_advertise",
    "handle.site_serial": "site_serial",
    "handle.site_description": "site_description",
    "handle.site_public_key": "site_public_key",
    "handle.max_tcp_connections": "max_tcp_connections",
    "handle.tcp_idle_seconds": "tcp_idle_seconds",
    "dns.port": "dns_port",
    "dns.apex": "dns_apex",
    "dns.max_udp": "dns_max_udp",
    "dns.tcp_idle_seconds": "dns_tcp_idle_seconds",
    "dns.ns": "dns_ns",
    "dns.hostmaster": "dns_hostmaster",
    "dns.soa_serial": "dns_soa_serial",
    "dns.soa_refresh": "dns_soa_refresh",
    "dns.soa_retry": "dns_soa_retry",
    "dns.soa_expire": "dns_soa_expire",
    "dns.soa_minimum": "dns_soa_minimum",
    "dns.soa_ttl": "dns_soa_ttl",
    "dns.rrl.rate-limit": "rrl_rate_limit",
    "dns.rrl.instant-limit": "rrl_instant_limit",
    "dns.rrl.slip": "rrl_slip",
    "dns.rrl.whitelist": "rrl_whitelist",
    "dns.rrl.dry-run": "rrl_dry_run",
    "dns.rrl.table-size": "rrl_table_size",
    "node.workers": "workers",
    "node.drain_seconds": "drain_seconds",
    "node.case_sensitive": "case_sensitive",
    "node.homed_prefixes": "homed_prefixes",
    "node.server_admins": "server_admins",
    "node.role": "role",
    "node.log_level": "log_level",
    "upstream.servers": "upstream_servers",
    "upstream.recursion": "upstream_recursion",
    "upstream.max_ttl": "upstream_max_ttl",
    "upstream.negative_max": "upstream_negative_max",
    "upstream.max_stale_ttl": "upstream_max_stale_ttl",
    "upstream.stale_answer_ttl": "upstream_stale_answer_ttl",
    "upstream.cache_entries": "upstream_cache_entries",
    "upstream.recursion_limit": "upstream_recursion_limit",
    "upstream.prefixes": "upstream_prefixes",
    "upstream.identity": "upstream_identity",
    "upstream.secret_file": "upstream_secret_file",
    "upstream.key_file": "upstream_key_file",
    "upstream.register_interval": "upstream_register_interval",
    "takeover.sources": "takeover_sources",
    "takeover.identity": "takeover_identity",
    "takeover.secret_file": "takeover_secret_file",
    "takeover.interval": "takeover_interval",
    "takeover.enabled": "takeover_enabled",
    "takeover.down_after": "takeover_down_after",
    "stats.flush_interval": "stats_flush_interval",
    "stats.report_url": "stats_report_url",
    "stats.report_dir": "stats_report_dir",
    "stats.report_interval": "stats_report_interval",
    "stats.report_token_file": "stats_report_token_file",
    "metrics.enabled": "metrics_enabled",
    "log.access_log": "access_log",
    "log.access_format": "access_format",
    "log.access_rate": "access_rate",
}
_SUBTABLES = frozenset({"dns.rrl"})
#: ``[node] role``: a secondary node serves its enterprises' prefixes and asks the top-level
#: nodes for the rest; a top-level node holds prefix handles and refers derived prefixes
#: (handle.md §4; prefix referrals themselves depend on the data, not on the role).
ROLES = ("secondary", "top-level")
_UNITS = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
          "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40}  # fmt: skip


_INT_RANGES = {
    "http_port": (0, 65535),
    "handle_port": (0, 65535),
    "workers": (0, 256),
    "site_serial": (0, 65535),
    "max_tcp_connections": (1, 1_000_000),
    "dns_port": (-1, 65535),
    "dns_max_udp": (512, 65535),
    "dns_soa_serial": (0, 0xFFFFFFFF),  # RFC 1035 §3.3.13: u32
    "dns_soa_refresh": (0, 0xFFFFFFFF),
    "dns_soa_retry": (0, 0xFFFFFFFF),
    "dns_soa_expire": (0, 0xFFFFFFFF),
    "dns_soa_minimum": (0, 0xFFFFFFFF),
    "dns_soa_ttl": (0, 0x7FFFFFFF),  # RFC 2181 §8
    "rrl_rate_limit": (0, 1_000_000),
    "rrl_instant_limit": (1, 1_000_000),
    "rrl_slip": (0, 100),  # Knot mod-rrl: 0..100
    "rrl_table_size": (1, 1 << 30),
    # RFC 8767 §4: no TTL beyond 7 days, stale answers included
    "upstream_max_ttl": (0, 604800),
    "upstream_negative_max": (0, 86400),
    "upstream_max_stale_ttl": (0, 604800),
    "upstream_stale_answer_ttl": (1, 86400),
    "upstream_cache_entries": (1, 100_000_000),
    "upstream_recursion_limit": (1, 100),
    "upstream_register_interval": (1, 86400),
    "access_rate": (0, 10_000_000),
}


def _under_apex(label: str, apex: str) -> str:
    return label + "." + ("" if apex == "." else apex)


def _bad(key: str, v: Any):
    raise ConfigError(key, f"unexpected value {v!r}")


def _size(key: str, v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        n = v
    elif isinstance(v, str) and (m := re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", v)):
        unit = m.group(2).lower()
        if unit not in _UNITS:
            raise ConfigError(key, f"unknown size unit {m.group(2)!r} (use KiB, MiB, GiB, TiB)")
        n = int(m.group(1)) * _UNITS[unit]
    else:
        raise ConfigError(key, f"expected a size such as 1073741824 or \"1GiB\", got {v!r}")
    if n < 1 << 20:
        raise ConfigError(key, "must be at least 1MiB")
    return n


def _check(field: str, key: str, v: Any) -> Any:
    if field == "map_size":
        return _size(key, v)
    if field == "record_cache":
        return 0 if v == 0 or v == "0" else _size(key, v)
    if field in ("data", "host", "log_level"):
        if not isinstance(v, str) or not v:
            raise ConfigError(key, f"expected a non-empty string, got {v!r}")
        if field == "log_level" and v.lower() not in ("debug", "info", "warning", "error"):
            raise ConfigError(key, "expected one of debug, info, warning, error")
        return v
    if field in ("dns_apex", "dns_hostmaster"):
        if not isinstance(v, str) or (field == "dns_apex" and not v):
            raise ConfigError(key, f"expected a DNS name such as \"id.example.\", got {v!r}")
        return _dns_name(key, v) if v else v
    if field == "dns_ns":
        if not isinstance(v, (list, tuple)) or not all(isinstance(n, str) and n for n in v):
            raise ConfigError(key, 'expected a list of DNS names such as ["ns1.id.example."]')
        return tuple(_dns_name(key, n) for n in v)
    if field == "dns_tcp_idle_seconds":
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.1 <= v <= 3600:
            raise ConfigError(key, "expected a number of seconds between 0.1 and 3600")
        return float(v)
    if field == "rrl_whitelist":
        if not isinstance(v, (list, tuple)) or not all(isinstance(a, str) for a in v):
            raise ConfigError(key, 'expected a list of addresses or networks, e.g. ["10.0.0.0/8"]')
        for a in v:
            try:
                for end in a.split("-", 1):  # Knot's forms: ADDR, ADDR/LEN, ADDR-ADDR
                    ipaddress.ip_network(end.strip(), strict=False)
            except ValueError:
                raise ConfigError(key, f"{a!r} is not an IP address, network or range") from None
        return tuple(v)
    if field in ("allow_anonymous_list", "case_sensitive", "auth_requires_tls", "rrl_dry_run",
                 "upstream_recursion", "takeover_enabled", "metrics_enabled"):  # fmt: skip
        if not isinstance(v, bool):
            raise ConfigError(key, f"expected true or false, got {v!r}")
        return v
    if field in _INT_RANGES:
        lo, hi = _INT_RANGES[field]
        if not isinstance(v, int) or isinstance(v, bool):
            raise ConfigError(key, f"expected an integer, got {v!r}")
        if not lo <= v <= hi:
            raise ConfigError(key, f"must be between {lo} and {hi}")
        return v
    if field == "tcp_idle_seconds":
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 1 <= v <= 86400:
            raise ConfigError(key, "expected a number of seconds between 1 and 86400")
        return float(v)
    if field in ("takeover_interval", "takeover_down_after"):
        lo = 0.1 if field == "takeover_interval" else 0.0
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= 86400:
            raise ConfigError(key, f"expected a number of seconds between {lo:g} and 86400")
        return float(v)
    if field in ("stats_flush_interval", "stats_report_interval"):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.1 <= v <= 86400:
            raise ConfigError(key, "expected a number of seconds between 0.1 and 86400")
        return float(v)
    if field == "stats_report_url":
        if not isinstance(v, str):
            raise ConfigError(key, 'expected a URL such as "https://top.example/stats"')
        return _report_url(key, v) if v else v
    if field == "access_log":
        if not isinstance(v, str):
            raise ConfigError(key, f'expected "" (off), "-" (standard error) or a file path, '
                                   f"got {v!r}")  # fmt: skip
        if v not in ("", "-") and (os.path.isdir(v)
                                   or not os.path.isdir(os.path.dirname(v) or ".")):  # fmt: skip
            raise ConfigError(key, f"{v!r}: not a file in an existing directory")
        return v
    if field == "access_format":
        if v not in ("text", "json"):
            raise ConfigError(key, f'expected "text" or "json", got {v!r}')
        return v
    if field == "stats_report_dir":
        if not isinstance(v, str):
            raise ConfigError(key, f"expected a directory path, got {v!r}")
        if v and not os.path.isdir(v):
            raise ConfigError(key, f"no such directory: {v}")
        return v
    if field == "takeover_sources":
        if not isinstance(v, (list, tuple)) or not all(isinstance(u, str) for u in v):
            raise ConfigError(key, 'expected a list of REST base URLs, e.g. '
                                   '["http://192.0.2.7:8000"]')  # fmt: skip
        out = []
        for u in v:
            base = _rest_base(key, u)
            if base in out:
                raise ConfigError(key, f"{u!r} is listed twice")
            out.append(base)
        return tuple(out)
    if field == "takeover_identity":
        if not isinstance(v, str):
            raise ConfigError(key, 'expected an identity such as "300:0.NA/88.118"')
        return _identity(key, v) if v else v
    if field in ("tls_cert", "tls_key", "upstream_secret_file", "upstream_key_file",
                 "takeover_secret_file", "stats_report_token_file"):  # fmt: skip
        if not isinstance(v, str):
            raise ConfigError(key, f"expected a file path, got {v!r}")
        if v and not os.path.isfile(v):
            raise ConfigError(key, f"no such file: {v}")
        return v
    if field == "server_admins":
        if not isinstance(v, (list, tuple)) or not all(isinstance(a, str) for a in v):
            raise ConfigError(key, 'expected a list of identities such as ["300:0.NA/88.118"]')
        return tuple(_identity(key, a) for a in v)
    if field == "upstream_identity":
        if not isinstance(v, str):
            raise ConfigError(key, 'expected an identity such as "300:0.NA/88.118"')
        return _identity(key, v) if v else v
    if field == "upstream_servers":
        if not isinstance(v, (list, tuple)) or not all(isinstance(a, str) for a in v):
            raise ConfigError(key, 'expected a list of "host:port", e.g. ["192.0.2.1:2641"]')
        out = []
        for a in v:
            try:
                host, port = split_host_port(a)
            except ValueError as exc:
                raise ConfigError(key, str(exc)) from None
            text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            if text in out:
                raise ConfigError(key, f"{a!r} is listed twice")
            out.append(text)
        return tuple(out)
    if field == "role":
        if v not in ROLES:
            raise ConfigError(key, f"expected one of {', '.join(ROLES)}, got {v!r}")
        return v
    if field == "site_description":
        if not isinstance(v, str):
            raise ConfigError(key, f"expected a string, got {v!r}")
        return v
    if field == "handle_advertise":
        if not isinstance(v, str):
            raise ConfigError(key, f"expected an IP address, got {v!r}")
        if v:
            try:
                ipaddress.ip_address(v)
            except ValueError:
                raise ConfigError(key, f"{v!r} is not an IP address") from None
        return v
    if field == "site_public_key":
        if isinstance(v, bytes):
            return v
        try:
            return base64.b64decode(str(v), validate=True) if isinstance(v, str) else _bad(key, v)
        except binascii.Error:
            raise ConfigError(key, "expected base64 of the HS_PUBKEY bytes") from None
    if field == "drain_seconds":
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v <= 300:
            raise ConfigError(key, "expected a number of seconds between 0 and 300")
        return float(v)
    if field in ("homed_prefixes", "upstream_prefixes"):
        if not isinstance(v, (list, tuple)) or not all(isinstance(p, str) and p for p in v):
            raise ConfigError(key, "expected a list of prefixes such as [\"88.118.8\"]")
        for p in v:
            try:
                if "/" in p:
                    raise InvalidIdentifier("a prefix has no '/'")
                Identifier.parse(p)  # a name without "/" is validated as a prefix
            except InvalidIdentifier as exc:
                raise ConfigError(key, f"{p!r} is not a prefix: {exc.message}") from None
        return tuple(v)
    raise ConfigError(key, "unknown option")  # pragma: no cover - table and fields agree


def _identity(key: str, a: str) -> str:
    """``index:handle`` (e.g. ``300:0.NA/88.118``), or ConfigError."""
    index, colon, handle = a.partition(":")
    try:
        if not colon or not index.isdigit() or "/" not in handle:
            raise InvalidIdentifier("expected index:handle")
        Identifier.parse(handle)
    except InvalidIdentifier as exc:
        raise ConfigError(key, f"{a!r} is not an identity: {exc.message}") from None
    return a


def _http_url(key: str, text: str, expected: str) -> urllib.parse.SplitResult:
    """``text`` split as an http(s) URL with a host and a valid port, or ConfigError saying
    what was ``expected``."""
    try:
        u = urllib.parse.urlsplit(text.strip())
        _ = u.port  # ValueError when not a number in 0..65535
    except ValueError as exc:
        raise ConfigError(key, f"{text!r}: {exc}") from None
    if u.scheme.lower() not in ("http", "https") or not u.hostname or u.port == 0:
        raise ConfigError(key, f"{text!r}: expected {expected}")
    return u


def _report_url(key: str, text: str) -> str:
    """An ``http[s]://host[:port]/path`` URL to POST reports to (no credentials in it: the
    token lives in ``report_token_file``), or ConfigError."""
    u = _http_url(key, text, "http[s]://host[:port]/path")
    if u.username or u.password or u.fragment:
        raise ConfigError(key, f"{text!r}: no credentials or fragment in the URL (the token "
                               "goes in report_token_file)")  # fmt: skip
    return text.strip()


def _rest_base(key: str, text: str) -> str:
    """``http[s]://host[:port][/]`` → its one spelling (scheme lower-case, no trailing
    ``/``), or ConfigError: a node's REST base URL, without path, query or credentials."""
    u = _http_url(key, text, "http://host[:port] or https://host[:port]")
    if u.path not in ("", "/") or u.query or u.fragment or u.username or u.password:
        raise ConfigError(key, f"{text!r}: only scheme, host and port (no path, query or "
                               "credentials)")  # fmt: skip
    return f"{u.scheme.lower()}://{u.netloc}"


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
#: RFC 1123 §2.1 host names; the last label not all digits (RFC 3696 §2), so that a mistyped
#: IPv4 address such as 192.0.2.300 is not taken for a name.
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")


def split_host_port(text: str) -> tuple[str, int]:
    """``"192.0.2.1:2641"``, ``"[2001:db8::1]:2641"`` or ``"top.example:2641"`` → (host, port);
    ``ValueError`` saying what is wrong.  The host is an IP address or a DNS host name."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r}: expected host:port with a port of 1..65535")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        numeric_tld = host.rstrip(".").rpartition(".")[2].isdigit()
        if bracketed or not _HOSTNAME.fullmatch(host) or numeric_tld:
            raise ValueError(f"{text!r}: {host!r} is not an IP address or host name") from None
        return host, int(port)
    if ip.version == 6 and not bracketed:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, e.g. [2001:db8::1]:2641")
    return str(ip), int(port)


def _dns_name(key: str, v: str) -> str:
    """An absolute DNS name of letters, digits, '-' and '_' labels (the final dot added)."""
    text = v if v.endswith(".") else v + "."
    labels = text[:-1].split(".") if text != "." else []
    if not all(re.fullmatch(r"[A-Za-z0-9_-]{1,63}", label) for label in labels) \
            or len(text) > 254:  # fmt: skip
        raise ConfigError(key, f"{v!r} is not a DNS name (labels of letters, digits, '-', '_')")
    return text


def read_file(path: str) -> dict[str, Any]:
    """TOML file → {field: value}; raises ConfigError for syntax, unknown keys or bad values."""
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"not valid TOML: {exc}") from None
    out: dict[str, Any] = {}
    for section, body in doc.items():
        if not isinstance(body, dict):
            raise ConfigError(section, "unknown option (options live in [store], [http], "
                                       "[handle], [dns], [node], [upstream], "
                                       "[takeover], [stats], [metrics], [log])")  # fmt: skip
        items = list(body.items())
        for name, value in items:
            key = f"{section}.{name}"
            if isinstance(value, dict) and key in _SUBTABLES:  # [dns.rrl]
                items.extend((f"{name}.{k}", v) for k, v in value.items())
                continue
            field = _FILE_KEYS.get(key)
            if field is None:
                raise ConfigError(key, "unknown option")
            out[field] = _check(field, key, value)
    return out


def add_store_arguments(parser) -> None:
    """The flags every store-using command shares (``--config``, ``--data``, ``--map-size``,
    ``--case-sensitive``), for argparse parsers of the CLI and the registry's tools."""
    parser.add_argument("--config", help="TOML configuration file")
    parser.add_argument("--data", help="data directory (default ./var/idnode)")
    parser.add_argument("--map-size", dest="map_size", help="LMDB map size, e.g. 16GiB")
    parser.add_argument("--case-sensitive", dest="case_sensitive", action="store_true",
                        default=None, help="fold only prefixes to upper case, not suffixes")


def load(path: str | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """File (if any) then flags (``None`` values ignored) → validated ``Config``."""
    values = read_file(path) if path else {}
    flag_names = {f: "--" + f.replace("_", "-") for f in _FILE_KEYS.values()}
    flag_names["upstream_servers"] = "--upstream"
    for field, value in (overrides or {}).items():
        if value is not None:
            values[field] = _check(field, flag_names.get(field, field), value)
    if bool(values.get("tls_cert")) != bool(values.get("tls_key")):
        raise ConfigError("http.tls_cert", "tls_cert and tls_key go together")
    if values.get("upstream_recursion") and not values.get("upstream_servers"):
        raise ConfigError("upstream.recursion", "recursion needs upstream servers to ask "
                                                "([upstream] servers or --upstream)")  # fmt: skip
    _check_registration(values)
    _check_takeover(values)
    return Config(**values)


def _check_registration(values: dict) -> None:
    """``[upstream] prefixes`` are registered with ``identity`` and one credential."""
    if values.get("upstream_secret_file") and values.get("upstream_key_file"):
        raise ConfigError("upstream.key_file", "give secret_file or key_file, not both")
    if not values.get("upstream_prefixes"):
        return
    if not values.get("upstream_servers"):
        raise ConfigError("upstream.prefixes", "registering prefixes needs upstream servers "
                                               "([upstream] servers or --upstream)")  # fmt: skip
    if not values.get("upstream_identity"):
        raise ConfigError("upstream.identity", "registering prefixes needs the identity to "
                                               "act as at the upstreams")  # fmt: skip
    if not (values.get("upstream_secret_file") or values.get("upstream_key_file")):
        raise ConfigError("upstream.secret_file", "registering prefixes needs the identity's "
                                                  "secret_file or key_file")  # fmt: skip


def _check_takeover(values: dict) -> None:
    """``[takeover] sources`` are pulled as a server admin; ``enabled`` needs sources."""
    if values.get("takeover_enabled") and not values.get("takeover_sources"):
        raise ConfigError("takeover.enabled", "takeover needs sources to copy ([takeover] "
                                              "sources)")  # fmt: skip
    if not values.get("takeover_sources"):
        return
    if not values.get("takeover_identity"):
        raise ConfigError("takeover.identity", "pulling a change log needs the identity of a "
                                               "server admin at the sources")  # fmt: skip
    if not values.get("takeover_secret_file"):
        raise ConfigError("takeover.secret_file", "pulling a change log needs the identity's "
                                                  "secret_file")  # fmt: skip
