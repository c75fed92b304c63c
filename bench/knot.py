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

``ensure_dns_zone(n)`` writes (or reuses) the zone of the DNS benchmark (``python -m bench
dns``): under idnode's apex (``id.idnode.test.`` by default), for identifier ``i`` of
``bench.data``, the name ``resolver.protocols.dns.mapping.to_dns_name`` gives it
(``sn-2026-0000001.8.118.88.id.idnode.test.``) with exactly the RRsets idnode's DNS front-end
answers for it — ``resolver.protocols.dns.answers.rrsets_for`` of the record ``bench.data``
stores, for TXT, URI and NAPTR — written in RFC 3597 generic form (``TYPE \\# len hex``: the
RDATA bytes themselves, so nothing is re-encoded on the way), with the apex SOA and NS
idnode serves with its default ``[dns]`` configuration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

from bench import data
from bench.common import Server
from resolver.protocols.dns import answers, mapping
from resolver.record import pack, unpack
from resolver.values import TTL_RELATIVE

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


# -- the zone of the DNS benchmark -------------------------------------------------------------
DNS_APEX = mapping.DEFAULT_APEX
DNS_ZONE_VERSION = 1  # bump when the DNS zone's content changes
#: The RR types idnode answers with data (answers.rrsets_for), in the order they are written.
DNS_TYPES = {"TXT": answers.TXT, "URI": answers.URI, "NAPTR": answers.NAPTR}


def dns_owner(i: int, apex: str = DNS_APEX) -> str:
    """The DNS name idnode answers for identifier ``i``: ``sn-2026-0000001.8.118.88.<apex>``."""
    return mapping.to_dns_name(data.handle(i), apex)


def dns_rrsets(i: int, seed: int = data.DEFAULT_SEED) -> dict[str, list[answers.RR]]:
    """{type name: RRs} idnode answers for identifier ``i``: ``answers.rrsets_for`` of the values
    its store holds (``bench.data.record``, packed and read back as the server reads them).
    Every value's TTL is relative, so the answers do not depend on the clock (checked)."""
    values = unpack(pack(data.record(data.url_for(i, seed))))
    if any(v.ttl_type != TTL_RELATIVE for v in values):
        raise RuntimeError("bench data: an absolute TTL would make the zone depend on the clock")
    return {name: answers.rrsets_for(values, qtype, now=data.TIMESTAMP)
            for name, qtype in DNS_TYPES.items()}  # fmt: skip


def dns_zone_head(apex: str = DNS_APEX) -> str:
    """$ORIGIN, the SOA and the NS of the zone: those idnode serves with its default ``[dns]``
    configuration under ``apex`` (``dns_frontend.zone_of``).  Only the apex is served from
    them; no glue (idnode sends none)."""
    from resolver.config import Config
    from resolver.servers.dns_frontend import zone_of

    z = zone_of(dataclasses.replace(Config(), dns_apex=apex))
    return (f"$ORIGIN {apex}\n"
            f"@ {z.ttl} IN SOA {z.mname} {z.rname} {z.serial} {z.refresh} {z.retry} {z.expire} "
            f"{z.minimum}\n"
            + "".join(f"@ {z.ttl} IN NS {ns}\n" for ns in z.ns))  # fmt: skip


def dns_zone_lines(i: int, seed: int = data.DEFAULT_SEED, apex: str = DNS_APEX) -> str:
    """The zone-file lines of identifier ``i``: one RR a line, RFC 3597 generic RDATA, the
    owner written on the first line only (the others start with a blank: the same owner)."""
    lines = []
    for name, rrs in dns_rrsets(i, seed).items():
        for rr in rrs:
            rdata = f"{len(rr.rdata)} {rr.rdata.hex()}".rstrip()  # "\\# 0": empty RDATA
            lines.append(f" {rr.ttl} IN {name} \\# {rdata}\n")
    return dns_owner(i, apex) + "".join(lines) if lines else ""


class _ZoneTemplate:
    """``dns_zone_lines`` for any identifier by substitution into those of identifier 1: the
    records differ only in the owner and in the URL, which has a fixed width (``bench.data``)
    and appears hex-encoded in the TXT, URI and NAPTR RDATA.  ``ensure_dns_zone`` compares
    the result with ``dns_zone_lines`` for a spread of identifiers before writing."""

    def __init__(self, seed: int, apex: str) -> None:
        self.seed, self.apex = seed, apex
        self.text = dns_zone_lines(1, seed, apex)
        self.owner = dns_owner(1, apex)
        self.url_hex = data.url_for(1, seed).encode().hex()
        if not self.text.startswith(self.owner) or self.text.count(self.url_hex) != 3:
            raise RuntimeError("DNS zone template: owner or URL not where expected")

    def lines(self, i: int) -> str:
        text = self.text.replace(self.url_hex, data.url_for(i, self.seed).encode().hex())
        return dns_owner(i, self.apex) + text[len(self.owner) :]


def _dns_zone_marker(n: int, seed: int, apex: str) -> dict:
    # The head too: a change of idnode's default SOA or NS rewrites the zone.
    return {"records": n, "seed": seed, "apex": apex, "zone": DNS_ZONE_VERSION,
            "generator": data.GENERATOR_VERSION, "head": dns_zone_head(apex)}  # fmt: skip


def ensure_dns_zone(n: int, seed: int = data.DEFAULT_SEED, *, apex: str = DNS_APEX,
                    build_dir: Path = data.BUILD_DIR, log=print) -> Path:  # fmt: skip
    """The DNS benchmark's zone file of identifiers 1..``n``, written when missing or stale."""
    if not 1 <= n <= data.MAX_RECORDS:
        raise ValueError(f"zone records must be between 1 and {data.MAX_RECORDS}")
    zdir = Path(build_dir) / "knot"
    zdir.mkdir(parents=True, exist_ok=True)
    stem = apex.rstrip(".") or "root"
    name = f"dns-{stem}-{n}" if seed == data.DEFAULT_SEED else f"dns-{stem}-{n}-seed{seed}"
    path = zdir / f"{name}.zone"
    marker = path.with_name(path.name + ".json")
    with contextlib.suppress(OSError, ValueError):
        if json.loads(marker.read_text()) == _dns_zone_marker(n, seed, apex) and path.is_file():
            log(f"zone: reusing {path} ({n:,} names)")
            return path
    t0 = time.perf_counter()
    template = _ZoneTemplate(seed, apex)
    spread = random.Random(seed).sample(range(1, n + 1), min(n, 20))
    for i in sorted({1, 2, n // 2 or 1, n, *spread}):
        if template.lines(i) != dns_zone_lines(i, seed, apex):
            raise RuntimeError(f"DNS zone template: the lines of identifier {i} differ")
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", encoding="ascii") as fh:
        fh.write(f"; Written by bench/knot.py: {n} identifiers of bench/data.py, the RRsets\n"
                 f"; idnode's DNS front-end answers for them (TXT, URI, NAPTR).\n")  # fmt: skip
        fh.write(dns_zone_head(apex))
        for i in range(1, n + 1):
            fh.write(template.lines(i))
    os.replace(tmp, path)
    marker.write_text(json.dumps(_dns_zone_marker(n, seed, apex)) + "\n")
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


def write_config(workdir: Path, zone_file: Path, port: int, host: str = "127.0.0.1",
                 domain: str = ZONE) -> Path:  # fmt: skip
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
  - domain: {domain}
    file: "{zone_file.name}"
""")
    return conf


def start_knot(knotd: str, zone_file: Path, workdir: Path, *, cpu=None, log_path: Path,
               seed: int = data.DEFAULT_SEED, check: int = 1, domain: str = ZONE,
               probe: tuple[str, str] | None = None,
               timeout: float = 60.0) -> Server:  # fmt: skip
    """knotd with one UDP worker on a free port serving ``zone_file`` as ``domain``, once it
    answers for identifier ``check`` (the Handle benchmarks' zone) or, with ``probe`` =
    (name, text), once a TXT query for name has a string equal to text."""
    name, text = probe if probe is not None else (owner(check), data.url_for(check, seed))
    port = free_port()
    workdir = Path(workdir).resolve()  # knotd reads relative paths from the rundir
    # The rundir holds knotd's pid file, control socket and timer database: start clean.
    shutil.rmtree(workdir, ignore_errors=True)
    conf = write_config(workdir, zone_file, port, domain=domain)
    server = Server("knot", [knotd, "-c", str(conf)], None, cpu=cpu, log_path=log_path,
                    address=None)  # fmt: skip
    server.host, server.port = "127.0.0.1", port
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            break
        try:
            if text in ask(server.host, port, name, timeout=0.2):
                return server
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"knot did not answer for {name}; its log:\n{server.log()}")
