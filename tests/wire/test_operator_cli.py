"""The operator tools end to end: ``idnode prefix|identity`` as real processes against a running
node, and the REST endpoints of ``resolver.servers.http_operator`` over real HTTP.

The commands run as ``python -m registry.operator_cli`` (the same ``register``/``run`` the
``idnode`` entry point wires) on the data directory of a running ``idnode serve``: a prefix
they create is served at once, a disabled prefix stops resolving over HTTP, Handle UDP and
Handle TCP and comes back when enabled, the printed secret authenticates REST writes (pyhandle
and ``requests``), and a rotated secret stops working.  The REST endpoints are served in this
process by the real REST front-end (``http_app.make_handler``) with ``OperatorHttp.dispatch``
in front of it, over a real store and socket.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
import requests
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from pyhandle.client.resthandleclient import RESTHandleClient

from registry import operator_cli
from registry.authz import Identity
from registry.identities import Authenticator
from registry.operator import Operator
from registry.service import Registry
from registry.sessions import SessionTokens
from resolver.config import Config
from resolver.core.authority import AuthorityHandler
from resolver.core.engine import Resolver
from resolver.protocols.handle.auth import generate_rsa_key, rsa_public_key_bytes
from resolver.servers import http_app
from resolver.servers.http_admin import AdminHttp
from resolver.servers.http_operator import OperatorHttp
from resolver.store.lmdb_store import LmdbStore
from resolver.upstream.client import HandleClient

pytestmark = pytest.mark.wire

REPO = Path(__file__).resolve().parents[2]
ROOT = "300:88.118/ADMIN"
_HANDLE_RE = re.compile(r"handle://127\.0\.0\.1:(\d+)")
TIMEOUT = 10


def cli(env: dict, data: Path, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "registry.operator_cli", *args, "--data", str(data)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    if expect is not None:
        assert r.returncode == expect, f"rc {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def cli_json(env: dict, data: Path, *args: str) -> dict:
    return orjson.loads(cli(env, data, *args, "--json").stdout)


class OpNode:
    """A running node on a store the CLI set up (the node prefix 88.118, its admin the server
    admin), plus the ports and a CLI bound to its data directory."""

    def __init__(self, node, env: dict, root_secret: str) -> None:
        self.node, self.env, self.root_secret = node, env, root_secret
        m = _HANDLE_RE.search(node.banner)
        assert m, node.banner
        self.handle_port = int(m.group(1))

    def cli(self, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess:
        return cli(self.env, self.node.data, *args, expect=expect)

    def cli_json(self, *args: str) -> dict:
        return cli_json(self.env, self.node.data, *args)

    def enterprise(self, prefix: str, org: str = "Example Co") -> str:
        doc = self.cli_json("prefix", "create", prefix, "--org", org)
        assert doc["identity"] == f"300:{prefix}/ADMIN" and doc["prefix"] == prefix
        return doc["secret"]

    def put(self, handle: str, user: str, secret: str, url: str = "https://example.com/x"):
        body = {"values": [{"index": 1, "type": "URL", "data": url}]}
        return requests.put(self.node.api_url + handle, json=body, timeout=TIMEOUT,
                            auth=(user.replace(":", "%3A"), secret))  # fmt: skip

    def get(self, handle: str) -> tuple[int, dict]:
        r = requests.get(self.node.api_url + handle, timeout=TIMEOUT)
        return r.status_code, r.json()

    def rc(self, handle: str, proto: str) -> int:
        client = HandleClient(udp_retry=(2.0,), tcp_timeout=5.0)
        coro = client.resolve(handle, server=("127.0.0.1", self.handle_port), proto=proto)
        return asyncio.run(asyncio.wait_for(coro, 20)).header.rc


@pytest.fixture(scope="module")
def opnode(start_node, tmp_path_factory, idnode_env) -> OpNode:
    data = tmp_path_factory.mktemp("operator") / "data"
    root = cli_json(idnode_env, data, "prefix", "create", "88.118", "--org", "The node")
    node = start_node(data=data, config_text=f'[node]\nserver_admins = ["{ROOT}"]\n')
    return OpNode(node, idnode_env, root["secret"])


# -- the CLI against a running node ----------------------------------------------------------------


def test_the_printed_secret_authenticates_rest_writes_at_once(opnode):
    out = opnode.cli("prefix", "create", "88.118.20", "--org", "Twenty Ltd").stdout
    lines = out.splitlines()
    assert lines[1] == "identity 300:88.118.20/ADMIN" and lines[2].startswith("secret: ")
    secret = lines[2].removeprefix("secret: ")
    r = opnode.put("88.118.20/SN-1", "300:88.118.20/ADMIN", secret)
    assert r.status_code in (200, 201), r.text
    status, doc = opnode.get("88.118.20/SN-1")
    assert status == 200 and doc["values"][0]["data"]["value"] == "https://example.com/x"
    assert opnode.put("88.118.20/SN-2", "300:88.118.20/ADMIN", "wrong").status_code in (401, 403)
    assert opnode.get("88.118.20/SN-2")[0] == 404


def test_pyhandle_registers_with_the_printed_secret(opnode):
    secret = opnode.enterprise("88.118.21")
    client = RESTHandleClient.instantiate_with_username_and_password(
        opnode.node.base_url, "300:88.118.21/ADMIN", secret, HTTPS_verify=False)
    assert client.register_handle("88.118.21/pyh-1", "https://example.com/p") == "88.118.21/pyh-1"
    urls = [v["data"]["value"] for v in opnode.get("88.118.21/pyh-1")[1]["values"]
            if v["type"] == "URL"]  # fmt: skip
    assert urls == ["https://example.com/p"]
    # its secret is no public value: anonymous resolution does not show it
    status, doc = opnode.get("88.118.21/ADMIN")
    assert status == 200 and [v["type"] for v in doc["values"]] == ["HS_ADMIN"]


def test_disable_stops_resolution_on_every_front_end_and_enable_restores_it(opnode):
    secret = opnode.enterprise("88.118.22")
    assert opnode.put("88.118.22/SN-1", "300:88.118.22/ADMIN", secret).status_code == 200
    before = opnode.get("88.118.22/SN-1")
    assert before[0] == 200
    for _ in range(2):  # the second UDP answer comes from the worker's record cache
        assert opnode.rc("88.118.22/SN-1", "udp") == 1
    assert opnode.rc("88.118.22/SN-1", "tcp") == 1

    doc = opnode.cli_json("prefix", "disable", "88.118.22")
    assert doc["enabled"] is False and doc["changed"] is True
    for handle in ("88.118.22/SN-1", "0.NA/88.118.22", "88.118.22/NOPE"):
        status, body = opnode.get(handle)
        assert (status, body["responseCode"]) == (400, 301), (handle, body)
        assert opnode.rc(handle, "udp") == 301 and opnode.rc(handle, "tcp") == 301
    r = opnode.put("88.118.22/SN-2", "300:88.118.22/ADMIN", secret)
    assert (r.status_code, r.json()["responseCode"]) == (400, 301)
    listed = opnode.cli("prefix", "list").stdout
    assert "88.118.22\tdisabled\tExample Co" in listed.splitlines()

    assert "prefix 88.118.22 enabled" in opnode.cli("prefix", "enable", "88.118.22").stdout
    assert opnode.get("88.118.22/SN-1") == before  # records kept, byte for byte
    assert opnode.rc("88.118.22/SN-1", "udp") == 1 and opnode.rc("88.118.22/SN-1", "tcp") == 1
    assert opnode.get("88.118.22/SN-2")[0] == 404  # the refused write left nothing


def test_rotation_invalidates_the_old_secret(opnode):
    old = opnode.enterprise("88.118.23")
    assert opnode.put("88.118.23/SN-1", "300:88.118.23/ADMIN", old).status_code == 200
    doc = opnode.cli_json("identity", "rotate", "88.118.23/ADMIN", "--index", "300")
    new = doc["secret"]
    assert doc["identity"] == "300:88.118.23/ADMIN" and new != old
    assert opnode.put("88.118.23/SN-2", "300:88.118.23/ADMIN", old).status_code in (401, 403)
    assert opnode.put("88.118.23/SN-2", "300:88.118.23/ADMIN", new).status_code == 200


def test_identity_add_gives_a_new_identity_its_admins_can_then_grant_rights(opnode):
    first = opnode.enterprise("88.118.24")
    doc = opnode.cli_json("identity", "add", "88.118.24/ADMIN", "--index", "301")
    assert doc["identity"] == "301:88.118.24/ADMIN"
    added = doc["secret"]
    # 301 authenticates (403 rc 401: not allowed) but is not in the admin group yet (rc 403
    # would be a failed authentication): a key is not a right.
    r = opnode.put("88.118.24/SN-1", "301:88.118.24/ADMIN", added)
    assert (r.status_code, r.json()["responseCode"]) == (403, 401)
    r = opnode.put("88.118.24/SN-1", "301:88.118.24/ADMIN", "wrong")
    assert (r.status_code, r.json()["responseCode"]) == (403, 403)
    # the enterprise's admin adds 301 to its group on its own prefix handle (REST, index=200)
    members = [{"handle": "88.118.24/ADMIN", "index": i} for i in (300, 301)]
    group = {"values": [{"index": 200, "type": "HS_VLIST",
                         "data": {"format": "vlist", "value": members}}]}  # fmt: skip
    r = requests.put(opnode.node.api_url + "0.NA/88.118.24?index=200", json=group,
                     auth=("300%3A88.118.24/ADMIN", first), timeout=TIMEOUT)  # fmt: skip
    assert r.status_code == 200, r.text
    assert opnode.put("88.118.24/SN-1", "301:88.118.24/ADMIN", added).status_code == 200


def test_prefix_create_with_a_public_key_and_show(opnode, tmp_path):
    key = generate_rsa_key(1024)
    pem = tmp_path / "admin.pub.pem"
    pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    doc = opnode.cli_json("prefix", "create", "88.118.25", "--org", "Keyed", "--pubkey", str(pem))
    assert doc["secret"] is None and doc["identity"] == "300:88.118.25/ADMIN"
    status, rec = opnode.get("88.118.25/ADMIN?type=HS_PUBKEY")
    assert status == 200 and rec["values"][0]["data"]["format"] == "key"
    show = opnode.cli_json("prefix", "show", "88.118.25")
    assert (show["enabled"], show["org"], show["identifiers"]) == (True, "Keyed", 1)
    assert show["admins"][0]["members"] == ["300:88.118.25/ADMIN"]
    human = opnode.cli("prefix", "show", "88.118.25").stdout
    assert "prefix 88.118.25 (enabled)" in human and "organisation: Keyed" in human
    store = LmdbStore(opnode.node.data, readonly=True)
    try:
        ident = Identity.parse("300:88.118.25/ADMIN")
        assert Authenticator(store).key_values(ident, "HS_PUBKEY") == [rsa_public_key_bytes(key)]
    finally:
        store.close()


def test_cli_exit_codes_and_messages(opnode, tmp_path, capsys):
    # In-process (operator_cli.main: the same code as the process, without a start-up per case)
    data = str(opnode.node.data)

    def run(*args: str, expect: int, data: str = data) -> str:
        assert operator_cli.main([*args, "--data", data]) == expect, args
        out = capsys.readouterr()
        assert expect == 0 or out.out == ""
        return out.err

    assert "already homed" in run("prefix", "create", "88.118", "--org", "Again", expect=1)
    assert "global service" in run("prefix", "create", "0.NA", "--org", "X", expect=2)
    assert "missing.pem" in run("prefix", "create", "88.118.26", "--org", "X", "--pubkey",
                                str(tmp_path / "missing.pem"), expect=2)  # fmt: skip
    (tmp_path / "bad.pem").write_text("junk")
    assert "PEM" in run("prefix", "create", "88.118.26", "--org", "X", "--pubkey",
                        str(tmp_path / "bad.pem"), expect=2)  # fmt: skip
    run("prefix", "list", expect=0)
    assert "not homed" in run("prefix", "disable", "77.7", expect=1)
    assert "not homed" in run("prefix", "show", "77.7", expect=1)
    assert "Value already exists" in run("identity", "add", "88.118/ADMIN", "--index", "300",
                                         expect=1)  # fmt: skip
    assert "not HS_SECKEY" in run("identity", "rotate", "88.118/ADMIN", "--index", "100",
                                  expect=2)  # fmt: skip
    with pytest.raises(SystemExit) as info:  # argparse: an index must be positive
        operator_cli.main(["identity", "rotate", "88.118/ADMIN", "--index", "0"])
    assert info.value.code == 2
    capsys.readouterr()
    bad = tmp_path / "bad.toml"
    bad.write_text("[node]\nworkers = -1\n")
    assert "workers" in run("prefix", "list", "--config", str(bad), expect=2)
    empty = tmp_path / "nothing-here"
    assert "no store" in run("prefix", "list", expect=1, data=str(empty))
    assert not empty.exists()
    assert "88.118.26" not in opnode.cli("prefix", "list").stdout  # nothing was written


# -- the REST endpoints ----------------------------------------------------------------------------


class RestServer:
    """The REST front-end as ``idnode serve`` composes it, with ``OperatorHttp.dispatch`` first,
    served on 127.0.0.1 from a thread of this process."""

    def __init__(self, store: LmdbStore) -> None:
        cfg = Config(data=store.path, server_admins=(ROOT,))
        registry = Registry(store, server_admins=[Identity.parse(ROOT)])
        admin = AdminHttp(registry, Authenticator(store), SessionTokens(store))
        front = http_app.make_handler(store, Resolver([AuthorityHandler(store)]), cfg, admin)
        self.ops = OperatorHttp(Operator(registry), admin)

        async def handler(request):
            resp = await self.ops.dispatch(request)
            return resp if resp is not None else await front(request)

        self.handler = handler
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(TIMEOUT)

    async def _start(self) -> None:
        self.runner = web.ServerRunner(web.Server(self.handler))  # needs the running loop
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


@pytest.fixture(scope="module")
def rest(tmp_path_factory):
    store = LmdbStore(tmp_path_factory.mktemp("rest") / "data", map_size=64 << 20)
    op = Operator(Registry(store))
    _, root = op.create_prefix("88.118", "The node")
    _, nine = op.create_prefix("88.118.9", "Example Co")
    server = RestServer(store)
    server.root, server.nine = root, nine
    yield server
    server.close()
    store.close()


def _as(secret: str, user: str = ROOT) -> tuple[str, str]:
    return user.replace(":", "%3A"), secret


def test_rest_refuses_the_anonymous_and_non_server_admins(rest):
    r = requests.get(rest.url + "/api/v1/prefixes", timeout=TIMEOUT)
    assert (r.status_code, r.json()["responseCode"]) == (401, 402)
    assert "WWW-Authenticate" in r.headers
    r = requests.get(rest.url + "/api/v1/prefixes", auth=_as("nope"), timeout=TIMEOUT)
    assert (r.status_code, r.json()["responseCode"]) == (403, 403)
    nine = _as(rest.nine, "300:88.118.9/ADMIN")
    for method, path, body in (("GET", "/api/v1/prefixes", None),
                               ("POST", "/api/v1/prefixes", {"prefix": "88.118.9.1", "org": "x"}),
                               ("POST", "/api/v1/prefixes/88.118/disable", None),
                               ("POST", "/api/v1/identities/rotate",
                                {"handle": "88.118/ADMIN", "index": 300})):  # fmt: skip
        r = requests.request(method, rest.url + path, json=body, auth=nine, timeout=TIMEOUT)
        assert (r.status_code, r.json()["responseCode"]) == (403, 401), (path, r.text)
    r = requests.get(rest.url + "/api/v1/prefixes", auth=_as(rest.root), timeout=TIMEOUT)
    assert {p["prefix"] for p in r.json()["prefixes"]} == {"88.118", "88.118.9"}


def test_rest_prefix_create_returns_a_working_secret_once(rest):
    r = requests.post(rest.url + "/api/v1/prefixes", auth=_as(rest.root), timeout=TIMEOUT,
                      json={"prefix": "88.118.30", "org": "Thirty"})  # fmt: skip
    assert r.status_code == 201 and r.headers["Cache-Control"] == "no-store"
    doc = r.json()
    assert (doc["responseCode"], doc["prefix"], doc["org"], doc["identity"]) == (
        1, "88.118.30", "Thirty", "300:88.118.30/ADMIN")
    body = {"values": [{"index": 1, "type": "URL", "data": "https://example.com/30"}]}
    w = requests.put(rest.url + "/api/handles/88.118.30/SN-1", json=body, timeout=TIMEOUT,
                     auth=_as(doc["secret"], "300:88.118.30/ADMIN"))  # fmt: skip
    assert w.status_code == 200, w.text
    r = requests.post(rest.url + "/api/v1/prefixes", auth=_as(rest.root), timeout=TIMEOUT,
                      json={"prefix": "88.118.30", "org": "Again"})  # fmt: skip
    assert (r.status_code, r.json()["responseCode"]) == (409, 101)
    r = requests.post(rest.url + "/api/v1/prefixes", auth=_as(rest.root), timeout=TIMEOUT,
                      json={"prefix": "99", "org": "Top"})  # fmt: skip
    assert (r.status_code, r.json()["responseCode"]) == (403, 401)  # top level: operator only
    shown = requests.get(rest.url + "/api/v1/prefixes/88.118.30", auth=_as(rest.root),
                         timeout=TIMEOUT).json()  # fmt: skip
    assert (shown["org"], shown["identifiers"], shown["enabled"]) == ("Thirty", 2, True)
    assert "secret" not in orjson.dumps(shown).decode().lower()


def test_rest_disable_and_enable(rest):
    body = {"values": [{"index": 1, "type": "URL", "data": "https://example.com/9"}]}
    put = requests.put(rest.url + "/api/handles/88.118.9/SN-1", json=body, timeout=TIMEOUT,
                       auth=_as(rest.nine, "300:88.118.9/ADMIN"))  # fmt: skip
    assert put.status_code == 200, put.text
    root = _as(rest.root)
    r = requests.post(rest.url + "/api/v1/prefixes/88.118.9/disable", auth=root, timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["enabled"] is False and r.json()["changed"] is True
    g = requests.get(rest.url + "/api/handles/88.118.9/SN-1", timeout=TIMEOUT)
    assert (g.status_code, g.json()["responseCode"]) == (400, 301)
    r = requests.post(rest.url + "/api/v1/prefixes/88.118.9/disable", auth=root, timeout=TIMEOUT)
    assert r.json()["changed"] is False
    shown = requests.get(rest.url + "/api/v1/prefixes/88.118.9", auth=root, timeout=TIMEOUT)
    assert shown.json()["enabled"] is False
    r = requests.post(rest.url + "/api/v1/prefixes/88.118.9/enable", auth=root, timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["enabled"] is True
    g = requests.get(rest.url + "/api/handles/88.118.9/SN-1", timeout=TIMEOUT)
    assert g.status_code == 200
    r = requests.post(rest.url + "/api/v1/prefixes/77.7/disable", auth=root, timeout=TIMEOUT)
    assert (r.status_code, r.json()["responseCode"]) == (404, 100)


def test_rest_identity_add_and_rotate(rest):
    root = _as(rest.root)
    _, secret = Operator(Registry(rest.ops.operator.store)).create_prefix("88.118.31", "Rot")
    r = requests.post(rest.url + "/api/v1/identities", auth=root, timeout=TIMEOUT,
                      json={"handle": "88.118.31/ADMIN", "index": 301})  # fmt: skip
    assert r.status_code == 201 and r.json()["identity"] == "301:88.118.31/ADMIN"
    added = r.json()["secret"]
    r = requests.post(rest.url + "/api/v1/identities/rotate", auth=root, timeout=TIMEOUT,
                      json={"handle": "88.118.31/ADMIN", "index": "300"})  # fmt: skip
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    fresh = r.json()["secret"]
    url = rest.url + "/api/handles/88.118.31/SN-1"
    body = {"values": [{"index": 1, "type": "URL", "data": "https://example.com/31"}]}
    old = requests.put(url, json=body, auth=_as(secret, "300:88.118.31/ADMIN"), timeout=TIMEOUT)
    assert old.status_code == 403 and old.json()["responseCode"] == 403
    new = requests.put(url, json=body, auth=_as(fresh, "300:88.118.31/ADMIN"), timeout=TIMEOUT)
    assert new.status_code == 200
    store = rest.ops.operator.store
    assert Authenticator(store).secret("301:88.118.31/ADMIN", added.encode(), "t")
    r = requests.post(rest.url + "/api/v1/identities", auth=root, timeout=TIMEOUT,
                      json={"handle": "88.118.31/ADMIN", "index": 301})  # fmt: skip
    assert (r.status_code, r.json()["responseCode"]) == (409, 201)


def test_rest_bad_requests(rest):
    root = _as(rest.root)
    url = rest.url + "/api/v1/prefixes"
    r = requests.put(url, auth=root, timeout=TIMEOUT)
    assert r.status_code == 405 and "POST" in r.headers["Allow"]
    assert requests.get(url + "/88.118/frobnicate", auth=root, timeout=TIMEOUT).status_code == 404
    assert requests.get(rest.url + "/api/v1/identities", timeout=TIMEOUT).status_code == 405
    r = requests.post(url, data="prefix=88.118.40&org=x", auth=root, timeout=TIMEOUT,
                      headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert r.status_code == 400 and "application/json" in r.json()["message"]
    for body in (b"[1]", b"{nope", b'{"prefix": 7, "org": "x"}', b'{"prefix": "88.118.40"}'):
        r = requests.post(url, data=body, auth=root, timeout=TIMEOUT,
                          headers={"Content-Type": "application/json"})  # fmt: skip
        assert r.status_code == 400, body
    r = requests.post(url, json={"prefix": "88.118.40", "org": "x", "pubkey": "junk"},
                      auth=root, timeout=TIMEOUT)  # fmt: skip
    assert (r.status_code, r.json()["responseCode"]) == (400, 202)
    listed = requests.get(url, auth=root, timeout=TIMEOUT).json()["prefixes"]
    assert "88.118.40" not in {p["prefix"] for p in listed}


def test_dispatch_leaves_other_paths_to_the_rest_api(rest):
    async def probe(path: str):
        from aiohttp.test_utils import make_mocked_request

        return await rest.ops.dispatch(make_mocked_request("GET", path))

    for path in ("/api/handles/88.118.9/SN-1", "/api/v1/changes", "/api/v1/prefixesX",
                 "/api/v1/identitiesfoo", "/"):  # fmt: skip
        assert asyncio.run(probe(path)) is None, path


def test_rest_reads_a_body_sent_in_pieces_and_bounds_it(rest):
    # A body that arrives in several TCP segments, apart in time, must still be read whole.
    key = generate_rsa_key(1024)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    body = orjson.dumps({"prefix": "88.118.41", "org": "Chunked", "pubkey": pem})
    user, secret = _as(rest.root)
    token = base64.b64encode(f"{user}:{secret}".encode()).decode()
    head = (f"POST /api/v1/prefixes HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
            f"Authorization: Basic {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    port = int(rest.url.rpartition(":")[2])
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(head + body[:100])
        for i in range(100, len(body), 200):
            time.sleep(0.02)
            sock.sendall(body[i : i + 200])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest_of = answer.partition(b"\r\n")
    assert b" 201 " in status_line, answer
    assert orjson.loads(rest_of.partition(b"\r\n\r\n")[2])["secret"] is None
    big = orjson.dumps({"prefix": "88.118.42", "org": "x" * (70 << 10)})
    r = requests.post(rest.url + "/api/v1/prefixes", data=big, auth=_as(rest.root),
                      headers={"Content-Type": "application/json"}, timeout=TIMEOUT)  # fmt: skip
    assert (r.status_code, r.json()["message"]) == (400, "Request body too large")
