"""Prefix referrals from a real top-level node (issue 7 §1; handle.md §3.4, §4 item 3).

The node holds ``0.NA/88.118`` with a public ``HS_SITE.PREFIX`` naming the secondary that
serves every ``88.118.*`` prefix.  ``0.NA/88.118.8`` (not held) is answered RC 303 with that
value over UDP and TCP (the Handle client of ``resolver.upstream.client``) and, over REST,
HTTP 300 with ``responseCode`` 303 and the value as the reference serializes it; an unrelated
prefix stays RC 301 / HTTP 400.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from resolver.protocols.handle.message import ErrorResponse, ReferralResponse
from resolver.upstream.client import HandleClient
from resolver.values import SiteInfo

_HANDLE_RE = re.compile(r"handle://127\.0\.0\.1:(\d+)")

#: handle.md §2.4 JSON form of a site: the secondary at 192.0.2.8, TCP + UDP 2641, HTTP 8000.
SECONDARY = {"version": 1, "protocolVersion": "2.11", "serialNumber": 3, "primarySite": True,
             "multiPrimary": False, "attributes": [{"name": "desc", "value": "secondary 88.118"}],
             "servers": [{"serverId": 1, "address": "192.0.2.8",
                          "publicKey": {"format": "base64", "value": ""},
                          "interfaces": [{"query": True, "admin": True, "protocol": "TCP",
                                          "port": 2641},
                                         {"query": True, "admin": False, "protocol": "UDP",
                                          "port": 2641},
                                         {"query": True, "admin": True, "protocol": "HTTP",
                                          "port": 8000}]}]}  # fmt: skip
PREFIX_VALUE = {"index": 1, "type": "HS_SITE.PREFIX",
                "data": {"format": "site", "value": SECONDARY},
                "ttl": 86400, "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
LINES = [
    {"handle": "0.NA/88.118", "values": [
        PREFIX_VALUE,
        {"index": 2, "type": "HS_SITE.PREFIX", "data": {"format": "site", "value": SECONDARY},
         "permissions": "1100", "timestamp": "2026-01-01T00:00:00Z"},  # not public: never sent
        {"index": 3, "type": "DESC", "data": "national top-level node, 88.118",
         "timestamp": "2026-01-01T00:00:00Z"},
    ]},
    {"handle": "0.NA/99", "values": [{"index": 1, "type": "DESC", "data": "held, no delegation",
                                       "timestamp": "2026-01-01T00:00:00Z"}]},
]  # fmt: skip


@pytest.fixture(scope="module")
def top(start_node, tmp_path_factory, load_lines):
    data = tmp_path_factory.mktemp("top-level") / "data"
    load_lines(data, LINES)
    node = start_node(data=data, config_text='[node]\nrole = "top-level"\n')
    m = _HANDLE_RE.search(node.banner)
    assert m, node.banner
    return node, int(m.group(1))


def ask(port: int, handle: str, proto: str):
    client = HandleClient(udp_retry=(2.0,), tcp_timeout=5.0)
    return asyncio.run(client.resolve(handle, server=("127.0.0.1", port), proto=proto))


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_handle_protocol_prefix_referral(top, proto):
    _, port = top
    for handle in ("0.NA/88.118.8", "0.NA/88.118.8.1"):
        reply = ask(port, handle, proto)
        assert reply.header.rc == 303, (handle, reply.body)
        assert isinstance(reply.body, ReferralResponse) and reply.body.handle == b""
        (value,) = reply.body.values
        assert (value.index, value.type, value.public_read) == (1, "HS_SITE.PREFIX", True)
        secondary = SiteInfo.from_bytes(value.data)
        assert secondary.serial == 3 and secondary.servers[0].address_text == "192.0.2.8"
        assert [(i.type, i.protocol, i.port) for i in secondary.servers[0].interfaces] == [
            (3, 1, 2641), (2, 0, 2641), (3, 2, 8000)]  # fmt: skip


@pytest.mark.parametrize("proto", ["udp", "tcp"])
@pytest.mark.parametrize("handle", ["0.NA/77.1", "0.NA/99.5", "88.118.8/SN-1"])
def test_handle_protocol_unrelated_is_301(top, proto, handle):
    reply = ask(top[1], handle, proto)
    assert reply.header.rc == 301
    assert isinstance(reply.body, ErrorResponse)
    assert reply.body.message == b"That prefix doesn't live here"


def test_the_held_prefix_handle_itself_is_answered(top):
    reply = ask(top[1], "0.NA/88.118", "udp")
    assert reply.header.rc == 1
    assert [v.index for v in reply.body.values] == [1, 3]  # public values only


def test_rest_prefix_referral(top):
    node, _ = top
    ans = node.get("/api/handles/0.NA/88.118.8")
    assert ans.status == 300
    body = json.loads(ans.body)
    assert list(body) == ["responseCode", "values", "handle"]  # reference key order
    assert body["responseCode"] == 303 and body["handle"] == "0.NA/88.118.8"
    assert body["values"] == [PREFIX_VALUE]
    assert node.get("/api/handles/88.118.8.1?pretty").status == 300


@pytest.mark.parametrize("path", ["/api/handles/0.NA/77.1", "/api/handles/0.NA/99.5",
                                  "/api/handles/88.118.8/SN-1",
                                  "/api/handles/0.NA/88.118.8?doNotRefer=true"])  # fmt: skip
def test_rest_unrelated_is_301(top, path):
    ans = top[0].get(path)
    assert ans.status == 400
    body = json.loads(ans.body)
    assert body["responseCode"] == 301 and body["message"] == "That prefix doesn't live here"


def test_idnode_resolve_prints_the_referral(top, idnode_env):
    import subprocess
    import sys

    _, port = top
    r = subprocess.run([sys.executable, "-m", "resolver", "resolve", "0.NA/88.118.8", "--json",
                        "--server", f"127.0.0.1:{port}", "--proto", "udp", "--timeout", "10"],
                       capture_output=True, text=True, env=idnode_env, timeout=30)  # fmt: skip
    body = json.loads(r.stdout)
    assert body["responseCode"] == 303 and body["values"] == [PREFIX_VALUE], r.stderr
