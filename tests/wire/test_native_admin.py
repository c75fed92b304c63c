"""Native admin operations on real sockets: ``idnode create/modify/delete`` (``registry.admin_cli``)
and the project's client against the Handle TCP and UDP servers on 127.0.0.1.

The servers (``resolver.servers.handle_tcp`` / ``handle_udp`` with a ``HandleFrontEnd`` holding
a ``registry.native_admin.NativeAdmin``) run in-process on their own event loop in a thread,
over a real LMDB store, exactly as a worker wires them; the CLI runs in this thread (and once
as a separate process).  Each change must appear exactly once in the change log, with the
identity that made it; every refusal leaves the store untouched.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading

import pytest

from registry import admin_cli
from registry.identities import Authenticator
from registry.native_admin import LIST_PER_MESSAGE, NativeAdmin
from registry.service import Registry
from resolver.config import Config
from resolver.core.authority import AuthorityHandler
from resolver.core.engine import Resolver
from resolver.identifier import Identifier
from resolver.protocols.handle import auth as A
from resolver.protocols.handle import codec
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import (
    ChallengeBody, Envelope, Header, Message, ResolutionRequest, ValuesBody,
)  # fmt: skip
from resolver.protocols.handle.tcp import FrameBuffer
from resolver.record import Record, pack, unpack
from resolver.servers.handle_frontend import HandleFrontEnd
from resolver.servers.handle_tcp import TcpLimits, start_tcp
from resolver.servers.handle_udp import start_udp
from resolver.store import Change
from resolver.store.lmdb_store import LmdbStore
from resolver.upstream.client import (
    ADMIN_FLAGS, HandleClient, SecretKeyAuth, UpstreamUnavailable, prepare,
)  # fmt: skip
from resolver.values import AdminRecord, HandleValue, encode_vlist

pytestmark = pytest.mark.wire

OP = C.OpCode
A8 = "300:88.118.8/ADMIN"
K8 = "300:88.118.8/KEYS"
SECRET_8 = b"correct horse 8"
REPO_ROOT = __file__.rsplit("/tests/", 1)[0]


def v(index, vtype, data, perms=0x0E) -> HandleValue:
    return HandleValue(index, vtype, data if isinstance(data, bytes) else data.encode(),
                       permissions=perms, timestamp=1)  # fmt: skip


def _enterprise(prefix: str, secret: bytes, pubkey: bytes) -> list[Change]:
    admin = v(100, "HS_ADMIN", AdminRecord(f"0.NA/{prefix}", 200, 0xFFF).to_bytes())
    group = encode_vlist([(f"{prefix}/ADMIN", 300), (f"{prefix}/KEYS", 300)])
    return [Change(prefix.encode(), pack(Record([admin, v(200, "HS_VLIST", group)])), prefix=True),
            Change(f"{prefix}/ADMIN".encode(),
                   pack(Record([admin, v(300, "HS_SECKEY", secret, 0x0C)]))),
            Change(f"{prefix}/KEYS".encode(), pack(Record([admin, v(300, "HS_PUBKEY", pubkey)])))]


class InProcessNode:
    """Handle TCP + UDP servers with a NativeAdmin on one port, served by a background loop."""

    def __init__(self, path, pubkey: bytes) -> None:
        self.store = LmdbStore(path, map_size=64 << 20)
        self.store.write(_enterprise("88.118.8", SECRET_8, pubkey)
                         + _enterprise("88.118.9", b"nine", pubkey))  # fmt: skip
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self) -> None:
        registry = Registry(self.store)
        self.admin = NativeAdmin(registry, Authenticator(self.store))
        fe = HandleFrontEnd(Resolver([AuthorityHandler(self.store)]), Config(), admin=self.admin)
        self.tcp = await start_tcp(self.store, fe, "127.0.0.1", 0, False, TcpLimits(64, 30.0))
        self.port = self.tcp.sockets[0].getsockname()[1]
        self.udp = await start_udp(self.store, fe, "127.0.0.1", self.port, False)

    def stop(self) -> None:
        async def close():
            self.tcp.close()
            self.udp.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.store.close()

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.port}"

    def values(self, handle: str) -> dict[int, bytes] | None:
        blob = self.store.get_record(Identifier.parse(handle).key)
        return None if blob is None else {x.index: x.data for x in unpack(blob)}


@pytest.fixture(scope="module")
def rsa_key():
    return A.generate_rsa_key(2048)


@pytest.fixture
def hnode(tmp_path, rsa_key):
    n = InProcessNode(tmp_path / "store", A.rsa_public_key_bytes(rsa_key))
    yield n
    n.stop()


@pytest.fixture
def secret_file(tmp_path):
    p = tmp_path / "admin.secret"
    p.write_bytes(SECRET_8 + b"\n")  # as `echo` leaves it: the line break is not the secret
    return str(p)


@pytest.fixture
def key_file(tmp_path, rsa_key):
    p = tmp_path / "admin.pem"
    p.write_bytes(A.private_key_pem(rsa_key))
    return str(p)


def _cli(*argv: str) -> int:
    return admin_cli.main(list(argv))


@pytest.mark.parametrize("cred", ["secret", "key"])
def test_cli_creates_modifies_and_deletes(hnode, secret_file, key_file, capsys, cred):
    who, flag = (A8, ["--secret-file", secret_file]) if cred == "secret" else (K8,
                                                                               ["--key", key_file])
    common = ["--auth", who, *flag, "--server", hnode.server]
    start = hnode.store.last_txn_id()
    assert _cli("create", "88.118.8/SN-1", *common, "--value", "1:URL:https://x/1") == 0
    assert "created 88.118.8/SN-1" in capsys.readouterr().out
    assert hnode.values("88.118.8/SN-1")[1] == b"https://x/1"
    assert _cli("modify", "88.118.8/SN-1", *common, "--value", "1:URL:https://x/2") == 0
    assert _cli("modify", "88.118.8/SN-1", *common, "--add", "--value", "2:EMAIL:a@b") == 0
    assert hnode.values("88.118.8/SN-1") == {1: b"https://x/2", 2: b"a@b",
                                             100: AdminRecord("88.118.8/" + who.split("/")[1],
                                                              300, 0x7F3).to_bytes()}
    assert _cli("delete", "88.118.8/SN-1", *common, "--index", "2") == 0
    assert _cli("delete", "88.118.8/SN-1", *common) == 0
    assert hnode.values("88.118.8/SN-1") is None
    log = list(hnode.store.changes_since(start))
    assert [(c.op, c.identity) for c in log] == [(op, who) for op in (
        OP.CREATE_HANDLE, OP.MODIFY_VALUE, OP.ADD_VALUE, OP.REMOVE_VALUE, OP.DELETE_HANDLE)]


def test_cli_as_a_separate_process(hnode, secret_file):
    r = subprocess.run([sys.executable, "-m", "registry.admin_cli", "create", "88.118.8/P-1",
                        "--auth", A8, "--secret-file", secret_file, "--server", hnode.server,
                        "--value", "1:URL:https://p"], cwd=REPO_ROOT, capture_output=True,
                       text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert hnode.values("88.118.8/P-1")[1] == b"https://p"
    assert [c.identity for c in hnode.store.changes_since(hnode.store.last_txn_id() - 1)] == [A8]


def test_cli_wrong_secret_and_foreign_prefix_change_nothing(hnode, tmp_path, secret_file, capsys):
    bad = tmp_path / "bad.secret"
    bad.write_bytes(b"wrong")
    before = hnode.store.last_txn_id()
    assert _cli("create", "88.118.8/SN-1", "--auth", A8, "--secret-file", str(bad),
                "--server", hnode.server, "--value", "1:URL:u") == 1  # fmt: skip
    assert "RC 403" in capsys.readouterr().err
    assert _cli("create", "88.118.9/SN-1", "--auth", A8, "--secret-file", secret_file,
                "--server", hnode.server, "--value", "1:URL:u") == 1  # fmt: skip
    assert "RC 401" in capsys.readouterr().err
    assert hnode.store.last_txn_id() == before


def test_cli_usage_errors_exit_2(hnode, secret_file, capsys):
    base = ["--auth", A8, "--secret-file", secret_file]
    assert _cli("create", "88.118.8/X", *base, "--server", hnode.server, "--value", "x") == 2
    assert _cli("modify", "88.118.8/X", *base, "--server", hnode.server) == 2
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    assert _cli("delete", "88.118.8/X", *base, "--server", dead, "--timeout", "2") == 2
    assert "failed" in capsys.readouterr().err


def test_client_lists_handles_over_continued_messages(hnode):
    hnode.store.write([Change(f"88.118.8/L{i:03}".encode(), pack(Record([v(1, "URL", "u")])))
                       for i in range(2 * LIST_PER_MESSAGE + 1)])  # fmt: skip
    client = HandleClient()
    rc, names = asyncio.run(client.list_handles("88.118.8", SecretKeyAuth(A8, SECRET_8),
                                                server=("127.0.0.1", hnode.port)))  # fmt: skip
    assert rc == 1 and len(names) == 2 * LIST_PER_MESSAGE + 3  # + ADMIN, KEYS
    assert rc == 1 and names == sorted(names) and b"88.118.8/L100" in names


def test_authenticated_read_over_tcp(hnode):
    admins = v(100, "HS_ADMIN", AdminRecord("0.NA/88.118.8", 200, 0xFFF).to_bytes())
    values = (v(1, "URL", "https://pub"), v(2, "NOTE", "secret note", 0x0C), admins)
    hnode.store.write([Change(b"88.118.8/R", pack(Record(values)))])
    client, server = HandleClient(), ("127.0.0.1", hnode.port)
    body = ResolutionRequest(b"88.118.8/R")
    anon = asyncio.run(client.request_authenticated(OP.RESOLUTION, body, None, server=server,
                                                    opflags=0))  # fmt: skip
    assert anon.header.rc == 402  # not the fast path's silent withholding
    public = asyncio.run(client.resolve("88.118.8/R", server=server, proto="tcp"))
    assert [x.index for x in public.body.values] == [1, 100]
    authed = asyncio.run(client.request_authenticated(OP.RESOLUTION, body,
                                                      SecretKeyAuth(A8, SECRET_8),
                                                      server=server, opflags=0))  # fmt: skip
    assert authed.header.rc == 1, authed
    assert {x.index: x.data for x in authed.body.values}[2] == b"secret note"
    other = asyncio.run(client.request_authenticated(OP.RESOLUTION, body,
                                                     SecretKeyAuth("300:88.118.9/ADMIN", b"nine"),
                                                     server=server, opflags=0))  # fmt: skip
    assert other.header.rc == 401  # authenticated, but no READ_VALUE on this handle


def _frames(sock: socket.socket, n: int) -> list[Message]:
    buf, out = FrameBuffer(), []
    while len(out) < n:
        data = sock.recv(65536)
        assert data, "connection closed"
        out += [Message.from_wire(f) for _e, f in buf.feed(data)]
    return out


def _answer(request, challenge: Message, secret: bytes = SECRET_8):
    ch = A.Challenge(challenge.body.nonce, *challenge.digest)
    body = SecretKeyAuth(A8, secret).answer(ch, (2, 11))
    return prepare(OP.CHALLENGE_RESPONSE, body, opflags=ADMIN_FLAGS,
                   session_id=challenge.envelope.session_id)  # fmt: skip


def test_a_replayed_answer_on_the_wire_fails(hnode):
    body = ValuesBody(b"88.118.8/W", (v(1, "URL", "u"),))
    request = prepare(OP.CREATE_HANDLE, body, opflags=ADMIN_FLAGS)
    with socket.create_connection(("127.0.0.1", hnode.port), timeout=10) as s:
        s.sendall(request.wire)
        [challenge] = _frames(s, 1)
        assert challenge.header.rc == 402 and isinstance(challenge.body, ChallengeBody)
        answer = _answer(request, challenge)
        s.sendall(answer.wire + answer.wire)  # the same answer twice, back to back
        first, second = _frames(s, 2)
    assert (first.header.rc, second.header.rc) == (1, 403)
    assert [c.op for c in hnode.store.changes_since(hnode.store.last_txn_id() - 1)] == [
        OP.CREATE_HANDLE]


def test_admin_over_udp_from_one_socket(hnode):
    request = prepare(OP.CREATE_HANDLE, ValuesBody(b"88.118.8/U", (v(1, "URL", "u"),)),
                      opflags=ADMIN_FLAGS)  # fmt: skip
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.connect(("127.0.0.1", hnode.port))
        s.send(request.wire)
        challenge = Message.from_wire(s.recv(65536))
        assert challenge.header.rc == 402
        s.send(_answer(request, challenge).wire)
        done = Message.from_wire(s.recv(65536))
    assert done.header.rc == 1 and hnode.values("88.118.8/U")[1] == b"u"


@pytest.mark.parametrize("flags", [ADMIN_FLAGS, 0], ids=["rd", "no-rd"])
def test_the_client_answers_only_a_challenge_for_its_own_request(flags):
    # with RD the reply's digest check refuses it; without, the challenge check does
    seen: list[int] = []

    async def scenario():
        closed = asyncio.Event()

        async def serve(reader, writer):
            frames = FrameBuffer()
            try:
                await talk(reader, writer, frames)
            finally:
                writer.close()
                closed.set()

        async def talk(reader, writer, frames):
            while data := await reader.read(65536):
                for env, frame in frames.feed(data):
                    header = Header.from_wire(frame, C.ENVELOPE_SIZE)
                    seen.append(header.opcode)
                    # challenge someone else's request: the digest of other bytes
                    other = frame[C.ENVELOPE_SIZE:].replace(b"88.118.8/SN", b"88.118.8/XX")
                    reply = codec.respond(
                        Envelope(2, 11, 0x020B, 77, env.request_id, 0, 0), other,
                        Header(header.opcode, 0, header.opflags | C.FLAG_REQUEST_DIGEST, 0xFFFF,
                               0, 0, 0, header.body_length),
                        402, ChallengeBody(A.new_nonce()), version=(2, 11))  # fmt: skip
                    writer.write(reply)

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            body = ValuesBody(b"88.118.8/SN-1", (v(1, "URL", "u"),))
            with pytest.raises(UpstreamUnavailable, match="digest of the request|not for our"):
                await HandleClient().request_authenticated(
                    OP.CREATE_HANDLE, body, SecretKeyAuth(A8, SECRET_8),
                    server=("127.0.0.1", port), opflags=flags)  # fmt: skip
            await asyncio.wait_for(closed.wait(), 5)  # the client hung up
        finally:
            server.close()

    asyncio.run(scenario())
    assert seen == [OP.CREATE_HANDLE]  # no OC 200 was sent
