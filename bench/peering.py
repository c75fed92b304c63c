"""``python -m bench peering``: resolution latency of foreign identifiers through a secondary
node's recursion (issue 7 §3–4), cold (upstream) and warm (the node's answer cache).

Three ``idnode serve`` processes on 127.0.0.1, started here and stopped at the end:

* **B** (secondary) homes ``88.119.5`` and holds ``--records`` identifiers
  ``88.119.5/P-000000`` … (a URL that varies and an EMAIL each, TTL 1 day);
* **T** (top-level) holds ``0.NA/88.119.5`` with an HS_SITE naming B;
* **A** (secondary, the demo data) with ``[upstream] servers = [T]`` and ``recursion = true``:
  its workers forward to its upstream agent, which locates the prefix at T, asks B, caches.

One client, sequential requests (one outstanding at a time) over Handle UDP with REC set
(``resolver.upstream.client.prepare`` builds them beforehand; a blocking connected socket sends
them).  A warm-up identifier outside the measured set is resolved first, so A's worker link is
connected and ``88.119.5``'s site info is cached.  Then ``--count`` distinct random identifiers:

1. **cold** — each asked of A once: A's agent asks B (one upstream query each);
2. **warm** — the same identifiers again, same order: answered from A's cache;
3. **direct** — the same identifiers asked of B itself without REC: what B's own answer costs,
   the floor under a cold resolution.

Every answer is checked (RC 1, the URL B holds for it); A's ``upstream-status.json`` counters are
read after each of A's phases to confirm what it was (cold: one upstream query per identifier;
warm: none, one cache hit each).  Prints p50/p90/p99/max/mean per phase, a table and a JSON line.
Exit status: 0 measured; 1 a node failed to start or answered wrongly; 2 bad options.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import Server, idnode_argv, machine, stop_servers, versions
from bench.handle import HANDLE_ADDRESS
from resolver.errors import IdnodeError
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import Message, ResolutionRequest
from resolver.upstream.agent import STATUS_FILE
from resolver.upstream.client import DEFAULT_FLAGS, PreparedRequest, prepare

PREFIX = "88.119.5"
HOST = "127.0.0.1"
TS = "2026-01-01T00:00:00Z"


def handle(i: int) -> str:
    return f"{PREFIX}/P-{i:06d}"


def url(i: int) -> str:
    return f"https://b.example/{PREFIX}/products/{i * 7919 % 1000003:07d}"


def b_lines(n: int) -> list[dict]:
    out = [{"handle": f"0.NA/{PREFIX}", "values": [
        {"index": 2, "type": "DESC", "data": "homed at B", "timestamp": TS}]}]  # fmt: skip
    out += [{"handle": handle(i), "values": [
        {"index": 1, "type": "URL", "data": url(i), "ttl": 86400, "timestamp": TS},
        {"index": 2, "type": "EMAIL", "data": "ops@b.example", "ttl": 86400, "timestamp": TS}]}
        for i in range(n)]  # fmt: skip
    return out


def t_lines(b_port: int) -> list[dict]:
    site = {"version": 1, "protocolVersion": "2.11", "serialNumber": 1, "primarySite": True,
            "multiPrimary": False, "attributes": [{"name": "desc", "value": "B"}],
            "servers": [{"serverId": 1, "address": HOST,
                         "publicKey": {"format": "base64", "value": ""},
                         "interfaces": [
                             {"query": True, "admin": True, "protocol": "TCP", "port": b_port},
                             {"query": True, "admin": False, "protocol": "UDP",
                              "port": b_port}]}]}  # fmt: skip
    return [{"handle": f"0.NA/{PREFIX}", "values": [
        {"index": 1, "type": "HS_SITE", "data": {"format": "site", "value": site},
         "ttl": 86400, "timestamp": TS}]}]  # fmt: skip


def load(data: Path, lines: list[dict], env: dict) -> None:
    src = data.with_name(data.name + ".jsonl")
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    subprocess.run([*idnode_argv(), "load", "--data", str(data), str(src)], check=True, env=env,
                   capture_output=True, timeout=600)  # fmt: skip


def start(name: str, data: Path, tmp: Path, env: dict, *extra: str,
          config: str | None = None) -> Server:  # fmt: skip
    argv = [*idnode_argv(), "serve", "--data", str(data), "--host", HOST, "--http-port", "0",
            "--handle-port", "0", *extra]  # fmt: skip
    if config is not None:
        cfg = tmp / f"{name}.toml"
        cfg.write_text(config)
        argv += ["--config", str(cfg)]
    return Server(name, argv, HANDLE_ADDRESS, env=env, log_path=tmp / f"{name}.log",
                  address=HANDLE_ADDRESS)  # fmt: skip


# -- the client --------------------------------------------------------------------------------
def request(name: str, recursive: bool) -> PreparedRequest:
    flags = DEFAULT_FLAGS if recursive else DEFAULT_FLAGS & ~C.FLAG_RECURSIVE
    return prepare(C.OpCode.RESOLUTION, ResolutionRequest(name.encode(), (), ()), opflags=flags)


def exchange(sock: socket.socket, req: PreparedRequest, timeout: float) -> Message | None:
    """Send ``req`` once; the reply with its request id, or None after ``timeout`` s.  Late
    replies to earlier requests (other ids) are skipped."""
    sock.send(req.wire)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            data = sock.recv(65535)
        except TimeoutError:
            return None
        try:
            msg = Message.from_wire(data)
        except IdnodeError:
            continue  # not a whole message: no answer
        if msg.envelope.request_id == req.request_id and msg.is_response:
            return msg


def check(msg: Message | None, i: int) -> str | None:
    """None when ``msg`` is the right answer for identifier ``i``, else what is wrong."""
    if msg is None:
        return None  # lost: counted apart
    if msg.header.rc != 1:
        return f"{handle(i)}: RC {msg.header.rc}"
    got = {v.index: v.data for v in msg.body.values}
    if got.get(1) != url(i).encode():
        return f"{handle(i)}: URL {got.get(1)!r}, not {url(i)!r}"
    return None


def phase(server: Server, ids: list[int], recursive: bool, timeout: float) -> dict:
    """Ask ``server`` for each identifier in turn; latencies in µs and the counts."""
    reqs = [request(handle(i), recursive) for i in ids]
    lat: list[float] = []
    lost, bad = 0, []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((server.host, server.port))
        t_start = time.monotonic()
        for i, req in zip(ids, reqs):
            t0 = time.perf_counter_ns()
            msg = exchange(sock, req, timeout)
            t1 = time.perf_counter_ns()
            if msg is None:
                lost += 1
                continue
            lat.append((t1 - t0) / 1000)
            problem = check(msg, i)
            if problem:
                bad.append(problem)
        wall = time.monotonic() - t_start
    return {"queries": len(ids), "answered": len(lat), "lost": lost, "bad": len(bad),
            "problems": bad[:5], "seconds": round(wall, 3), **percentiles(lat)}  # fmt: skip


def percentiles(lat: list[float]) -> dict:
    if not lat:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    s = sorted(lat)

    def q(p: float) -> float:  # nearest rank
        return round(s[min(len(s) - 1, max(0, int(round(p * len(s) + 0.5)) - 1))] / 1000, 3)

    return {"p50_ms": q(0.50), "p90_ms": q(0.90), "p99_ms": q(0.99),
            "max_ms": round(s[-1] / 1000, 3), "mean_ms": round(statistics.fmean(s) / 1000, 3)}


def wait_answer(server: Server, name: str, recursive: bool, timeout: float = 30.0) -> float:
    """Ask until ``name`` is answered RC 1 (the node is up); → the last answer's latency (s)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect((server.host, server.port))
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                msg = exchange(sock, request(name, recursive), 1.0)
            except ConnectionRefusedError:
                msg = None
            if msg is not None and msg.header.rc == 1:
                return time.perf_counter() - t0
            time.sleep(0.05)
    raise RuntimeError(f"{server.name} did not answer {name} within {timeout:g} s; its log:\n"
                       f"{server.log()}")  # fmt: skip


def counters_after(data: Path, t: float, timeout: float = 5.0) -> dict:
    """A's agent counters from the first status file written after UNIX time ``t``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            doc = json.loads((data / STATUS_FILE).read_text())
            if doc["time"] > t:
                return doc["counters"]
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise RuntimeError("A's upstream agent wrote no status file")


# -- main ----------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench peering",
                                description=__doc__.split("\n")[0])  # fmt: skip
    p.add_argument("--records", type=int, default=10_000, help="identifiers at B (10,000)")
    p.add_argument("--count", type=int, default=2_000,
                   help="distinct identifiers asked per phase (2,000)")  # fmt: skip
    p.add_argument("--workers", type=int, default=1, help="A's workers (1)")
    p.add_argument("--timeout", type=float, default=3.0,
                   help="seconds to wait for one answer before counting it lost (3)")  # fmt: skip
    p.add_argument("--seed", type=int, default=1, help="choice and order of identifiers (1)")
    p.add_argument("--no-direct", dest="direct", action="store_false",
                   help="skip the phase asking B directly")  # fmt: skip
    p.add_argument("--pure", action="store_true",
                   help="run the nodes with IDNODE_NO_EXTENSIONS=1 (pure hot path)")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    return collect(argv)[0]


def collect(argv: list[str] | None = None) -> tuple[int, dict | None]:
    """Run the scenario as ``main`` does; → (exit status, the JSON line's figures, or None
    when nothing was measured).  ``python -m bench report`` gathers scenarios through it."""
    args = _parser().parse_args(argv)
    if not 1 <= args.count < args.records or args.workers < 1 or args.timeout <= 0:
        print("need 1 ≤ --count < --records, --workers ≥ 1, --timeout > 0", file=sys.stderr)
        return 2, None
    env = dict(os.environ)
    env.pop("IDNODE_NO_EXTENSIONS", None)
    if args.pure:
        env["IDNODE_NO_EXTENSIONS"] = "1"
    rng = random.Random(args.seed)
    warmup = args.records - 1  # never measured
    ids = rng.sample(range(args.records - 1), args.count)
    print(f"bench peering: {machine()}; {versions(('uvloop', 'lmdb', 'cbor2'))}", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="idnode-bench-peering-"))
    servers: list[Server] = []
    off = ("--dns-port", "-1")
    try:
        t0 = time.monotonic()
        load(tmp / "b", b_lines(args.records), env)
        b = start("B", tmp / "b", tmp, env, *off)
        servers.append(b)
        wait_answer(b, handle(0), recursive=False)
        load(tmp / "t", t_lines(b.port), env)
        t = start("T", tmp / "t", tmp, env, *off, config='[node]\nrole = "top-level"\n')
        servers.append(t)
        wait_answer(t, f"0.NA/{PREFIX}", recursive=False)
        subprocess.run([*idnode_argv(), "load", "--data", str(tmp / "a"),
                        str(Path(__file__).resolve().parent.parent / "registry" / "demo.jsonl")],
                       check=True, env=env, capture_output=True, timeout=300)  # fmt: skip
        a = start("A", tmp / "a", tmp, env, "--workers", str(args.workers), "--dns-port", "0",
                  config=f'[upstream]\nservers = ["{HOST}:{t.port}"]\nrecursion = true\n')
        servers.append(a)
        first_s = wait_answer(a, handle(warmup), recursive=True)
        m = re.search(r"(\w+) hot path", a.banner_line)
        implementation = m.group(1) if m else "unknown"
        print(f"nodes up in {time.monotonic() - t0:.1f} s: T {HOST}:{t.port} (top-level), "
              f"B {HOST}:{b.port} ({args.records:,} identifiers under {PREFIX}), "
              f"A {HOST}:{a.port} ({args.workers} worker(s), upstream T, recursion on); "
              f"hot path {implementation}" + (" (IDNODE_NO_EXTENSIONS=1)" if args.pure else ""),
              flush=True)  # fmt: skip
        print(f"warm-up: {handle(warmup)} through A in {first_s * 1000:.2f} ms "
              "(0.NA/88.119.5 at T, then B)", flush=True)

        results: dict[str, dict] = {}
        c0 = counters_after(tmp / "a", time.time())
        results["cold"] = phase(a, ids, True, args.timeout)
        c1 = counters_after(tmp / "a", time.time())
        results["warm"] = phase(a, ids, True, args.timeout)
        c2 = counters_after(tmp / "a", time.time())
        for name, before, after in (("cold", c0, c1), ("warm", c1, c2)):
            for key in ("upstream_queries", "cache_hits"):
                results[name][key] = after[key] - before[key]
        if args.direct:
            results["direct"] = phase(b, ids, False, args.timeout)
        for s in servers:
            if not s.alive():
                raise RuntimeError(f"{s.name} died during the run; its log:\n{s.log()}")
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"bench peering: {exc}", file=sys.stderr)
        return 1, None
    finally:
        stop_servers(servers)
        shutil.rmtree(tmp, ignore_errors=True)
    return report(args, results, implementation, first_s)


LABELS = {"cold": "cold: A → upstream (B)", "warm": "warm: A's cache",
          "direct": "direct: B itself, no REC"}  # fmt: skip


def _ms(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def report(args, results: dict, implementation: str,
           first_s: float) -> tuple[int, dict]:  # fmt: skip
    """Print the table, warnings and the JSON line; → (exit status, the JSON line's figures)."""
    print()
    print("| phase | queries | p50 ms | p90 ms | p99 ms | max ms | mean ms | lost | "
          "upstream queries | cache hits |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {LABELS[name]} | {r['answered']:,}/{r['queries']:,} | {_ms(r['p50_ms'])} | "
              f"{_ms(r['p90_ms'])} | {_ms(r['p99_ms'])} | {_ms(r['max_ms'])} | "
              f"{_ms(r['mean_ms'])} | {r['lost']} | {r.get('upstream_queries', '-')} | "
              f"{r.get('cache_hits', '-')} |")  # fmt: skip
    problems = [p for r in results.values() for p in r["problems"]]
    cold, warm = results["cold"], results["warm"]
    notes = []
    if cold["upstream_queries"] != cold["answered"] + cold["lost"]:
        notes.append(f"cold: {cold['upstream_queries']} upstream queries for "
                     f"{cold['queries']} identifiers (expected one each)")  # fmt: skip
    if warm["upstream_queries"] != 0:
        notes.append(f"warm: {warm['upstream_queries']} upstream queries (expected none)")
    if any(r["lost"] for r in results.values()):
        notes.append("answers were lost (no reply within --timeout): latencies leave them out")
    for note in notes:
        print(f"warning: {note}")
    doc = {"scenario": "peering", "records": args.records, "count": args.count,
           "workers": args.workers, "pure": args.pure, "seed": args.seed,
           "hot_path": implementation, "warmup_ms": round(first_s * 1000, 3),
           "phases": {k: {x: y for x, y in v.items() if x != "problems"}
                      for k, v in results.items()},
           "problems": problems, "warnings": notes}  # fmt: skip
    print(json.dumps(doc))
    if problems:
        print("wrong answers:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1, doc
    return 0, doc
