"""The record cache of a running node: exact across processes, and switchable off.

A node answers over UDP with its cache on (the default); ``idnode load`` — another process —
changes a record; the very next UDP answer carries the change.  ``--record-cache 0`` serves
the same answers with no cache.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import pytest

from resolver.protocols.handle.codes import ResponseCode as RC
from resolver.protocols.handle.message import Message
from resolver.upstream.client import prepare
from resolver.protocols.handle.constants import OpCode
from resolver.protocols.handle.message import ResolutionRequest


def _handle_port(node) -> int:
    return int(re.search(r"handle://[^:]+:(\d+)", node.banner).group(1))


def _urls(port: int, handle: str) -> list[bytes]:
    req = prepare(OpCode.RESOLUTION, ResolutionRequest(handle.encode(), (), ()))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(req.wire, ("127.0.0.1", port))
        msg = Message.from_wire(sock.recv(65536))
    assert msg.envelope.request_id == req.request_id
    if msg.header.rc != RC.SUCCESS:
        return []
    return [v.data for v in msg.body.values if v.type == "URL"]


def _load(data, idnode_env, tmp_path, url: str) -> None:
    line = {"handle": "88.118.8/demo-1",
            "values": [{"index": 1, "type": "URL", "data": url}]}  # fmt: skip
    src = tmp_path / "change.jsonl"
    src.write_text(json.dumps(line) + "\n")
    r = subprocess.run([sys.executable, "-m", "resolver", "load", "--data", str(data), str(src)],
                       capture_output=True, text=True, env=idnode_env, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("cache", ["default", "0"])
def test_a_load_by_another_process_shows_in_the_next_udp_answer(start_node, idnode_env, tmp_path,
                                                                cache):  # fmt: skip
    args = () if cache == "default" else ("--record-cache", cache)
    node = start_node(args=args)
    assert ("record cache 0 MiB" in node.banner) == (cache == "0")
    port = _handle_port(node)
    assert _urls(port, "88.118.8/demo-1") == [b"https://example.com/sn/demo-1"]
    for n in range(3):  # answered from the cache in between, then changed under it
        assert _urls(port, "88.118.8/DEMO-1") == [b"https://example.com/sn/demo-1"] or n
        _load(node.data, idnode_env, tmp_path, f"https://example.com/v{n}")
        assert _urls(port, "88.118.8/demo-1") == [f"https://example.com/v{n}".encode()]
