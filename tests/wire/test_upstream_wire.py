"""Recursion through a node's upstream agent, end to end (issue 7 §3, step 2): three real
``idnode serve`` processes on 127.0.0.1.

* **B** (secondary) homes ``88.119.5`` and ``88.119``; each prefix handle carries an HS_SITE
  naming B itself (loaded once B is up, as it needs B's port).  Records ``88.119.5/x`` and
  ``88.119/y``.
* **T** (top-level) holds ``0.NA/88.119`` with an HS_SITE naming B (``88.119/*`` is located
  directly) and an HS_SITE.PREFIX naming B (``0.NA/88.119.5`` is an RC 303 referral to B,
  handle.md §4 item 3).
* **A** (secondary, the demo data) with ``[upstream] servers = ["127.0.0.1:<T>"]`` and
  ``recursion = true``: a supervisor, one worker and the upstream agent.

A answers ``88.119.5/x`` with B's values over Handle UDP and TCP when the request sets REC,
over REST and over DNS (no flag there: recursion is on); without REC the Handle answer stays
RC 301.  ``idnode upstream status`` prints the agent's status; a killed agent is restarted.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest

from peers import site, site_value
from proc import children, wait_for
from resolver.protocols.dns.answers import parse_txt
from resolver.protocols.dns.mapping import to_dns_name
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import ErrorResponse
from resolver.upstream.agent import STATUS_FILE
from resolver.upstream.client import HandleClient

pytestmark = pytest.mark.wire

TS = "2026-01-01T00:00:00Z"
X_VALUES = [
    {"index": 1, "type": "URL", "data": "https://b.example/88.119.5/x", "ttl": 3600,
     "timestamp": TS},
    {"index": 2, "type": "EMAIL", "data": "ops@b.example", "ttl": 600, "timestamp": TS},
    {"index": 3, "type": "SECRET", "data": "not for the public", "permissions": "1100",
     "timestamp": TS},
]  # fmt: skip
Y_VALUES = [{"index": 1, "type": "URL", "data": "https://b.example/88.119/y", "timestamp": TS}]
PUBLIC_X = [(1, "URL", b"https://b.example/88.119.5/x"), (2, "EMAIL", b"ops@b.example")]


def agent_status(node) -> dict | None:
    try:
        return json.loads((node.data / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


@pytest.fixture(scope="module")
def peers(start_node, tmp_path_factory, load_lines):
    b_data = tmp_path_factory.mktemp("secondary-b") / "data"
    homed = [{"handle": f"0.NA/{p}", "values": [
        {"index": 2, "type": "DESC", "data": "homed at B", "timestamp": TS}]}
        for p in ("88.119.5", "88.119")]  # fmt: skip
    load_lines(b_data, homed + [{"handle": "88.119.5/x", "values": X_VALUES},
                                {"handle": "88.119/y", "values": Y_VALUES}])  # fmt: skip
    b = start_node(data=b_data, args=("--dns-port", "-1"))
    b_site = site(b.handle_port, "secondary B", http_port=b.port)
    # B's prefix handles name B's own site: the site a recursor asks for 88.119.5/* and 88.119/*
    load_lines(b_data, [{"handle": f"0.NA/{p}", "values": [site_value("HS_SITE", b_site)]}
                        for p in ("88.119.5", "88.119")])  # fmt: skip
    t_data = tmp_path_factory.mktemp("top-level-t") / "data"
    load_lines(t_data, [{"handle": "0.NA/88.119", "values": [
        site_value("HS_SITE", b_site),
        site_value("HS_SITE.PREFIX", b_site, index=2)]}])  # fmt: skip
    t = start_node(data=t_data, config_text='[node]\nrole = "top-level"\n',
                   args=("--dns-port", "-1"))  # fmt: skip
    a = start_node(config_text=f'[upstream]\nservers = ["127.0.0.1:{t.handle_port}"]\n'
                               "recursion = true\n")  # fmt: skip
    wait_for(lambda: agent_status(a), 10, "A's upstream agent")
    return a, t, b


def ask(node, handle: str, proto: str = "udp", flags: int | None = None):
    kw = {} if flags is None else {"flags": flags}
    client = HandleClient(udp_retry=(2.0,), tcp_timeout=5.0, **kw)
    return asyncio.run(client.resolve(handle, server=("127.0.0.1", node.handle_port),
                                      proto=proto))  # fmt: skip


def triples(values) -> list[tuple[int, str, bytes]]:
    return [(v.index, v.type, v.data) for v in values]


# -- Handle protocol ------------------------------------------------------------------------------
@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_handle_with_rec_answers_the_secondarys_values(peers, proto):
    a, _, _ = peers
    reply = ask(a, "88.119.5/x", proto)  # the client's default flags: REC | CA | PO
    assert reply.header.opflags & C.FLAG_RECURSIVE
    assert reply.header.rc == 1, reply.body
    assert reply.body.handle == b"88.119.5/x"  # the handle as asked
    assert triples(reply.body.values) == PUBLIC_X  # public values only
    assert not reply.header.opflags & C.FLAG_AUTHORITATIVE  # forwarded: not ours to claim
    authoritative = ask(a, "88.119.5/x", proto,
                        flags=C.FLAG_RECURSIVE | C.FLAG_PUBLIC_ONLY | C.FLAG_AUTHORITATIVE)
    assert authoritative.header.rc == 1 and not authoritative.header.opflags & C.FLAG_AUTHORITATIVE
    local = ask(a, "88.118.8/demo-1", proto, flags=C.FLAG_PUBLIC_ONLY | C.FLAG_AUTHORITATIVE)
    assert local.header.rc == 1 and local.header.opflags & C.FLAG_AUTHORITATIVE  # A's own data
    direct = ask(a, "88.119/y", proto)  # located by T's HS_SITE, no referral
    assert direct.header.rc == 1 and triples(direct.body.values) == [
        (1, "URL", b"https://b.example/88.119/y")]  # fmt: skip


def test_handle_selection_applies_to_forwarded_values(peers):
    a, _, _ = peers
    client = HandleClient(udp_retry=(2.0,))
    reply = asyncio.run(client.resolve("88.119.5/X", types=["EMAIL"],
                                       server=("127.0.0.1", a.handle_port), proto="udp"))
    assert reply.header.rc == 1 and triples(reply.body.values) == PUBLIC_X[1:]


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_handle_without_rec_is_301(peers, proto):
    a, _, _ = peers
    reply = ask(a, "88.119.5/x", proto, flags=C.FLAG_PUBLIC_ONLY)
    assert reply.header.rc == 301
    assert isinstance(reply.body, ErrorResponse)
    assert reply.body.message == b"That prefix doesn't live here"


def test_handle_upstream_misses(peers):
    a, _, _ = peers
    assert ask(a, "88.119.5/no-such-thing").header.rc == 100  # B's authoritative miss
    unknown = ask(a, "77.1/x")  # T knows no 77.1: nobody serves it
    assert unknown.header.rc == 301
    assert ask(a, "88.118.8/demo-1").header.rc == 1  # A's own prefixes stay local


# -- REST and DNS ---------------------------------------------------------------------------------
def test_rest_answers_the_secondarys_values(peers):
    a, _, _ = peers
    ans = a.get("/api/handles/88.119.5/x")
    assert ans.status == 200, ans.body
    body = json.loads(ans.body)
    assert body["responseCode"] == 1 and body["handle"] == "88.119.5/x"
    assert [(v["index"], v["type"], v["data"]["value"]) for v in body["values"]] == [
        (1, "URL", "https://b.example/88.119.5/x"), (2, "EMAIL", "ops@b.example")]  # fmt: skip
    assert all(0 < v["ttl"] <= 3600 for v in body["values"])  # cached: the time left
    typed = json.loads(a.get("/api/handles/88.119.5/x?type=URL").body)
    assert [v["index"] for v in typed["values"]] == [1]
    missing = a.get("/api/handles/88.119.5/no-such-thing")
    assert missing.status == 404 and json.loads(missing.body)["responseCode"] == 100


def test_dns_answers_the_secondarys_values(peers):
    a, _, _ = peers
    q = dns.message.make_query(to_dns_name("88.119.5/x", "id.idnode.test."), "TXT")
    r = dns.query.udp(q, "127.0.0.1", port=a.dns_port, timeout=5.0)
    assert r.rcode() == dns.rcode.NOERROR
    assert not r.flags & dns.flags.AA  # forwarded data: not authoritative (RFC 1035 §4.1.1)
    (rrset,) = r.answer
    got = sorted(parse_txt(b"".join(rd.strings)) for rd in rrset)
    assert got == [(1, "URL", b"https://b.example/88.119.5/x"), (2, "EMAIL", b"ops@b.example")]
    assert 0 < rrset.ttl <= 600  # the RRset's minimum (RFC 2181 §5.2)


# -- operations -----------------------------------------------------------------------------------
def test_upstream_status_cli(peers, idnode_env, tmp_path):
    a, t, _ = peers
    ask(a, "88.119.5/x")
    # the file is rewritten every second: wait until it shows the queries of the tests above
    wait_for(lambda: agent_status(a)["counters"]["upstream_queries"] >= 1, 5, "a status tick")
    r = subprocess.run([sys.executable, "-m", "resolver", "upstream", "status", "--data",
                        str(a.data)], capture_output=True, text=True, env=idnode_env,
                       timeout=30)  # fmt: skip
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["upstreams"][f"127.0.0.1:{t.handle_port}"]["state"] == "up"
    assert status["counters"]["upstream_queries"] >= 1
    assert status["counters"]["referrals"] >= 1  # 0.NA/88.119.5: T's RC 303 was followed
    assert status["pid"] in children(a.pid) and time.time() - status["time"] < 10
    none = subprocess.run([sys.executable, "-m", "resolver", "upstream", "status", "--data",
                           str(tmp_path)], capture_output=True, text=True, env=idnode_env,
                          timeout=30)  # fmt: skip
    assert none.returncode == 1 and "no upstream agent is running" in none.stderr


def test_killed_agent_is_restarted_and_recursion_comes_back(peers):
    a, _, _ = peers
    old = agent_status(a)["pid"]
    assert len(children(a.pid)) == 2  # one worker and the agent
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: (s := agent_status(a)) and s["pid"] != old and s["pid"], 15,
                   "a new upstream agent")  # fmt: skip
    assert new in children(a.pid)
    reply = wait_for(lambda: (r := ask(a, "88.119.5/x")).header.rc == 1 and r, 10,
                     "recursion through the new agent")  # fmt: skip
    assert triples(reply.body.values) == PUBLIC_X
    assert "E023" in a.stderr()  # the restart is logged


def test_stop_ends_every_child_and_the_agent_removes_its_status(peers):
    a, _, _ = peers
    procs = children(a.pid)
    assert len(procs) == 2
    assert a.stop() == 0
    assert not [p for p in procs if os.path.exists(f"/proc/{p}")]
    assert agent_status(a) is None
