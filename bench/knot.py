"""Knot DNS as the native-server yardstick of the Handle benchmarks: zone, config, process.

``ensure_zone(n)`` writes (or reuses) a zone ``id.example.`` holding, for identifier ``i`` of
``bench.data``, the name ``sn-2026-0000001.88-118-8.id.example.`` with two TXT records: the URL
``bench.data`` stores for it and the contact e-mail — the data of the Handle record, so both
servers look up one key among many and send an answer of similar size.  ``start_knot`` writes a
configuration with one UDP, one TCP and one background worker listening on 127.0.0.1 only, its
run and storage directories under ``bench/.build/knot/``, and runs ``knotd`` in the foreground as
a ``bench.common.Server``; it returns once Knot answers (knotd pins its worker threads to cores
itself; the caller moves them with ``Server.pin_threads``).  Also the DNS wire bits the benchmark
needs: ``query`` (a TXT question) and ``txt_answer`` (checks an answer, returns its strings).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

from bench import data
from bench.common import Server

ZONE = "id.example."
DEFAULT_RECORDS = 100_000
ZONE_VERSION = 1  # bump when the zone's content changes, so cached zones are rewritten
EMAIL = "quality@example-factory.cn"
QTYPE_TXT = 16
INSTALL_KNOT = (
    "Knot DNS (knotd) is not installed; it is the native-server yardstick of this benchmark.\n"
    "Install it, e.g. on Debian or Ubuntu:\n"
    "    sudo apt-get update && sudo apt-get install -y knot\n"
    "(the package's system service is not needed: the benchmark runs its own knotd on a free\n"
    "port of 127.0.0.1), or pass the path of knotd with --knotd PATH."
)


def owner(i: int) -> str:
    """The DNS name of identifier ``i``: ``sn-2026-0000001.88-118-8.id.example.``."""
    return f"{data.SUFFIX_FORMAT.format(i).lower()}.{data.PREFIX.replace('.', '-')}.{ZONE}"


def find_knotd(explicit: str | None = None) -> str | None:
    if explicit:
        return shutil.which(explicit) or (explicit if os.access(explicit, os.X_OK) else None)
    # Debian installs it in /usr/sbin, which is not on every user's PATH.
    return shutil.which("knotd") or shutil.which("knotd", path="/usr/sbin:/usr/local/sbin")


def version(knotd: str) -> str:
    try:
        out = subprocess.run([knotd, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "knotd ?"
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else "knotd ?"


# -- zone --------------------------------------------------------------------------------------
def _zone_marker(n: int, seed: int) -> dict:
    return {"records": n, "seed": seed, "zone": ZONE_VERSION, "generator": data.GENERATOR_VERSION}


def ensure_zone(n: int, seed: int = data.DEFAULT_SEED, *, build_dir: Path = data.BUILD_DIR,
                log=print) -> Path:  # fmt: skip
    """The zone file of ``n`` identifiers, written when missing or stale."""
    if not 1 <= n <= data.MAX_RECORDS:
        raise ValueError(f"zone records must be between 1 and {data.MAX_RECORDS}")
    zdir = Path(build_dir) / "knot"
    zdir.mkdir(parents=True, exist_ok=True)
    name = f"id.example-{n}" if seed == data.DEFAULT_SEED else f"id.example-{n}-seed{seed}"
    path = zdir / f"{name}.zone"
    marker = path.with_name(path.name + ".json")
    with contextlib.suppress(OSError, ValueError):
        if json.loads(marker.read_text()) == _zone_marker(n, seed) and path.is_file():
            log(f"zone: reusing {path} ({n:,} names)")
            return path
    t0 = time.perf_counter()
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(f"; Written by bench/knot.py: {n} identifiers of bench/data.py as TXT records.\n"
                 f"$ORIGIN {ZONE}\n$TTL 3600\n"
                 f"@ SOA ns1.{ZONE} hostmaster.{ZONE} 1 3600 900 604800 300\n"
                 f"@ NS ns1.{ZONE}\nns1 A 127.0.0.1\n")  # fmt: skip
        tail = "." + ZONE
        for i in range(1, n + 1):
            fh.write(f'{owner(i)[: -len(tail)]} TXT "{data.url_for(i, seed)}"\n  TXT "{EMAIL}"\n')
    os.replace(tmp, path)
    marker.write_text(json.dumps(_zone_marker(n, seed)) + "\n")
    log(f"zone: wrote {n:,} names to {path} in {time.perf_counter() - t0:.1f} s")
    return path


# -- DNS wire ----------------------------------------------------------------------------------
def query(name: str, qid: int = 0, qtype: int = QTYPE_TXT) -> bytes:
    """A DNS query for ``name`` (no recursion wanted, no EDNS): one UDP datagram."""
    qname = b"".join(bytes([len(label)]) + label.encode("ascii")
                     for label in name.rstrip(".").split(".")) + b"\0"  # fmt: skip
    return struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + qname + struct.pack(">HH", qtype, 1)


def _skip_name(msg: bytes, off: int) -> int:
    while True:
        length = msg[off]
        if length == 0:
            return off + 1
        if length & 0xC0 == 0xC0:
            return off + 2
        off += 1 + length


def txt_answer(msg: bytes, qid: int) -> list[str]:
    """The TXT strings of an answer to query ``qid``; raises ValueError unless it is a NOERROR
    response with at least one answer."""
    if len(msg) < 12:
        raise ValueError("short DNS message")
    rid, flags, qd, an, _ns, _ar = struct.unpack_from(">HHHHHH", msg)
    if rid != qid or not flags & 0x8000 or flags & 0x000F or flags & 0x0200 or an < 1:
        raise ValueError(f"DNS answer id {rid} flags {flags:#06x} answers {an}")
    off = 12
    for _ in range(qd):
        off = _skip_name(msg, off) + 4
    out = []
    for _ in range(an):
        off = _skip_name(msg, off)
        rtype, _cls, _ttl, rdlen = struct.unpack_from(">HHIH", msg, off)
        off += 10
        rdata, off = msg[off : off + rdlen], off + rdlen
        if rtype != QTYPE_TXT:
            continue
        pos = 0
        while pos < len(rdata):
            out.append(rdata[pos + 1 : pos + 1 + rdata[pos]].decode("utf-8", "replace"))
            pos += 1 + rdata[pos]
    return out


def ask(host: str, port: int, name: str, *, tcp: bool = False, timeout: float = 1.0) -> list[str]:
    """One TXT lookup over UDP or TCP; → the answer's strings (ValueError/OSError on failure)."""
    qid = int.from_bytes(os.urandom(2), "big") or 1
    msg = query(name, qid)
    if tcp:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">H", len(msg)) + msg)
            buf = b""
            while len(buf) < 2 or len(buf) < 2 + struct.unpack_from(">H", buf)[0]:
                chunk = s.recv(65536)
                if not chunk:
                    raise ValueError("connection closed before the answer")
                buf += chunk
            return txt_answer(buf[2:], qid)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(msg, (host, port))
        while True:
            reply = s.recv(65536)
            if len(reply) >= 2 and struct.unpack_from(">H", reply)[0] == qid:
                return txt_answer(reply, qid)


# -- the server --------------------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on ``host`` right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind((host, 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both TCP and UDP")


def write_config(workdir: Path, zone_file: Path, port: int, host: str = "127.0.0.1") -> Path:
    workdir, zone_file = Path(workdir).resolve(), Path(zone_file).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "knot.conf"
    conf.write_text(f"""\
# Written by bench/knot.py for one run: one worker of each kind, 127.0.0.1 only.
server:
    rundir: "{workdir}"
    pidfile: "{workdir}/knot.pid"
    listen: {host}@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1

control:
    listen: "{workdir}/knot.sock"

log:
  - target: stderr
    any: notice

database:
    storage: "{workdir}"

template:
  - id: default
    storage: "{zone_file.parent}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
    semantic-checks: off

zone:
  - domain: {ZONE}
    file: "{zone_file.name}"
""")
    return conf


def start_knot(knotd: str, zone_file: Path, workdir: Path, *, cpu=None, log_path: Path,
               seed: int = data.DEFAULT_SEED, check: int = 1,
               timeout: float = 60.0) -> Server:  # fmt: skip
    """knotd with one UDP worker on a free port, once it answers for identifier ``check``."""
    port = free_port()
    workdir = Path(workdir).resolve()  # knotd reads relative paths from the rundir
    # The rundir holds knotd's pid file, control socket and timer database: start clean.
    shutil.rmtree(workdir, ignore_errors=True)
    conf = write_config(workdir, zone_file, port)
    server = Server("knot", [knotd, "-c", str(conf)], None, cpu=cpu, log_path=log_path,
                    address=None)  # fmt: skip
    server.host, server.port = "127.0.0.1", port
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            break
        try:
            if data.url_for(check, seed) in ask(server.host, port, owner(check), timeout=0.2):
                return server
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"knot did not answer for {owner(check)}; its log:\n{server.log()}")
