"""SIGHUP reload under load, refused reloads, start-up refusal of a bad configuration
(issue 8 §5), and the access log of a live node (§4): real ``idnode serve`` processes.

The load: one thread sends HTTP requests (a fresh connection each) and one Handle UDP
resolutions (a Handle client's retries: a datagram unanswered after ``UDP_TIMEOUT`` is sent
again, at most ``UDP_TRIES`` times) for the whole test, while the supervisor is sent SIGHUP
twice.  Every HTTP request must get its 200 and every Handle request its answer.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest

from enterprises import enterprise
from proc import children, wait_for
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import (
    Envelope, Header, Message, ResolutionRequest, envelope_flags,
)  # fmt: skip

pytestmark = pytest.mark.wire

REPO = Path(__file__).resolve().parents[2]
DEMO = "88.118.8/demo-1"
UDP_TIMEOUT = 1.0
UDP_TRIES = 5


def _resolution(request_id: int, handle: str = DEMO) -> bytes:
    env = Envelope(2, 10, envelope_flags(suggest=(2, 10)), 0, request_id)
    return Message(env, Header(C.OpCode.RESOLUTION, 0, C.FLAG_PUBLIC_ONLY),
                   ResolutionRequest(handle.encode())).to_wire()  # fmt: skip


class Load:
    """HTTP and Handle UDP clients running until ``stop()``; what each saw."""

    def __init__(self, node) -> None:
        self.node = node
        self.done = threading.Event()
        self.http_ok = self.udp_ok = self.udp_retries = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._http, daemon=True),
                        threading.Thread(target=self._udp, daemon=True)]  # fmt: skip

    def __enter__(self) -> "Load":
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        for t in self.threads:
            t.join(timeout=15)

    def _http(self) -> None:
        while not self.done.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.node.port, timeout=10)
            try:
                conn.request("GET", f"/api/handles/{DEMO}", headers={"Connection": "close"})
                resp = conn.getresponse()
                body = resp.read()
                if resp.status == 200 and body.startswith(b'{"responseCode":1,'):
                    self.http_ok += 1
                else:
                    self.failures.append(f"HTTP {resp.status}: {body[:100]!r}")
            except OSError as exc:
                self.failures.append(f"HTTP {type(exc).__name__}: {exc}")
            finally:
                conn.close()

    def _udp(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(UDP_TIMEOUT)
        request_id = 0
        try:
            while not self.done.is_set():
                request_id += 1
                wire = _resolution(request_id)
                for attempt in range(UDP_TRIES):
                    if attempt:
                        self.udp_retries += 1
                    sock.sendto(wire, ("127.0.0.1", self.node.handle_port))
                    if self._answered(sock, request_id):
                        self.udp_ok += 1
                        break
                else:
                    self.failures.append(f"Handle UDP request {request_id}: no answer in "
                                         f"{UDP_TRIES} tries")  # fmt: skip
        finally:
            sock.close()

    @staticmethod
    def _answered(sock: socket.socket, request_id: int) -> bool:
        deadline = time.monotonic() + UDP_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                reply = sock.recv(65536)
            except TimeoutError:
                return False
            # envelope: request id at 8..12; header: response code at 24..28
            if int.from_bytes(reply[8:12], "big") == request_id:
                return int.from_bytes(reply[24:28], "big") == 1
        return False


def _workers(node, n: int) -> set[int]:
    return wait_for(lambda: c if len(c := children(node.pid)) == n else None, 15,
                    f"{n} worker processes")  # fmt: skip


def _config(node) -> Path:
    return node.stderr_path.parent / "idnode.toml"


def _reload(node, text: str) -> None:
    _config(node).write_text(text)
    os.kill(node.pid, signal.SIGHUP)


def _log_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def test_sighup_under_load_loses_no_request_and_applies_the_new_config(start_node, tmp_path):
    node = start_node(workers=2, config_text="[stats]\nflush_interval = 10\n")
    first = _workers(node, 2)
    access = tmp_path / "access.log"
    with Load(node) as load:
        wait_for(lambda: load.http_ok > 20 and load.udp_ok > 20, 10, "load under way")
        # 1: the access log goes on; the new workers write it, the old ones are gone
        _reload(node, f'[stats]\nflush_interval = 10\n[log]\naccess_log = "{access}"\n')
        wait_for(lambda: any(" UDP:HDL(2.10) " in x for x in _log_lines(access))
                 and any(" HTTP " in x for x in _log_lines(access)), 10,
                 "the access log of the new workers")  # fmt: skip
        second = wait_for(lambda: c if len(c := children(node.pid)) == 2 and not c & first
                          else None, 15, "the old workers to drain and exit")  # fmt: skip
        # 2: another change (JSON lines, another flush interval) while the load goes on
        seen = load.http_ok + load.udp_ok
        _reload(node, f'[stats]\nflush_interval = 2\n[log]\naccess_log = "{access}"\n'
                      'access_format = "json"\n')  # fmt: skip
        wait_for(lambda: c if len(c := children(node.pid)) == 2 and not c & second else None,
                 15, "the second reload's workers alone")  # fmt: skip
        wait_for(lambda: load.http_ok + load.udp_ok > seen + 40, 10, "more answers after it")
        wait_for(lambda: {json.loads(x)["interface"] for x in _log_lines(access)
                          if x.startswith("{")} >= {"HTTP", "UDP:HDL(2.10)"}, 10,
                 "JSON lines from the second reload's workers")  # fmt: skip
    assert load.failures == [], load.failures[:5]
    print(f"answered: {load.http_ok} HTTP, {load.udp_ok} Handle UDP ({load.udp_retries} "
          "retried datagrams)")  # fmt: skip
    assert load.http_ok > 40 and load.udp_ok > 40
    lines = _log_lines(access)
    docs = [json.loads(x) for x in lines if x.startswith("{")]
    assert docs and {d["interface"] for d in docs} >= {"HTTP", "UDP:HDL(2.10)"}
    assert all(d["identifier"] == DEMO and d["code"] in (1, 200) for d in docs)
    stderr = node.stderr()
    assert stderr.count("reloaded the configuration") == 2, stderr
    assert "E02" not in stderr, stderr  # no refusal, no failure, no restart
    assert node.stop() == 0


def test_refused_reloads_keep_the_node_as_it_was(start_node, tmp_path):
    node = start_node(workers=1, config_text="[stats]\nflush_interval = 10\n")
    before = _workers(node, 1)
    _reload(node, "[stats\nflush_interval = ")  # not TOML
    wait_for(lambda: node.stderr().count("E024") == 1, 10, "the refusal of the bad file")
    _reload(node, "[stats]\nflush_interval = 0\n")  # out of range
    wait_for(lambda: node.stderr().count("E024") == 2, 10, "the refusal of the bad value")
    _reload(node, '[store]\nmap_size = "2GiB"\n')  # valid, but only a restart can apply it
    wait_for(lambda: node.stderr().count("E024") == 3, 10, "the refusal of a restart-only key")
    access = tmp_path / "no-such-dir" / "access.log"
    _reload(node, f'[log]\naccess_log = "{access}"\n')
    wait_for(lambda: node.stderr().count("E024") == 4, 10, "the refusal of a missing directory")
    stderr = node.stderr()
    assert "not valid TOML" in stderr and "stats.flush_interval" in stderr, stderr
    assert "store.map_size" in stderr and "restart" in stderr, stderr
    assert children(node.pid) == before  # nothing was restarted
    assert node.get(f"/api/handles/{DEMO}").status == 200
    assert "reloaded the configuration" not in stderr
    assert node.stop() == 0


def _serve(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resolver", "serve", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=30)  # fmt: skip


@pytest.mark.parametrize("text, key", [
    ("[http]\nport = 70000\n", "http.port"),
    ("[nosuch]\nkey = 1\n", "nosuch"),
    ('[dns.rrl]\nrate-limit = 10\nwhitelist = ["not an address"]\n', "dns.rrl.whitelist"),
    ('[log]\naccess_log = "{tmp}/missing/access.log"\n', "log.access_log"),
])  # fmt: skip
def test_bad_config_exits_non_zero_before_binding(tmp_path, idnode_env, text, key):
    # The port is held by a socket without SO_REUSEPORT: had serve bound anything before
    # checking its configuration, it would fail with "Address already in use" instead.
    cfg = tmp_path / "idnode.toml"
    cfg.write_text(text.replace("{tmp}", str(tmp_path)))
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        r = _serve(["--config", str(cfg), "--data", str(tmp_path / "data"), "--host",
                    "127.0.0.1", "--http-port", str(port), "--handle-port", str(port),
                    "--dns-port", str(port), "--workers", "1"], idnode_env)  # fmt: skip
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert key in r.stderr, r.stderr
    assert "Address already in use" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "/api/handles/" not in r.stdout  # no banner
    assert not (tmp_path / "data").exists()  # not even the store was created


SECRET = "reload access secret"


def test_access_log_of_a_live_node(start_node, tmp_path, load_lines):
    access = tmp_path / "access.log"
    data = load_lines(tmp_path / "data", enterprise("88.118.77", SECRET))
    node = start_node(data=data, workers=1,
                      config_text=f'[log]\naccess_log = "{access}"\naccess_format = "json"\n')
    auth = base64.b64encode(f"300%3A88.118.77/ADMIN:{SECRET}".encode()).decode()
    body = json.dumps({"values": [{"index": 1, "type": "URL", "data": "https://example.org/"}]})
    r = node.get("/api/handles/88.118.77/logged?overwrite=true", method="PUT",
                 headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
                 body=body.encode())  # fmt: skip
    assert r.status == 200 and b"\"responseCode\":1" in r.body, r.body
    assert node.get("/api/handles/88.118.77/logged?type=URL").status == 200
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    try:
        sock.sendto(_resolution(9, "88.118.77/logged"), ("127.0.0.1", node.handle_port))
        assert int.from_bytes(sock.recv(65536)[24:28], "big") == 1
    finally:
        sock.close()
    with socket.create_connection(("127.0.0.1", node.handle_port), timeout=5) as tcp:
        tcp.sendall(_resolution(10, "88.118.77/nothing"))
        assert int.from_bytes(tcp.recv(65536)[24:28], "big") == 100
    name = "logged.77.118.88.id.idnode.test."
    reply = dns.query.udp(dns.message.make_query(name, "URI"), "127.0.0.1", timeout=5,
                          port=node.dns_port)  # fmt: skip
    assert reply.rcode() == dns.rcode.NOERROR and reply.answer

    def logged():
        docs = [json.loads(x) for x in _log_lines(access)]
        return docs if len([d for d in docs if "77" in d["identifier"]]) >= 5 else None

    docs = [d for d in wait_for(logged, 10, "five lines in the access log")
            if "77" in d["identifier"]]  # fmt: skip
    put, get, udp, tcp, dns_line = docs[:5]
    assert (dns_line["interface"], dns_line["op"], dns_line["code"], dns_line["identifier"]) == (
        "UDP:DNS", "URI", "NOERROR", name)
    assert (put["op"], put["code"], put["identity"], put["identifier"]) == (
        "PUT", 200, "300:88.118.77/ADMIN", "88.118.77/logged")
    assert (get["op"], get["code"], get["identity"]) == ("GET", 200, "")
    assert (udp["interface"], udp["op"], udp["code"]) == ("UDP:HDL(2.10)", 1, 1)
    assert (tcp["interface"], tcp["code"], tcp["identifier"]) == ("TCP:HDL(2.10)", 100,
                                                                  "88.118.77/nothing")
    assert all(d["client"] == "127.0.0.1" and d["ms"] >= 0 for d in docs)
    text = access.read_text()
    assert SECRET not in text and auth not in text and "overwrite" not in text
    assert node.stop() == 0
