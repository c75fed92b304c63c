"""The Handle protocol servers (UDP and TCP, port shared) over real sockets (handle.md §3).

Requests are written here with ``struct``, independently of the codec under test; replies are
read with ``Message.from_wire`` and checked field by field.  A node with the demo data and one
~3 KB record (six 500-byte values under prefix 88.118.77) serves most tests; the TCP limits
(idle timeout, connection cap) get nodes of their own with a configuration file.  Every socket
has a timeout; "no reply" is shown by a later request's reply arriving first (TCP answers in
order) or by a sentinel request answered while the refused one stays silent (UDP).
"""

from __future__ import annotations

import hashlib
import random
import re
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from resolver.protocols.handle.message import (
    ErrorResponse, Message, ResolutionResponse, SiteInfoResponse,
)  # fmt: skip
from resolver.upstream.client import HandleClient
from resolver.values import Interface, SiteInfo

pytestmark = pytest.mark.wire

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "registry" / "demo.jsonl"
LONG = "88.118.8/设备-压缩机/批次-2026-11/序列号-0001-温州工厂-二号生产线-质检合格-出口型号-αβγ"
BIG = "88.118.77/big-1"
BIG_DATA = [(f"part-{i}:".encode() + bytes([0x40 + i]) * 500)[:500] for i in range(1, 7)]
FLAGS = 0x19000000  # reference default: recursive, cache-certify, public only
RD = 0x00800000
TIMEOUT = 5.0
NOT_HERE = b"That prefix doesn't live here"
_HANDLE_RE = re.compile(r"handle://127\.0\.0\.1:(\d+)")
_ENV = struct.Struct(">BBHIIII")
_HDR = struct.Struct(">IIIHBBII")

_next_id = random.Random(2641)


def rid() -> int:
    return _next_id.randrange(1, 0x7FFFFFFF)


# -- requests, written by hand ------------------------------------------------------------------
def s(b: bytes | str) -> bytes:
    b = b.encode() if isinstance(b, str) else b
    return struct.pack(">i", len(b)) + b


def resolution_body(handle: bytes | str, indexes=(), types=()) -> bytes:
    ints = b"".join(struct.pack(">i", i) for i in indexes)
    strs = b"".join(s(t) for t in types)
    return s(handle) + struct.pack(">i", len(indexes)) + ints + struct.pack(">i", len(types)) + strs


def message(request_id: int, opcode: int = 1, body: bytes = b"", *, version=(2, 10),
            suggest: tuple[int, int] | None = (2, 11), opflags: int = FLAGS, rc: int = 0,
            env_flags: int | None = None, session: int = 0, serial: int = 0xFFFF,
            recursion: int = 0, expiration: int | None = None) -> bytes:  # fmt: skip
    """Envelope + header + body + empty credential."""
    if expiration is None:
        expiration = int(time.time()) + 3600
    payload = _HDR.pack(opcode, rc, opflags, serial, recursion, 0, expiration, len(body))
    payload += body + b"\0\0\0\0"
    if env_flags is None:
        env_flags = 0 if suggest is None else ((suggest[0] & 3) << 8) | suggest[1]
    env = _ENV.pack(version[0], version[1], env_flags, session, request_id, 0, len(payload))
    return env + payload


def resolve(handle, request_id: int, indexes=(), types=(), **kw) -> bytes:
    return message(request_id, 1, resolution_body(handle, indexes, types), **kw)


def site_info_request(request_id: int, **kw) -> bytes:
    return message(request_id, 2, b"", **kw)


def packets_of(msg: bytes, size: int) -> list[bytes]:
    """A message cut into TC packets of ``size`` payload bytes (handle.md §3.1), by hand."""
    major, minor, flags, session, req, _seq, length = _ENV.unpack_from(msg)
    payload = msg[20:]
    return [_ENV.pack(major, minor, flags | 0x2000, session, req, n, length) + payload[o : o + size]
            for n, o in enumerate(range(0, len(payload), size))]  # fmt: skip


def digested(msg: bytes) -> bytes:
    """What the request digest covers: the request's header and body."""
    body_length = _HDR.unpack_from(msg, 20)[7]
    return msg[20 : 44 + body_length]


# -- transports -------------------------------------------------------------------------------
def _udp_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    return sock


def udp_collect(sock: socket.socket, request_id: int, timeout: float = TIMEOUT
                ) -> tuple[list[bytes], bytes]:  # fmt: skip
    """Datagrams of the reply to ``request_id`` and the reassembled message (envelope of
    packet 0 without TC + whole payload); other datagrams are skipped."""
    deadline = time.monotonic() + timeout
    parts: dict[int, bytes] = {}
    datagrams = []
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            d = sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"no (complete) reply to request {request_id} "
                                 f"within {timeout}s; got {len(datagrams)} packet(s)") from None  # fmt: skip
        major, minor, flags, session, req, seq, length = _ENV.unpack_from(d)
        if req != request_id:
            continue
        datagrams.append(d)
        if not flags & 0x2000:
            return datagrams, d
        parts[seq] = d[20:]
        if sum(map(len, parts.values())) >= length:
            assert sorted(parts) == list(range(len(parts))), sorted(parts)
            assert len({x[:12] for x in datagrams}) == 1  # version, flags, session, request id
            env = _ENV.pack(major, minor, flags & ~0x2000, session, req, 0, length)
            return datagrams, env + b"".join(parts[i] for i in range(len(parts)))


def udp_ask(port: int, msg: bytes | list[bytes], request_id: int | None = None
            ) -> tuple[list[bytes], bytes]:  # fmt: skip
    packets = [msg] if isinstance(msg, bytes) else msg
    if request_id is None:
        request_id = _ENV.unpack_from(packets[0])[4]
    with _udp_socket(port) as sock:
        for p in packets:
            sock.send(p)
        return udp_collect(sock, request_id)


def tcp_connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_exact(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise AssertionError(f"connection closed after {len(out)} of {n} bytes")
        out += chunk
    return bytes(out)


def read_frame(sock: socket.socket) -> bytes:
    env = read_exact(sock, 20)
    return env + read_exact(sock, _ENV.unpack_from(env)[6])


def tcp_ask(port: int, msg: bytes) -> bytes:
    with tcp_connect(port) as sock:
        sock.sendall(msg)
        return read_frame(sock)


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """True when the peer closes (EOF or reset) within ``timeout``; data is an error."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(1)
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
    assert data == b"", f"unexpected data {data!r}"
    return True


def parse(reply: bytes) -> Message:
    return Message.from_wire(reply)


def values_of(reply: bytes) -> list[tuple[int, str, bytes]]:
    return [(v.index, v.type, v.data) for v in parse(reply).body.values]


# -- the node ---------------------------------------------------------------------------------
class HNode:
    def __init__(self, node) -> None:
        self.node = node
        m = _HANDLE_RE.search(node.banner)
        assert m, f"no handle:// port in the banner {node.banner!r}"
        self.port = int(m.group(1))
        self.http_port = node.port


def big_jsonl(path: Path) -> Path:
    lines = [
        {"handle": "0.NA/88.118.77", "values": [{"index": 100, "type": "HS_ADMIN", "data": {
            "format": "admin", "value": {"handle": "0.NA/88.118.77", "index": 300,
                                         "permissions": "011111111111"}}}]},
        {"handle": BIG, "values": [{"index": i, "type": "PART", "data": d.decode()}
                                   for i, d in enumerate(BIG_DATA, 1)]},
    ]  # fmt: skip
    path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    return path


def load(data: Path, source: Path, env: dict) -> None:
    r = subprocess.run([sys.executable, "-m", "resolver", "load", "--data", str(data), str(source)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, f"idnode load failed:\n{r.stdout}\n{r.stderr}"


def handle_node(start_node, tmp_path_factory, idnode_env, **kw) -> HNode:
    work = tmp_path_factory.mktemp("handle-node")
    data = work / "data"
    load(data, DEMO, idnode_env)
    load(data, big_jsonl(work / "big.jsonl"), idnode_env)
    args = ("--handle-port", "0") + tuple(kw.pop("args", ()))
    return HNode(start_node(data=data, args=args, **kw))


@pytest.fixture(scope="module")
def hnode(start_node, tmp_path_factory, idnode_env) -> HNode:
    return handle_node(start_node, tmp_path_factory, idnode_env, workers=2)


# -- resolution: UDP and TCP give the same bytes -------------------------------------------------
CASES = [
    # (handle, indexes, types, rc, expected indexes of the values)
    ("88.118.8/demo-1", (), (), 1, [1, 2, 100]),
    ("88.118.8/DEMO-1", (), (), 1, [1, 2, 100]),
    ("88.118.8/demo-2", (), (), 1, [1, 2]),  # index 3 has no public read
    (LONG, (), (), 1, [1, 2]),
    ("0.NA/88.118.8", (), (), 1, [100, 1]),
    ("88.118.8/demo-1", (), ("URL",), 1, [1]),
    ("88.118.8/demo-1", (100,), ("email",), 1, [2, 100]),
    ("88.118.8/demo-2", (), ("PRODUCT.",), 1, [2]),
    ("88.118.8/demo-2", (3,), (), 200, None),
    ("88.118.8/missing", (), (), 100, None),
    ("88.118.9/demo-1", (), (), 301, None),
    ("88.118.8/demo-1\x00", (), (), 102, None),
    (BIG, (), (), 1, [1, 2, 3, 4, 5, 6]),
]


@pytest.mark.parametrize("handle, indexes, types, rc, expected", CASES,
                         ids=[f"{c[0][:20]}-{c[1]}-{c[2]}" for c in CASES])  # fmt: skip
def test_udp_and_tcp_answer_identically(hnode, handle, indexes, types, rc, expected):
    req = resolve(handle, rid(), indexes, types)
    _, over_udp = udp_ask(hnode.port, req)
    over_tcp = tcp_ask(hnode.port, req)
    assert over_udp == over_tcp
    reply = parse(over_tcp)
    assert reply.envelope.request_id == _ENV.unpack_from(req)[4]
    assert reply.header.rc == rc and reply.header.opcode == 1
    assert reply.header.opflags == FLAGS
    if expected is not None:
        assert isinstance(reply.body, ResolutionResponse)
        assert reply.body.handle == handle.encode()  # echoed as written
        assert [v.index for v in reply.body.values] == expected
    else:
        assert isinstance(reply.body, ErrorResponse)
        if rc == 301:
            assert reply.body.message == NOT_HERE
        if rc in (100, 200):
            assert reply.body.message == b""


@pytest.mark.parametrize("handle, rc", [("88.118.8/demo-1", 1), ("88.118.8/missing", 100),
                                        ("88.118.9/demo-1", 301)])  # fmt: skip
def test_reply_copies_the_request_header_and_session(hnode, handle, rc):
    # HNv9 responses take op code, flags, site serial, recursion count and expiration from
    # the request, and echo its session and request ids (handle.md §3.2)
    flags = 0x80000000 | 0x01000000 | 0x00100000  # authoritative, public only, do-not-refer
    req = resolve(handle, rid(), session=0x5E55, serial=7, recursion=3, expiration=0x6955B900,
                  opflags=flags)  # fmt: skip
    for reply_bytes in (udp_ask(hnode.port, req)[1], tcp_ask(hnode.port, req)):
        reply = parse(reply_bytes)
        assert reply.envelope.session_id == 0x5E55
        assert reply.envelope.request_id == _ENV.unpack_from(req)[4]
        h = reply.header
        assert (h.opcode, h.rc, h.opflags, h.site_serial, h.recursion, h.expiration) == (
            1, rc, flags, 7, 3, 0x6955B900)  # fmt: skip


def test_big_record_comes_in_several_udp_packets(hnode):
    req = resolve(BIG, rid())
    request_id = _ENV.unpack_from(req)[4]
    datagrams, whole = udp_ask(hnode.port, req)
    length = len(whole) - 20
    assert length > 3000
    assert len(datagrams) == -(-length // 492) >= 7
    seqs = []
    for d in datagrams:
        major, minor, flags, _session, req_id, seq, total = _ENV.unpack_from(d)
        assert len(d) <= 512 and flags & 0x2000 and req_id == request_id and total == length
        assert (major, minor) == (2, 11)
        seqs.append(seq)
    assert sorted(seqs) == list(range(len(datagrams)))
    assert values_of(whole) == [(i, "PART", d) for i, d in enumerate(BIG_DATA, 1)]
    assert whole == tcp_ask(hnode.port, req)


# -- OC_GET_SITE_INFO -----------------------------------------------------------------------------
@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_site_info_names_this_nodes_ports(hnode, proto):
    req = site_info_request(rid())
    reply_bytes = udp_ask(hnode.port, req)[1] if proto == "udp" else tcp_ask(hnode.port, req)
    reply = parse(reply_bytes)
    assert reply.header.rc == 1 and reply.header.opcode == 2
    assert isinstance(reply.body, SiteInfoResponse)
    site = SiteInfo.from_bytes(reply.body.site)
    assert (site.protocol_major, site.protocol_minor, site.serial, site.primary) == (2, 11, 1, True)
    assert ("desc", "idnode") in site.attributes
    [server] = site.servers
    assert server.address_text == "127.0.0.1"
    assert set(server.interfaces) == {
        Interface(3, 1, hnode.port),  # TCP admin + query
        Interface(2, 0, hnode.port),  # UDP query
        Interface(3, 2, hnode.http_port),  # HTTP admin + query
    }


# -- request digests ----------------------------------------------------------------------------
DIGESTS = [((2, 0), 0, hashlib.md5), ((2, 1), 2, hashlib.sha1), ((2, 6), 2, hashlib.sha1),
           ((2, 7), 3, hashlib.sha256), ((2, 10), 3, hashlib.sha256)]  # fmt: skip
DIGEST_REQUESTS = {
    "found": lambda i, v: resolve("88.118.8/demo-1", i, version=v, suggest=None, opflags=FLAGS | RD),
    "missing": lambda i, v: resolve("88.118.8/nope", i, version=v, suggest=None, opflags=FLAGS | RD),
    "filtered-out": lambda i, v: resolve("88.118.8/demo-1", i, (999,), version=v, suggest=None,
                                         opflags=FLAGS | RD),  # fmt: skip
    "foreign": lambda i, v: resolve("88.118.9/x", i, version=v, suggest=None, opflags=FLAGS | RD),
    "site-info": lambda i, v: site_info_request(i, version=v, suggest=None, opflags=FLAGS | RD),
    "unsupported": lambda i, v: message(i, 1002, b"", version=v, suggest=None,
                                        opflags=FLAGS | RD),  # fmt: skip
}


@pytest.mark.parametrize("kind", list(DIGEST_REQUESTS))
@pytest.mark.parametrize("version, code, algo", DIGESTS,
                         ids=[f"{v[0]}.{v[1]}" for v, _, _ in DIGESTS])  # fmt: skip
def test_request_digest(hnode, kind, version, code, algo):
    req = DIGEST_REQUESTS[kind](rid(), version)
    for reply_bytes in (udp_ask(hnode.port, req)[1], tcp_ask(hnode.port, req)):
        reply = parse(reply_bytes)
        assert reply_bytes[:2] == bytes(version)
        assert reply.header.opflags & RD
        assert reply.digest == (code, algo(digested(req)).digest())
        assert reply.header.rc == {"found": 1, "missing": 100, "filtered-out": 200, "foreign": 301,
                                   "site-info": 1, "unsupported": 5}[kind]  # fmt: skip


def test_no_digest_without_rd(hnode):
    reply = parse(udp_ask(hnode.port, resolve("88.118.8/demo-1", rid()))[1])
    assert reply.digest is None and not reply.header.opflags & RD


# -- version negotiation ----------------------------------------------------------------------------
VERSIONS = [
    # (envelope version, suggested or None, expected reply version)
    ((2, 1), None, (2, 1)),
    ((2, 1), (2, 1), (2, 1)),
    ((2, 10), None, (2, 10)),
    ((2, 10), (2, 11), (2, 11)),
    ((2, 10), (2, 12), (2, 11)),
    ((2, 5), (2, 5), (2, 5)),
    ((2, 12), None, (2, 11)),
    # A suggested major of 0 means "no suggestion": the actual version stands, whatever byte 3
    # holds; a suggested 2.0 is a suggestion like any other (reference Encoder.decodeEnvelope).
    ((2, 10), (0, 11), (2, 10)),
    ((2, 10), (2, 0), (2, 0)),
]
NEGOTIATED = {
    "fast": lambda i, v, sg: resolve("88.118.8/demo-1", i, version=v, suggest=sg),
    "general": lambda i, v, sg: resolve("88.118.9/demo-1", i, version=v, suggest=sg),
    "site-info": lambda i, v, sg: site_info_request(i, version=v, suggest=sg),
}


def _vid(case) -> str:
    (ma, mi), sg, (ea, ei) = case
    return f"{ma}.{mi}-" + ("none" if sg is None else f"{sg[0]}.{sg[1]}") + f"-to-{ea}.{ei}"


@pytest.mark.parametrize("path", list(NEGOTIATED))
@pytest.mark.parametrize("version, suggest, expected", VERSIONS, ids=[_vid(c) for c in VERSIONS])
def test_version_negotiation(hnode, path, version, suggest, expected):
    req = NEGOTIATED[path](rid(), version, suggest)
    for reply in (udp_ask(hnode.port, req)[1], tcp_ask(hnode.port, req)):
        # bytes 0-1: the reply's version; bytes 2-3: the version we suggest, 2.11
        assert reply[:4] == bytes((*expected, 2, 11)), reply[:4].hex()
        assert parse(reply).header.rc in (1, 301)


@pytest.mark.parametrize("version", [(3, 0), (1, 5), (0, 0), (255, 11)])
def test_wrong_major_version_is_rc4_at_our_version(hnode, version):
    for kind, req in (("fast", resolve("88.118.8/demo-1", rid(), version=version)),
                      ("site", site_info_request(rid(), version=version, opflags=FLAGS | RD))):  # fmt: skip
        for reply_bytes in (udp_ask(hnode.port, req)[1], tcp_ask(hnode.port, req)):
            reply = parse(reply_bytes)
            assert reply_bytes[:4] == bytes((2, 11, 2, 11)), kind
            assert reply.header.rc == 4 and reply.envelope.request_id == _ENV.unpack_from(req)[4]
            assert b"version" in reply.body.message
            if kind == "site":
                assert reply.digest == (3, hashlib.sha256(digested(req)).digest())


# -- op codes ----------------------------------------------------------------------------------
def _value(index: int, vtype: str, data: bytes) -> bytes:
    return struct.pack(">iiBiB", index, 0, 0, 86400, 0x0E) + s(vtype) + s(data) + b"\0\0\0\0"


UNSUPPORTED = {
    400: bytes(8),
    1001: b"\0" + bytes(8) + bytes(8) + b"\x02" + bytes(8),
    1002: b"",
    2001: b"",
    9999: b"",
}
#: Admin operations (registry.native_admin): unauthenticated, each gets an RC 402 challenge.
ADMIN_REQUESTS = {
    100: s("88.118.8/new") + struct.pack(">i", 1) + _value(1, "URL", b"https://example.com/"),
    101: s("88.118.8/demo-1"),
    105: s("0.NA/88.118.8"),
    300: s("88.118.99"),
}


@pytest.mark.parametrize("opcode", list(UNSUPPORTED))
def test_unsupported_op_codes_get_rc5(hnode, opcode):
    req = message(rid(), opcode, UNSUPPORTED[opcode])
    for reply_bytes in (udp_ask(hnode.port, req)[1], tcp_ask(hnode.port, req)):
        reply = parse(reply_bytes)
        assert reply.header.rc == 5 and reply.header.opcode == opcode
        assert reply.envelope.request_id == _ENV.unpack_from(req)[4]
        assert isinstance(reply.body, ErrorResponse)


@pytest.mark.parametrize("opcode", list(ADMIN_REQUESTS))
def test_admin_op_codes_get_a_challenge(hnode, opcode):
    req = message(rid(), opcode, ADMIN_REQUESTS[opcode])
    reply = parse(tcp_ask(hnode.port, req))
    assert reply.header.rc == 402 and reply.header.opcode == opcode
    assert reply.header.opflags & RD and reply.envelope.session_id != 0


def test_create_request_creates_nothing(hnode):
    tcp_ask(hnode.port, message(rid(), 100, ADMIN_REQUESTS[100]))
    assert parse(tcp_ask(hnode.port, resolve("88.118.8/new", rid()))).header.rc == 100


# -- requests that get no reply ------------------------------------------------------------------
RESPONSES = {
    "fast-shaped": lambda i: resolve("88.118.8/demo-1", i, rc=1),
    "error-code": lambda i: resolve("88.118.8/demo-1", i, rc=100),
    "site-info": lambda i: site_info_request(i, rc=1),
    "unsupported": lambda i: message(i, 1002, b"", rc=5),
}


@pytest.mark.parametrize("kind", list(RESPONSES))
def test_response_sent_as_request_is_not_answered_udp(hnode, kind):
    bad_id, sentinel_id = rid(), rid()
    with _udp_socket(hnode.port) as sock:
        sock.send(RESPONSES[kind](bad_id))
        sock.send(site_info_request(sentinel_id))  # general path, like the bad one
        seen = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            sock.settimeout(deadline - time.monotonic())
            d = sock.recv(65536)
            seen.append(_ENV.unpack_from(d)[4])
            if seen[-1] == sentinel_id:
                break
        assert sentinel_id in seen
        sock.settimeout(0.3)  # a late answer to the bad one would come now
        try:
            seen.append(_ENV.unpack_from(sock.recv(65536))[4])
        except socket.timeout:
            pass
    assert bad_id not in seen


@pytest.mark.parametrize("kind", list(RESPONSES))
def test_response_sent_as_request_is_not_answered_tcp(hnode, kind):
    bad_id, next_id = rid(), rid()
    with tcp_connect(hnode.port) as sock:
        sock.sendall(RESPONSES[kind](bad_id) + resolve("88.118.8/demo-1", next_id))
        # replies come in request order: had the first one been answered, it would be first
        assert parse(read_frame(sock)).envelope.request_id == next_id


# -- multi-packet requests ------------------------------------------------------------------------
PADDING = tuple(f"NO-SUCH-TYPE-{i:03d}" for i in range(60))


@pytest.mark.parametrize("order", ["in-order", "shuffled", "duplicates", "reversed"])
@pytest.mark.parametrize("handle, rc", [("88.118.8/demo-1", 1), ("88.118.9/demo-1", 301)])
def test_multi_packet_request(hnode, order, handle, rc):
    req = resolve(handle, rid(), types=PADDING + ("URL",))
    assert len(req) > 512
    packets = packets_of(req, 200)
    assert len(packets) >= 5
    if order == "shuffled":
        random.Random(len(req)).shuffle(packets)
    elif order == "duplicates":
        packets = packets[:2] + packets + packets[-2:]
    elif order == "reversed":
        packets.reverse()
    _, over_udp = udp_ask(hnode.port, packets)
    assert over_udp == tcp_ask(hnode.port, req)
    reply = parse(over_udp)
    assert reply.header.rc == rc
    if rc == 1:
        assert [(v.index, v.type) for v in reply.body.values] == [(1, "URL")]


def test_client_resolves_with_a_large_request_over_udp_and_tcp(hnode):
    import asyncio

    client = HandleClient(udp_retry=(2.0,), tcp_timeout=TIMEOUT)
    server = ("127.0.0.1", hnode.port)

    async def both():
        return [await client.resolve("88.118.8/demo-1", types=PADDING + ("EMAIL",), server=server,
                                     proto=p) for p in ("udp", "tcp", "auto")]  # fmt: skip

    replies = asyncio.run(asyncio.wait_for(both(), 30))
    assert all([v.index for v in r.body.values] == [2] for r in replies)


# -- TCP connections ----------------------------------------------------------------------------
def test_pipelined_requests_are_answered_in_order(hnode):
    reqs = [
        ("found", resolve("88.118.8/demo-1", rid()), 1),
        ("foreign", resolve("88.118.9/demo-1", rid()), 301),
        ("site", site_info_request(rid()), 1),
        ("found", resolve("88.118.8/DEMO-1", rid()), 1),
        ("unsupported", message(rid(), 1002, b""), 5),
        ("missing", resolve("88.118.8/missing", rid()), 100),
        ("multi-type", resolve("88.118.8/demo-1", rid(), types=PADDING + ("URL",)), 1),
        ("big", resolve(BIG, rid()), 1),
        ("found", resolve("88.118.8/demo-2", rid()), 1),
    ]
    with tcp_connect(hnode.port) as sock:
        sock.sendall(b"".join(r for _, r, _ in reqs))
        for kind, req, rc in reqs:
            reply = parse(read_frame(sock))
            assert reply.envelope.request_id == _ENV.unpack_from(req)[4], kind
            assert reply.header.rc == rc, kind


def test_frame_split_across_many_small_writes(hnode):
    a = resolve("88.118.8/demo-1", rid())
    b = site_info_request(rid())
    c = resolve("88.118.9/demo-1", rid())
    stream = a + b + c
    cuts = sorted(random.Random(5).sample(range(1, len(stream)), 40))
    with tcp_connect(hnode.port) as sock:
        last = 0
        for cut in cuts + [len(stream)]:
            sock.sendall(stream[last:cut])
            last = cut
            time.sleep(0.002)
        for req in (a, b, c):
            assert parse(read_frame(sock)).envelope.request_id == _ENV.unpack_from(req)[4]
    with tcp_connect(hnode.port) as sock:
        for i in range(len(a)):  # one byte at a time
            sock.sendall(a[i : i + 1])
        assert read_frame(sock) == tcp_ask(hnode.port, a)


def test_keep_alive_many_requests_on_one_connection(hnode):
    with tcp_connect(hnode.port) as sock:
        for n in range(300):
            req = (resolve("88.118.8/demo-1", rid()) if n % 3 else
                   resolve("88.118.9/demo-1", rid()) if n % 2 else site_info_request(rid()))  # fmt: skip
            sock.sendall(req)
            reply = parse(read_frame(sock))
            assert reply.envelope.request_id == _ENV.unpack_from(req)[4]
            assert reply.header.rc in (1, 301)


def test_frame_of_exactly_256_kib_is_answered(hnode):
    # header 24 + body + credential 4 = 262144: the largest message allowed
    fixed = 24 + 4 + (4 + len(b"88.118.8/demo-1")) + 4 + 4 + (4 + 3)
    huge = "X" * (262144 - fixed - 4)
    req = resolve("88.118.8/demo-1", rid(), types=(huge, "URL"))
    assert _ENV.unpack_from(req)[6] == 262144
    with tcp_connect(hnode.port) as sock:
        sock.sendall(req)
        reply = parse(read_frame(sock))
        assert reply.header.rc == 1 and [v.index for v in reply.body.values] == [1]
        sock.sendall(site_info_request(rid()))  # still open
        assert parse(read_frame(sock)).header.rc == 1


@pytest.mark.parametrize("announced", [262145, 1 << 20, 0xFFFFFFFF])
def test_frame_announcing_more_than_256_kib_gets_rc4_and_close(hnode, announced):
    env = _ENV.pack(2, 10, 0x020B, 0, rid(), 0, announced)
    with tcp_connect(hnode.port) as sock:
        sock.sendall(env + bytes(100))
        reply = parse(read_frame(sock))
        assert reply.header.rc == 4
        assert closed_by_peer(sock, TIMEOUT)


def test_frames_before_an_over_long_one_are_answered_first(hnode):
    # Replies never overtake each other (servers/handle_tcp.py): the frames received before
    # the over-long one are answered, in order, before its RC 4 and the hang-up.
    found, foreign, site = rid(), rid(), rid()
    stream = (resolve("88.118.8/demo-1", found) + resolve("88.118.9/demo-1", foreign)
              + site_info_request(site) + _ENV.pack(2, 10, 0x020B, 0, rid(), 0, 262145) + bytes(64))
    with tcp_connect(hnode.port) as sock:
        sock.sendall(stream)
        got = [parse(read_frame(sock)) for _ in range(4)]
        assert [(m.envelope.request_id, m.header.rc) for m in got[:3]] == [
            (found, 1), (foreign, 301), (site, 1)]  # fmt: skip
        assert got[3].header.rc == 4
        assert closed_by_peer(sock, TIMEOUT)


@pytest.fixture(scope="module")
def idle_node(start_node, tmp_path_factory, idnode_env) -> HNode:
    return handle_node(start_node, tmp_path_factory, idnode_env, workers=1,
                       config_text="[handle]\ntcp_idle_seconds = 1\n")  # fmt: skip


def test_idle_connection_is_closed(idle_node):
    with tcp_connect(idle_node.port) as sock:
        for _ in range(5):  # activity keeps it open past the idle timeout
            sock.sendall(resolve("88.118.8/demo-1", rid()))
            assert parse(read_frame(sock)).header.rc == 1
            time.sleep(0.4)
        start = time.monotonic()
        assert closed_by_peer(sock, 10.0)
        assert time.monotonic() - start >= 0.3  # closed by the idle timer, not at once


def test_idle_connection_without_any_request_is_closed(idle_node):
    with tcp_connect(idle_node.port) as sock:
        assert closed_by_peer(sock, 10.0)


@pytest.fixture(scope="module")
def capped_node(start_node, tmp_path_factory, idnode_env) -> HNode:
    return handle_node(start_node, tmp_path_factory, idnode_env, workers=1,
                       config_text="[handle]\nmax_tcp_connections = 2\n")  # fmt: skip


def test_connection_cap(capped_node):
    port = capped_node.port
    first, second = tcp_connect(port), tcp_connect(port)
    try:
        for sock in (first, second):  # both accepted and counted
            sock.sendall(resolve("88.118.8/demo-1", rid()))
            assert parse(read_frame(sock)).header.rc == 1
        with tcp_connect(port) as third:
            try:
                third.sendall(resolve("88.118.8/demo-1", rid()))
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert closed_by_peer(third, TIMEOUT)
        second.sendall(resolve("88.118.8/demo-2", rid()))  # the others are untouched
        assert parse(read_frame(second)).header.rc == 1
        first.close()
        deadline = time.monotonic() + TIMEOUT  # the slot frees once the server sees the close
        while True:
            with tcp_connect(port) as again:
                try:
                    again.sendall(resolve("88.118.8/demo-1", rid()))
                    again.settimeout(1.0)
                    assert parse(read_frame(again)).header.rc == 1
                    break
                except (AssertionError, OSError):  # reset, broken pipe, timeout
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
    finally:
        first.close()
        second.close()


# -- the client against the node --------------------------------------------------------------
def test_client_gets_the_same_answers_over_udp_tcp_and_auto(hnode):
    import asyncio

    client = HandleClient(udp_retry=(2.0,), tcp_timeout=TIMEOUT)
    server = ("127.0.0.1", hnode.port)

    async def all_of():
        out = {}
        for handle in ("88.118.8/demo-1", BIG, "88.118.8/missing", "88.118.9/demo-1"):
            for proto in ("udp", "tcp", "auto"):
                r = await client.resolve(handle, server=server, proto=proto, request_digest=True)
                out[handle, proto] = r
        out["site"] = await client.get_site_info(server, request_digest=True)
        return out

    got = asyncio.run(asyncio.wait_for(all_of(), 60))
    for handle, rc in (("88.118.8/demo-1", 1), (BIG, 1), ("88.118.8/missing", 100),
                       ("88.118.9/demo-1", 301)):  # fmt: skip
        replies = [got[handle, p] for p in ("udp", "tcp", "auto")]
        assert {r.header.rc for r in replies} == {rc}
        assert len({r.body for r in replies}) == 1
        assert all(r.digest is not None for r in replies)
    assert [v.data for v in got[BIG, "udp"].body.values] == BIG_DATA
    site = SiteInfo.from_bytes(got["site"].body.site)
    assert Interface(2, 0, hnode.port) in site.servers[0].interfaces
