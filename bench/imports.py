"""``python -m bench import``: bulk registration end to end — ``idnode import`` against a node.

What the issue 5 acceptance asks, measured in one run per format (JSON Lines, then CSV), each on
a fresh node whose store holds the enterprise ``88.118.8`` and 10,000 live identifiers:

* identifiers/s from the start of ``idnode import FILE --server URL`` to its exit (the CLI
  streams the file, the node parses, checks, encodes and commits it, the CLI prints its report);
* the node's peak memory: every process of its session sampled every 100 ms (VmRSS, and the
  anonymous part RssAnon, which excludes the store's file pages mapped by LMDB);
* the longest gap between two progress updates of the CLI's bar (stderr);
* resolution while the import runs: Handle UDP resolutions of the live identifiers sent open
  loop at ``--rate`` per second for exactly as long as the import lasts (bench/loadgen.c,
  stopped by SIGTERM when the CLI exits), p50/p99/max latency and losses.

The inputs are generated once into bench/.build/import/ (N identifiers × 3 values: a URL that
varies, an EMAIL and a DESC).  The job is checked afterwards through ``GET /api/v1/imports``:
every identifier committed, no line failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import orjson
import requests

from bench.common import HTTP_ADDRESS, Server, idnode_argv, machine, versions
from bench.data import BUILD_DIR
from bench.handle import HANDLE_ADDRESS, build_loadgen, handle_request, write_requests

PREFIX = "88.118.8"
SECRET = "bench import secret"
LIVE = 10_000
ALL = "011111111111"


def _admin() -> dict:
    return {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
        "handle": f"0.NA/{PREFIX}", "index": 200, "permissions": ALL}}}  # fmt: skip


def seed_lines() -> list[dict]:
    """The enterprise (prefix handle, admin group, identity with HS_SECKEY) and live records."""
    out = [{"handle": f"0.NA/{PREFIX}", "values": [_admin(), {
               "index": 200, "type": "HS_VLIST", "data": {"format": "vlist", "value": [
                   {"handle": f"{PREFIX}/ADMIN", "index": 300}]}}]},
           {"handle": f"{PREFIX}/ADMIN", "values": [_admin(), {
               "index": 300, "type": "HS_SECKEY", "data": SECRET, "permissions": "1100"}]}]
    out += [{"handle": f"{PREFIX}/LIVE-{i}", "values": [
        {"index": 1, "type": "URL", "data": f"https://trace.example-factory.cn/live/{i}"}]}
        for i in range(LIVE)]  # fmt: skip
    return out


def _row(i: int) -> tuple[str, str, str, str]:
    return (f"{PREFIX}/SN-2026-{i:07d}", f"https://trace.example-factory.cn/p/SN-2026-{i:07d}",
            "quality@example-factory.cn", f"Li-ion battery pack, model X{i % 100:02d}")


def ensure_inputs(n: int, build_dir: Path) -> dict[str, Path]:
    """``{"jsonl": path, "csv": path}`` of n identifiers each, generated on first use."""
    base = build_dir / "import"
    base.mkdir(parents=True, exist_ok=True)
    paths = {"jsonl": base / f"products-{n}.jsonl", "csv": base / f"products-{n}.csv"}
    if not paths["jsonl"].exists():
        tmp = paths["jsonl"].with_suffix(".partial")
        with open(tmp, "wb") as fh:
            for i in range(n):
                h, url, mail, desc = _row(i)
                fh.write(orjson.dumps({"handle": h, "values": [
                    {"index": 1, "type": "URL", "data": url},
                    {"index": 2, "type": "EMAIL", "data": mail},
                    {"index": 3, "type": "DESC", "data": desc}]}) + b"\n")  # fmt: skip
        os.replace(tmp, paths["jsonl"])
    if not paths["csv"].exists():
        tmp = paths["csv"].with_suffix(".partial")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write("handle,1:URL,2:EMAIL,3:DESC\n")
            for i in range(n):
                h, url, mail, desc = _row(i)
                fh.write(f'{h},{url},{mail},"{desc}"\n')
        os.replace(tmp, paths["csv"])
    return paths


class MemorySampler(threading.Thread):
    """Peak VmRSS / RssAnon of every process of a server, and of their sum, every 100 ms."""

    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.stop = threading.Event()
        self.peak_process = self.peak_sum = self.peak_anon = self.peak_anon_sum = 0

    def run(self) -> None:
        while not self.stop.is_set():
            total = anon_total = 0
            for pid in self.server.pids():
                rss, anon = _memory(pid)
                total += rss
                anon_total += anon
                self.peak_process = max(self.peak_process, rss)
                self.peak_anon = max(self.peak_anon, anon)
            self.peak_sum = max(self.peak_sum, total)
            self.peak_anon_sum = max(self.peak_anon_sum, anon_total)
            self.stop.wait(0.1)


def _memory(pid: int) -> tuple[int, int]:
    rss = anon = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, anon


def _progress_gaps(stream, times: list[float]) -> None:
    """Record when the CLI's bar redraws (tqdm ends each redraw with '\\r' or a line break)."""
    while True:
        data = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
        if not data:
            return
        if b"\r" in data or b"\n" in data:
            times.append(time.monotonic())


def run_one(fmt: str, path: Path, n: int, args, gen: Path, tmp: Path) -> dict:
    data = tmp / f"data-{fmt}"
    seed = tmp / "seed.jsonl"
    seed.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in seed_lines()))
    env = dict(os.environ)
    env.pop("IDNODE_NO_EXTENSIONS", None)
    if args.pure:
        env["IDNODE_NO_EXTENSIONS"] = "1"
    subprocess.run([*idnode_argv(), "load", "--data", str(data), str(seed)], check=True,
                   env=env, capture_output=True, timeout=300)  # fmt: skip
    serve = [*idnode_argv(), "serve", "--data", str(data), "--workers", str(args.workers),
             "--host", "127.0.0.1", "--http-port", "0", "--handle-port", "0"]  # fmt: skip
    node = Server("idnode", serve, HANDLE_ADDRESS, env=env, log_path=tmp / f"idnode-{fmt}.log",
                  address=HANDLE_ADDRESS)  # fmt: skip
    try:
        http_port = int(re.search(HTTP_ADDRESS, node.banner_line).group(2))
        base = f"http://127.0.0.1:{http_port}"
        _wait_http(base)
        reqs = tmp / "live.requests"
        write_requests(reqs, (handle_request(f"{PREFIX}/LIVE-{i}", i) for i in range(LIVE)))
        secret = tmp / "secret"
        secret.write_text(SECRET)
        loadgen = subprocess.Popen(
            [str(gen), "run", "--proto", "handle", "--transport", "udp",
             "--target", f"{node.host}:{node.port}", "--requests", str(reqs),
             "--duration", "3600", "--rate", str(args.rate), "--window", "256",
             "--timeout-ms", "1000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        time.sleep(1.0)  # the generator's sockets are up and answers flow before the import
        sampler = MemorySampler(node)
        sampler.start()
        key = str(uuid.uuid4())
        cli = [*idnode_argv(), "import", str(path), "--prefix", PREFIX, "--format", fmt,
               "--server", base, "--auth", f"300:{PREFIX}/ADMIN", "--secret-file", str(secret),
               "--key", key]  # fmt: skip
        cpu0 = node.cpu_seconds()
        t0 = time.monotonic()
        proc = subprocess.Popen(cli, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        ticks: list[float] = [t0]
        reader = threading.Thread(target=_progress_gaps, args=(proc.stderr, ticks), daemon=True)
        reader.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        t1 = time.monotonic()
        proc.returncode = os.waitstatus_to_exitcode(status)
        node_cpu = node.cpu_seconds() - cpu0
        loadgen.send_signal(signal.SIGTERM)
        out, err = loadgen.communicate(timeout=30)
        sampler.stop.set()
        sampler.join()
        reader.join(5)
        stdout = proc.stdout.read().decode("utf-8", "replace")
        if proc.returncode != 0:
            raise RuntimeError(f"idnode import exited {proc.returncode}:\n{stdout[-2000:]}")
        job = requests.get(f"{base}/api/v1/imports", params={"key": key}, timeout=30,
                           auth=(f"300%3A{PREFIX}/ADMIN", SECRET)).json()  # fmt: skip
        if (job.get("committed"), job.get("failed"), job.get("state")) != (n, 0, "done"):
            raise RuntimeError(f"the import did not commit every line: {json.dumps(job)[:500]}")
        try:
            res = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(f"loadgen printed no result ({loadgen.returncode}): "
                               f"{out.decode()[-500:]} {err.decode()[-500:]}") from None
        ticks.append(t1)
        wall = t1 - t0
        return {
            "format": fmt, "identifiers": n, "seconds": round(wall, 2),
            "rate": round(n / wall), "node_cpu_s": round(node_cpu, 1),
            "cli_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_process_mb": round(sampler.peak_process / 2**20),
            "peak_rss_sum_mb": round(sampler.peak_sum / 2**20),
            "peak_anon_process_mb": round(sampler.peak_anon / 2**20),
            "peak_anon_sum_mb": round(sampler.peak_anon_sum / 2**20),
            "max_progress_gap_s": round(max(b - a for a, b in zip(ticks, ticks[1:])), 2),
            "resolve_rate": args.rate, "resolve_answered": res["answered"],
            "resolve_lost": res["lost"], "resolve_bad": res["bad"],
            "resolve_p50_ms": res["p50_us"] / 1000, "resolve_p99_ms": res["p99_us"] / 1000,
            "resolve_max_ms": res["max_us"] / 1000,
        }  # fmt: skip
    finally:
        node.stop()


def _wait_http(base: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(f"{base}/api/handles/0.NA/{PREFIX}", timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.05)
    raise RuntimeError("the node does not answer HTTP")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench import", description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=1_000_000, help="identifiers per import")
    p.add_argument("--formats", default="jsonl,csv", help="comma-separated: jsonl, csv")
    p.add_argument("--workers", type=int, default=2, help="node workers (default 2)")
    p.add_argument("--rate", type=int, default=2000,
                   help="Handle UDP resolutions per second during the import")
    p.add_argument("--pure", action="store_true", help="the node without its Cython extension")
    p.add_argument("--build-dir", type=Path, default=BUILD_DIR)
    p.add_argument("--cc", default="cc")
    return p


def main(argv: list[str] | None = None) -> int:
    return collect(argv)[0]


def collect(argv: list[str] | None = None) -> tuple[int, dict | None]:
    """Run the scenario as ``main`` does; → (exit status, ``{"scenario": "import", options…,
    "rows": [one dict per format, as printed]}``, or None when nothing was measured)."""
    args = _parser().parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    if args.count < 1 or not set(formats) <= {"jsonl", "csv"} or not formats:
        print("need --count ≥ 1 and --formats among jsonl,csv", file=sys.stderr)
        return 2, None
    gen = build_loadgen(args.build_dir, args.cc)
    print(f"bench import: {machine()}; {versions(('uvloop', 'lmdb', 'orjson'))}")
    inputs = ensure_inputs(args.count, args.build_dir)
    tmp = Path(tempfile.mkdtemp(prefix="idnode-bench-import-"))
    rows = []
    try:
        for fmt in formats:
            row = run_one(fmt, inputs[fmt], args.count, args, gen, tmp)
            rows.append(row)
            print(json.dumps(row), flush=True)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"bench import: {exc}", file=sys.stderr)
        return 1, None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print("| format | identifiers/s | seconds | node peak RSS (largest process / sum) | "
          "anon RSS (largest / sum) | longest progress gap | resolution p50 / p99 / max "
          "during import |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['format']} | **{r['rate']:,}** | {r['seconds']} | "
              f"{r['peak_rss_process_mb']} / {r['peak_rss_sum_mb']} MB | "
              f"{r['peak_anon_process_mb']} / {r['peak_anon_sum_mb']} MB | "
              f"{r['max_progress_gap_s']} s | {r['resolve_p50_ms']:.2f} / "
              f"{r['resolve_p99_ms']:.2f} / {r['resolve_max_ms']:.1f} ms at {r['resolve_rate']}/s "
              f"({r['resolve_lost']} lost) |")
    return 0, {"scenario": "import", "count": args.count, "workers": args.workers,
               "rate": args.rate, "pure": args.pure, "rows": rows}
