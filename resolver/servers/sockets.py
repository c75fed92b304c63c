"""Listening sockets shared by every worker through SO_REUSEPORT."""

from __future__ import annotations

import socket

#: Sockets this worker inherited from the supervisor (``handover.WorkerSockets``), by (type,
#: port): ``listening_socket`` and ``udp_socket`` hand each out once instead of binding anew.
_inherited: dict[tuple[int, int], socket.socket] = {}


def inherit(socks) -> None:
    """The sockets ``listening_socket`` / ``udp_socket`` return for their port from now on."""
    _inherited.clear()
    for sock in socks:
        _inherited[(sock.type, sock.getsockname()[1])] = sock


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def reserve_port(host: str, port: int, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """Bind (not listen) a SO_REUSEPORT socket: fixes the port number the workers will share."""
    sock = socket.socket(_family(host), kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def reserve_tcp_udp(host: str, port: int, attempts: int = 20) -> tuple[socket.socket, socket.socket]:
    """Reserve one port number for both TCP and UDP (``port=0``: a free one for both)."""
    for _ in range(attempts if port == 0 else 1):
        tcp = reserve_port(host, port)
        try:
            udp = reserve_port(host, tcp.getsockname()[1], socket.SOCK_DGRAM)
        except OSError:
            tcp.close()
            if port:
                raise
            continue
        return tcp, udp
    raise OSError(f"no port free for both TCP and UDP on {host}")


def listening_socket(host: str, port: int) -> socket.socket:
    sock = _inherited.pop((socket.SOCK_STREAM, port), None)
    if sock is not None:
        return sock
    sock = reserve_port(host, port)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def udp_socket(host: str, port: int) -> socket.socket:
    sock = _inherited.pop((socket.SOCK_DGRAM, port), None)
    if sock is not None:
        return sock
    sock = reserve_port(host, port, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    except OSError:
        pass  # the kernel caps it; the default still works
    sock.setblocking(False)
    return sock
