"""The recursor against real nodes (issue 7 §3–5, §8): a top-level node, secondaries, a loop.

Four ``idnode serve`` processes on 127.0.0.1, shared by the module:

* **B** (secondary) homes ``88.119.5``, ``88.120.7`` and ``88.119.9``; the first two prefix
  handles carry an HS_SITE naming B itself.  Records ``88.119.5/x`` (two public values, TTL
  3600 and 600, and one without public read), ``88.119.5/burst``, ``88.120.7/y``,
  ``88.119.9/z``.
* **S** (secondary) homes ``88.121.1`` with records of TTL 1 s: the serve-stale scenarios stop
  it.
* **T2** (top-level) holds ``0.NA/77`` whose HS_SITE.PREFIX refers all ``77.*`` to T1.
* **T1** (top-level) holds ``0.NA/88.119.5`` (HS_SITE → B: answered directly),
  ``0.NA/88.119.9`` (only an HS_SERV naming the service handle ``0.NA/88.SVC``, also at T1,
  whose HS_SITE is B),
  ``0.NA/88.120`` (HS_SITE.PREFIX → B: ``0.NA/88.120.7`` is an RC 303 referral, handle.md §4
  item 3), ``0.NA/88.121.1`` (HS_SITE → S, TTL 1 s) and ``0.NA/77`` (HS_SITE.PREFIX → T2:
  with T2's, a referral loop).

B and T1 are started on ports picked beforehand, because data loaded before them (B's own
HS_SITE, T2's referral) must name them.  A "dead" upstream is a free port nobody listens on
(ICMP port unreachable for UDP, RST for TCP); a "silent" one is a bound UDP socket and a
listening TCP socket that never answer.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time

import pytest
from peers import free_port, site, site_value, value

from resolver.errors import Outcome
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import Message
from resolver.upstream.cache import AnswerCache
from resolver.upstream.client import HandleClient
from resolver.upstream.recursor import Recursor
from resolver.values import SiteInfo

_HANDLE_RE = re.compile(r"handle://127\.0\.0\.1:(\d+)")
TS = "2026-01-01T00:00:00Z"
HOST = "127.0.0.1"


def handle_port(node) -> int:
    m = _HANDLE_RE.search(node.banner)
    assert m, node.banner
    return int(m.group(1))


class Net:
    b: int
    s: int
    t1: int
    t2: int
    s_node: object


@pytest.fixture(scope="module")
def net(start_node, load_lines, tmp_path_factory) -> Net:
    n = Net()
    n.b, n.t1 = free_port(), free_port()
    top = '[node]\nrole = "top-level"\n'
    root = tmp_path_factory.mktemp("recursor")

    b_lines = [
        {"handle": "0.NA/88.119.5", "values": [site_value("HS_SITE", site(n.b, "B"))]},
        {"handle": "0.NA/88.120.7", "values": [site_value("HS_SITE", site(n.b, "B"))]},
        {"handle": "88.119.5/x", "values": [
            value(1, "URL", "https://example.com/x", ttl=3600),
            value(2, "EMAIL", "x@example.com", ttl=600),
            value(3, "SECRET", "not public", permissions="1100")]},
        {"handle": "88.119.5/burst", "values": [value(1, "URL", "https://example.com/burst")]},
        {"handle": "88.120.7/y", "values": [value(1, "URL", "https://example.com/y")]},
        {"handle": "0.NA/88.119.9", "values": [value(1, "DESC", "served through 0.NA/88.SVC")]},
        {"handle": "88.119.9/z", "values": [value(1, "URL", "https://example.com/z")]},
    ]  # fmt: skip
    b = start_node(data=load_lines(root / "b", b_lines), args=("--handle-port", str(n.b)))
    assert handle_port(b) == n.b

    s_lines = [
        {"handle": "0.NA/88.121.1", "values": [value(1, "DESC", "S")]},
        {"handle": "88.121.1/short", "values": [value(1, "URL", "https://example.com/s", ttl=1)]},
        {"handle": "88.121.1/short2", "values": [value(1, "URL", "https://example.com/s2",
                                                        ttl=1)]},
    ]  # fmt: skip
    n.s_node = start_node(data=load_lines(root / "s", s_lines))
    n.s = handle_port(n.s_node)

    t2_lines = [{"handle": "0.NA/77", "values": [site_value("HS_SITE.PREFIX", site(n.t1, "T1"))]}]
    n.t2 = handle_port(start_node(data=load_lines(root / "t2", t2_lines), config_text=top))

    t1_lines = [
        {"handle": "0.NA/88.119.5", "values": [site_value("HS_SITE", site(n.b, "B"))]},
        {"handle": "0.NA/88.120", "values": [site_value("HS_SITE.PREFIX", site(n.b, "B"))]},
        {"handle": "0.NA/88.121.1", "values": [site_value("HS_SITE", site(n.s, "S"), ttl=1)]},
        {"handle": "0.NA/77", "values": [site_value("HS_SITE.PREFIX", site(n.t2, "T2"))]},
        {"handle": "0.NA/88.119.9", "values": [value(1, "HS_SERV", "0.NA/88.SVC")]},
        {"handle": "0.NA/88.SVC", "values": [site_value("HS_SITE", site(n.b, "B"))]},
    ]  # fmt: skip
    t1 = start_node(data=load_lines(root / "t1", t1_lines), config_text=top,
                    args=("--handle-port", str(n.t1)))  # fmt: skip
    assert handle_port(t1) == n.t1
    return n


def fast_client() -> HandleClient:
    return HandleClient(udp_retry=(0.5,), tcp_timeout=1.0, total_timeout=3.0)


def recursor(*upstreams: int, **kw) -> Recursor:
    kw.setdefault("client", fast_client())
    return Recursor([(HOST, p) for p in upstreams], **kw)


def run(coro):
    return asyncio.run(coro)


def by_index(result) -> dict[int, tuple[str, bytes]]:
    return {v.index: (v.type, v.data) for v in result.values}


# -- resolution and the cache -------------------------------------------------------------------


def test_resolves_through_the_top_level_then_from_the_cache(net):
    r = recursor(net.t1)
    first = run(r.resolve("88.119.5/x"))
    assert first.outcome is Outcome.OK
    # Public values only: index 3 has no public read.
    assert by_index(first) == {1: ("URL", b"https://example.com/x"),
                               2: ("EMAIL", b"x@example.com")}  # fmt: skip
    # 0.NA/88.119.5 at T1, then the identifier at B.
    assert r.counters["upstream_queries"] == 2 and r.counters["referrals"] == 0

    again = run(r.resolve("88.119.5/X"))  # case-folded key: the same entry
    assert again.outcome is Outcome.OK and by_index(again) == by_index(first)
    assert r.counters["upstream_queries"] == 2 and r.counters["cache_hits"] == 1
    # Cached for the smallest value TTL (600 s): clients are told what is left of it.
    assert {v.ttl for v in again.values} <= set(range(590, 601))


def test_authoritative_request_bypasses_the_cache_and_asks_with_at(net):
    """AT (RFC 3652 §2.2.2.3, handle.md §3.2 "bypass caches, primary only"): ``fresh=True``
    reads neither the cached answer nor the cached site info; what it gets is cached."""
    r = recursor(net.t1)
    first = run(r.resolve("88.119.5/x"))
    assert first.outcome is Outcome.OK and r.counters["upstream_queries"] == 2
    fresh = run(r.resolve("88.119.5/x", fresh=True))
    assert fresh.outcome is Outcome.OK and by_index(fresh) == by_index(first)
    assert r.counters["upstream_queries"] == 4  # 0.NA/88.119.5 at T1 again, then B
    assert (r.counters["fresh"], r.counters["cache_hits"]) == (1, 0)
    assert r.drain_prefix_queries() == {b"88.119.5": 4} and r.prefix_queries == {}
    assert run(r.resolve("88.119.5/x")).outcome is Outcome.OK  # from the cache again
    assert r.counters["upstream_queries"] == 4 and r.counters["cache_hits"] == 1

    # on the wire: the query carries AT (a silent "top-level" node reads it)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind((HOST, 0))
        quick = HandleClient(udp_retry=(0.2,), tcp_timeout=0.2, total_timeout=0.5)
        r2 = recursor(silent.getsockname()[1], client=quick)
        assert run(r2.resolve("88.119.5/y", fresh=True)).outcome is Outcome.UPSTREAM_UNAVAILABLE
        silent.settimeout(1.0)
        request = Message.from_wire(silent.recv(65535))
    assert request.header.has(C.FLAG_AUTHORITATIVE)
    assert request.body.handle == b"0.NA/88.119.5"


def test_negative_answer_is_cached(net):
    r = recursor(net.t1)
    assert run(r.resolve("88.119.5/x")).outcome is Outcome.OK  # the site info is now cached
    before = r.counters["upstream_queries"]
    assert run(r.resolve("88.119.5/missing")).outcome is Outcome.NOT_FOUND
    assert run(r.resolve("88.119.5/missing")).outcome is Outcome.NOT_FOUND
    assert r.counters["upstream_queries"] == before + 1
    assert r.counters["negative_hits"] == 1


def test_prefix_referral_is_followed(net):
    r = recursor(net.t1)
    result = run(r.resolve("88.120.7/y"))
    assert result.outcome is Outcome.OK
    assert by_index(result) == {1: ("URL", b"https://example.com/y")}
    # T1: RC 303 for 0.NA/88.120.7 → B: 0.NA/88.120.7 (its HS_SITE) → B: 88.120.7/y.
    assert r.counters["upstream_queries"] == 3 and r.counters["referrals"] == 1
    assert run(r.resolve("88.120.7/nope")).outcome is Outcome.NOT_FOUND
    assert r.counters["upstream_queries"] == 4  # the site came from the cache


def test_service_handle_is_resolved_for_its_sites(net):
    r = recursor(net.t1)
    result = run(r.resolve("88.119.9/z"))
    assert result.outcome is Outcome.OK
    assert by_index(result) == {1: ("URL", b"https://example.com/z")}
    # T1: 0.NA/88.119.9 → HS_SERV 0.NA/88.SVC; T1: 0.NA/88.SVC → HS_SITE (B); B: 88.119.9/z.
    assert r.counters["upstream_queries"] == 3 and r.counters["referrals"] == 1


def test_prefix_handles_and_unknown_prefixes(net):
    r = recursor(net.t1)
    result = run(r.resolve("0.NA/88.119.5"))
    assert result.outcome is Outcome.OK
    (v,) = result.values
    assert v.type == "HS_SITE"
    assert SiteInfo.from_bytes(v.data).servers[0].interfaces[0].port == net.b
    assert run(r.resolve("66.1/x")).outcome is Outcome.NOT_RESPONSIBLE  # T1: RC 301


def test_concurrent_resolves_share_one_upstream_query(net):
    r = recursor(net.t1)
    assert run(r.resolve("88.119.5/x")).outcome is Outcome.OK
    before = r.counters["upstream_queries"]

    async def burst():
        return await asyncio.gather(*(r.resolve("88.119.5/burst") for _ in range(100)))

    results = run(burst())
    assert {res.outcome for res in results} == {Outcome.OK}
    assert {res.values for res in results} == {results[0].values}
    assert r.counters["upstream_queries"] == before + 1
    assert r.counters["singleflight_joined"] == 99


# -- failover and the recursion limit -----------------------------------------------------------


def test_failover_from_an_unreachable_upstream(net):
    dead = free_port()
    clock = [1000.0]
    r = recursor(dead, net.t1, clock=lambda: clock[0])
    assert run(r.resolve("88.119.5/x")).outcome is Outcome.OK
    up = r.status()["upstreams"]
    assert up[f"{HOST}:{dead}"]["consecutive_failures"] == 1
    assert up[f"{HOST}:{dead}"]["state"] == "up" and up[f"{HOST}:{net.t1}"]["successes"] == 1

    assert run(r.resolve("88.120.7/y")).outcome is Outcome.OK  # another prefix: T1 again
    status = r.status()
    assert status["upstreams"][f"{HOST}:{dead}"]["state"] == "down"  # 2 failures in a row
    assert status["upstreams"][f"{HOST}:{net.t1}"]["state"] == "up"
    assert status["counters"]["upstream_failures"] == 2
    assert set(status["cache"]) >= {"hits", "negative_hits", "stale_served", "entries", "sites"}

    # Down: not asked any more (no probe due yet) — only T1 is.
    assert run(r.resolve("0.NA/88.120")).outcome is Outcome.OK
    assert r.counters["upstream_failures"] == 2
    # One probe a second for the down one: OC_GET_SITE_INFO, no answer, still down.
    assert run(r.probe_due()) == []
    clock[0] += 1.0
    assert r.next_probe() == 0.0
    assert run(r.probe_due()) == [(HOST, dead)]
    assert r.counters["probes"] == 1 and r.counters["upstream_failures"] == 3
    assert r.status()["upstreams"][f"{HOST}:{dead}"]["state"] == "down"
    assert r.next_probe() == pytest.approx(1.0)


def test_every_upstream_dead_and_nothing_cached(net):
    r = recursor(free_port(), free_port())
    t0 = time.monotonic()
    result = run(r.resolve("88.119.5/x"))
    assert result.outcome is Outcome.UPSTREAM_UNAVAILABLE
    assert time.monotonic() - t0 < 1.8
    assert r.counters["upstream_failures"] == 2


@pytest.mark.parametrize("limit", [10, 3])
def test_referral_loop_ends_at_the_recursion_limit(net, limit):
    r = recursor(net.t1, recursion_limit=limit)
    t0 = time.monotonic()
    result = run(r.resolve("77.1/x"))
    elapsed = time.monotonic() - t0
    assert result.outcome is Outcome.RECURSION_LIMIT, result
    assert elapsed < 5.0
    # 0.NA/77.1 at T1 → RC 303 → T2 → RC 303 → T1 …: ``limit`` referrals followed, the next
    # one refused.
    assert r.counters["upstream_queries"] == limit + 1
    assert r.counters["referrals"] == limit


# -- serve-stale (RFC 8767) ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def stale_cache(net):
    """A cache holding 88.121.1/short and /short2 (TTL 1 s, site info TTL 1 s) from S, which
    is then stopped; returns (cache, monotonic time the answers were cached)."""
    cache = AnswerCache(3600)
    r = recursor(net.t1, cache=cache)
    for name in ("88.121.1/short", "88.121.1/short2"):
        assert run(r.resolve(name)).outcome is Outcome.OK
    primed = time.monotonic()
    net.s_node.stop()
    return cache, primed


def wait_expired(primed: float) -> None:
    left = primed + 1.2 - time.monotonic()
    if left > 0:
        time.sleep(left)


def test_stale_answer_when_every_upstream_fails(stale_cache):
    cache, primed = stale_cache
    wait_expired(primed)
    r = recursor(free_port(), free_port(), cache=cache)
    t0 = time.monotonic()
    result = run(r.resolve("88.121.1/short"))
    elapsed = time.monotonic() - t0
    assert result.outcome is Outcome.OK and elapsed < 1.8
    (v,) = result.values
    assert (v.type, v.data, v.ttl) == ("URL", b"https://example.com/s", 30)  # stale-answer TTL
    # Both top-levels (the site info is stale too), then S itself through the stale site info.
    assert r.counters["upstream_failures"] == 3 and r.counters["stale_served"] == 1

    # Within the 30 s failure recheck timer: stale at once, nothing sent.
    sent = r.counters["upstream_queries"]
    assert run(r.resolve("88.121.1/short")).values == result.values
    assert r.counters["upstream_queries"] == sent and r.counters["stale_served"] == 2

    # Nothing stale to fall back on: upstream unavailable.
    assert run(r.resolve("88.121.1/never")).outcome is Outcome.UPSTREAM_UNAVAILABLE


def test_stale_answer_at_the_client_response_timer(stale_cache):
    cache, primed = stale_cache
    wait_expired(primed)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, \
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:  # fmt: skip
        udp.bind((HOST, 0))
        port = udp.getsockname()[1]
        tcp.bind((HOST, port))
        tcp.listen(8)
        slow = HandleClient(udp_retry=(1.0, 1.0), tcp_timeout=2.0, total_timeout=5.0)
        r = recursor(port, cache=cache, client=slow)

        async def ask():
            t0 = time.monotonic()
            result = await r.resolve("88.121.1/short2")
            elapsed = time.monotonic() - t0
            refreshing = r.flight.in_flight(b"88.121.1/SHORT2")
            await r.close()  # shutdown cancels the refresh
            return result, elapsed, refreshing, r.flight.in_flight(b"88.121.1/SHORT2")

        result, elapsed, refreshing, after_close = run(ask())
    assert result.outcome is Outcome.OK
    assert [(v.data, v.ttl) for v in result.values] == [(b"https://example.com/s2", 30)]
    assert 1.8 <= elapsed < 2.0, elapsed  # the timer, not the silent upstream's 4 s
    assert refreshing  # the refresh went on in the background …
    assert not after_close  # … until the shutdown cancelled it
    assert r.counters["stale_served"] == 1
