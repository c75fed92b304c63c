"""The process model of ``idnode serve`` (DESIGN §3): a supervisor and N workers sharing the
port with ``SO_REUSEPORT``, restarts of dead workers, SIGTERM/SIGINT drain and exit codes, and
refusal of a store in an unknown format.

Processes are inspected through ``/proc`` (Linux): children by their parent pid, listening
sockets by the inode behind each file descriptor.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import pytest

from resolver.store import schema
from proc import children, wait_for

pytestmark = pytest.mark.wire

REPO = Path(__file__).resolve().parents[2]
DRAIN_BOUND = 10.0 + 5.0  # drain_seconds (10 s) plus a margin for start-up and exit
DEMO1_HEAD = b'{"responseCode":1,"handle":"88.118.8/demo-1","values":[{"index":1,"type":"URL"'
REQUEST = b"GET /api/handles/88.118.8/demo-1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def listening_inodes(port: int) -> set[int]:
    """Inodes of the TCP sockets listening on 127.0.0.1:port (state 0A in /proc/net/tcp)."""
    inodes = set()
    with open("/proc/net/tcp") as fh:
        next(fh)
        for line in fh:
            f = line.split()
            addr, _, hexport = f[1].partition(":")
            if int(hexport, 16) == port and f[3] == "0A" and addr == "0100007F":
                inodes.add(int(f[9]))
    return inodes


def socket_inodes(pid: int) -> set[int]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def answers(node) -> bool:
    try:
        r = node.get("/api/handles/88.118.8/demo-1", timeout=2.0)
    except OSError:
        return False
    return r.status == 200 and r.body.startswith(DEMO1_HEAD)


def test_two_workers_each_listen_on_the_shared_port(start_node):
    node = start_node(workers=2)
    workers = wait_for(lambda: c if len(c := children(node.pid)) == 2 else None, 10,
                       "two worker processes")  # fmt: skip

    def per_worker():
        listening = listening_inodes(node.port)
        return {pid: socket_inodes(pid) & listening for pid in workers}

    # SO_REUSEPORT: one listening socket per worker, distinct, on the same address and port.
    wait_for(lambda: all(len(s) == 1 for s in per_worker().values()), 10,
             f"both workers listening: {per_worker()}")  # fmt: skip
    per_worker = per_worker()
    assert len(set().union(*per_worker.values())) == 2, per_worker
    for _ in range(20):  # fresh connections, spread by the kernel over both sockets
        assert answers(node)
    assert node.stop() == 0


def test_killed_worker_is_restarted(start_node):
    node = start_node(workers=2)
    before = wait_for(lambda: c if len(c := children(node.pid)) == 2 else None, 10,
                      "two worker processes")  # fmt: skip
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    after = wait_for(lambda: c if len(c := children(node.pid)) == 2 and victim not in c else None,
                     15, "a replacement worker")  # fmt: skip
    assert before - {victim} <= after
    wait_for(lambda: answers(node), 15, "the node to answer after the restart")
    for _ in range(20):
        assert answers(node)
    assert "E021" in node.stderr()  # the restart is logged
    assert node.stop() == 0


def test_sole_worker_killed_is_restarted(start_node):
    node = start_node(workers=1)
    (victim,) = wait_for(lambda: children(node.pid), 10, "the worker")
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: (c := children(node.pid)) and victim not in c, 15, "a replacement worker")
    wait_for(lambda: answers(node), 15, "the node to answer after the restart")
    assert node.stop() == 0


def test_sigterm_exits_zero_and_releases_the_port(start_node):
    node = start_node(workers=2)
    assert answers(node)
    workers = children(node.pid)
    t0 = time.monotonic()
    code = node.stop(timeout=DRAIN_BOUND)
    assert code == 0, node.stderr()
    assert time.monotonic() - t0 < DRAIN_BOUND
    assert len(workers) == 2
    assert not any(alive(p) for p in workers), "workers outlived their supervisor"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", node.port), timeout=2).close()


def test_sigint_exits_zero(start_node):
    node = start_node(workers=1)
    node.proc.send_signal(signal.SIGINT)
    assert node.proc.wait(timeout=DRAIN_BOUND) == 0, node.stderr()


def test_sigterm_with_a_request_in_flight(start_node):
    node = start_node(workers=1)
    # A keep-alive connection that has been answered once and is idle…
    idle = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    idle.sendall(REQUEST + b"\r\n")
    assert idle.recv(65536).startswith(b"HTTP/1.1 200 ")
    # …and a request whose headers are half sent when SIGTERM arrives.
    busy = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    busy.sendall(REQUEST)
    time.sleep(0.2)  # let the worker read the first half
    t0 = time.monotonic()
    node.proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    try:
        busy.sendall(b"Connection: close\r\n\r\n")
        reply = b""
        while chunk := busy.recv(65536):
            reply += chunk
    except (ConnectionResetError, BrokenPipeError):
        reply = b""
    finally:
        busy.close()
    # Answered completely, or not at all (the connection closed before a request was read):
    # never a truncated or error answer.
    if reply:
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), reply[:200]
        assert body.startswith(DEMO1_HEAD) and body.endswith(b"]}"), reply[-200:]
    code = node.proc.wait(timeout=DRAIN_BOUND)
    assert code == 0, node.stderr()
    assert time.monotonic() - t0 < DRAIN_BOUND
    idle.settimeout(5)
    try:
        assert idle.recv(65536) == b""  # the idle connection was closed, not left hanging
    except ConnectionResetError:
        pass
    idle.close()


def _set_format_version(data: Path, version: bytes) -> None:
    env = lmdb.open(str(data), max_dbs=len(schema.ALL_DATABASES) + 4, map_size=1 << 30)
    try:
        meta = env.open_db(schema.META)
        with env.begin(write=True, db=meta) as txn:
            txn.put(schema.META_FORMAT_VERSION, version)
    finally:
        env.close()


def _serve(data: Path, env: dict, *extra: str, timeout: float = 20.0) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "resolver", "serve", "--data", str(data), "--host", "127.0.0.1",
           "--http-port", "0", "--workers", "1", *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"idnode serve kept running: {out}\n{err}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def test_unknown_store_format_is_refused(tmp_path, idnode_env, demo_loader):
    data = tmp_path / "data"
    demo_loader(data)
    _set_format_version(data, b"999")
    r = _serve(data, idnode_env)
    assert r.returncode != 0
    assert "/api/handles/" not in r.stdout  # no banner: nothing was served
    assert "format version 999" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_port_in_use_is_refused(tmp_path, idnode_env, demo_loader):
    data = tmp_path / "data"
    demo_loader(data)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        cmd = [sys.executable, "-m", "resolver", "serve", "--data", str(data), "--host",
               "127.0.0.1", "--http-port", str(port), "--workers", "1"]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=REPO, env=idnode_env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AssertionError("idnode serve started on a port another socket holds") from None
    assert proc.returncode != 0
    assert "Address already in use" in err, err
    assert "Traceback" not in err


def test_supervisor_that_gives_up_exits_non_zero(start_node):
    # The store is swapped for one of another format under a running node: every restarted
    # worker now fails at start-up; the supervisor must give up (E022) and say so in its exit
    # code, so that a service manager sees the failure.
    node = start_node(workers=1)
    (victim,) = wait_for(lambda: children(node.pid), 10, "the worker")
    _set_format_version(node.data, b"999")
    os.kill(victim, signal.SIGKILL)
    try:
        code = node.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        node.kill()
        raise AssertionError("the supervisor kept restarting failing workers") from None
    assert "E022" in node.stderr()
    assert code != 0, "supervisor exited 0 after giving up on its workers"
