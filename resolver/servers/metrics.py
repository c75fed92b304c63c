"""Operations endpoints (issue 8 §3, §5): Prometheus metrics, liveness and readiness.

Owns the prometheus-client multi-process setup, every metric the node exports, the collectors
computed at scrape time, and ``OpsHttp``, the driver of ``GET /metrics``, ``/healthz`` and
``/readyz`` on the HTTP port (``http_app.HttpFrontEnd`` asks it before anything but the
``/api/handles`` hot path).

Multi-process mode
    ``prepare(data_dir)`` runs once in the supervisor, before any fork: it empties
    ``<data>/metrics`` and makes every metric value of this process and its children an mmap'ed
    file there (``PROMETHEUS_MULTIPROC_DIR``; prometheus-client's ``MultiProcessValue``).  Each
    worker and the upstream agent write their own files; the worker answering ``/metrics`` sums
    them (``MultiProcessCollector``).  Counters of a process that died stay in the sum (a
    restarted worker does not turn counters back); its live gauges are dropped at the next
    scrape.  Files therefore accumulate with worker restarts (three small files per process)
    until the supervisor starts again.  With ``[metrics] enabled = false`` nothing is set up,
    nothing is counted and ``/metrics`` is a 404.

Metrics (Prometheus naming: base units, ``_total`` counters; never an identifier, prefix or
client as a label)::

    idnode_requests_total{frontend,op,outcome}       frontend: http, handle_udp, handle_tcp,
        dns_udp, dns_tcp; op: resolve, or an administrative operation (HTTP: write, delete,
        list, session, batches, changes, prefixes, identities, imports, templates, stats,
        other; Handle: the op code's name, e.g. create_handle); outcome: an
        ``Outcome`` value (resolver.errors)
    idnode_request_duration_seconds{frontend}        histogram, see "Latency" below
    idnode_udp_dropped_total{frontend}               datagrams dropped (load shed, full send
                                                     buffer, malformed, unanswerable)
    idnode_rrl_slipped_total, idnode_rrl_dropped_total   DNS response rate limiting (Knot's)
    idnode_record_cache_entries, idnode_record_cache_bytes   the workers' record caches
    idnode_lmdb_file_bytes, idnode_lmdb_map_size_bytes, idnode_lmdb_map_used_bytes
    idnode_store_entries{db=records|prefixes}
    idnode_lmdb_readers                              reader slots holding a transaction
    idnode_lmdb_oldest_reader_lag_transactions       how many commits the oldest reader is behind
    idnode_lmdb_oldest_reader_age_seconds            see "Readers" below
    idnode_import_jobs{state}                        running, interrupted, done, failed
    idnode_import_lines_total{result=committed|failed}
    idnode_upstream_up{upstream}                     agent: 1 up, 0 down (per top-level node)
    idnode_upstream_requests_total{upstream,result=ok|error}
    idnode_upstream_request_duration_seconds{upstream}   histogram; upstream "host:port" of a
                                                     configured top-level node, else "referred"
    idnode_upstream_cache_hits_total{kind=positive|negative|stale}
    idnode_upstream_cache_misses_total, idnode_upstream_cache_stale_served_total,
    idnode_upstream_cache_entries, idnode_upstream_referrals_total,
    idnode_upstream_singleflight_joined_total
    idnode_build_info{version,hot_path}              always 1

Resolutions are counted once, where the statistics count them (``resolver.core.stats``: the
native fast paths add to the per-transport tables in C); ``WorkerMetrics.run`` publishes the
tables every ``SYNC_INTERVAL`` seconds, so ``/metrics`` lags by at most that (and a request's
own worker is synced before it answers a scrape).  Administrative operations are counted as
they are answered (``FrontEndMetrics.http_done`` / ``handle_op``).  The native record cache
keeps no hit or miss counters, so only its size is exported; the upstream agent's answer
cache does keep them.

Latency.  Every request's time is gathered per front-end into plain in-memory buckets
(``FrontEndMetrics.observe``: a bisect and two additions, no lock, no file) and added to the
mmap'ed histogram at each sync.  HTTP: from our handler being called to its response being
built (aiohttp's parsing and writing are outside).  UDP: the pump answers a burst of up to 64
datagrams in one call and sends the replies at its end, so each datagram it answered waited
for the whole burst: each is observed as the burst's duration — ``observe_many(duration, n)``,
one bisect per burst.  Datagrams it hands back are observed from the hand-back to their reply
being sent.  TCP: frames the fast path answers on arrival are observed like a burst (the
``data_received`` call); queued frames from dequeuing to their reply being written.

Readers.  LMDB keeps no start time for a read transaction.  Each worker samples the reader
table (``env.readers()``: ``pid thread txnid`` per slot, ``-`` when the slot holds none) every
sync and remembers when it first saw each (pid, thread, txnid) holding a snapshot older than
the latest commit; such a slot cannot have been reused for a newer transaction (a new one
would read the newer snapshot), so the age is a lower bound, exact to one sync interval, and
never older than the answering worker.  Readers of the latest snapshot pin nothing and are
not aged.

``/healthz``: 200 ``{"status":"pass"}`` whenever the process answers.  ``/readyz``
(application/health+json, draft-inadarei-api-health-check): 200 when every check passes or
only warns, 503 otherwise; checks ``lmdb:open`` (a read transaction of the store succeeds),
``listeners:bound`` (every socket of this worker is listening), ``process:draining`` (fails
once SIGTERM was received), ``replication:lag`` (not applicable: this node does not
replicate — reported as such) and, with ``[upstream] servers``, ``upstream:reachable`` (warns
when the agent's status file is missing or stale, or every top-level node is down).
"""

from __future__ import annotations

import asyncio
import bisect
import glob
import logging
import os
import re
import shutil
import threading
import time
from typing import Callable, Iterable

import orjson
from aiohttp import web

import native
from resolver import __version__
from resolver.errors import Outcome
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.codes import RC_FOR
from resolver.protocols.http.codes import STATUS_FOR

log = logging.getLogger("idnode.metrics")

METRICS = "/metrics"
HEALTHZ = "/healthz"
READYZ = "/readyz"
#: Paths ``OpsHttp`` answers; ``dispatch`` returns None for others.
PATHS = frozenset((METRICS, HEALTHZ, READYZ))
#: The directory under the data directory holding the metric files.
DIRECTORY = "metrics"
#: Seconds between two syncs of a process's in-memory counts into its metric files.
SYNC_INTERVAL = 1.0
#: Histogram buckets (seconds): a resolution answers in tens of microseconds, a registration
#: commit in milliseconds, an upstream query in up to seconds.
BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
           0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))  # fmt: skip
HEALTH_JSON = "application/health+json"

_clock = time.perf_counter

# -- multi-process setup ---------------------------------------------------------------------


def prepare(data_dir: str) -> str:
    """In the supervisor, once, before forking: empty ``<data>/metrics`` and put this process
    and its future children in multi-process mode there.  Returns the directory."""
    from prometheus_client import values

    path = os.path.join(os.path.abspath(data_dir), DIRECTORY)
    if os.path.isdir(path):
        shutil.rmtree(path)  # the last run's counters: a restarted node counts from zero
    os.makedirs(path)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    # prometheus-client picks its value class when first imported; it may have been imported
    # before the variable was set, so the multi-process class is installed here explicitly.
    values.ValueClass = values.MultiProcessValue()
    return path


def _directory() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


_families: dict[str, object] = {}
_families_lock = threading.Lock()


def _family(kind: str, name: str, doc: str, labels: Iterable[str] = (), **kw):
    """One metric object per name and process: two objects of one name in one process would
    each write their own running value into the same file slot."""
    with _families_lock:
        found = _families.get(name)
        if found is None:
            import prometheus_client as P

            cls = {"counter": P.Counter, "gauge": P.Gauge, "histogram": P.Histogram}[kind]
            found = _families[name] = cls(name, doc, tuple(labels), registry=None, **kw)
        return found


# -- outcomes of responses ---------------------------------------------------------------------


def _first(table: dict) -> dict:
    out: dict = {}
    for outcome, code in table.items():
        out.setdefault(int(code), outcome.value)
    return out


#: A response code's outcome: the first ``Outcome`` (declaration order) with that code.
OUTCOME_FOR_RC = _first(RC_FOR)
OUTCOME_FOR_STATUS = _first(STATUS_FOR)
_RESPONSE_CODE = re.compile(rb'"responseCode"\s*:\s*(\d+)')


def http_outcome(status: int, body) -> str:
    """The outcome of an HTTP answer: ``ok`` below 300; else its JSON ``responseCode``'s, its
    status's, or ``malformed`` / ``internal`` by status class."""
    if status < 300:
        return Outcome.OK.value
    if isinstance(body, (bytes, bytearray)) and len(body) <= 4096:
        m = _RESPONSE_CODE.search(body)
        if m and int(m.group(1)) in OUTCOME_FOR_RC:
            return OUTCOME_FOR_RC[int(m.group(1))]
    found = OUTCOME_FOR_STATUS.get(status)
    if found is not None:
        return found
    return Outcome.INTERNAL.value if status >= 500 else Outcome.MALFORMED.value


_V1_OPS = frozenset(("batches", "changes", "prefixes", "identities", "imports", "templates",
                     "stats"))  # fmt: skip


def http_op(method: str, raw_path: str) -> str | None:
    """The ``op`` label of an HTTP request; None for what is counted elsewhere (resolutions:
    the statistics tally) or not at all (these endpoints)."""
    path = raw_path.split("?", 1)[0]
    if path.startswith("/api/handles/") and len(path) > 13:
        if method in ("GET", "HEAD"):
            return None
        return "delete" if method == "DELETE" else "write"
    if path in ("/api/handles", "/api/handles/"):
        return "list"
    if path.startswith("/api/sessions"):
        return "session"
    if path.startswith("/api/v1/"):
        name = path[8:].split("/", 1)[0]
        return name if name in _V1_OPS else "other"
    # The proxy's pages (outside /api/) count their resolutions in the tally; these
    # endpoints are not operations.
    return "other" if path.startswith("/api/") else None


def handle_op_name(opcode: int) -> str:
    try:
        return C.OpCode(opcode).name.lower()
    except ValueError:
        return "other"


# -- per front-end ------------------------------------------------------------------------------


class FrontEndMetrics:
    """What one front-end (transport) of a worker records: latencies, gathered in memory, and
    its administrative operations.  Handed to the drivers; ``None`` there means "off"."""

    __slots__ = ("name", "parent", "counts", "total")

    def __init__(self, name: str, parent: "WorkerMetrics") -> None:
        self.name = name
        self.parent = parent
        self.counts = [0] * len(BUCKETS)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def observe_many(self, seconds: float, n: int) -> None:
        """``n`` requests that each took ``seconds`` (a burst answered together)."""
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += n
        self.total += seconds * n

    def take(self) -> tuple[list[int], float]:
        counts, total = self.counts, self.total
        self.counts, self.total = [0] * len(BUCKETS), 0.0
        return counts, total

    def http_done(self, request: web.BaseRequest, response, seconds: float) -> None:
        """After each HTTP request: its latency, and its operation unless a resolution."""
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        method = request.method
        path = request.raw_path
        if method in ("GET", "HEAD") and path.startswith("/api/handles/"):
            return  # resolutions: counted by the tally, fast path or not
        op = http_op(method, path)
        if op is not None and response is not None:
            outcome = http_outcome(response.status, getattr(response, "body", None))
            self.parent.requests.labels(self.name, op, outcome).inc()

    def handle_op(self, payload: bytes, reply: bytes | None) -> None:
        """After the Handle general path answered ``payload`` (message header first) with
        ``reply`` (envelope first): count it unless a resolution (the tally counts those) or
        unanswered (not a request)."""
        if reply is None or len(payload) < 4 or len(reply) < C.ENVELOPE_SIZE + 8:
            return
        opcode = int.from_bytes(payload[:4], "big")
        if opcode == C.OpCode.RESOLUTION:
            return
        rc = int.from_bytes(reply[C.ENVELOPE_SIZE + 4 : C.ENVELOPE_SIZE + 8], "big")
        outcome = OUTCOME_FOR_RC.get(rc, Outcome.INTERNAL.value)
        self.parent.requests.labels(self.name, handle_op_name(opcode), outcome).inc()


# -- LMDB readers ------------------------------------------------------------------------------


def parse_readers(text: str) -> list[tuple[int, str, int]]:
    """``env.readers()`` (LMDB ``mdb_reader_list``: a header line, then ``pid thread txnid``
    per reader slot, txnid ``-`` for a slot holding no transaction; ``(no active readers)``
    when empty) → ``(pid, thread, txnid)`` of the slots holding one."""
    out = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) != 3 or parts[2] == "-":
            continue
        try:
            out.append((int(parts[0]), parts[1], int(parts[2])))
        except ValueError:
            continue
    return out


class ReaderWatch:
    """First sightings of reader slots holding an old snapshot (module docstring: Readers)."""

    def __init__(self) -> None:
        self.first_seen: dict[tuple[int, str, int], float] = {}
        self.lock = threading.Lock()

    def sample(self, env, now: float | None = None) -> tuple[int, int, float]:
        """``(readers, oldest lag in transactions, oldest age in seconds)`` now."""
        now = time.monotonic() if now is None else now
        text = env.readers()
        last = env.info()["last_txnid"]
        return self.update(parse_readers(text), last, now)

    def update(self, readers: list[tuple[int, str, int]], last: int,
               now: float) -> tuple[int, int, float]:  # fmt: skip
        with self.lock:
            old = {r for r in readers if r[2] < last}
            seen = {r: self.first_seen.get(r, now) for r in old}
            self.first_seen = seen
            lag = last - min(r[2] for r in readers) if readers else 0
            age = now - min(seen.values()) if seen else 0.0
        return len(readers), lag, age


# -- one worker ---------------------------------------------------------------------------------


class WorkerMetrics:
    """A worker's metrics: the request counters fed by the statistics tally
    (``count_resolutions`` is ``stats.Tally``'s observer), one ``FrontEndMetrics`` per
    transport, the UDP servers and RRL watched (``watch_udp``), and the scrape.

    ``import_jobs()``: the composition root's hook (``resolver`` never imports ``registry``),
    returning ``(state, committed, failed)`` of every import job in the store.
    """

    def __init__(self, store, *, import_jobs: Callable[[], Iterable[tuple[str, int, int]]]
                 | None = None, directory: str | None = None) -> None:  # fmt: skip
        self.store = store
        self.import_jobs = import_jobs
        self.directory = directory or _directory()
        self.requests = _family("counter", "idnode_requests",
                                "Requests answered, by front-end, operation and outcome",
                                ("frontend", "op", "outcome"))  # fmt: skip
        self.duration = _family("histogram", "idnode_request_duration_seconds",
                                "Time to answer a request, by front-end", ("frontend",),
                                buckets=BUCKETS)  # fmt: skip
        self.udp_dropped = _family("counter", "idnode_udp_dropped",
                                   "Datagrams dropped: load shed, full send buffer, malformed",
                                   ("frontend",))  # fmt: skip
        self.rrl_slipped = _family("counter", "idnode_rrl_slipped",
                                   "DNS answers sent truncated by response rate limiting")
        self.rrl_dropped = _family("counter", "idnode_rrl_dropped",
                                   "DNS answers dropped by response rate limiting")
        self.cache_entries = _family("gauge", "idnode_record_cache_entries",
                                     "Records held in the workers' record caches",
                                     multiprocess_mode="livesum")  # fmt: skip
        self.cache_bytes = _family("gauge", "idnode_record_cache_bytes",
                                   "Memory accounted to the workers' record caches",
                                   multiprocess_mode="livesum")  # fmt: skip
        self.frontends: dict[str, FrontEndMetrics] = {}
        self.readers = ReaderWatch()
        self._udp: list[tuple[str, object]] = []
        self._seen: dict[tuple[str, str], int] = {}  # counters read from objects: last value
        self._caches: dict[int, object] = {}

    # -- wiring ----------------------------------------------------------------------------
    def frontend(self, name: str) -> FrontEndMetrics:
        fm = self.frontends.get(name)
        if fm is None:
            fm = self.frontends[name] = FrontEndMetrics(name, self)
        return fm

    def count_resolutions(self, frontend: str, counts: dict[str, int]) -> None:
        """``stats.Tally``'s observer: resolutions leaving the tally."""
        for outcome, n in counts.items():
            self.requests.labels(frontend, "resolve", outcome).inc(n)

    def watch_udp(self, name: str, server) -> None:
        """A ``datagram.PumpedDatagramServer``: its drops, its RRL limiter (``limiter``, DNS),
        its record cache (``cache``) — read at each sync."""
        self._udp.append((name, server))
        cache = getattr(server, "cache", None)
        if cache is not None:
            self._caches[id(cache)] = cache

    # -- the periodic sync -----------------------------------------------------------------
    async def run(self, tally=None, interval: float = SYNC_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.sync(tally)
            except Exception:
                log.exception("E121 metrics not synced")

    def sync(self, tally=None) -> None:
        """Move what was gathered in memory into the metric files (the loop's thread)."""
        if tally is not None:
            tally.publish()
        for name, fm in self.frontends.items():
            counts, total = fm.take()
            if not any(counts):
                continue
            child = self.duration.labels(name)
            # A histogram has no bulk observe: its per-bucket values (prometheus-client keeps
            # them non-cumulative, one file slot each) get the burst's counts directly.
            for i, n in enumerate(counts):
                if n:
                    child._buckets[i].inc(n)
            child._sum.inc(total)
        for name, server in self._udp:
            pump = getattr(server, "pump", None)
            self._delta(self.udp_dropped.labels(name), (name, "dropped"),
                        server.dropped + (getattr(pump, "dropped", 0) or 0))  # fmt: skip
            limiter = getattr(server, "limiter", None)
            if limiter is not None:
                counters = limiter.counters()
                self._delta(self.rrl_slipped, (name, "slipped"), counters["slipped"])
                self._delta(self.rrl_dropped, (name, "rrl_dropped"), counters["dropped"])
        if self._caches:
            self.cache_entries.set(sum(len(c) for c in self._caches.values()))
            self.cache_bytes.set(sum(c.size for c in self._caches.values()))
        try:
            self.readers.sample(self.store.env)
        except Exception:  # a closed store: /readyz says so
            pass

    def _delta(self, metric, key: tuple[str, str], value: int) -> None:
        last = self._seen.get(key, 0)
        if value > last:
            metric.inc(value - last)
        self._seen[key] = value

    # -- the scrape --------------------------------------------------------------------------
    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The body and content type of ``/metrics`` (blocking: run it in a thread)."""
        from prometheus_client import CollectorRegistry
        from prometheus_client.exposition import choose_encoder
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry(auto_describe=False)
        if self.directory:
            _forget_dead(self.directory)
            MultiProcessCollector(registry, path=self.directory)
        registry.register(_NodeCollector(self))
        encoder, content_type = choose_encoder(accept or "")
        return encoder(registry), content_type


def _forget_dead(directory: str) -> None:
    """Remove the live gauges of processes that are gone (prometheus-client's
    ``mark_process_dead``, done here so that no supervisor hook is needed)."""
    from prometheus_client.multiprocess import mark_process_dead

    dead = set()
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        pid = os.path.basename(path)[:-3].rsplit("_", 1)[-1]
        if not pid.isdigit() or int(pid) in dead:
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            dead.add(int(pid))
        except PermissionError:
            pass
    for pid in dead:
        mark_process_dead(pid, directory)


class _NodeCollector:
    """What is read at scrape time rather than counted: store, import jobs, build."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self.m = metrics

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        build = GaugeMetricFamily("idnode_build_info", "idnode version and hot path",
                                  labels=("version", "hot_path"))  # fmt: skip
        build.add_metric((__version__, native.IMPLEMENTATION), 1)
        yield build
        store = self.m.store
        env = store.env
        readers, lag, age = self.m.readers.sample(env)
        info, st = env.info(), env.stat()
        try:
            file_bytes = os.path.getsize(os.path.join(store.path, "data.mdb"))
        except OSError:
            file_bytes = 0
        with env.begin() as txn:
            entries = {"records": txn.stat(store.records_db)["entries"],
                       "prefixes": txn.stat(store.prefixes_db)["entries"]}  # fmt: skip
        yield GaugeMetricFamily("idnode_lmdb_file_bytes", "Size of the LMDB data file",
                                value=file_bytes)  # fmt: skip
        yield GaugeMetricFamily("idnode_lmdb_map_size_bytes", "LMDB map size ([store] map_size)",
                                value=info["map_size"])  # fmt: skip
        yield GaugeMetricFamily("idnode_lmdb_map_used_bytes", "LMDB pages in use × page size",
                                value=(info["last_pgno"] + 1) * st["psize"])  # fmt: skip
        stored = GaugeMetricFamily("idnode_store_entries", "Entries of a store database",
                                   labels=("db",))  # fmt: skip
        for db, n in entries.items():
            stored.add_metric((db,), n)
        yield stored
        yield GaugeMetricFamily("idnode_lmdb_readers", "LMDB reader slots holding a transaction",
                                value=readers)  # fmt: skip
        yield GaugeMetricFamily("idnode_lmdb_oldest_reader_lag_transactions",
                                "Commits made since the oldest reader's snapshot", value=lag)
        yield GaugeMetricFamily("idnode_lmdb_oldest_reader_age_seconds",
                                "How long the oldest reader of an old snapshot has been seen "
                                "(a lower bound)", value=age)  # fmt: skip
        if self.m.import_jobs is not None:
            states = {s: 0 for s in ("running", "interrupted", "done", "failed")}
            committed = failed = 0
            for state, c, f in self.m.import_jobs():
                states[state] = states.get(state, 0) + 1
                committed += c
                failed += f
            jobs = GaugeMetricFamily("idnode_import_jobs", "Import jobs in the store, by state",
                                     labels=("state",))  # fmt: skip
            for state, n in states.items():
                jobs.add_metric((state,), n)
            yield jobs
            lines = CounterMetricFamily("idnode_import_lines", "Import lines over every job "
                                        "in the store, by result", labels=("result",))
            lines.add_metric(("committed",), committed)
            lines.add_metric(("failed",), failed)
            yield lines


# -- health and readiness ---------------------------------------------------------------------


class Readiness:
    """What ``/readyz`` checks in one worker (module docstring).  ``dns``: whether the worker
    serves DNS (default: ``[dns] port`` ≥ 0)."""

    def __init__(self, store, config, dns: bool | None = None) -> None:
        self.store = store
        self.config = config
        self.listeners: tuple[str, ...] = ()
        dns = config.dns_port >= 0 if dns is None else dns
        self.expected: tuple[str, ...] = ("http", "handle_udp", "handle_tcp") + (
            ("dns_udp", "dns_tcp") if dns else ())  # fmt: skip
        self.draining = False

    def listening(self, *names: str) -> None:
        """The worker's sockets named are listening."""
        self.listeners = tuple(dict.fromkeys(self.listeners + names))

    def report(self) -> tuple[int, dict]:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        checks = {
            "lmdb:open": [self._store_check()],
            "listeners:bound": [self._listener_check()],
            "process:draining": [{
                "status": "fail" if self.draining else "pass",
                "observedValue": self.draining,
                "output": "stopping: finishing requests in flight" if self.draining else "",
            }],
            "replication:lag": [{
                "status": "pass", "observedValue": None,
                "output": "not applicable: this node does not replicate",
            }],
        }  # fmt: skip
        if self.config.upstream_servers:
            checks["upstream:reachable"] = [self._upstream_check()]
        for rows in checks.values():
            for row in rows:
                row["time"] = now
                if not row.get("output"):
                    row.pop("output", None)
        statuses = {row["status"] for rows in checks.values() for row in rows}
        status = "fail" if "fail" in statuses else "warn" if "warn" in statuses else "pass"
        body = {"status": status, "version": "1", "releaseId": __version__,
                "description": "idnode readiness", "checks": checks}  # fmt: skip
        return (503 if status == "fail" else 200), body

    def _store_check(self) -> dict:
        try:
            with self.store.env.begin() as txn:
                txn.stat(self.store.records_db)
        except Exception as exc:
            return {"status": "fail", "componentType": "datastore",
                    "output": f"store not readable: {type(exc).__name__}"}  # fmt: skip
        return {"status": "pass", "componentType": "datastore"}

    def _listener_check(self) -> dict:
        missing = [n for n in self.expected if n not in self.listeners]
        row = {"status": "fail" if missing else "pass", "observedValue": list(self.listeners)}
        if missing:
            row["output"] = "not listening yet: " + ", ".join(missing)
        return row

    def _upstream_check(self) -> dict:
        from resolver.upstream.agent import STATUS_FILE, STATUS_INTERVAL

        path = os.path.join(self.config.data, STATUS_FILE)
        try:
            with open(path, "rb") as fh:
                doc = orjson.loads(fh.read())
        except (OSError, orjson.JSONDecodeError):
            return {"status": "warn", "output": "the upstream agent has written no status"}
        written = doc.get("time") if isinstance(doc, dict) else None
        if not isinstance(written, (int, float)) or time.time() - written > 10 * STATUS_INTERVAL:
            return {"status": "warn", "output": "the upstream agent's status is stale"}
        ups = doc.get("upstreams") or {}
        up = [u for u, row in ups.items() if isinstance(row, dict) and row.get("state") == "up"]
        if ups and not up:
            return {"status": "warn", "observedValue": 0,
                    "output": "every top-level node is down (answers come from the cache)"}
        return {"status": "pass", "observedValue": len(up)}


_HEALTH_HEADERS = {"Content-Type": HEALTH_JSON, "Cache-Control": "no-store"}
_HEALTHZ_BODY = orjson.dumps({"status": "pass"})


class OpsHttp:
    """``/metrics`` (with ``metrics``), ``/healthz`` and ``/readyz`` for one worker."""

    def __init__(self, readiness: Readiness, metrics: WorkerMetrics | None = None,
                 tally=None) -> None:  # fmt: skip
        self.readiness = readiness
        self.metrics = metrics
        self.tally = tally

    async def dispatch(self, request: web.BaseRequest) -> web.Response | None:
        """The answer to one of ``PATHS``; None for any other path (or ``/metrics`` when
        metrics are off)."""
        path = request.raw_path.split("?", 1)[0]
        if path not in PATHS or (path == METRICS and self.metrics is None):
            return None
        if request.method not in ("GET", "HEAD"):
            resp = web.Response(status=405, body=orjson.dumps(
                {"responseCode": 4, "message": f"{request.method} not allowed on {path}"}),
                content_type="application/json")  # fmt: skip
            resp.headers["Allow"] = "GET, HEAD"
            return resp
        if path == HEALTHZ:
            return web.Response(body=_HEALTHZ_BODY, headers=_HEALTH_HEADERS)
        if path == READYZ:
            status, body = self.readiness.report()
            return web.Response(status=status, body=orjson.dumps(body), headers=_HEALTH_HEADERS)
        self.metrics.sync(self.tally)  # this worker's counts are current in the answer
        body, content_type = await asyncio.to_thread(self.metrics.exposition,
                                                     request.headers.get("Accept"))  # fmt: skip
        return web.Response(body=body, headers={"Content-Type": content_type,
                                                "Cache-Control": "no-store"})  # fmt: skip


# -- the upstream agent ------------------------------------------------------------------------


class TimedClient:
    """A ``HandleClient`` whose requests are timed and counted per upstream (agent process):
    ``idnode_upstream_requests_total`` / ``_request_duration_seconds``.  A request that raises
    (``UpstreamUnavailable``: no usable reply after the client's tries) is an ``error``."""

    def __init__(self, client, upstreams: Iterable[tuple[str, int]]) -> None:
        self.client = client
        self.names = {(str(h), int(p)): f"{h}:{p}" for h, p in upstreams}
        self.requests = _family("counter", "idnode_upstream_requests",
                                "Requests sent to other Handle servers, by result",
                                ("upstream", "result"))  # fmt: skip
        self.duration = _family("histogram", "idnode_upstream_request_duration_seconds",
                                "Time for another Handle server to answer (tries included)",
                                ("upstream",), buckets=BUCKETS)  # fmt: skip

    def __getattr__(self, name: str):
        return getattr(self.client, name)

    async def resolve(self, handle, *, server, **kw):
        return await self._timed(server, self.client.resolve(handle, server=server, **kw))

    async def get_site_info(self, server, **kw):
        return await self._timed(server, self.client.get_site_info(server, **kw))

    async def _timed(self, server, request):
        name = self.names.get((str(server[0]), int(server[1])), "referred")
        t0 = _clock()
        result = "error"
        try:
            reply = await request
            result = "ok"
            return reply
        finally:
            self.duration.labels(name).observe(_clock() - t0)
            self.requests.labels(name, result).inc()


class UpstreamMetrics:
    """Upstream-agent background service (``agent.serve`` ``background``): every
    ``SYNC_INTERVAL`` it copies the recursor's health and its answer cache's counters
    (``Recursor.status()``) into the metric files."""

    name = "metrics"

    def __init__(self, recursor, interval: float = SYNC_INTERVAL) -> None:
        self.recursor = recursor
        self.interval = interval
        self.synced = 0
        self._seen: dict[str, int] = {}
        self.up = _family("gauge", "idnode_upstream_up", "1 while a top-level node answers",
                          ("upstream",), multiprocess_mode="livemax")  # fmt: skip
        hits = _family("counter", "idnode_upstream_cache_hits",
                       "Upstream answers served from the agent's cache, by kind", ("kind",))
        self._counters = {
            "hits": hits.labels("positive"), "negative_hits": hits.labels("negative"),
            "stale_hits": hits.labels("stale"),
            "misses": _family("counter", "idnode_upstream_cache_misses",
                              "Upstream lookups the agent's cache could not answer"),
            "stale_served": _family("counter", "idnode_upstream_cache_stale_served",
                                    "Expired answers served while upstream failed (RFC 8767)"),
            "referrals": _family("counter", "idnode_upstream_referrals",
                                 "Referral steps followed upstream"),
            "singleflight_joined": _family("counter", "idnode_upstream_singleflight_joined",
                                           "Requests that waited for a query already sent"),
        }  # fmt: skip
        self.entries = _family("gauge", "idnode_upstream_cache_entries",
                               "Answers held in the agent's cache", multiprocess_mode="livemax")

    async def run(self) -> None:
        while True:
            try:
                self.sync()
            except Exception:
                log.exception("E122 upstream metrics not synced")
            await asyncio.sleep(self.interval)

    def sync(self) -> None:
        status = self.recursor.status()
        for name, row in (status.get("upstreams") or {}).items():
            self.up.labels(name).set(1 if row.get("state") == "up" else 0)
        cache = status.get("cache") or {}
        counters = dict(status.get("counters") or {})
        values = {k: cache.get(k, 0) for k in ("hits", "negative_hits", "stale_hits", "misses",
                                               "stale_served")}  # fmt: skip
        values["referrals"] = counters.get("referrals", 0)
        values["singleflight_joined"] = counters.get("singleflight_joined", 0)
        for key, value in values.items():
            last = self._seen.get(key, 0)
            if value > last:
                self._counters[key].inc(value - last)
            self._seen[key] = value
        self.entries.set(cache.get("entries", 0))
        self.synced += 1

    def status(self) -> dict:
        return {"synced": self.synced}

    def close(self) -> None:
        self.sync()
