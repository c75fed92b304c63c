"""A bounded random-datagram flood against a two-worker node's Handle UDP port.

For 60 seconds (at most ``RATE`` datagrams a second and ``MAX_PACKETS`` in all) the node gets
random bytes of 0–1500 bytes, mutated valid requests, valid requests, and multi-packet (TC)
fragments with random request ids, lengths and sequence numbers that fill its reassembler.
Afterwards it must answer a valid request over UDP and over TCP from the same worker
processes (none died and was replaced), each worker's resident memory must have stayed
bounded, and no worker may have logged an unexpected error.
"""

from __future__ import annotations

import os
import random
import re
import socket
import struct
import time

import pytest

from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import (
    Envelope, Header, Message, Opaque, ResolutionRequest, envelope_flags,
)  # fmt: skip
from resolver.protocols.handle.udp import split
from proc import children as _children

pytestmark = [pytest.mark.wire, pytest.mark.slow]

FLOOD_SECONDS = 60.0
RATE = 5000  # datagrams per second, upper bound
MAX_PACKETS = 400_000
SOURCES = 4  # source ports: SO_REUSEPORT spreads datagrams over workers by 4-tuple
RSS_LIMIT_KIB = 200 * 1024
POOL = 4096


def _handle_port(banner: str) -> int:
    m = re.search(r"handle://127\.0\.0\.1:(\d+)", banner)
    assert m, banner
    return int(m.group(1))


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def _request(rid: int, handle: bytes = b"88.118.8/demo-1", types=(), flags=0x19000000,
             opcode: int = 1, body=None) -> bytes:  # fmt: skip
    body = body if body is not None else ResolutionRequest(handle, (), tuple(types))
    return Message(Envelope(2, 11, envelope_flags(), 0, rid), Header(opcode, 0, flags, 0xFFFF),
                   body).to_wire()  # fmt: skip


SEEDS = [
    _request(1),
    _request(2, types=(b"URL", b"EMAIL")),
    _request(3, b"88.118.8/none", flags=0x19800000),
    _request(4, b"99.1/elsewhere"),
    _request(5, b"0.NA/88.118.8"),
    _request(6, opcode=2, body=Opaque()),
    _request(7, opcode=100, body=Opaque(b"\0\0\0\x0588.1/")),
    _request(8, types=(b"URL",) * 180),  # 1.3 KiB in one datagram
]


def _mutate(rng: random.Random, data: bytes) -> bytes:
    d = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(5)
        pos = rng.randrange(len(d)) if d else 0
        if kind == 0 and d:
            d[pos] = rng.randrange(256)
        elif kind == 1:
            d[pos : pos + 4] = rng.choice([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, rng.getrandbits(32)]
                                          ).to_bytes(4, "big")  # fmt: skip
        elif kind == 2:
            del d[pos:]
        elif kind == 3:
            d[pos:pos] = rng.randbytes(rng.randint(1, 32))
        else:
            del d[pos : pos + rng.randint(1, 32)]
    if rng.random() < 0.7 and len(d) >= C.ENVELOPE_SIZE:
        d[16:20] = struct.pack(">I", len(d) - C.ENVELOPE_SIZE)
    return bytes(d[:1500])


def _fragment(rng: random.Random) -> bytes:
    length = rng.choice([rng.randint(1, 5000), rng.randint(1, C.MAX_MESSAGE), C.MAX_MESSAGE + 1,
                         rng.getrandbits(32)])  # fmt: skip
    seq = rng.choice([0, rng.randint(0, 10), rng.getrandbits(32)])
    flags = envelope_flags(truncated=True) | rng.choice([0, 0x8000, 0x4000])
    env = Envelope(2, 11, flags, 0, 0, seq, length)
    return env.to_wire() + rng.randbytes(rng.randint(0, 1480))


def _pool(rng: random.Random) -> list[tuple[bytes, bool]]:
    """(datagram, give it a fresh random request id at every send)."""
    pool = []
    for _ in range(POOL):
        kind = rng.random()
        if kind < 0.3:
            pool.append((rng.randbytes(rng.randint(0, 1500)), False))
        elif kind < 0.65:
            pool.append((_mutate(rng, rng.choice(SEEDS)), False))
        elif kind < 0.85:
            pool.append((_fragment(rng), True))
        elif kind < 0.9:  # pieces of a real multi-packet request, most never completed
            packets = split(_request(9, types=(b"URL",) * 300))
            pool.append((rng.choice(packets), True))
        else:
            pool.append((rng.choice(SEEDS), True))
    return pool


def _ask_udp(port: int, data: bytes, attempts: int = 5) -> Message:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2.0)
        for _ in range(attempts):
            sock.sendto(data, ("127.0.0.1", port))
            try:
                return Message.from_wire(sock.recv(65535))
            except socket.timeout:
                continue
    raise AssertionError(f"no UDP answer in {attempts} attempts")


def _ask_tcp(port: int, data: bytes) -> list[Message]:
    with socket.create_connection(("127.0.0.1", port), timeout=10.0) as sock:
        sock.sendall(data)
        buf = b""
        out = []
        while True:
            while len(buf) >= C.ENVELOPE_SIZE:
                n = C.ENVELOPE_SIZE + Envelope.from_wire(buf).length
                if len(buf) < n:
                    break
                out.append(Message.from_wire(buf[:n]))
                buf = buf[n:]
            if len(out) == 2:
                return out
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(out)} replies"
            buf += chunk


@pytest.fixture(scope="module")
def flood_node(start_node):
    node = start_node(workers=2, args=("--handle-port", "0"))
    return node, _handle_port(node.banner)


def test_random_datagram_flood(flood_node):
    node, port = flood_node
    workers = _children(node.pid)
    assert len(workers) == 2
    assert _ask_udp(port, _request(10)).header.rc == 1  # ready
    rss_before = {pid: _rss_kib(pid) for pid in workers}

    rng = random.Random(0x5EED)
    pool = _pool(rng)
    socks = []
    for _ in range(SOURCES):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    sent = send_errors = replies = 0
    start = time.monotonic()
    try:
        while sent < MAX_PACKETS:
            elapsed = time.monotonic() - start
            if elapsed >= FLOOD_SECONDS:
                break
            ahead = sent / RATE - elapsed
            if ahead > 0:
                time.sleep(ahead)
            for _ in range(50):
                data, fresh_id = pool[rng.randrange(POOL)]
                if fresh_id and len(data) >= 12:
                    data = data[:8] + rng.getrandbits(32).to_bytes(4, "big") + data[12:]
                try:
                    socks[sent % SOURCES].sendto(data, ("127.0.0.1", port))
                except OSError:  # a full send buffer (ENOBUFS/EAGAIN): that datagram is lost
                    send_errors += 1
                sent += 1
            for s in socks:
                while True:
                    try:
                        s.recv(65535)
                    except BlockingIOError:
                        break
                    replies += 1
    finally:
        for s in socks:
            s.close()
    duration = time.monotonic() - start
    print(f"flood: {sent} datagrams in {duration:.1f}s, {send_errors} not sent, {replies} replies")
    assert duration >= FLOOD_SECONDS or sent >= MAX_PACKETS
    assert sent - send_errors >= 10_000
    assert replies > 0, "no datagram of the flood was answered: it never reached the workers"

    # The node survived: same workers, still answering over both transports.
    assert node.proc.poll() is None
    assert _children(node.pid) == workers, "a worker died (and was replaced) during the flood"
    assert _ask_udp(port, _request(11)).header.rc == 1
    answers = _ask_tcp(port, _request(12) + _request(13, b"88.118.8/none"))
    assert [m.header.rc for m in answers] == [1, 100]
    assert [m.envelope.request_id for m in answers] == [12, 13]

    rss_after = {pid: _rss_kib(pid) for pid in workers}
    print(f"worker RSS KiB before {rss_before} after {rss_after}")
    for pid, kib in rss_after.items():
        assert kib < RSS_LIMIT_KIB, f"worker {pid} holds {kib} KiB after the flood"
    log = node.stderr()
    assert "Traceback" not in log and "unexpected error" not in log, log[-4000:]
