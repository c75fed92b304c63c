"""Statistics end to end (issue 7 §6): a node with two workers is asked over every front-end —
REST (fast and general path), Handle over UDP and TCP, DNS over UDP and TCP — and written to
over REST; ``GET /api/v1/stats`` then shows exactly those figures, per prefix, per enterprise,
by front-end and outcome, to the owner and to server admins only.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest
import requests
from enterprises import admin_value, enterprise
from proc import wait_for

from resolver.protocols.dns.mapping import to_dns_name
from resolver.upstream.client import HandleClient

pytestmark = pytest.mark.wire

ROOT_SECRET, SECRET_8, SECRET_9 = "stats root", "stats secret 8", "stats secret 9"
ROOT = ("300%3A88.118/ADMIN", ROOT_SECRET)
A8 = ("300%3A88.118.8/ADMIN", SECRET_8)
A9 = ("300%3A88.118.9/ADMIN", SECRET_9)
APEX = "id.idnode.test."
STATS = "/api/v1/stats"


@pytest.fixture(scope="module")
def snode(start_node, tmp_path_factory, load_lines):
    tmp = tmp_path_factory.mktemp("stats")
    lines = enterprise("88.118", ROOT_SECRET) + enterprise("88.118.8", SECRET_8) + \
        enterprise("88.118.9", SECRET_9)  # fmt: skip
    lines[0]["values"].append({"index": 10, "type": "ORG", "data": "The node"})
    lines[len(enterprise("88.118", ROOT_SECRET))]["values"].append(
        {"index": 10, "type": "ORG", "data": "Example Co"})  # fmt: skip
    lines.append({"handle": "88.118.8/A", "values": [
        {"index": 1, "type": "URL", "data": "https://example.com/a"}]})  # fmt: skip
    config = ('[node]\nserver_admins = ["300:88.118/ADMIN"]\n'
              "[stats]\nflush_interval = 0.2\n")  # fmt: skip
    return start_node(data=load_lines(tmp / "data", lines), workers=2, config_text=config)


def call(node, method: str, path: str, auth=None, body=None) -> requests.Response:
    return requests.request(method, node.base_url + path, auth=auth, json=body, timeout=20)


def dns_query(node, identifier: str, *, tcp: bool = False, cookie: bool = False):
    opts = [dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)] if cookie else None
    q = dns.message.make_query(to_dns_name(identifier, APEX), "TXT", use_edns=0, options=opts)
    send = dns.query.tcp if tcp else dns.query.udp
    return send(q, "127.0.0.1", port=node.dns_port, timeout=5)


def resolutions_of(node, auth, prefix: str) -> dict:
    r = call(node, "GET", f"{STATS}?prefix={prefix}", auth)
    assert r.status_code == 200, r.text
    return r.json()


def test_stats_show_true_figures_of_every_front_end(snode):
    # REST: 3 fast hits, 1 general hit (pretty is the general path), 2 misses, 1 bad index
    for _ in range(3):
        assert call(snode, "GET", "/api/handles/88.118.8/A").status_code == 200
    assert call(snode, "GET", "/api/handles/88.118.8/a?pretty=true").status_code == 200
    for _ in range(2):
        assert call(snode, "GET", "/api/handles/88.118.8/NOPE").status_code == 404
    assert call(snode, "GET", "/api/handles/88.118.8/A?index=x").status_code == 400
    assert call(snode, "GET", "/api/handles/77.1/x").status_code == 400  # not here: 77.1

    # Handle: 2 over UDP (one lower-case: the same prefix key), 1 over TCP, 1 miss over UDP
    async def handle_queries():
        client = HandleClient()
        server = ("127.0.0.1", snode.handle_port)
        rcs = [(await client.resolve(h, server=server, proto=p)).header.rc
               for h, p in (("88.118.8/A", "udp"), ("88.118.8/a", "udp"), ("88.118.8/A", "tcp"),
                            ("88.118.8/gone", "udp"))]  # fmt: skip
        return rcs

    assert asyncio.run(handle_queries()) == [1, 1, 1, 100]

    # DNS: 2 fast over UDP, 1 general (a cookie option), 1 over TCP, 1 NXDOMAIN
    assert dns_query(snode, "88.118.8/A").rcode() == dns.rcode.NOERROR
    assert dns_query(snode, "88.118.8/A").rcode() == dns.rcode.NOERROR
    assert dns_query(snode, "88.118.8/A", cookie=True).rcode() == dns.rcode.NOERROR
    assert dns_query(snode, "88.118.8/A", tcp=True).rcode() == dns.rcode.NOERROR
    assert dns_query(snode, "88.118.8/none").rcode() == dns.rcode.NXDOMAIN

    # registrations over REST: one create, one update, one delete
    handle = "/api/handles/88.118.8/NEW"
    values = {"values": [{"index": 1, "type": "URL", "data": "https://example.com/n"},
                         admin_value("88.118.8")]}  # fmt: skip
    assert call(snode, "PUT", handle + "?overwrite=false", A8, values).status_code == 201
    values["values"][0]["data"] = "https://example.com/n2"
    assert call(snode, "PUT", handle, A8, values).status_code == 200
    assert call(snode, "DELETE", handle, A8).status_code == 200

    expected = {"total": 15,
                "http": {"ok": 4, "not_found": 2},
                "handle": {"ok": 3, "not_found": 1},
                "dns": {"ok": 4, "not_found": 1}}  # fmt: skip
    deadline = time.monotonic() + 15
    doc = resolutions_of(snode, A8, "88.118.8")
    while doc["totals"]["resolutions"] != expected and time.monotonic() < deadline:
        time.sleep(0.2)  # each worker flushes every 0.2 s
        doc = resolutions_of(snode, A8, "88.118.8")
    assert doc["totals"]["resolutions"] == expected
    # created: 88.118.8/ADMIN and 88.118.8/A by ``idnode load``, and 88.118.8/NEW
    assert doc["totals"]["registrations"] == {"created": 3, "updated": 1, "deleted": 1}
    assert doc["totals"]["upstream"] == {"queries": 0}
    assert doc["prefix"] == "88.118.8" and [p["prefix"] for p in doc["prefixes"]] == ["88.118.8"]
    assert [e["org"] for e in doc["enterprises"]] == ["Example Co"]
    assert doc["enterprises"][0]["resolutions"] == expected

    # the server admin sees the node: 77.1 (not here) and the bad request without an identifier
    node = resolutions_of(snode, ROOT, "")  # prefix= empty: the whole node
    by = {p["prefix"]: p for p in node["prefixes"]}
    assert by["77.1"]["resolutions"] == {"total": 1, "http": {"not_responsible": 1}}
    assert by[""]["resolutions"]["http"] == {"malformed": 1}
    assert by["88.118.8"]["resolutions"] == expected
    # the enterprise identities loaded count as registrations of 88.118.x
    assert node["totals"]["registrations"]["created"] >= 4
    hourly = call(snode, "GET", f"{STATS}?prefix=88.118.8&series=hour", A8).json()["hours"]
    assert sum(h["resolutions"]["total"] for h in hourly) == 15


def test_who_may_read_statistics(snode):
    assert call(snode, "GET", f"{STATS}?prefix=88.118.8").status_code == 401
    r = call(snode, "GET", f"{STATS}?prefix=88.118.8", A9)
    assert r.status_code == 403 and r.json()["responseCode"] == 401
    assert call(snode, "GET", STATS, A8).status_code == 403  # the whole node: admins only
    assert call(snode, "GET", f"{STATS}?prefix=88.118.9", A9).status_code == 200
    assert call(snode, "GET", f"{STATS}?prefix=88.118.8", ROOT).status_code == 200
    assert call(snode, "POST", STATS, ROOT).status_code == 405


def test_time_range_and_bad_parameters(snode):
    now = int(time.time())
    past = call(snode, "GET", f"{STATS}?prefix=88.118.8&from=2001-01-01&to=2001-01-02", A8)
    assert past.status_code == 200
    doc = past.json()
    assert doc["from"] == "2001-01-01T00:00:00Z" and doc["to"] == "2001-01-02T00:00:00Z"
    assert doc["totals"]["resolutions"] == {"total": 0} and doc["prefixes"] == []
    r = call(snode, "GET", f"{STATS}?prefix=88.118.8&from={now - 7200}&to={now + 60}", A8)
    assert r.status_code == 200 and r.json()["from"].endswith(":00:00Z")
    for bad in ("from=yesterday", "from=2026-01-02&to=2026-01-01", "prefix=88.118.8/x",
                "series=minute", "to=99999999999999999999"):  # fmt: skip
        r = call(snode, "GET", f"{STATS}?{bad}", ROOT)
        assert r.status_code == 400, (bad, r.text)
        assert r.headers["Content-Type"].startswith("application/json")


def test_reports_are_pushed_by_the_agent(start_node, tmp_path, load_lines):
    """``[stats] report_dir`` alone starts the agent (no upstream servers), which writes a
    report file per interval holding the counters flushed by the workers."""
    reports = tmp_path / "reports"
    reports.mkdir()
    lines = [{"handle": "0.NA/88.118.8", "values": [admin_value("88.118.8")]},
             {"handle": "88.118.8/R", "values": [
                 {"index": 1, "type": "URL", "data": "https://example.com/r"}]}]  # fmt: skip
    node = start_node(data=load_lines(tmp_path / "data", lines), config_text=(
        f'[stats]\nflush_interval = 0.2\nreport_dir = "{reports}"\nreport_interval = 0.3\n'))
    assert f"stats report → {reports}" in node.banner
    for _ in range(4):
        assert call(node, "GET", "/api/handles/88.118.8/R").status_code == 200

    def reported():
        for path in sorted(reports.glob("idnode-stats-*.json")):
            doc = json.loads(path.read_bytes())
            hours = doc["counters"].get("88.118.8", {})
            if sum(h.get("res.http.ok", 0) for h in hours.values()) == 4:
                return doc
        return None

    doc = wait_for(reported, 15, "a report with the four resolutions")
    assert doc["version"] == 1 and doc["node"]["prefixes"] == ["88.118.8"]
    assert not list(reports.glob(".*.tmp"))  # written whole, then renamed

    def status():  # `idnode upstream status`: the agent's status file, rewritten every second
        out = subprocess.run([sys.executable, "-m", "resolver", "upstream", "status", "--data",
                              str(node.data)], capture_output=True, text=True, timeout=30)  # fmt: skip
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["stats_report"]["delivered"] >= 1

    wait_for(status, 10, "the report in the agent's status")
    node.stop()
