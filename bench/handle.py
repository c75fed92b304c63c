"""``python -m bench handle-udp | handle-tcp | handle-tcp-pipelined``: idnode's Handle
resolution against Knot DNS, the native-server yardstick, driven by one C load generator.

In one run on one machine: generate (or reuse) a store of N identifiers (``bench.data``) and a
zone of M names holding the same data (``bench.knot``); build ``bench/loadgen.c`` with the system
C compiler (cached in ``bench/.build/``, rebuilt when the source changes); start ``idnode serve``
with one worker, ``knotd`` with one UDP and one TCP worker, and the generator's own trivial
reflector.  Then, with the same generator, settings and duration for both servers:

1. headroom — the generator against the reflector: what the generator and the loopback reach
   when the server does nothing, so a server figure close to it would be the generator's limit;
2. maximum throughput — closed window (UDP: K requests outstanding; TCP: C connections with D
   requests each), alternating idnode, Knot, idnode, Knot … for a number of rounds;
3. half load — open loop at half of each server's median maximum, latency counted from the time
   each request was due, alternating again.

Every request asks for a random identifier (Handle resolution of ``88.118.8/SN-2026-…`` with
no index or type filter) or name (DNS TXT query); the generator checks every answer (Handle
RC_SUCCESS; DNS NOERROR with an answer) and counts losses.  idnode's answers for a sample of
identifiers are decoded and compared with the stored URL before and after the load.

Prints the medians (q/s, p50, p99, CPU per query), the ratio idnode / Knot, the half-load
latencies, the verdict (ratio ≥ 0.8 and idnode's half-load p99 ≤ 2 ms) and one JSON line.  Exit
status: 0 measured; 1 a server misbehaved; 2 a tool is missing (C compiler, or Knot — then
idnode is measured alone and the note says how to install Knot) or bad usage; with
``--strict`` also 3 when the acceptance thresholds are not met.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import data, knot
from bench.common import (NOISY_CORES, MemoryLock, Server, add_yardstick_options, alternate,
                          children_cpu, core_ticks, idnode_argv, machine, machine_busy, pin, pins,
                          stop_servers, versions)  # fmt: skip

MIN_RATIO = 0.8
MAX_HALF_P99_MS = 2.0
LOADGEN_SOURCE = Path(__file__).resolve().with_name("loadgen.c")
CFLAGS = ["-O2", "-Wall"]
HANDLE_ADDRESS = r"handle://([^/\s]+):(\d+)"
LOST_WARN = 0.001  # lost / answered above this in a run is worth a warning
SATURATED = 0.9  # a server's core busier than this at maximum load: the server set the pace
INSTALL_CC = (
    "No C compiler found (the benchmark compiles its load generator, bench/loadgen.c).\n"
    "Install one, e.g. on Debian or Ubuntu:\n"
    "    sudo apt-get update && sudo apt-get install -y gcc\n"
    "or pass a compiler with --cc PATH."
)

#: scenario → transport, connections, depth (UDP: the window is --window)
SCENARIOS = {
    "udp": ("udp", 0, 1),
    "tcp": ("tcp", 16, 1),
    "tcp-pipelined": ("tcp", 16, 16),
}


class ToolMissing(Exception):
    """A tool the benchmark needs is not installed; the message says how to get it."""


# -- the load generator ------------------------------------------------------------------------
def build_loadgen(build_dir: Path, cc: str = "cc", log=print) -> Path:
    """The compiled generator, built into ``build_dir`` unless this source was built already."""
    source = LOADGEN_SOURCE.read_bytes()
    tag = hashlib.sha256(source + " ".join(CFLAGS).encode()).hexdigest()[:16]
    exe = Path(build_dir) / f"loadgen-{tag}"
    if exe.is_file() and os.access(exe, os.X_OK):
        return exe
    compiler = shutil.which(cc)
    if compiler is None:
        raise ToolMissing(INSTALL_CC)
    Path(build_dir).mkdir(parents=True, exist_ok=True)
    tmp = exe.with_name(exe.name + ".partial")
    done = subprocess.run([compiler, *CFLAGS, "-o", str(tmp), str(LOADGEN_SOURCE)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"compiling {LOADGEN_SOURCE.name} failed:\n{done.stderr}")
    os.replace(tmp, exe)
    for old in Path(build_dir).glob("loadgen-*"):
        if old != exe:
            old.unlink(missing_ok=True)
    log(f"loadgen: built {exe.name} with {compiler}")
    return exe


@dataclass
class GenResult:
    qps: float
    p50_us: int
    p90_us: int
    p99_us: int
    p999_us: int
    max_us: int
    sent: int
    answered: int
    bad: int
    lost: int
    stale: int
    reconnects: int
    window_full: int = 0  # open loop: times a due request waited for a free slot
    rate: float = 0.0  # open loop: the rate asked for (0: closed window)
    gen_cpu: float = 0.0  # the generator's own CPU, in cores
    major_faults: int = 0  # the server's page faults that waited for the disk
    server_core: float = 0.0  # how busy the server's core was (0..1; pinned runs only)
    cpu_us: float = 0.0  # server CPU (user + system, all its processes) per answer
    other_cores: float = 0.0  # CPU busy with neither the server nor the generator (noise)


def run_gen(gen: Path, *, proto: str, transport: str, server: Server, requests: Path,
            duration: float, cpu, window: int, conns: int, depth: int, rate: float = 0.0,
            timeout_ms: float = 100.0, server_cpu: int | None = None) -> GenResult:  # fmt: skip
    argv = [str(gen), "run", "--proto", proto, "--transport", transport,
            "--target", f"{server.host}:{server.port}", "--requests", str(requests),
            "--duration", str(duration), "--timeout-ms", str(timeout_ms)]  # fmt: skip
    if transport == "udp":
        argv += ["--window", str(window)]
    else:
        argv += ["--conns", str(conns), "--depth", str(depth)]
    if rate > 0:
        argv += ["--rate", f"{rate:.0f}"]

    def snapshot() -> tuple[float, ...]:
        return (server.cpu_seconds(), server.major_faults(), children_cpu(), *machine_busy(),
                time.monotonic())  # fmt: skip

    cores0 = core_ticks()
    cpu0, faults0, gen0, busy0, steal0, t0 = snapshot()
    done = subprocess.run(argv, capture_output=True, text=True, preexec_fn=pin(cpu),
                          timeout=duration + 120)  # fmt: skip
    cpu1, faults1, gen1, busy1, steal1, t1 = snapshot()
    cores1 = core_ticks()
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    try:
        out = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise RuntimeError(f"loadgen printed no JSON line:\n{done.stdout}{done.stderr}") from exc
    res = GenResult(**{k: out[k] for k in ("qps", "p50_us", "p90_us", "p99_us", "p999_us",
                                           "max_us", "sent", "answered", "bad", "lost", "stale",
                                           "reconnects", "window_full", "rate")},
                    gen_cpu=out["cpu"], major_faults=faults1 - faults0)  # fmt: skip
    res.cpu_us = round((cpu1 - cpu0) / max(res.answered, 1) * 1e6, 2)
    if server_cpu in cores0 and server_cpu in cores1:
        (b0, n0), (b1, n1) = cores0[server_cpu], cores1[server_cpu]
        res.server_core = round((b1 - b0) / max(n1 - n0, 1), 3)
    other = (busy1 - busy0) - (cpu1 - cpu0) - (gen1 - gen0) + (steal1 - steal0)
    res.other_cores = round(max(other, 0.0) / (t1 - t0), 3)
    return res


# -- Handle wire (requests and the answer check) -----------------------------------------------
#: HNv9's default resolution flags: recursive, cache-certify, public only.
RESOLUTION_FLAGS = 0x19000000
KEEP_CONNECTION = 0x02000000
VERSION = (2, 10)


def handle_request(handle: str, request_id: int, *, tcp: bool = False,
                   expiration: int | None = None) -> bytes:  # fmt: skip
    """A resolution request (all values), envelope included: one UDP datagram or TCP frame."""
    name = handle.encode("utf-8")
    body = struct.pack(">I", len(name)) + name + struct.pack(">II", 0, 0)
    flags = RESOLUTION_FLAGS | (KEEP_CONNECTION if tcp else 0)
    expiration = int(time.time()) + 12 * 3600 if expiration is None else expiration
    header = struct.pack(">IIIHBBII", 1, 0, flags, 0xFFFF, 0, 0, expiration, len(body))
    message = header + body + struct.pack(">I", 0)  # no credential
    major, minor = VERSION
    envelope = struct.pack(">BBBBIIII", major, minor, major & 3, minor, 0, request_id, 0,
                           len(message))  # fmt: skip
    return envelope + message


def _utf8(buf: bytes, off: int) -> tuple[str, int]:
    (n,) = struct.unpack_from(">I", buf, off)
    return buf[off + 4 : off + 4 + n].decode("utf-8", "replace"), off + 4 + n


def parse_resolution(message: bytes) -> tuple[int, str, dict[int, tuple[str, bytes]]]:
    """(response code, handle, {index: (type, data)}) of a resolution response message
    (after the envelope); the handle and values only when the code is 1."""
    opcode, rc, opflags, _serial, _rec, _res, _exp, body_len = struct.unpack_from(
        ">IIIHBBII", message)  # fmt: skip
    if opcode != 1:
        raise ValueError(f"op code {opcode} in a resolution response")
    if rc != 1:
        return rc, "", {}
    body = message[24 : 24 + body_len]
    off = 0
    if opflags & 0x00800000:  # RD: a digest of the request comes first
        kind = body[0]
        off = 1 + {1: 16, 2: 20, 3: 32}.get(kind, 0)
    handle, off = _utf8(body, off)
    (count,) = struct.unpack_from(">I", body, off)
    off += 4
    values = {}
    for _ in range(count):
        index, _ts, _ttl_type, _ttl, _perm = struct.unpack_from(">IIBIB", body, off)
        off += 14
        vtype, off = _utf8(body, off)
        (dlen,) = struct.unpack_from(">I", body, off)
        value, off = body[off + 4 : off + 4 + dlen], off + 4 + dlen
        (refs,) = struct.unpack_from(">I", body, off)
        off += 4
        for _ in range(refs):
            _ref, off = _utf8(body, off)
            off += 4
        values[index] = (vtype, value)
    return rc, handle, values


def handle_ask(host: str, port: int, handle: str, *, tcp: bool = False,
               timeout: float = 1.0) -> tuple[int, str, dict]:  # fmt: skip
    """One resolution over UDP or TCP; → ``parse_resolution`` of the answer."""
    rid = random.randrange(1, 1 << 31)
    req = handle_request(handle, rid, tcp=tcp)
    if tcp:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(req)
            buf = b""
            while len(buf) < 20 or len(buf) < 20 + struct.unpack_from(">I", buf, 16)[0]:
                chunk = s.recv(65536)
                if not chunk:
                    raise ValueError("connection closed before the answer")
                buf += chunk
            if struct.unpack_from(">I", buf, 8)[0] != rid:
                raise ValueError("answer to another request id")
            return parse_resolution(buf[20:])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(req, (host, port))
        parts: dict[int, bytes] = {}
        while True:
            pkt = s.recv(65536)
            if len(pkt) < 20 or struct.unpack_from(">I", pkt, 8)[0] != rid:
                continue
            seq, total = struct.unpack_from(">II", pkt, 12)
            parts[seq] = pkt[20:]
            if not pkt[2] & 0x20 or sum(map(len, parts.values())) >= total:
                return parse_resolution(b"".join(parts[k] for k in sorted(parts)))


def check_idnode(server: Server, ids: list[int], seed: int, tcp: bool) -> list[str]:
    """idnode's answers for ``ids``: RC_SUCCESS, the identifier echoed, the stored URL."""
    problems = []
    for i in ids:
        h = data.handle(i)
        try:
            rc, echoed, values = handle_ask(server.host, server.port, h, tcp=tcp)
        except (OSError, ValueError, struct.error) as exc:
            problems.append(f"{h}: {exc!r}")
            continue
        url = values.get(1, ("", b""))
        if rc != 1 or echoed != h or url != ("URL", data.url_for(i, seed).encode()):
            problems.append(f"{h}: rc {rc}, handle {echoed!r}, index 1 {url!r}")
    return problems


def check_knot(server: Server, ids: list[int], seed: int, tcp: bool) -> list[str]:
    problems = []
    for i in ids:
        name = knot.owner(i)
        try:
            txt = knot.ask(server.host, server.port, name, tcp=tcp)
        except (OSError, ValueError, struct.error) as exc:
            problems.append(f"{name}: {exc!r}")
            continue
        if data.url_for(i, seed) not in txt:
            problems.append(f"{name}: TXT {txt!r}")
    return problems


def wait_idnode(server: Server, tcp: bool, timeout: float = 30.0) -> None:
    """Until a worker answers (the banner comes before the workers listen)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and server.alive():
        try:
            if handle_ask(server.host, server.port, data.handle(1), tcp=tcp, timeout=0.3)[0]:
                return
        except (OSError, ValueError, struct.error):
            time.sleep(0.05)
    raise RuntimeError(f"idnode not answering Handle requests; its log:\n{server.log()}")


def write_requests(path: Path, messages) -> int:
    count = 0
    with open(path, "wb") as fh:
        for m in messages:
            fh.write(struct.pack("<I", len(m)) + m)
            count += 1
    return count


def handle_fast_path(env: dict) -> str:
    """Which module answers ``native.handle_resolve`` in a process with ``env``."""
    code = "import native; print(getattr(native.handle_resolve, '__module__', '?'))"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                             cwd=Path(__file__).resolve().parent.parent, timeout=60)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "?"
    return out.stdout.strip() or "?"


# -- the run -----------------------------------------------------------------------------------
def _parser(scenario: str) -> argparse.ArgumentParser:
    transport, conns, depth = SCENARIOS[scenario]
    p = argparse.ArgumentParser(prog=f"python -m bench handle-{scenario}",
                                description=__doc__.split("\n\n")[0])  # fmt: skip
    p.add_argument("--records", type=int, default=1_000_000, help="identifiers in the store (1M)")
    p.add_argument("--zone-records", type=int, default=knot.DEFAULT_RECORDS,
                   help="names in Knot's zone (100000)")  # fmt: skip
    p.add_argument("--seed", type=int, default=data.DEFAULT_SEED, help="data and request seed")
    add_yardstick_options(p, "the generator")
    if transport == "udp":
        p.add_argument("--window", "-k", type=int, default=32,
                       help="requests outstanding at maximum load (32)")  # fmt: skip
        p.add_argument("--open-window", type=int, default=1024,
                       help="cap on requests outstanding at half load (1024)")  # fmt: skip
    else:
        p.add_argument("--conns", "-c", type=int, default=conns,
                       help=f"TCP connections ({conns})")  # fmt: skip
        p.add_argument("--depth", type=int, default=depth,
                       help=f"requests outstanding per TCP connection ({depth})")  # fmt: skip
    p.add_argument("--timeout-ms", type=float, default=100,
                   help="a request unanswered this long is lost and re-issued (100)")  # fmt: skip
    p.add_argument("--pool", type=int, default=100_000,
                   help="distinct pre-built requests per server, cycled (100000)")  # fmt: skip
    p.add_argument("--cc", default="cc", help="C compiler for the load generator (cc)")
    p.add_argument("--build-dir", type=Path, default=data.BUILD_DIR,
                   help="cache of stores, zones and the generator (bench/.build)")  # fmt: skip
    p.add_argument("--strict", action="store_true",
                   help="exit 3 when the acceptance thresholds are not met")  # fmt: skip
    return p


@dataclass
class Setup:
    scenario: str
    transport: str
    window: int
    open_window: int
    conns: int
    depth: int
    gen: Path
    gen_cpu: int | None
    server_cpu: int | None


def _load(setup: Setup, server: Server, proto: str, requests: Path, duration: float,
          args, rate: float = 0.0) -> GenResult:  # fmt: skip
    return run_gen(setup.gen, proto=proto, transport=setup.transport, server=server,
                   requests=requests, duration=duration, cpu=setup.gen_cpu,
                   window=setup.open_window if rate > 0 else setup.window, conns=setup.conns,
                   depth=setup.depth, rate=rate, timeout_ms=args.timeout_ms,
                   server_cpu=setup.server_cpu)  # fmt: skip


def _ms(us: float) -> float:
    return us / 1000.0


def _round_line(label: str, name: str, res: GenResult) -> str:
    extra = ""
    for key in ("lost", "bad", "reconnects", "window_full", "major_faults"):
        if getattr(res, key):
            extra += f", {key.replace('_', ' ')} {getattr(res, key)}"
    return (f"  {label} {name:6s} {res.qps:9.0f} q/s  p50 {_ms(res.p50_us):6.3f} ms"
            f"  p99 {_ms(res.p99_us):6.3f} ms  {res.cpu_us:6.1f} µs CPU/q"
            f"  server core {res.server_core:4.2f} busy  generator {res.gen_cpu:4.2f} cores"
            f"  other load {res.other_cores:4.2f} cores"
            f"  ({res.answered} answers{extra})")  # fmt: skip


Runs = dict[str, list[GenResult]]


def measure(args, setup: Setup, tmp: Path, servers: list[Server], knotd: str | None,
            locks: list[MemoryLock]) -> dict:  # fmt: skip
    """Start the servers, check them, run headroom, maximum and half-load rounds; → figures."""
    tcp = setup.transport == "tcp"
    store = data.locked_store(args, locks)
    zone = None
    if knotd is not None:
        zone = knot.ensure_zone(args.zone_records, args.seed, build_dir=args.build_dir)

    rng = random.Random(args.seed)
    expiration = int(time.time()) + 12 * 3600
    pool = min(args.pool, 10 * args.records)
    handle_reqs = tmp / "handle.requests"
    write_requests(handle_reqs, (handle_request(data.handle(rng.randint(1, args.records)), n + 1,
                                                tcp=tcp, expiration=expiration)
                                 for n in range(pool)))  # fmt: skip
    dns_reqs = tmp / "dns.requests"
    queries = (knot.query(knot.owner(rng.randint(1, args.zone_records)))
               for _ in range(min(args.pool, 10 * args.zone_records)))  # fmt: skip
    write_requests(dns_reqs, ((struct.pack(">H", len(q)) + q) if tcp else q for q in queries))

    env = dict(os.environ)
    env.pop("IDNODE_NO_EXTENSIONS", None)
    if args.pure:
        env["IDNODE_NO_EXTENSIONS"] = "1"
    serve = [*idnode_argv(), "serve", "--data", str(store), "--workers", "1",
             "--host", "127.0.0.1", "--http-port", "0", "--handle-port", "0"]  # fmt: skip
    if args.record_cache is not None:
        serve += ["--record-cache", args.record_cache]
    idnode = Server("idnode", serve, HANDLE_ADDRESS, env=env, cpu=setup.server_cpu,
                    log_path=tmp / "idnode.log", address=HANDLE_ADDRESS)  # fmt: skip
    servers.append(idnode)
    m = re.search(r"(\w+) hot path", idnode.banner_line)
    implementation = m.group(1) if m else "unknown"
    fast_path = handle_fast_path(env)
    wait_idnode(idnode, tcp)
    idnode.pin_threads(setup.server_cpu)
    sample = sorted({1, args.records, *rng.sample(range(1, args.records + 1),
                                                   min(args.records, 30))})  # fmt: skip
    problems = check_idnode(idnode, sample, args.seed, tcp)
    if problems:
        raise RuntimeError("idnode answered wrongly before the load:\n" + "\n".join(problems))

    targets: list[tuple[Server, str, Path]] = [(idnode, "handle", handle_reqs)]
    knot_server = None
    if knotd is not None:
        knot_server = knot.start_knot(knotd, zone, args.build_dir / "knot" / "run",
                                      cpu=setup.server_cpu, log_path=tmp / "knot.log",
                                      seed=args.seed)  # fmt: skip
        servers.append(knot_server)
        # knotd binds its worker threads to cores itself (worker n to core n mod cores): its one
        # UDP worker would share the generator's core.  Every thread goes to the server core.
        knot_moved = knot_server.pin_threads(setup.server_cpu)
        names = range(1, args.zone_records + 1)
        zsample = sorted({1, args.zone_records, *rng.sample(names, min(len(names), 30))})
        problems = check_knot(knot_server, zsample, args.seed, tcp)
        if problems:
            raise RuntimeError("knot answered wrongly:\n" + "\n".join(problems))
        targets.append((knot_server, "dns", dns_reqs))
    reflector = Server("reflect", [str(setup.gen), "reflect", "--proto", "handle"],
                       r"^reflect: ", cpu=setup.server_cpu, log_path=tmp / "reflect.log",
                       address=r"reflect: ([\d.]+):(\d+)")  # fmt: skip
    servers.append(reflector)
    reflector.pin_threads(setup.server_cpu)

    print(f"idnode: {idnode.banner_line}")
    print(f"hot path: {implementation}" + (" (IDNODE_NO_EXTENSIONS=1)" if args.pure else "")
          + f"; Handle fast path: {fast_path}")  # fmt: skip
    if not args.pure and implementation != "cython":
        print("warning: the Cython extension is not in use; build it with `make build`")
    if knot_server is not None:
        moved = (f"; {knot_moved} of its threads moved to cpu {setup.server_cpu}"
                 if knot_moved else "")  # fmt: skip
        print(f"knot: {knot.version(knotd)}, 127.0.0.1:{knot_server.port}, "
              f"{args.zone_records:,} names, 1 UDP + 1 TCP worker{moved}")  # fmt: skip
    load = (f"window {setup.window}" if setup.transport == "udp"
            else f"{setup.conns} connections × {setup.depth} outstanding")  # fmt: skip
    placement = (f"generator on cpu {setup.gen_cpu}, servers on cpu {setup.server_cpu}"
                 if setup.server_cpu is not None else "not pinned")  # fmt: skip
    print(f"load: {setup.transport.upper()}, {load}, {args.duration:g} s per run, "
          f"{args.rounds} round(s), {placement}")  # fmt: skip

    headroom = _load(setup, reflector, "handle", handle_reqs, args.duration, args)
    print(_round_line("headroom", "reflect", headroom), flush=True)
    reflector.stop()
    servers.remove(reflector)

    if args.warmup > 0:
        for server, proto, reqs in targets:
            _load(setup, server, proto, reqs, args.warmup, args)
    protos = {server.name: (proto, reqs) for server, proto, reqs in targets}

    def measure_one(server: Server, rate: float | None) -> GenResult:
        proto, reqs = protos[server.name]
        return _load(setup, server, proto, reqs, args.duration, args, rate=rate or 0.0)

    servers_only = [server for server, _, _ in targets]
    full: Runs = alternate(servers_only, args.rounds, measure_one, _round_line)
    half: Runs = {s.name: [] for s in servers_only}
    if args.half:
        rates = {name: statistics.median(x.qps for x in rs) / 2 for name, rs in full.items()}
        half = alternate(servers_only, args.rounds, measure_one, _round_line, rates=rates)

    for server, _proto, _reqs in targets:
        if server.pin_threads(setup.server_cpu):
            print(f"warning: threads of {server.name} had left cpu {setup.server_cpu} during the "
                  f"runs; its figures were measured on other cores")  # fmt: skip
    problems = check_idnode(idnode, sample, args.seed, tcp)
    bad = sum(x.bad for x in full["idnode"] + half["idnode"])
    if bad:
        problems.append(f"{bad} answers other than RC_SUCCESS during the load")
    if problems:
        raise RuntimeError("idnode answered wrongly:\n" + "\n".join(problems))
    if knot_server is not None:
        kbad = sum(x.bad for x in full["knot"] + half["knot"])
        if kbad:
            raise RuntimeError(f"knot: {kbad} answers other than NOERROR with an answer")
    return {"implementation": implementation, "fast_path": fast_path, "headroom": headroom,
            "full": full, "half": half,
            "knot_version": knot.version(knotd) if knotd else None}  # fmt: skip


def _medians(rs: list[GenResult]) -> dict:
    if not rs:
        return {}
    return {"qps": round(statistics.median(x.qps for x in rs), 1),
            "p50_ms": _ms(statistics.median(x.p50_us for x in rs)),
            "p99_ms": _ms(statistics.median(x.p99_us for x in rs)),
            "p999_ms": _ms(statistics.median(x.p999_us for x in rs)),
            "cpu_us": statistics.median(x.cpu_us for x in rs),
            "gen_cpu": statistics.median(x.gen_cpu for x in rs),
            "server_core": statistics.median(x.server_core for x in rs),
            "major_faults": sum(x.major_faults for x in rs),
            "lost": sum(x.lost for x in rs), "answered": sum(x.answered for x in rs)}  # fmt: skip


def report(args, setup: Setup, fig: dict) -> tuple[bool, dict]:
    """Print the medians, ratio, verdicts and the JSON line; → (acceptance met, the JSON
    line's figures)."""
    full, half = fig["full"], fig["half"]
    med = {name: _medians(rs) for name, rs in full.items()}
    hmed = {name: _medians(rs) for name, rs in half.items()}
    has_knot = "knot" in med
    labels = {"idnode": f"idnode ({fig['implementation']})", "knot": "Knot DNS"}

    print()
    print(f"{'medians of ' + str(args.rounds):18s} {'q/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s}"
          f" {'CPU µs/q':>9s} {'srv core':>8s} {'gen cores':>9s} │ {'half load':>9s}"
          f" {'p50 ms':>8s} {'p99 ms':>8s}")  # fmt: skip
    for name in med:
        m, h = med[name], hmed.get(name) or {}
        half_cols = (f"{h['qps']:9.0f} {h['p50_ms']:8.3f} {h['p99_ms']:8.3f}" if h
                     else f"{'-':>9s} {'-':>8s} {'-':>8s}")  # fmt: skip
        print(f"{labels[name]:18s} {m['qps']:9.0f} {m['p50_ms']:8.3f} {m['p99_ms']:8.3f}"
              f" {m['cpu_us']:9.1f} {m['server_core']:8.2f} {m['gen_cpu']:9.2f} │"
              f" {half_cols}")  # fmt: skip
    hr = fig["headroom"]
    print(f"{'reflector (C)':18s} {hr.qps:9.0f} {_ms(hr.p50_us):8.3f} {_ms(hr.p99_us):8.3f}"
          f" {hr.cpu_us:9.1f} {hr.server_core:8.2f} {hr.gen_cpu:9.2f} │"
          f" generator headroom, one run")  # fmt: skip

    ratio = paired = cpu_ratio = None
    ok_ratio = False
    if has_knot:
        ratio = med["idnode"]["qps"] / med["knot"]["qps"]
        paired = statistics.median(i.qps / k.qps for i, k in zip(full["idnode"], full["knot"]))
        cpu_ratio = (med["knot"]["cpu_us"] / med["idnode"]["cpu_us"]
                     if med["idnode"]["cpu_us"] else 0.0)  # fmt: skip
        ok_ratio = ratio >= MIN_RATIO
        print(f"ratio idnode/knot  {ratio:9.3f}   (median of per-round ratios {paired:.3f}; "
              f"knot CPU / idnode CPU per query {cpu_ratio:.3f})")  # fmt: skip
    half_p99 = hmed["idnode"]["p99_ms"] if hmed.get("idnode") else None
    ok_p99 = half_p99 is not None and half_p99 <= MAX_HALF_P99_MS
    verdict_ratio = ("PASS" if ok_ratio else "FAIL") if has_knot else "not measured (no Knot)"
    verdict_p99 = ("PASS" if ok_p99 else "FAIL") if half_p99 is not None else "not measured"
    print(f"acceptance: q/s ratio ≥ {MIN_RATIO}: {verdict_ratio}; idnode p99 at half load "
          f"≤ {MAX_HALF_P99_MS:g} ms: {verdict_p99}")  # fmt: skip

    pinned = setup.server_cpu is not None
    for name, m in med.items():
        if pinned and m["server_core"] < SATURATED:
            # The server's core had idle time at maximum load: something else set the pace.
            print(f"warning: at maximum load the core of {name} was busy only "
                  f"{m['server_core']:.0%} of the time, so {m['qps']:.0f} q/s is not its limit "
                  f"(the generator, at {m['gen_cpu']:.2f} cores, or latency set the pace; "
                  f"the reflector run shows what the generator carries: {hr.qps:.0f} q/s)")
        elif m["qps"] > 0.8 * hr.qps:
            print(f"note: {name} reached {m['qps'] / hr.qps:.0%} of what the generator drives "
                  f"against the do-nothing reflector ({hr.qps:.0f} q/s)")  # fmt: skip
    faults = {name: m["major_faults"] for name, m in (*med.items(), *hmed.items()) if m}
    if any(faults.values()):
        print(f"warning: page faults that waited for the disk during the runs: {faults}; "
              f"those requests measured the disk")  # fmt: skip
    noisy = max(x.other_cores for rs in (*full.values(), *half.values()) for x in rs)
    if noisy > NOISY_CORES:
        print(f"warning: up to {noisy:.2f} cores were busy with other work during the runs "
              f"(other processes or the hypervisor); the figures are unreliable — rerun on a "
              f"quiet machine")  # fmt: skip
    for name, rs in (*full.items(), *half.items()):
        lost, answered = sum(x.lost for x in rs), sum(x.answered for x in rs)
        if answered and lost / answered > LOST_WARN:
            print(f"note: {name} lost {lost} of {lost + answered} requests (no answer within "
                  f"{args.timeout_ms:g} ms; UDP datagrams dropped when its socket buffer was "
                  f"full, or a stall)")  # fmt: skip
    doc = {
        "scenario": f"handle-{setup.scenario}", "records": args.records,
        "zone_records": args.zone_records, "implementation": fig["implementation"],
        "handle_fast_path": fig["fast_path"], "knot_version": fig["knot_version"],
        "transport": setup.transport, "window": setup.window, "open_window": setup.open_window,
        "conns": setup.conns, "depth": setup.depth, "duration_s": args.duration,
        "rounds": args.rounds, "pinned": setup.server_cpu is not None,
        "headroom": asdict(hr),
        **{name: {**med[name], "runs": [asdict(x) for x in full[name]],
                  "half": {**hmed[name], "runs": [asdict(x) for x in half[name]]}}
           for name in med},
        "ratio": round(ratio, 4) if ratio is not None else None,
        "paired_ratio": round(paired, 4) if paired is not None else None,
        "cpu_ratio": round(cpu_ratio, 4) if cpu_ratio is not None else None,
        "half_p99_ms": half_p99, "pass_ratio": ok_ratio, "pass_p99": ok_p99,
        "max_other_cores": noisy,
    }  # fmt: skip
    print(json.dumps(doc, separators=(",", ":")))
    return ok_ratio and ok_p99, doc


def run(scenario: str, argv: list[str] | None) -> int:
    return collect(scenario, argv)[0]


def collect(scenario: str, argv: list[str] | None = None) -> tuple[int, dict | None]:
    """Run ``handle-<scenario>`` as its ``main_*`` does; → (exit status, the JSON line's
    figures, or None when nothing was measured).  ``python -m bench report`` uses it."""
    args = _parser(scenario).parse_args(argv)
    transport, _conns, _depth = SCENARIOS[scenario]
    if not 1 <= args.records <= data.MAX_RECORDS or not 1 <= args.zone_records <= data.MAX_RECORDS:
        print(f"--records and --zone-records must be between 1 and {data.MAX_RECORDS}",
              file=sys.stderr)  # fmt: skip
        return 2, None
    window, open_window = getattr(args, "window", 0), getattr(args, "open_window", 0)
    conns, depth = getattr(args, "conns", 0), getattr(args, "depth", 1)
    sizes = (window, open_window) if transport == "udp" else (conns, depth)
    if args.rounds < 1 or args.duration <= 0 or args.pool < 1 or min(sizes) < 1:
        print("need rounds, pool, windows, connections and depth ≥ 1, duration > 0",
              file=sys.stderr)  # fmt: skip
        return 2, None
    knotd = knot.find_knotd(args.knotd)
    try:
        gen = build_loadgen(args.build_dir, args.cc)
    except ToolMissing as exc:
        print(exc, file=sys.stderr)
        return 2, None
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"bench handle-{scenario}: {exc}", file=sys.stderr)
        return 1, None
    gen_cpu, server_cpu = pins(args.pin)
    setup = Setup(scenario, transport, window, open_window, conns, depth, gen, gen_cpu,
                  server_cpu)  # fmt: skip

    print(f"bench handle-{scenario}: {machine()}; {versions(('uvloop', 'lmdb'))}")
    if knotd is None:
        print(f"note: {knot.INSTALL_KNOT}\nnote: measuring idnode alone; no ratio, exit status 2.")
    tmp = Path(tempfile.mkdtemp(prefix="idnode-bench-"))
    servers: list[Server] = []
    locks: list[MemoryLock] = []
    try:
        fig = measure(args, setup, tmp, servers, knotd, locks)
    except (RuntimeError, ValueError, OSError, subprocess.SubprocessError) as exc:
        print(f"bench handle-{scenario}: {exc}", file=sys.stderr)
        return 1, None
    finally:
        stop_servers(servers)
        for lock in locks:
            lock.close()
        shutil.rmtree(tmp, ignore_errors=True)
    ok, doc = report(args, setup, fig)
    if knotd is None:
        print(f"bench handle-{scenario}: Knot DNS is missing — idnode measured alone; "
              f"install it: sudo apt-get install -y knot", file=sys.stderr)  # fmt: skip
        return 2, doc
    return (3 if args.strict and not ok else 0), doc


def main_udp(argv: list[str] | None = None) -> int:
    return run("udp", argv)


def main_tcp(argv: list[str] | None = None) -> int:
    return run("tcp", argv)


def main_tcp_pipelined(argv: list[str] | None = None) -> int:
    return run("tcp-pipelined", argv)
