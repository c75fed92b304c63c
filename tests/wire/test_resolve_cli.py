"""``idnode resolve`` against a running node.

Acceptance of the Handle-protocol issue, with the command run as a subprocess
(``python -m resolver resolve``): over udp, tcp and http the ``--json`` output is byte-identical
for every demo identifier, found or not, and a ~3 KB record (six 500-byte values, more than one
UDP packet) resolves the same way over all three.  The http output is the node's REST body
itself, so the udp and tcp outputs are compared with what the REST API serves.  Filters, the
human table and usage errors call ``resolver.cli.main`` in-process (same code, real sockets,
without a Python start-up per case).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest

from resolver import cli

pytestmark = pytest.mark.wire

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "registry" / "demo.jsonl"
LONG = "88.118.8/设备-压缩机/批次-2026-11/序列号-0001-温州工厂-二号生产线-质检合格-出口型号-αβγ"
BIG = "88.118.77/big-1"
BIG_DATA = [(f"part-{i}:" + chr(0x40 + i) * 500)[:500] for i in range(1, 7)]
PROTOS = ("udp", "tcp", "http")
RUN_TIMEOUT = 30.0
_HANDLE_RE = re.compile(r"handle://127\.0\.0\.1:(\d+)")


class CliNode:
    def __init__(self, node) -> None:
        self.node = node
        m = _HANDLE_RE.search(node.banner)
        assert m, f"no handle:// port in the banner {node.banner!r}"
        self.handle_port = int(m.group(1))
        self.http_port = node.port

    def server(self, proto: str) -> str:
        return f"127.0.0.1:{self.http_port if proto == 'http' else self.handle_port}"


def _load(data: Path, source: Path, env: dict) -> None:
    r = subprocess.run([sys.executable, "-m", "resolver", "load", "--data", str(data), str(source)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, f"idnode load failed:\n{r.stdout}\n{r.stderr}"


@pytest.fixture(scope="module")
def cli_node(start_node, tmp_path_factory, idnode_env) -> CliNode:
    work = tmp_path_factory.mktemp("resolve-cli")
    big = work / "big.jsonl"
    lines = [
        {"handle": "0.NA/88.118.77", "values": [{"index": 100, "type": "HS_ADMIN", "data": {
            "format": "admin", "value": {"handle": "0.NA/88.118.77", "index": 300,
                                         "permissions": "011111111111"}}}]},
        {"handle": BIG, "values": [{"index": i, "type": "PART", "data": d}
                                   for i, d in enumerate(BIG_DATA, 1)]},
    ]  # fmt: skip
    big.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in lines))
    data = work / "data"
    _load(data, DEMO, idnode_env)
    _load(data, big, idnode_env)
    return CliNode(start_node(data=data, workers=2, args=("--handle-port", "0")))


def run_many(env: dict, *argvs: list[str]) -> list[subprocess.CompletedProcess]:
    """Run several ``idnode resolve`` commands at once; each bounded by RUN_TIMEOUT."""
    procs = [subprocess.Popen([sys.executable, "-m", "resolver", "resolve", *argv], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for argv in argvs]  # fmt: skip
    out = []
    for argv, p in zip(argvs, procs):
        try:
            stdout, stderr = p.communicate(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError(f"idnode resolve {argv} did not finish in {RUN_TIMEOUT}s") from None
        out.append(subprocess.CompletedProcess(argv, p.returncode, stdout, stderr))
    return out


def over_each(node: CliNode, env: dict, handle: str, *extra: str, protos=PROTOS):
    return dict(zip(protos, run_many(env, *[
        [handle, "--proto", p, "--server", node.server(p), "--timeout", "10", *extra]
        for p in protos])))  # fmt: skip


def in_process(capsysbinary, node: CliNode | None, proto: str, *argv: str
               ) -> tuple[int, bytes, bytes]:  # fmt: skip
    """``idnode resolve ARGV --proto PROTO --server <node>`` through ``cli.main``."""
    args = ["resolve", *argv]
    if node is not None:
        args += ["--proto", proto, "--server", node.server(proto), "--timeout", "10"]
    code = cli.main(args)
    captured = capsysbinary.readouterr()
    return code, captured.out, captured.err


def in_process_each(capsysbinary, node: CliNode, *argv: str) -> dict[str, tuple[int, bytes, bytes]]:
    return {p: in_process(capsysbinary, node, p, *argv) for p in PROTOS}


def rest_body(node: CliNode, handle: str, query: str = "") -> bytes:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=10)
    try:
        path = "/api/handles/" + quote(handle, safe="/") + (f"?{query}" if query else "")
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


# -- --json is byte-identical over udp, tcp and http -----------------------------------------------
IDENTIFIERS = [
    ("88.118.8/demo-1", 1),
    ("88.118.8/DEMO-1", 1),
    ("88.118.8/demo-2", 1),
    (LONG, 1),
    ("0.NA/88.118.8", 1),
    (BIG, 1),
    ("88.118.8/missing", 100),
    ("88.118.9/demo-1", 301),
]


@pytest.mark.parametrize("handle, rc", IDENTIFIERS, ids=[h[:24] for h, _ in IDENTIFIERS])
def test_json_is_identical_over_udp_tcp_and_http(cli_node, idnode_env, handle, rc):
    got = over_each(cli_node, idnode_env, handle, "--json")
    for proto, r in got.items():
        assert r.returncode == (0 if rc == 1 else 1), (proto, r.stderr.decode())
        assert r.stderr == b"", (proto, r.stderr.decode())
    assert got["udp"].stdout == got["tcp"].stdout == got["http"].stdout
    assert got["udp"].stdout == rest_body(cli_node, handle) + b"\n"
    doc = orjson.loads(got["udp"].stdout)
    assert doc["responseCode"] == rc and doc["handle"] == handle
    if handle == BIG:
        assert [v["data"]["value"] for v in doc["values"]] == BIG_DATA


FILTERS = [
    ("88.118.8/demo-1", ["--type", "URL", "--type", "EMAIL"], "type=URL&type=EMAIL", 1),
    ("88.118.8/demo-1", ["--index", "100", "--type", "email"], "index=100&type=email", 1),
    ("88.118.8/demo-2", ["--type", "PRODUCT."], "type=PRODUCT.", 1),
    ("88.118.8/demo-2", ["--type", "PRODUCT"], "type=PRODUCT", 200),
    ("88.118.8/demo-2", ["--index", "3"], "index=3", 200),  # not public: withheld
    (BIG, ["--index", "6", "--index", "2"], "index=6&index=2", 1),
]


@pytest.mark.parametrize("handle, args, query, rc", FILTERS, ids=[" ".join(f[1]) for f in FILTERS])
def test_filters_give_the_same_json_everywhere(cli_node, capsysbinary, handle, args, query, rc):
    got = in_process_each(capsysbinary, cli_node, handle, "--json", *args)
    assert got["udp"][1] == got["tcp"][1] == got["http"][1]
    assert got["udp"][1] == rest_body(cli_node, handle, query) + b"\n"
    assert orjson.loads(got["udp"][1])["responseCode"] == rc
    assert {r[0] for r in got.values()} == {0 if rc == 1 else 1}


def test_default_protocol_is_the_handle_protocol(cli_node, idnode_env):
    auto, udp = run_many(idnode_env,
                         ["88.118.8/demo-1", "--server", cli_node.server("udp"), "--json"],
                         ["88.118.8/demo-1", "--proto", "udp", "--server", cli_node.server("udp"),
                          "--json"])  # fmt: skip
    assert auto.returncode == udp.returncode == 0
    assert auto.stdout == udp.stdout == rest_body(cli_node, "88.118.8/demo-1") + b"\n"


# -- human output --------------------------------------------------------------------------------
def test_table_of_values(cli_node, capsysbinary):
    got = in_process_each(capsysbinary, cli_node, "88.118.8/demo-1")
    assert got["udp"] == got["tcp"] == got["http"]
    code, out, _ = got["udp"]
    assert code == 0
    lines = out.decode().splitlines()
    assert lines[0] == "88.118.8/demo-1"
    rows = [line.split(None, 3) for line in lines[1:]]
    assert rows == [
        ["index", "type", "ttl", "data"],
        ["1", "URL", "86400", "https://example.com/sn/demo-1"],
        ["2", "EMAIL", "86400", "quality@example.com"],
        ["100", "HS_ADMIN", "86400",
         '{"handle":"0.NA/88.118.8","index":200,"permissions":"011111111111"}'],
    ]  # fmt: skip


@pytest.mark.parametrize("handle, rc, text", [
    ("88.118.8/missing", 100, "HANDLE_NOT_FOUND"),
    ("88.118.9/demo-1", 301, "That prefix doesn't live here"),
])  # fmt: skip
def test_other_response_codes_are_printed_and_exit_1(cli_node, capsysbinary, handle, rc, text):
    for proto, (code, out, _) in in_process_each(capsysbinary, cli_node, handle).items():
        assert code == 1, proto
        out = out.decode()
        assert handle in out and f"response code {rc}" in out and text in out, (proto, out)


# -- failures ------------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("proto", ["auto", "udp", "tcp", "http"])
def test_unreachable_server_exits_2(capsysbinary, proto):
    code = cli.main(["resolve", "88.118.8/demo-1", "--proto", proto, "--server",
                     f"127.0.0.1:{_closed_port()}", "--timeout", "5"])  # fmt: skip
    captured = capsysbinary.readouterr()
    assert code == 2
    assert captured.out == b""
    assert captured.err.startswith(b"idnode resolve: ")


@pytest.mark.parametrize("args", [
    ["--server", "nowhere"], ["--server", "127.0.0.1:99999"], ["--server", ":2641"],
    ["--index", "abc"], ["--index", "2147483648"], ["--proto", "quic"], [], ["--timeout", "0"],
], ids=["no-port", "big-port", "no-host", "index-abc", "index-int4", "proto", "no-handle",
        "timeout"])  # fmt: skip
def test_bad_usage_exits_2(capsysbinary, args):
    argv = args if args == [] else ["88.118.8/demo-1", *args]
    try:
        code = cli.main(["resolve", *argv])
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    captured = capsysbinary.readouterr()
    assert code == 2, captured.err.decode()
    assert captured.out == b"" and captured.err


def test_bad_usage_exits_2_as_a_command(idnode_env):
    [r] = run_many(idnode_env, ["88.118.8/demo-1", "--server", "nowhere"])
    assert r.returncode == 2 and r.stdout == b"" and b"HOST:PORT" in r.stderr
