"""Site data for multi-node tests: the handle.md §2.4 JSON form of a one-server site on
127.0.0.1, and a value carrying it, as ``idnode load`` lines take them."""

from __future__ import annotations

TS = "2026-01-01T00:00:00Z"


def site(port: int, desc: str, *, http_port: int | None = None, serial: int = 1,
         address: str = "127.0.0.1") -> dict:  # fmt: skip
    """One primary server: TCP ``port`` (admin + query), UDP ``port`` (query) and, with
    ``http_port``, HTTP (admin + query)."""
    interfaces = [{"query": True, "admin": True, "protocol": "TCP", "port": port},
                  {"query": True, "admin": False, "protocol": "UDP", "port": port}]  # fmt: skip
    if http_port is not None:
        interfaces.append({"query": True, "admin": True, "protocol": "HTTP", "port": http_port})
    return {"version": 1, "protocolVersion": "2.11", "serialNumber": serial, "primarySite": True,
            "multiPrimary": False, "attributes": [{"name": "desc", "value": desc}],
            "servers": [{"serverId": 1, "address": address,
                         "publicKey": {"format": "base64", "value": ""},
                         "interfaces": interfaces}]}  # fmt: skip


def site_value(vtype: str, site_json: dict, *, index: int = 1, ttl: int = 86400) -> dict:
    """A value of type ``vtype`` (HS_SITE, HS_SITE.PREFIX …) holding ``site_json``."""
    return {"index": index, "type": vtype, "data": {"format": "site", "value": site_json},
            "ttl": ttl, "timestamp": TS}  # fmt: skip


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP on ``host`` right now (for nodes whose data must name
    each other's ports before they start; another process may still take it meanwhile)."""
    import socket

    for _ in range(50):  # bounded: a test never spins forever on a busy machine
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


def value(index: int, vtype: str, data: str, ttl: int = 86400, **kw) -> dict:
    """A plain value line for ``idnode load``."""
    return {"index": index, "type": vtype, "data": data, "ttl": ttl, "timestamp": TS, **kw}
