"""``python -m bench dns``: idnode's DNS front-end against Knot DNS serving the same zone, driven
by dnsperf (issue 6 §6).

In one run on one machine: generate (or reuse) the store of N identifiers (``bench.data``) and a
zone of M of them (``bench.knot.ensure_dns_zone``): under the same apex, the names
``mapping.to_dns_name`` gives the identifiers, holding exactly the TXT, URI and NAPTR RRsets
idnode answers for them (``answers.rrsets_for`` of the same records).  Start ``idnode serve``
with one worker and ``knotd`` with one UDP worker, both on the server core; dnsperf runs on the
other.  One query file serves both: random names of the M identifiers, TXT, URI and NAPTR
mixed (``--mix``).  Then:

1. correctness — dnspython asks both servers for a sample of names (each type, and a name that
   does not exist): the answers must match each other and the records (TTL included), before
   and after the load; any query dnsperf counts lost or answered other than NOERROR fails the
   run;
2. headroom — dnsperf against ``bench/loadgen.c``'s do-nothing reflector (when a C compiler is
   there): roughly what dnsperf and the loopback carry when the server does nothing (a server
   answering in bursts can exceed it: dnsperf then reads its answers in batches);
3. maximum throughput — dnsperf closed loop (``-q`` queries outstanding), alternating idnode,
   Knot, idnode, Knot … for a number of rounds: q/s, mean and standard deviation of latency;
4. half load — dnsperf paced (``-Q``) at half of each server's median maximum, alternating
   again, with ``-v``: dnsperf 2.10 prints no percentiles, only every query's latency in
   verbose mode, from which p50/p90/p99/p99.9 are computed (verbose output costs dnsperf CPU,
   which matters at maximum load but not at half of it).

Prints the medians (q/s, latency, CPU per query), the ratio idnode / Knot, the verdict (ratio
≥ 0.8) and one JSON line.  Exit status: 0 measured; 1 a server misbehaved or answered wrongly;
2 dnsperf missing, or Knot missing (then idnode is measured alone), or bad usage; with
``--strict`` also 3 when the ratio is below 0.8.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from bench import data, knot
from bench.common import (NOISY_CORES, MemoryLock, Server, add_yardstick_options, alternate,
                          children_cpu, core_ticks, idnode_argv, machine, machine_busy, pin, pins,
                          stop_servers, versions)  # fmt: skip
from resolver.protocols.dns import answers, mapping

MIN_RATIO = 0.8
DNS_ADDRESS = r"dns://([^/\s]+):(\d+)"
DEFAULT_MIX = "TXT=60,URI=20,NAPTR=20"
SATURATED = 0.9  # a server's core busier than this at maximum load: the server set the pace
INSTALL_DNSPERF = (
    "dnsperf is not installed; it is the load generator of this benchmark.\n"
    "Install it (and Knot DNS, the yardstick), e.g. on Debian or Ubuntu:\n"
    "    sudo apt-get update && sudo apt-get install -y dnsperf knot\n"
    "or pass the path of dnsperf with --dnsperf PATH."
)
#: An identifier of the benchmark prefix that no store or zone holds: its name is NXDOMAIN.
MISSING = f"{data.PREFIX}/NO-SUCH-IDENTIFIER"


# -- dnsperf -----------------------------------------------------------------------------------
@dataclass
class PerfResult:
    """One dnsperf run, with the server's and the machine's CPU around it."""

    qps: float
    sent: int
    completed: int
    lost: int
    rcodes: dict[str, int]
    avg_ms: float
    min_ms: float
    max_ms: float
    stddev_ms: float
    run_s: float
    request_bytes: int
    response_bytes: int
    rate: float = 0.0  # paced runs: the rate asked for (-Q; 0: closed loop)
    # from the per-query latencies of a verbose run (-v); None otherwise
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    cpu_us: float = 0.0  # server CPU (user + system, all its processes) per answer
    server_core: float = 0.0  # how busy the server's core was (0..1; pinned runs only)
    gen_cpu: float = 0.0  # dnsperf's own CPU, in cores
    other_cores: float = 0.0  # CPU busy with neither the server nor dnsperf (noise)
    major_faults: int = 0  # the server's page faults that waited for the disk
    rcvbuf_errors: int = 0  # UDP datagrams the machine dropped at a full socket buffer (any)
    failed: int = field(init=False, default=0)  # answers other than NOERROR

    def __post_init__(self) -> None:
        self.failed = sum(n for code, n in self.rcodes.items() if code != "NOERROR")


_STAT = {
    "sent": r"Queries sent:\s+(\d+)",
    "completed": r"Queries completed:\s+(\d+)",
    "lost": r"Queries lost:\s+(\d+)",
    "run_s": r"Run time \(s\):\s+([\d.]+)",
    "qps": r"Queries per second:\s+([\d.]+)",
    "avg": r"Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)",
    "stddev": r"Latency StdDev \(s\):\s+([\d.]+)",
    "sizes": r"Average packet size:\s+request (\d+), response (\d+)",
}


def parse_dnsperf(text: str) -> PerfResult:
    """dnsperf's statistics block (and, in a verbose run, each query's latency line
    ``> RCODE name type seconds``) → a ``PerfResult``; ValueError if the block is missing."""
    found = {}
    for key, pattern in _STAT.items():
        m = re.search(pattern, text)
        if m is None and key not in ("stddev", "sizes", "avg"):  # absent when nothing completed
            raise ValueError(f"dnsperf printed no {key!r} figure:\n{text[-2000:]}")
        found[key] = m.groups() if m else None
    rcodes = {}
    m = re.search(r"Response codes:\s+(.*)", text)
    if m:
        for code, n in re.findall(r"([A-Z]+) (\d+) \(", m.group(1)):
            rcodes[code] = int(n)
    avg, low, high = (float(x) * 1e3 for x in found["avg"]) if found["avg"] else (0.0, 0.0, 0.0)
    req, resp = (int(x) for x in found["sizes"]) if found["sizes"] else (0, 0)
    res = PerfResult(
        qps=round(float(found["qps"][0]), 1), sent=int(found["sent"][0]),
        completed=int(found["completed"][0]), lost=int(found["lost"][0]), rcodes=rcodes,
        avg_ms=round(avg, 4), min_ms=round(low, 4), max_ms=round(high, 4),
        stddev_ms=round(float(found["stddev"][0]) * 1e3, 4) if found["stddev"] else 0.0,
        run_s=float(found["run_s"][0]), request_bytes=req, response_bytes=resp,
    )  # fmt: skip
    lat = sorted(float(line.rsplit(None, 1)[1]) for line in text.splitlines()
                 if line.startswith("> ") and line.count(" ") >= 4)  # fmt: skip
    if lat:
        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3, 4)

        res.p50_ms, res.p90_ms, res.p99_ms, res.p999_ms = (pct(p) for p in
                                                           (0.5, 0.9, 0.99, 0.999))  # fmt: skip
    return res


@dataclass(frozen=True)
class Load:
    """How dnsperf is run: the same for every server."""

    dnsperf: str
    queries: Path
    mode: str  # udp | tcp
    clients: int  # -c
    outstanding: int  # -q at maximum load
    paced_outstanding: int  # -q at half load
    edns: bool  # -e
    timeout: float  # -t
    gen_cpu: int | None
    server_cpu: int | None


def udp_rcvbuf_errors() -> int:
    """UDP datagrams dropped at a full receive buffer since boot, the whole machine
    (/proc/net/snmp ``Udp: RcvbufErrors``): says whether lost queries were dropped there."""
    with open("/proc/net/snmp") as fh:
        rows = [line.split() for line in fh if line.startswith("Udp:")]
    return int(dict(zip(rows[0], rows[1])).get("RcvbufErrors", 0)) if len(rows) >= 2 else 0


def run_dnsperf(load: Load, server: Server, duration: float, tmp: Path, *, rate: float = 0.0,
                verbose: bool = False) -> PerfResult:  # fmt: skip
    """One dnsperf run against ``server``; ``rate`` > 0 paces it (``-Q``)."""
    argv = [load.dnsperf, "-s", server.host, "-p", str(server.port), "-d", str(load.queries),
            "-m", load.mode, "-l", f"{duration:g}", "-c", str(load.clients),
            "-q", str(load.paced_outstanding if rate > 0 else load.outstanding),
            "-t", f"{load.timeout:g}"]  # fmt: skip
    if load.edns:
        argv.append("-e")
    if rate > 0:
        argv += ["-Q", f"{rate:.0f}"]
    if verbose:
        argv.append("-v")

    def snapshot() -> tuple[float, ...]:
        return (server.cpu_seconds(), server.major_faults(), children_cpu(), *machine_busy(),
                time.monotonic())  # fmt: skip

    out_path = tmp / "dnsperf.out"
    drops0 = udp_rcvbuf_errors()
    cores0 = core_ticks()
    cpu0, faults0, gen0, busy0, steal0, t0 = snapshot()
    with open(out_path, "wb") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT,
                              preexec_fn=pin(load.gen_cpu), timeout=duration + 120)  # fmt: skip
    cpu1, faults1, gen1, busy1, steal1, t1 = snapshot()
    cores1 = core_ticks()
    drops1 = udp_rcvbuf_errors()
    text = out_path.read_text(errors="replace")
    out_path.unlink()
    if done.returncode != 0:
        raise RuntimeError(f"dnsperf failed ({done.returncode}):\n{text[-3000:]}")
    res = parse_dnsperf(text)
    res.rate = rate
    res.major_faults = faults1 - faults0
    res.rcvbuf_errors = drops1 - drops0
    res.cpu_us = round((cpu1 - cpu0) / max(res.completed, 1) * 1e6, 2)
    res.gen_cpu = round((gen1 - gen0) / (t1 - t0), 3)
    cpu = load.server_cpu
    if cpu in cores0 and cpu in cores1:
        (b0, n0), (b1, n1) = cores0[cpu], cores1[cpu]
        res.server_core = round((b1 - b0) / max(n1 - n0, 1), 3)
    other = (busy1 - busy0) - (cpu1 - cpu0) - (gen1 - gen0) + (steal1 - steal0)
    res.other_cores = round(max(other, 0.0) / (t1 - t0), 3)
    return res


# -- queries and answers -----------------------------------------------------------------------
def parse_mix(text: str) -> dict[str, float]:
    """``TXT=60,URI=20,NAPTR=20`` → {type: weight}; ValueError for anything else."""
    mix = {}
    for part in text.split(","):
        name, sep, weight = part.strip().partition("=")
        name = name.strip().upper()
        if not sep or name not in knot.DNS_TYPES or name in mix:
            raise ValueError(f"--mix: {part.strip()!r} (TYPE=WEIGHT, types TXT, URI, NAPTR)")
        mix[name] = float(weight)
        if mix[name] < 0:
            raise ValueError(f"--mix: negative weight {part.strip()!r}")
    if not sum(mix.values()) > 0:
        raise ValueError("--mix: the weights add up to 0")
    return mix


def write_queries(path: Path, count: int, names: int, mix: dict[str, float], seed: int,
                  apex: str) -> dict[str, int]:  # fmt: skip
    """dnsperf's input: ``count`` lines ``NAME TYPE``, random names of identifiers 1..``names``
    and types drawn by weight; → how many of each type."""
    rng = random.Random(seed)
    types, weights = list(mix), list(mix.values())
    counts = dict.fromkeys(types, 0)
    with open(path, "w", encoding="ascii") as fh:
        for qtype in rng.choices(types, weights, k=count):
            counts[qtype] += 1
            fh.write(f"{knot.dns_owner(rng.randint(1, names), apex)} {qtype}\n")
    return counts


def ask(server: Server, name: str, qtype: str, *, tcp: bool = False, edns: bool = True,
        timeout: float = 1.0) -> dns.message.Message:  # fmt: skip
    """One query (no recursion desired, as dnsperf sends) through dnspython."""
    q = dns.message.make_query(name, qtype, use_edns=0 if edns else False)
    q.flags &= ~dns.flags.RD
    if tcp:
        return dns.query.tcp(q, server.host, port=server.port, timeout=timeout)
    return dns.query.udp(q, server.host, port=server.port, timeout=timeout)


def summary(msg: dns.message.Message) -> tuple:
    """What must agree between the servers: RCODE, AA, TC, and each answer RRset's owner, type,
    TTL and set of RDATA (order aside: Knot sorts an RRset's RDATA, idnode keeps index order)."""
    rrsets = sorted((r.name.to_text().lower(), r.rdclass, r.rdtype, r.ttl,
                     tuple(sorted(rd.to_wire() for rd in r))) for r in msg.answer)  # fmt: skip
    return (dns.rcode.to_text(msg.rcode()), bool(msg.flags & dns.flags.AA),
            bool(msg.flags & dns.flags.TC), rrsets)  # fmt: skip


def expected(i: int, qtype: str, seed: int, apex: str) -> tuple:
    """``summary`` of the answer both servers must give for identifier ``i``."""
    owner = knot.dns_owner(i, apex)
    rrs = knot.dns_rrsets(i, seed)[qtype]
    rrset = (owner, dns.rdataclass.IN, dns.rdatatype.from_text(qtype), rrs[0].ttl,
             tuple(sorted(rr.rdata for rr in rrs)))  # fmt: skip
    return ("NOERROR", True, False, [rrset])


def check_servers(servers: list[Server], ids: list[int], seed: int, apex: str, *, tcp: bool,
                  edns: bool) -> list[str]:  # fmt: skip
    """Problems with the servers' answers for ``ids`` (each type) and for a missing name."""
    problems = []
    for i in ids:
        for qtype in knot.DNS_TYPES:
            want = expected(i, qtype, seed, apex)
            for s in servers:
                try:
                    got = summary(ask(s, knot.dns_owner(i, apex), qtype, tcp=tcp, edns=edns))
                except Exception as exc:  # noqa: BLE001 — any failure of a check is a finding
                    problems.append(f"{s.name}: {knot.dns_owner(i, apex)} {qtype}: {exc!r}")
                    continue
                if got != want:
                    problems.append(f"{s.name}: {knot.dns_owner(i, apex)} {qtype}: {got!r}, "
                                    f"expected {want!r}")  # fmt: skip
    missing = mapping.to_dns_name(MISSING, apex)
    for s in servers:
        try:
            msg = ask(s, missing, "TXT", tcp=tcp, edns=edns)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{s.name}: {missing} TXT: {exc!r}")
            continue
        if (msg.rcode(), msg.answer) != (dns.rcode.NXDOMAIN, []):
            problems.append(f"{s.name}: {missing} TXT: {summary(msg)!r}, expected NXDOMAIN")
    return problems


def apex_differences(idnode: Server, other: Server, apex: str, *, tcp: bool) -> list[str]:
    """Where the two servers' SOA and NS at the apex differ (not measured; a note only)."""
    notes = []
    for qtype in ("SOA", "NS"):
        try:
            a, b = (summary(ask(s, apex, qtype, tcp=tcp)) for s in (idnode, other))
        except Exception as exc:  # noqa: BLE001
            notes.append(f"apex {qtype}: {exc!r}")
            continue
        if a != b:
            notes.append(f"apex {qtype}: idnode {a!r}, {other.name} {b!r}")
    return notes


def wait_dns(server: Server, name: str, text: str, timeout: float = 30.0) -> None:
    """Until a TXT query for ``name`` over UDP carries ``text`` (the banner comes before the
    workers listen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.alive():
        try:
            if text in knot.ask(server.host, server.port, name, timeout=0.3):
                return
        except (OSError, ValueError):
            time.sleep(0.05)
    raise RuntimeError(f"{server.name} not answering DNS queries; its log:\n{server.log()}")


def dns_fast_path(env: dict) -> str:
    """Which module answers ``native.dns_answer`` in a process with ``env`` (``absent``: none)."""
    code = ("import native; f = getattr(native, 'dns_answer', None); "
            "print(getattr(f, '__module__', '?') if f else 'absent')")  # fmt: skip
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                             cwd=Path(__file__).resolve().parent.parent, timeout=60)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.stdout.strip() or "?"


def find_dnsperf(explicit: str | None = None) -> str | None:
    if explicit:
        return shutil.which(explicit) or (explicit if os.access(explicit, os.X_OK) else None)
    return shutil.which("dnsperf")


def dnsperf_version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "-h"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "dnsperf ?"
    m = re.search(r"Version (\S+)", out.stdout + out.stderr)
    return f"dnsperf {m.group(1)}" if m else "dnsperf ?"


# -- the run -----------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench dns", description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=1_000_000, help="identifiers in the store (1M)")
    p.add_argument("--zone-records", type=int, default=knot.DEFAULT_RECORDS,
                   help="identifiers in Knot's zone, and those queried (100000)")  # fmt: skip
    p.add_argument("--apex", default=mapping.DEFAULT_APEX,
                   help=f"the zone both servers answer for ({mapping.DEFAULT_APEX})")  # fmt: skip
    p.add_argument("--seed", type=int, default=data.DEFAULT_SEED, help="data and query seed")
    add_yardstick_options(p, "dnsperf")
    p.add_argument("--mix", default=DEFAULT_MIX,
                   help=f"query types and weights ({DEFAULT_MIX})")  # fmt: skip
    p.add_argument("--pool", type=int, default=100_000,
                   help="queries in dnsperf's input file, cycled (100000)")  # fmt: skip
    p.add_argument("--mode", choices=("udp", "tcp"), default="udp", help="dnsperf -m (udp)")
    p.add_argument("--clients", "-c", type=int, default=1, help="dnsperf -c: sockets (1)")
    p.add_argument("--outstanding", "-q", type=int, default=64,
                   help="dnsperf -q at maximum load: queries outstanding (64)")  # fmt: skip
    p.add_argument("--paced-outstanding", type=int, default=128,
                   help="dnsperf -q at half load, a cap only (128; more lets dnsperf's catch-up "
                        "burst at start overflow the server's socket buffer)")  # fmt: skip
    p.add_argument("--no-edns", dest="edns", action="store_false",
                   help="queries without EDNS(0) (default: dnsperf -e, as resolvers send)")
    p.add_argument("--timeout", type=float, default=5,
                   help="dnsperf -t: seconds before a query counts as lost (5)")  # fmt: skip
    p.add_argument("--percentiles-at-max", dest="verbose_max", action="store_true",
                   help="dnsperf -v at maximum load too: percentiles there, in the JSON line "
                        "(verbose output lowers dnsperf's own ceiling)")  # fmt: skip
    p.add_argument("--no-headroom", dest="headroom", action="store_false",
                   help="skip dnsperf against the do-nothing reflector")  # fmt: skip
    p.add_argument("--dnsperf", default=None, help="dnsperf executable (dnsperf on PATH)")
    p.add_argument("--cc", default="cc", help="C compiler for the reflector (cc)")
    p.add_argument("--build-dir", type=Path, default=data.BUILD_DIR,
                   help="cache of stores, zones and the reflector (bench/.build)")  # fmt: skip
    p.add_argument("--strict", action="store_true",
                   help="exit 3 when the ratio is below 0.8")  # fmt: skip
    return p


Runs = dict[str, list[PerfResult]]


def _round_line(label: str, name: str, r: PerfResult) -> str:
    lat = (f"  p50 {r.p50_ms:6.3f}  p99 {r.p99_ms:6.3f} ms" if r.p50_ms is not None
           else f"  avg {r.avg_ms:6.3f} ± {r.stddev_ms:6.3f} ms")  # fmt: skip
    extra = "".join(f", {k.replace('_', ' ')} {getattr(r, k)}"
                    for k in ("lost", "failed", "major_faults", "rcvbuf_errors")
                    if getattr(r, k))  # fmt: skip
    return (f"  {label} {name:7s} {r.qps:9.0f} q/s{lat}  {r.cpu_us:6.1f} µs CPU/q"
            f"  server core {r.server_core:4.2f} busy  dnsperf {r.gen_cpu:4.2f} cores"
            f"  other load {r.other_cores:4.2f} cores  ({r.completed} answers,"
            f" {r.response_bytes} B each{extra})")  # fmt: skip


def measure(args, load: Load, tmp: Path, servers: list[Server], knotd: str | None,
            locks: list[MemoryLock]) -> dict:  # fmt: skip
    """Start the servers, check them, run headroom, maximum and half-load rounds; → figures."""
    tcp = args.mode == "tcp"
    store = data.locked_store(args, locks)
    zone = None
    if knotd is not None:
        zone = knot.ensure_dns_zone(args.zone_records, args.seed, apex=args.apex,
                                    build_dir=args.build_dir)  # fmt: skip
    counts = write_queries(load.queries, args.pool, args.zone_records, parse_mix(args.mix),
                           args.seed, args.apex)  # fmt: skip

    env = dict(os.environ)
    env.pop("IDNODE_NO_EXTENSIONS", None)
    if args.pure:
        env["IDNODE_NO_EXTENSIONS"] = "1"
    serve = [*idnode_argv(), "serve", "--data", str(store), "--workers", "1",
             "--host", "127.0.0.1", "--http-port", "0", "--handle-port", "0",
             "--dns-port", "0", "--dns-apex", args.apex]  # fmt: skip
    if args.record_cache is not None:
        serve += ["--record-cache", args.record_cache]
    idnode = Server("idnode", serve, DNS_ADDRESS, env=env, cpu=load.server_cpu,
                    log_path=tmp / "idnode.log", address=DNS_ADDRESS)  # fmt: skip
    servers.append(idnode)
    m = re.search(r"(\w+) hot path", idnode.banner_line)
    implementation = m.group(1) if m else "unknown"
    fast_path = dns_fast_path(env)
    url_value = data.record(data.url_for(1, args.seed))[0]
    probe = (knot.dns_owner(1, args.apex), answers.txt_text(url_value))  # its TXT string
    wait_dns(idnode, *probe)
    idnode.pin_threads(load.server_cpu)

    targets = [idnode]
    knot_server = None
    knot_moved = 0
    if knotd is not None:
        knot_server = knot.start_knot(knotd, zone, args.build_dir / "knot" / "run-dns",
                                      cpu=load.server_cpu, log_path=tmp / "knot.log",
                                      domain=args.apex, probe=probe)  # fmt: skip
        servers.append(knot_server)
        # knotd binds its worker threads to cores itself: every thread goes to the server core.
        knot_moved = knot_server.pin_threads(load.server_cpu)
        targets.append(knot_server)
    rng = random.Random(args.seed + 1)
    names = range(1, args.zone_records + 1)
    sample = sorted({1, args.zone_records, *rng.sample(names, min(len(names), 30))})
    problems = check_servers(targets, sample, args.seed, args.apex, tcp=tcp, edns=load.edns)
    if problems:
        raise RuntimeError("wrong answers before the load:\n" + "\n".join(problems))
    notes = apex_differences(idnode, knot_server, args.apex, tcp=tcp) if knot_server else []

    reflector = None
    if args.headroom:
        from bench.handle import ToolMissing, build_loadgen

        try:
            gen = build_loadgen(args.build_dir, args.cc)
        except ToolMissing as exc:
            print(f"note: no headroom run: {exc.args[0].splitlines()[0]}")
        else:
            reflector = Server("reflect", [str(gen), "reflect", "--proto", "dns"],
                               r"^reflect: ", cpu=load.server_cpu, log_path=tmp / "reflect.log",
                               address=r"reflect: ([\d.]+):(\d+)")  # fmt: skip
            servers.append(reflector)
            reflector.pin_threads(load.server_cpu)

    print(f"idnode: {idnode.banner_line}")
    print(f"hot path: {implementation}" + (" (IDNODE_NO_EXTENSIONS=1)" if args.pure else "")
          + f"; DNS fast path: {fast_path}")  # fmt: skip
    if not args.pure and implementation != "cython":
        print("warning: the Cython extension is not in use; build it with `make build`")
    if knot_server is not None:
        moved = (f"; {knot_moved} of its threads moved to cpu {load.server_cpu}"
                 if knot_moved else "")  # fmt: skip
        print(f"knot: {knot.version(knotd)}, 127.0.0.1:{knot_server.port}, "
              f"{args.zone_records:,} names under {args.apex}, 1 UDP + 1 TCP worker{moved}")
    for note in notes:
        print(f"note: {note}")
    mix = ", ".join(f"{t} {n / args.pool:.0%}" for t, n in counts.items())
    placement = (f"dnsperf on cpu {load.gen_cpu}, servers on cpu {load.server_cpu}"
                 if load.server_cpu is not None else "not pinned")  # fmt: skip
    print(f"load: {dnsperf_version(load.dnsperf)}, {args.mode.upper()}"
          f"{', EDNS(0)' if load.edns else ''}, {load.clients} client(s), {load.outstanding} "
          f"outstanding, {args.pool:,} queries ({mix}) of {args.zone_records:,} names, "
          f"{args.duration:g} s per run, {args.rounds} round(s), {placement}")  # fmt: skip

    headroom = None
    if reflector is not None:
        headroom = run_dnsperf(load, reflector, args.duration, tmp)
        print(_round_line("headroom", "reflect", headroom), flush=True)
        reflector.stop()
        servers.remove(reflector)

    if args.warmup > 0:
        for server in targets:
            run_dnsperf(load, server, args.warmup, tmp)
    full: Runs = alternate(targets, args.rounds, lambda server, _rate: run_dnsperf(
        load, server, args.duration, tmp, verbose=args.verbose_max), _round_line)
    half: Runs = {s.name: [] for s in targets}
    if args.half:
        rates = {name: statistics.median(x.qps for x in rs) / 2 for name, rs in full.items()}
        half = alternate(targets, args.rounds, lambda server, rate: run_dnsperf(
            load, server, args.duration, tmp, rate=rate, verbose=True), _round_line, rates=rates)

    for server in targets:
        if server.pin_threads(load.server_cpu):
            print(f"warning: threads of {server.name} had left cpu {load.server_cpu} during the "
                  f"runs; its figures were measured on other cores")  # fmt: skip
    # Wrong answers after the load, and queries lost or failed during it, fail the run once the
    # figures are printed (report).
    problems = check_servers(targets, sample, args.seed, args.apex, tcp=tcp, edns=load.edns)
    for name in full:
        runs = full[name] + half[name]
        lost, failed = sum(x.lost for x in runs), sum(x.failed for x in runs)
        if lost or failed:
            codes: dict[str, int] = {}
            for x in runs:
                for code, n in x.rcodes.items():
                    codes[code] = codes.get(code, 0) + n
            drops = sum(x.rcvbuf_errors for x in runs)
            problems.append(f"{name}: dnsperf counted {lost} queries lost (no answer within "
                            f"{load.timeout:g} s; {drops} UDP datagrams dropped at full socket "
                            f"buffers on this machine meanwhile) and {failed} answered other "
                            f"than NOERROR (response codes {codes})")  # fmt: skip
    return {"problems": problems, "implementation": implementation, "fast_path": fast_path,
            "headroom": headroom, "full": full, "half": half, "mix": counts, "notes": notes,
            "knot_version": knot.version(knotd) if knotd else None,
            "dnsperf_version": dnsperf_version(load.dnsperf)}  # fmt: skip


def _med(rs: list[PerfResult], key: str):
    vals = [getattr(x, key) for x in rs if getattr(x, key) is not None]
    return round(statistics.median(vals), 4) if vals else None


def _medians(rs: list[PerfResult]) -> dict:
    if not rs:
        return {}
    out = {k: _med(rs, k) for k in ("qps", "avg_ms", "stddev_ms", "p50_ms", "p90_ms", "p99_ms",
                                    "p999_ms", "cpu_us", "gen_cpu", "server_core")}  # fmt: skip
    out.update(lost=sum(x.lost for x in rs), failed=sum(x.failed for x in rs),
               completed=sum(x.completed for x in rs),
               major_faults=sum(x.major_faults for x in rs),
               response_bytes=_med(rs, "response_bytes"))  # fmt: skip
    return out


def _ms(v) -> str:
    return f"{v:8.3f}" if v is not None else f"{'-':>8s}"


def report(args, load: Load, fig: dict) -> tuple[bool, dict]:
    """Print the medians, the ratio, the verdict and the JSON line; → (ratio ≥ 0.8, the JSON
    line's figures)."""
    full, half = fig["full"], fig["half"]
    med = {name: _medians(rs) for name, rs in full.items()}
    hmed = {name: _medians(rs) for name, rs in half.items()}
    # no ratio without Knot, or when it answered nothing (then the run fails on lost queries)
    has_knot = "knot" in med and med["knot"]["qps"] > 0 and all(x.qps for x in full["knot"])
    labels = {"idnode": f"idnode ({fig['implementation']})", "knot": "Knot DNS"}

    print()
    print(f"{'medians of ' + str(args.rounds):18s} {'q/s':>9s} {'avg ms':>8s} {'sd ms':>8s}"
          f" {'CPU µs/q':>9s} {'srv core':>8s} {'dnsperf':>8s} │ {'half load':>9s}"
          f" {'p50 ms':>8s} {'p99 ms':>8s} {'p99.9 ms':>8s}")  # fmt: skip
    for name in med:
        m, h = med[name], hmed.get(name) or {}
        half_cols = (f"{h['qps']:9.0f} {_ms(h['p50_ms'])} {_ms(h['p99_ms'])} {_ms(h['p999_ms'])}"
                     if h else f"{'-':>9s} {'-':>8s} {'-':>8s} {'-':>8s}")  # fmt: skip
        print(f"{labels[name]:18s} {m['qps']:9.0f} {_ms(m['avg_ms'])} {_ms(m['stddev_ms'])}"
              f" {m['cpu_us']:9.1f} {m['server_core']:8.2f} {m['gen_cpu']:8.2f} │"
              f" {half_cols}")  # fmt: skip
    hr = fig["headroom"]
    if hr is not None:
        print(f"{'reflector (C)':18s} {hr.qps:9.0f} {_ms(hr.avg_ms)} {_ms(hr.stddev_ms)}"
              f" {hr.cpu_us:9.1f} {hr.server_core:8.2f} {hr.gen_cpu:8.2f} │"
              f" dnsperf headroom, one run")  # fmt: skip

    ratio = paired = cpu_ratio = None
    ok = False
    if has_knot:
        ratio = med["idnode"]["qps"] / med["knot"]["qps"]
        paired = statistics.median(i.qps / k.qps for i, k in zip(full["idnode"], full["knot"]))
        cpu_ratio = (med["knot"]["cpu_us"] / med["idnode"]["cpu_us"]
                     if med["idnode"]["cpu_us"] else 0.0)  # fmt: skip
        ok = ratio >= MIN_RATIO
        print(f"ratio idnode/knot  {ratio:9.3f}   (median of per-round ratios {paired:.3f}; "
              f"knot CPU / idnode CPU per query {cpu_ratio:.3f})")  # fmt: skip
        sizes = (med["idnode"]["response_bytes"], med["knot"]["response_bytes"])
        if abs(sizes[0] - sizes[1]) > 0.01 * max(sizes):  # dnsperf rounds each run's mean down
            print(f"note: the servers' mean response sizes differ: idnode {sizes[0]:.0f} B, "
                  f"Knot {sizes[1]:.0f} B")  # fmt: skip
    verdict = ("PASS" if ok else "FAIL") if has_knot else "not measured (no Knot figure)"
    print(f"acceptance: q/s ratio ≥ {MIN_RATIO}: {verdict}")

    pinned = load.server_cpu is not None
    for name, m in med.items():
        if pinned and m["server_core"] < SATURATED:
            where = (f"; the reflector run shows what dnsperf carries: {hr.qps:.0f} q/s"
                     if hr else "")  # fmt: skip
            print(f"warning: at maximum load the core of {name} was busy only "
                  f"{m['server_core']:.0%} of the time, so {m['qps']:.0f} q/s is not its limit "
                  f"(dnsperf, at {m['gen_cpu']:.2f} cores, or latency set the pace{where})")
        elif hr is not None and m["qps"] > 0.8 * hr.qps:
            print(f"note: {name} reached {m['qps'] / hr.qps:.0%} of what dnsperf drives against "
                  f"the do-nothing reflector ({hr.qps:.0f} q/s)")  # fmt: skip
    faults = {name: m["major_faults"] for name, m in (*med.items(), *hmed.items()) if m}
    if any(faults.values()):
        print(f"warning: page faults that waited for the disk during the runs: {faults}; "
              f"those queries measured the disk")  # fmt: skip
    noisy = max(x.other_cores for rs in (*full.values(), *half.values()) for x in rs)
    if noisy > NOISY_CORES:
        print(f"warning: up to {noisy:.2f} cores were busy with other work during the runs "
              f"(other processes or the hypervisor); the figures are unreliable — rerun on a "
              f"quiet machine")  # fmt: skip
    doc = {
        "scenario": "dns", "records": args.records, "zone_records": args.zone_records,
        "apex": args.apex, "implementation": fig["implementation"],
        "dns_fast_path": fig["fast_path"], "knot_version": fig["knot_version"],
        "dnsperf_version": fig["dnsperf_version"], "mode": load.mode, "edns": load.edns,
        "clients": load.clients, "outstanding": load.outstanding,
        "paced_outstanding": load.paced_outstanding, "pool": args.pool, "mix": fig["mix"],
        "duration_s": args.duration, "rounds": args.rounds, "pinned": pinned,
        "percentiles_at_max": args.verbose_max,
        "headroom": asdict(hr) if hr is not None else None,
        **{name: {**med[name], "runs": [asdict(x) for x in full[name]],
                  "half": {**hmed[name], "runs": [asdict(x) for x in half[name]]}}
           for name in med},
        "ratio": round(ratio, 4) if ratio is not None else None,
        "paired_ratio": round(paired, 4) if paired is not None else None,
        "cpu_ratio": round(cpu_ratio, 4) if cpu_ratio is not None else None,
        "pass_ratio": ok, "max_other_cores": noisy, "notes": fig["notes"],
        "problems": fig["problems"],
    }  # fmt: skip
    print(json.dumps(doc, separators=(",", ":")))
    return ok, doc


def main(argv: list[str] | None = None) -> int:
    return collect(argv)[0]


def collect(argv: list[str] | None = None) -> tuple[int, dict | None]:
    """Run the scenario as ``main`` does; → (exit status, the JSON line's figures, or None
    when nothing was measured).  ``python -m bench report`` gathers scenarios through it."""
    args = _parser().parse_args(argv)
    if not 1 <= args.records <= data.MAX_RECORDS or not 1 <= args.zone_records <= args.records:
        print(f"need 1 ≤ --zone-records ≤ --records ≤ {data.MAX_RECORDS} (the zone's identifiers "
              f"are the first of the store's)", file=sys.stderr)  # fmt: skip
        return 2, None
    sizes = (args.pool, args.rounds, args.clients, args.outstanding, args.paced_outstanding)
    if min(sizes) < 1 or args.duration <= 0 or args.timeout <= 0 or args.warmup < 0:
        print("need pool, rounds, clients and outstanding ≥ 1, duration and timeout > 0",
              file=sys.stderr)  # fmt: skip
        return 2, None
    try:
        parse_mix(args.mix)
        mapping.to_dns_name(data.handle(1), args.apex)
    except ValueError as exc:
        print(f"bench dns: {exc}", file=sys.stderr)
        return 2, None
    dnsperf = find_dnsperf(args.dnsperf)
    if dnsperf is None:
        print(INSTALL_DNSPERF, file=sys.stderr)
        return 2, None
    knotd = knot.find_knotd(args.knotd)
    gen_cpu, server_cpu = pins(args.pin)

    print(f"bench dns: {machine()}; {versions(('uvloop', 'lmdb', 'dnspython'))}")
    if knotd is None:
        print(f"note: {knot.INSTALL_KNOT}\nnote: measuring idnode alone; no ratio, exit status 2.")
    tmp = Path(tempfile.mkdtemp(prefix="idnode-bench-"))
    load = Load(dnsperf, tmp / "queries.txt", args.mode, args.clients, args.outstanding,
                args.paced_outstanding, args.edns, args.timeout, gen_cpu, server_cpu)  # fmt: skip
    servers: list[Server] = []
    locks: list[MemoryLock] = []
    try:
        fig = measure(args, load, tmp, servers, knotd, locks)
    except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as exc:
        print(f"bench dns: {exc}", file=sys.stderr)
        return 1, None
    finally:
        stop_servers(servers)
        for lock in locks:
            lock.close()
        shutil.rmtree(tmp, ignore_errors=True)
    ok, doc = report(args, load, fig)
    if fig["problems"]:
        print("bench dns: wrong answers or lost queries:\n" + "\n".join(fig["problems"]),
              file=sys.stderr)  # fmt: skip
        return 1, doc
    if knotd is None:
        print("bench dns: Knot DNS is missing — idnode measured alone; install it: "
              "sudo apt-get install -y knot", file=sys.stderr)  # fmt: skip
        return 2, doc
    return (3 if args.strict and not ok else 0), doc
