"""The supervisor's per-worker sockets and the readiness pipe (``resolver.servers.handover``):
what lets a reload's new worker take over its predecessor's sockets (tests/wire/test_reload.py
runs it under load)."""

from __future__ import annotations

import os
import socket

import pytest

from resolver.servers import handover, sockets


@pytest.fixture
def ports():
    # One port free for TCP and UDP, and one for HTTP, reserved as the supervisor does.
    http = sockets.reserve_port("127.0.0.1", 0)
    tcp, udp = sockets.reserve_tcp_udp("127.0.0.1", 0)
    yield http.getsockname()[1], tcp.getsockname()[1]
    for s in (http, tcp, udp):
        s.close()


def test_sockets_per_worker_number_join_the_port(ports):
    http_port, handle_port = ports
    ws = handover.WorkerSockets("127.0.0.1", http_port, handle_port)
    try:
        ws.ensure(2)
        assert sorted(ws.slots) == [0, 1]
        kinds = [(s.type, s.getsockname()[1]) for s in ws.slots[0]]
        assert kinds == [(socket.SOCK_STREAM, http_port), (socket.SOCK_STREAM, handle_port),
                         (socket.SOCK_DGRAM, handle_port)]  # fmt: skip
        first = [s.fileno() for s in ws.slots[0]]
        ws.ensure(3)  # worker 0's sockets are kept, worker 2's made
        assert [s.fileno() for s in ws.slots[0]] == first and sorted(ws.slots) == [0, 1, 2]
        gone = ws.slots[2]
        ws.trim(1)
        assert sorted(ws.slots) == [0] and all(s.fileno() == -1 for s in gone)
    finally:
        ws.close()
    assert ws.slots == {}


def test_adopted_sockets_are_handed_out_once_instead_of_bound(ports):
    http_port, handle_port = ports
    ws = handover.WorkerSockets("127.0.0.1", http_port, handle_port)
    ws.ensure(2)
    mine, other = ws.slots[1], ws.slots[0]
    try:
        ws.adopt(1)  # as in worker 1 after the fork
        assert all(s.fileno() == -1 for s in other) and ws.slots == {}
        assert sockets.listening_socket("127.0.0.1", http_port) is mine[0]
        assert sockets.listening_socket("127.0.0.1", handle_port) is mine[1]
        assert sockets.udp_socket("127.0.0.1", handle_port) is mine[2]
        fresh = sockets.listening_socket("127.0.0.1", http_port)  # handed out already: a new one
        assert fresh not in mine
        fresh.close()
        # the adopted listener serves: a connection to the port lands on one of the group
        with socket.create_connection(("127.0.0.1", http_port), timeout=5):
            conn, _ = _accept(mine[0])
            conn.close()
    finally:
        sockets.inherit([])
        for s in mine:
            s.close()


def _accept(sock: socket.socket):
    sock.settimeout(5)
    try:
        return sock.accept()
    finally:
        sock.setblocking(False)


def test_wait_ready_sees_ready_dead_and_silent_workers():
    ready_r, ready_w = os.pipe()
    dead_r, dead_w = os.pipe()
    silent_r, silent_w = os.pipe()
    handover.expect_ready(ready_w)
    handover.notify_ready()  # writes and closes ready_w
    handover.notify_ready()  # once only: nothing left to tell
    os.close(dead_w)  # died before saying anything
    assert handover.wait_ready({101: ready_r}, 5) == []
    assert handover.wait_ready({102: dead_r}, 5) == [102]
    assert handover.wait_ready({103: silent_r}, 0.2) == [103]
    os.close(silent_w)
    for fd in (ready_r, dead_r, silent_r):  # every read end was closed
        with pytest.raises(OSError):
            os.fstat(fd)
