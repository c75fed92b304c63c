"""``GET /metrics`` end to end (issue 8 §3): real nodes, every front-end, Prometheus text.

The module's node ``T`` has two workers (so every figure is a sum over processes, through
prometheus-client's multi-process files), an enterprise ``88.118.8`` with credentials and a
prefix ``88.130.1`` whose HS_SITE names ``T`` itself — so that a second node ``S`` with
``[upstream] servers = [T]`` can resolve ``88.130.1/x`` through its upstream agent.  A mixed
load over REST, Handle UDP and TCP, DNS UDP and TCP, an administrative write, Handle site-info
requests and an import job must then show up exactly in ``idnode_requests_total``, the
latency histograms, the store and import figures; the agent's figures on ``S``.  The last
test kills a worker of ``T``: counters must not go backwards.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

import dns.edns
import dns.message
import dns.query
import dns.rcode
import pytest
import requests
from enterprises import admin_value, enterprise
from peers import free_port, site, site_value
from prometheus_client.parser import text_string_to_metric_families
from proc import children, wait_for

from resolver import __version__
from resolver.protocols.dns.mapping import to_dns_name
from resolver.store.lmdb_store import LmdbStore
from resolver.upstream.client import HandleClient

pytestmark = pytest.mark.wire

SECRET_8 = "metrics secret 8"
A8 = ("300%3A88.118.8/ADMIN", SECRET_8)
APEX = "id.idnode.test."
FRONT_ENDS = ("http", "handle_udp", "handle_tcp", "dns_udp", "dns_tcp")


class Net:
    t: object
    t_handle: int


@pytest.fixture(scope="module")
def net(start_node, load_lines, tmp_path_factory) -> Net:
    n = Net()
    n.t_handle = free_port()
    lines = enterprise("88.118.8", SECRET_8) + [
        {"handle": "88.118.8/A", "values": [
            {"index": 1, "type": "URL", "data": "https://example.com/a"}]},
        {"handle": "0.NA/88.130.1", "values": [site_value("HS_SITE", site(n.t_handle, "T"))]},
        {"handle": "88.130.1/x", "values": [
            {"index": 1, "type": "URL", "data": "https://example.com/x", "ttl": 3600}]},
    ]  # fmt: skip
    data = load_lines(tmp_path_factory.mktemp("metrics") / "data", lines)
    n.t = start_node(data=data, workers=2, args=("--handle-port", str(n.t_handle)))
    return n


def scrape(node, accept: str | None = None) -> dict:
    """``{(sample name, frozenset(labels)): value}`` of one ``GET /metrics``."""
    r = requests.get(node.base_url + "/metrics", timeout=20,
                     headers={"Accept": accept} if accept else {})  # fmt: skip
    assert r.status_code == 200, r.text
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(samples: dict, name: str, **labels) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def outcomes(samples: dict, frontend: str, op: str = "resolve") -> dict:
    return {dict(ls)["outcome"]: int(v) for (n, ls), v in samples.items()
            if n == "idnode_requests_total" and dict(ls).get("frontend") == frontend
            and dict(ls).get("op") == op and v}  # fmt: skip


def dns_query(node, identifier: str, *, tcp: bool = False, cookie: bool = False):
    opts = [dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)] if cookie else None
    q = dns.message.make_query(to_dns_name(identifier, APEX), "TXT", use_edns=0, options=opts)
    return (dns.query.tcp if tcp else dns.query.udp)(q, "127.0.0.1", port=node.dns_port,
                                                     timeout=5)  # fmt: skip


def get(node, path: str, **kw) -> requests.Response:
    return requests.get(node.base_url + path, timeout=20, **kw)


def settled_baseline(node) -> dict:
    """The node's figures once nothing more is on its way: a worker publishes every second."""
    previous = None
    for _ in range(20):
        s = scrape(node)
        figures = {f: outcomes(s, f) for f in FRONT_ENDS}
        if figures == previous:
            return s
        previous = figures
        time.sleep(1.1)
    raise AssertionError("the node's counts do not settle")


def test_every_front_end_is_counted_after_a_mixed_load(net):
    t = net.t
    # what the node answered before (the fixture's readiness probe): counted apart
    base = {f: outcomes(settled_baseline(t), f) for f in FRONT_ENDS}
    # REST: 5 fast hits, 1 general (pretty), 2 misses
    for _ in range(5):
        assert get(t, "/api/handles/88.118.8/A").status_code == 200
    assert get(t, "/api/handles/88.118.8/A?pretty=true").status_code == 200
    for _ in range(2):
        assert get(t, "/api/handles/88.118.8/NOPE").status_code == 404
    # REST administration: a write refused (no credentials), one accepted, an import job
    body = {"values": [{"index": 1, "type": "URL", "data": "https://example.com/n"},
                       admin_value("88.118.8")]}  # fmt: skip
    assert requests.put(t.api_url + "88.118.8/NEW", json=body, timeout=20).status_code == 401
    assert requests.put(t.api_url + "88.118.8/NEW?overwrite=false", json=body, auth=A8,
                        timeout=20).status_code == 201  # fmt: skip
    lines = b"".join(b'{"handle":"88.118.8/imp-%d","values":[{"index":1,"type":"URL","data":'
                     b'"https://example.com/%d"}]}\n' % (i, i) for i in range(7))
    lines += b'{"handle":"88.118.8/imp-bad","values":[{"index":0,"type":"URL","data":"x"}]}\n'
    job = requests.post(t.base_url + "/api/v1/imports", params={"prefix": "88.118.8"},
                        data=lines, auth=A8, headers={"Content-Type": "application/x-ndjson"},
                        timeout=60).json()  # fmt: skip
    assert (job["state"], job["committed"], job["failed"]) == ("done", 7, 1), job

    # Handle: 3 hits and 1 miss over UDP, 2 hits over TCP; one site-info request on each
    async def handle_queries():
        client = HandleClient()
        server = ("127.0.0.1", t.handle_port)
        rcs = [(await client.resolve(h, server=server, proto=p)).header.rc
               for h, p in (("88.118.8/A", "udp"), ("88.118.8/a", "udp"), ("88.118.8/A", "udp"),
                            ("88.118.8/gone", "udp"), ("88.118.8/A", "tcp"),
                            ("88.118.8/A", "tcp"))]  # fmt: skip
        for proto in ("udp", "tcp"):
            rcs.append((await client.get_site_info(server, proto=proto)).header.rc)
        return rcs

    assert asyncio.run(handle_queries()) == [1, 1, 1, 100, 1, 1, 1, 1]

    # DNS: 2 fast and 1 general (a cookie option) over UDP, 1 NXDOMAIN; 1 over TCP
    assert dns_query(t, "88.118.8/A").rcode() == dns.rcode.NOERROR
    assert dns_query(t, "88.118.8/A").rcode() == dns.rcode.NOERROR
    assert dns_query(t, "88.118.8/A", cookie=True).rcode() == dns.rcode.NOERROR
    assert dns_query(t, "88.118.8/none").rcode() == dns.rcode.NXDOMAIN
    assert dns_query(t, "88.118.8/A", tcp=True).rcode() == dns.rcode.NOERROR

    expected = {"http": {"ok": 6, "not_found": 2},
                "handle_udp": {"ok": 3, "not_found": 1}, "handle_tcp": {"ok": 2},
                "dns_udp": {"ok": 3, "not_found": 1}, "dns_tcp": {"ok": 1}}  # fmt: skip

    def settled():  # each worker publishes its counts every second
        s = scrape(t)
        got = {f: {k: n - base[f].get(k, 0) for k, n in outcomes(s, f).items()
                   if n != base[f].get(k, 0)} for f in FRONT_ENDS}  # fmt: skip
        return s if got == expected else None

    s = wait_for(settled, 15, f"the resolutions {expected} in /metrics")
    # administrative operations, by outcome
    assert outcomes(s, "http", "write") == {"auth_needed": 1, "ok": 1}
    assert outcomes(s, "http", "imports") == {"ok": 1}
    assert outcomes(s, "handle_udp", "get_site_info") == {"ok": 1}
    assert outcomes(s, "handle_tcp", "get_site_info") == {"ok": 1}

    # latency histograms: every request observed once, buckets cumulative up to +Inf = count
    answered = {"http": 8 + 3, "handle_udp": 5, "handle_tcp": 3, "dns_udp": 4, "dns_tcp": 1}
    for frontend, n in answered.items():
        count = total(s, "idnode_request_duration_seconds_count", frontend=frontend)
        assert count >= n, (frontend, count)
        buckets = sorted((float(dict(ls)["le"]), v) for (name, ls), v in s.items()
                         if name == "idnode_request_duration_seconds_bucket"
                         and dict(ls)["frontend"] == frontend)  # fmt: skip
        assert buckets[-1] == (float("inf"), count)
        assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
        assert 0 < total(s, "idnode_request_duration_seconds_sum", frontend=frontend) < count * 5
    assert total(s, "idnode_record_cache_entries") >= 1  # the UDP pump's cache holds 88.118.8/A
    assert total(s, "idnode_record_cache_bytes") > 0
    assert total(s, "idnode_udp_dropped_total", frontend="handle_udp") == 0

    # the store, read at scrape time
    store = LmdbStore(t.data, readonly=True)
    try:
        figures = store.stat()
    finally:
        store.close()
    assert total(s, "idnode_store_entries", db="records") == figures["records"]
    assert total(s, "idnode_store_entries", db="prefixes") == figures["prefixes"] == 2
    used = total(s, "idnode_lmdb_map_used_bytes")
    assert 0 < used <= total(s, "idnode_lmdb_file_bytes") <= total(s, "idnode_lmdb_map_size_bytes")
    # import jobs: from the store, node-wide
    assert total(s, "idnode_import_jobs", state="done") == 1
    assert total(s, "idnode_import_jobs", state="running") == 0
    assert total(s, "idnode_import_lines_total", result="committed") == 7
    assert total(s, "idnode_import_lines_total", result="failed") == 1
    assert total(s, "idnode_build_info", version=__version__) == 1


def test_exposition_formats(net):
    r = get(net.t, "/metrics")
    assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# TYPE idnode_requests_total counter" in r.text
    assert "identifier" not in r.text and "88.118" not in r.text  # no identifier as a label
    om = get(net.t, "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    assert om.text.endswith("# EOF\n")
    assert requests.post(net.t.base_url + "/metrics", timeout=10).status_code == 405
    assert get(net.t, "/metrics?name=x").status_code == 200


def test_oldest_reader_age_and_lag(net):
    """A read transaction held by another process while a write commits: the reader table
    shows it behind, and its age grows; once it ends, both go back to zero."""
    store = LmdbStore(net.t.data)
    try:
        txn = store.env.begin()
        try:
            store.meta_put(b"test:metrics-reader", b"1")  # a commit after the reader began

            def aged():
                s = scrape(net.t)
                ok = (total(s, "idnode_lmdb_oldest_reader_lag_transactions") >= 1
                      and total(s, "idnode_lmdb_oldest_reader_age_seconds") >= 1.0)
                return s if ok else None

            s = wait_for(aged, 10, "the old reader in /metrics")
            assert total(s, "idnode_lmdb_readers") >= 1
        finally:
            txn.abort()

        def gone():
            s = scrape(net.t)
            return (total(s, "idnode_lmdb_oldest_reader_lag_transactions") == 0
                    and total(s, "idnode_lmdb_oldest_reader_age_seconds") == 0)

        wait_for(gone, 10, "no old reader in /metrics")
    finally:
        store.meta_put(b"test:metrics-reader", None)
        store.close()


def test_upstream_agent_figures(net, start_node):
    """``S`` asks ``T`` (its top-level node) for ``88.130.1/x``: the agent's figures — the
    upstream up, its requests timed, the cache's miss then hit — reach S's /metrics."""
    up = f"127.0.0.1:{net.t_handle}"
    s_node = start_node(config_text=f'[upstream]\nservers = ["{up}"]\nrecursion = true\n')
    for _ in range(2):
        r = get(s_node, "/api/handles/88.130.1/x")
        assert r.status_code == 200, r.text

    def settled():
        s = scrape(s_node)
        ok = (total(s, "idnode_upstream_cache_hits_total", kind="positive") >= 1
              and total(s, "idnode_upstream_up", upstream=up) == 1)
        return s if ok else None

    s = wait_for(settled, 15, "the agent's figures in /metrics")
    assert total(s, "idnode_upstream_cache_misses_total") >= 1
    assert total(s, "idnode_upstream_requests_total", upstream=up, result="ok") >= 1
    assert total(s, "idnode_upstream_requests_total", result="error") == 0
    assert total(s, "idnode_upstream_request_duration_seconds_count", upstream=up) >= 1
    assert total(s, "idnode_upstream_cache_entries") >= 1
    assert outcomes(s, "http")["ok"] == 2  # beside the fixture's readiness probe
    s_node.stop()


def test_counters_survive_a_worker_killed(net):
    """A worker killed with SIGKILL is restarted; what it counted stays in the sums."""
    t = net.t
    for _ in range(3):
        assert get(t, "/api/handles/88.118.8/A").status_code == 200
    ok_before = outcomes(settled_baseline(t), "http")["ok"]
    workers = children(t.pid)
    assert len(workers) == 2
    victim = min(workers)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(children(t.pid) - {victim}) == 2, 15, "a restarted worker")
    wait_for(lambda: get(t, "/readyz").status_code == 200, 10, "the node ready again")
    after = scrape(t)
    assert outcomes(after, "http")["ok"] >= ok_before  # the dead worker's counts are kept
    assert get(t, "/api/handles/88.118.8/A").status_code == 200
    wait_for(lambda: outcomes(scrape(t), "http")["ok"] >= ok_before + 1, 15,
             "the new resolution counted")  # fmt: skip


def test_tally_feeds_the_metrics_once_and_the_store_by_front_end():
    """``stats.Tally``: per-transport tables are observed as such every ``publish``, and
    stored under their front-end's name (``res.handle.*``) by the next ``drain`` — nothing
    twice, nothing lost."""
    from resolver.core import stats
    from resolver.errors import Outcome

    seen = []
    tally = stats.Tally(lambda name, counts: seen.append((name, dict(counts))))
    hour = 3600 * 400_000
    stats.count(tally.table("handle_udp"), b"88.118.8", Outcome.OK)
    stats.count(tally.table("handle_udp"), b"88.118.9", Outcome.OK)
    stats.count(tally.table("handle_tcp"), b"88.118.8", Outcome.NOT_FOUND)
    tally.publish(hour)
    assert sorted(seen) == [("handle_tcp", {"not_found": 1}), ("handle_udp", {"ok": 2})]
    tally.publish(hour)  # nothing new: nobody told
    assert len(seen) == 2
    stats.count(tally.table("handle_tcp"), b"88.118.8", Outcome.OK)
    assert tally.drain(hour) == {(b"88.118.8", 400_000, b"res.handle.ok"): 2,
                                 (b"88.118.9", 400_000, b"res.handle.ok"): 1,
                                 (b"88.118.8", 400_000, b"res.handle.not_found"): 1}
    assert seen[-1] == ("handle_tcp", {"ok": 1}) and len(seen) == 3
    assert tally.drain(hour) == {}
