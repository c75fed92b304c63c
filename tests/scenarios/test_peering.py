"""Peering end to end (issue 7 §8): a secondary node answering foreign identifiers through two
top-level nodes, every node a real ``idnode serve`` on 127.0.0.1, started and stopped here.

* **B** (secondary) homes ``88.119.5``, ``88.119.6``, ``88.119.7``, ``88.119.8``,
  ``88.119.10`` and ``88.119.11``; records ``88.119.5/x`` (URL TTL 3600, EMAIL TTL 600, a
  value without public read), one record per other prefix, and ``88.119.7/short`` whose value
  has TTL 1 s.
* **T1**, **T2** (top-level) each hold ``0.NA/<prefix>`` with an HS_SITE naming B for every
  prefix of B (``0.NA/88.119.7``'s with TTL 1 s, so that its site info expires too),
  ``0.NA/88.119.9`` with an HS_SITE naming **F** — a UDP socket this module reads and answers
  by hand — and ``0.NA/77`` with an HS_SITE.PREFIX naming the *other* top-level node: a
  referral loop.
* **A** (secondary, homing ``88.118`` whose admin is A's server admin) with two workers and
  ``[upstream] servers = [T1, T2]``, ``recursion = true``: a supervisor, two workers, the
  upstream agent; its statistics are flushed every 0.2 s.

B, T1 and T2 run on ports picked beforehand, as the data loaded before they start names them.
The tests run in file order and later ones depend on earlier ones: the failover test freezes
and then kills T1, the serve-stale test kills T2 and B.

Upstream traffic is counted with the agent's own counters, asked over the agent's socket (the
``status`` request the workers' link speaks) or read from ``upstream-status.json`` after a
status tick; ``sent`` is ``upstream_queries`` less the background health ``probes`` (a down
top-level node is probed once a second).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import socket
import threading
import time

import dns.message
import dns.query
import dns.rcode
import pytest
import requests
from enterprises import enterprise
from peers import free_port, site, site_value, value

from proc import wait_for
from resolver.protocols.dns.answers import parse_txt
from resolver.protocols.dns.mapping import to_dns_name
from resolver.protocols.handle import codec
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.codes import ResponseCode
from resolver.protocols.handle.message import Message, ResolutionResponse
from resolver.upstream.agent import STATUS_FILE
from resolver.upstream.client import HandleClient
from resolver.upstream.link import UpstreamLink, agent_socket_name
from resolver.upstream.recursor import default_client
from resolver.values import HandleValue

pytestmark = pytest.mark.wire

HOST = "127.0.0.1"
TS = "2026-01-01T00:00:00Z"
B_PREFIXES = ("88.119.5", "88.119.6", "88.119.7", "88.119.8", "88.119.10", "88.119.11")
PUBLIC_X = [(1, "URL", b"https://b.example/88.119.5/x"), (2, "EMAIL", b"ops@b.example")]
#: The agent's wait for one silent server (its HandleClient: UDP tries, then TCP), seconds.
_AGENT = default_client()
SERVER_BUDGET = min(sum(_AGENT.udp_retry) + _AGENT.tcp_timeout, _AGENT.total_timeout)
A_SECRET = "peering admin of A"
A_ADMIN = ("300%3A88.118/ADMIN", A_SECRET)


def url(handle: str) -> dict:
    return {"handle": handle, "values": [value(1, "URL", f"https://b.example/{handle}")]}


@dataclasses.dataclass
class Net:
    a: object
    b: object
    t1: object
    t2: object
    fake: socket.socket  # F: the "secondary" of 88.119.9, answered by hand


@pytest.fixture(scope="module")
def net(start_node, load_lines, tmp_path_factory):
    root = tmp_path_factory.mktemp("peering")
    b_port, t1_port, t2_port = free_port(), free_port(), free_port()
    assert len({b_port, t1_port, t2_port}) == 3
    fake = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fake.bind((HOST, 0))
    f_port = fake.getsockname()[1]

    b_lines = [{"handle": f"0.NA/{p}", "values": [value(2, "DESC", "homed at B")]}
               for p in B_PREFIXES]  # fmt: skip
    b_lines += [
        {"handle": "88.119.5/x", "values": [
            value(1, "URL", "https://b.example/88.119.5/x", ttl=3600),
            value(2, "EMAIL", "ops@b.example", ttl=600),
            value(3, "SECRET", "not for the public", permissions="1100")]},
        url("88.119.5/twice"), url("88.119.5/burst"), url("88.119.6/a"), url("88.119.8/b"),
        url("88.119.10/c"), url("88.119.11/d"),
        {"handle": "88.119.7/short", "values": [
            value(1, "URL", "https://b.example/88.119.7/short", ttl=1)]},
    ]  # fmt: skip

    def top_lines(other_port: int, other: str) -> list[dict]:
        lines = [{"handle": f"0.NA/{p}", "values": [
            site_value("HS_SITE", site(b_port, "B"), ttl=1 if p == "88.119.7" else 86400)]}
            for p in B_PREFIXES]  # fmt: skip
        return lines + [
            {"handle": "0.NA/88.119.9", "values": [site_value("HS_SITE", site(f_port, "F"))]},
            {"handle": "0.NA/77", "values": [site_value("HS_SITE.PREFIX", site(other_port, other))]},
        ]  # fmt: skip

    top = '[node]\nrole = "top-level"\n'
    off = ("--dns-port", "-1")
    b = start_node(data=load_lines(root / "b", b_lines), args=(*off, "--handle-port", str(b_port)))
    t1 = start_node(data=load_lines(root / "t1", top_lines(t2_port, "T2")), config_text=top,
                    args=(*off, "--handle-port", str(t1_port)))  # fmt: skip
    t2 = start_node(data=load_lines(root / "t2", top_lines(t1_port, "T1")), config_text=top,
                    args=(*off, "--handle-port", str(t2_port)))  # fmt: skip
    assert (b.handle_port, t1.handle_port, t2.handle_port) == (b_port, t1_port, t2_port)
    a = start_node(workers=2, data=load_lines(root / "a", enterprise("88.118", A_SECRET)),
                   config_text=(
        f'[upstream]\nservers = ["{HOST}:{t1_port}", "{HOST}:{t2_port}"]\nrecursion = true\n'
        '[node]\nserver_admins = ["300:88.118/ADMIN"]\n[stats]\nflush_interval = 0.2\n'))
    wait_for(lambda: file_status(a), 10, "A's upstream agent")
    yield Net(a, b, t1, t2, fake)
    fake.close()
    for node in (a, t2, t1, b):  # the module's nodes end with it (a no-op for killed ones)
        if node.proc.poll() is None:
            os.killpg(node.pid, signal.SIGCONT)  # in case a failed test left it frozen
        node.stop()


# -- helpers --------------------------------------------------------------------------------------
def file_status(node) -> dict | None:
    try:
        return json.loads((node.data / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def status_after(node, t: float) -> dict:
    """The first status file written after UNIX time ``t`` (the agent rewrites it every second)."""
    return wait_for(lambda: (s := file_status(node)) and s["time"] > t and s, 5,
                    "a status tick")  # fmt: skip


def status(node) -> dict:
    """The agent's status now, asked over its socket as a worker would."""

    async def ask() -> dict:
        link = UpstreamLink(agent_socket_name(node.pid, str(node.data)), timeout=5.0)
        try:
            return await link.status()
        finally:
            await link.close()

    return asyncio.run(ask())


def counters(node) -> dict:
    c = dict(status(node)["counters"])
    c["sent"] = c["upstream_queries"] - c["probes"]
    return c


def delta(after: dict, before: dict) -> dict:
    return {k: after[k] - before[k] for k in after}


def upstream_row(node, port: int) -> dict:
    return status(node)["upstreams"][f"{HOST}:{port}"]


def client(wait: float = 8.0, **kw) -> HandleClient:
    """One UDP send waited on for ``wait`` s: a timing measured is the node's, never a retry's."""
    return HandleClient(udp_retry=(wait,), tcp_timeout=wait, total_timeout=wait + 1, **kw)


def ask(node, handle: str, proto: str = "udp", **kw) -> Message:
    return asyncio.run(client(**kw).resolve(handle, server=(HOST, node.handle_port),
                                            proto=proto))  # fmt: skip


def timed(node, handle: str) -> tuple[Message, float]:
    t0 = time.monotonic()
    reply = ask(node, handle)
    return reply, time.monotonic() - t0


def triples(values) -> list[tuple[int, str, bytes]]:
    return [(v.index, v.type, v.data) for v in values]


def url_of(handle: str) -> list[tuple[int, str, bytes]]:
    return [(1, "URL", f"https://b.example/{handle}".encode())]


# -- 1. every front-end, 2. the cache -------------------------------------------------------------
@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_handle_with_rec_answers_bs_record(net, proto):
    reply = ask(net.a, "88.119.5/x", proto)  # the client's default flags: REC | CA | PO
    assert reply.header.rc == 1, reply.body
    assert reply.body.handle == b"88.119.5/x"
    assert triples(reply.body.values) == PUBLIC_X  # the value without public read stays at B


def test_rest_answers_bs_record(net):
    ans = net.a.get("/api/handles/88.119.5/x")
    assert ans.status == 200, ans.body
    body = json.loads(ans.body)
    assert body["responseCode"] == 1 and body["handle"] == "88.119.5/x"
    assert [(v["index"], v["type"], v["data"]["value"]) for v in body["values"]] == [
        (i, t, d.decode()) for i, t, d in PUBLIC_X]  # fmt: skip


def test_dns_answers_bs_record(net):
    q = dns.message.make_query(to_dns_name("88.119.5/x", "id.idnode.test."), "TXT")
    r = dns.query.udp(q, HOST, port=net.a.dns_port, timeout=5.0)
    assert r.rcode() == dns.rcode.NOERROR
    (rrset,) = r.answer
    assert sorted(parse_txt(b"".join(rd.strings)) for rd in rrset) == PUBLIC_X


def test_second_query_is_answered_from_the_cache(net):
    a = net.a
    before = status_after(a, time.time())["counters"]
    first = ask(a, "88.119.5/twice")
    assert first.header.rc == 1 and triples(first.body.values) == url_of("88.119.5/twice")
    mid = status_after(a, time.time())["counters"]
    # 88.119.5's site info is cached since the tests above: one query, to B.
    assert mid["upstream_queries"] - before["upstream_queries"] == 1
    second = ask(a, "88.119.5/twice")
    assert second.header.rc == 1 and triples(second.body.values) == url_of("88.119.5/twice")
    after = status_after(a, time.time())["counters"]
    assert after["upstream_queries"] == mid["upstream_queries"]  # no upstream traffic
    assert after["cache_hits"] == mid["cache_hits"] + 1


def test_authoritative_request_bypasses_the_cache(net):
    """AT set by the client (REST: ``auth=true``): A does not answer from its cache but asks
    again — the prefix at a top-level node, the identifier at B (primary) — and still does not
    claim authority for B's data (no AT in the reply)."""
    a = net.a
    assert ask(a, "88.119.5/twice").header.rc == 1  # cached by the test above
    before = counters(a)
    reply = asyncio.run(client().resolve("88.119.5/twice", server=(HOST, a.handle_port),
                                         authoritative=True))  # fmt: skip
    assert reply.header.rc == 1 and triples(reply.body.values) == url_of("88.119.5/twice")
    assert not reply.header.has(C.FLAG_AUTHORITATIVE)
    d = delta(counters(a), before)
    assert (d["sent"], d["fresh"], d["cache_hits"]) == (2, 1, 0)
    before = counters(a)
    ans = a.get("/api/handles/88.119.5/twice?auth=true")
    assert ans.status == 200 and json.loads(ans.body)["responseCode"] == 1
    assert delta(counters(a), before)["sent"] == 2
    before = counters(a)
    assert a.get("/api/handles/88.119.5/twice").status == 200  # without: the cache
    assert delta(counters(a), before)["sent"] == 0


# -- 3. negative caching --------------------------------------------------------------------------
def test_missing_identifier_twice_is_one_upstream_query(net):
    before = counters(net.a)
    assert ask(net.a, "88.119.5/no-such-thing").header.rc == 100  # B's authoritative miss
    assert ask(net.a, "88.119.5/NO-SUCH-THING").header.rc == 100  # same key, case-folded
    d = delta(counters(net.a), before)
    assert d["sent"] == 1 and d["negative_hits"] == 1


# -- 6. single-flight across the workers ----------------------------------------------------------
def test_hundred_concurrent_queries_are_one_upstream_query(net):
    before = counters(net.a)

    async def burst() -> list[Message]:
        # 100 datagram sockets, so 100 source ports: SO_REUSEPORT spreads them over both workers
        c = client(wait=10.0)
        return await asyncio.gather(*(
            c.resolve("88.119.5/burst", server=(HOST, net.a.handle_port), proto="udp")
            for _ in range(100)))  # fmt: skip

    replies = asyncio.run(burst())
    assert [r.header.rc for r in replies] == [1] * 100
    assert {tuple(triples(r.body.values)) for r in replies} == {tuple(url_of("88.119.5/burst"))}
    d = delta(counters(net.a), before)
    assert d["sent"] == 1
    # every other request joined the flight in the air or, arriving after it, hit the cache
    assert d["singleflight_joined"] + d["cache_hits"] == 99


# -- 7. a referral loop ---------------------------------------------------------------------------
def test_referral_loop_is_rc_6_without_hanging(net):
    before = counters(net.a)
    reply, elapsed = timed(net.a, "77.1/x")
    assert reply.header.rc == ResponseCode.RECURSION_COUNT_TOO_HIGH == 6
    assert elapsed < 5.0
    d = delta(counters(net.a), before)
    # T1: RC 303 → T2: RC 303 → T1 …: recursion_limit (10) referrals, the next one refused
    assert (d["sent"], d["referrals"]) == (11, 10)
    rest = net.a.get("/api/handles/77.1/y")
    assert rest.status == 500 and json.loads(rest.body)["responseCode"] == 6


# -- 8. forged responses --------------------------------------------------------------------------
GENUINE = (HandleValue(1, "URL", b"https://f.example/genuine", ttl=3600),)


def forged(tag: str) -> tuple[HandleValue, ...]:
    return (HandleValue(1, "URL", f"https://attacker.example/{tag}".encode(), ttl=3600),)


class FakeSite(threading.Thread):
    """F: reads one request from A's agent and sends ``plan(request, data, addr)``'s datagrams,
    each as (payload, from another socket?), in order, 20 ms apart."""

    def __init__(self, sock: socket.socket, plan) -> None:
        super().__init__(daemon=True)
        self.sock, self.plan = sock, plan
        self.request: Message | None = None
        self.source = None
        self.sent: list[bytes] = []

    def run(self) -> None:
        self.sock.settimeout(10.0)
        data, addr = self.sock.recvfrom(65535)
        self.request, self.source = Message.from_wire(data), addr
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.bind((HOST, 0))
            for datagram, elsewhere in self.plan(self.request, data):
                (other if elsewhere else self.sock).sendto(datagram, addr)
                self.sent.append(datagram)
                time.sleep(0.02)


def reply_to(request: Message, data: bytes, handle: bytes | None = None,
             values=GENUINE, **header) -> bytes:  # fmt: skip
    """The reply F's server would send (request digest included), with ``header`` changes."""
    hdr = dataclasses.replace(request.header, **header)
    body = ResolutionResponse.of(handle or request.body.handle, values)
    return codec.respond(request.envelope, data[C.ENVELOPE_SIZE :], hdr, 1, body)


def drain(sock: socket.socket) -> None:
    sock.settimeout(0)
    try:
        while True:
            sock.recv(65535)
    except BlockingIOError:
        pass


def test_forged_replies_are_ignored(net):
    """While A's agent waits for F, three forgeries reach its socket before F's real reply:
    wrong request id, right id from another port (the agent's socket is connected: the kernel
    drops it), right id and port without the request digest / with a wrong one."""

    def plan(request: Message, data: bytes):
        rid = request.envelope.request_id
        wrong_id = dataclasses.replace(request.envelope, request_id=rid % 0x7FFFFFFE + 1)
        no_digest = reply_to(request, data, values=forged("no-digest"),
                             opflags=request.header.opflags & ~C.FLAG_REQUEST_DIGEST)
        bad = Message.from_wire(reply_to(request, data, values=forged("bad-digest")))
        bad_digest = dataclasses.replace(bad, digest=(bad.digest[0], bytes(len(bad.digest[1]))))
        return [
            (codec.respond(wrong_id, data[C.ENVELOPE_SIZE :], request.header, 1,
                           ResolutionResponse.of(request.body.handle, forged("id"))), False),
            (reply_to(request, data, values=forged("port")), True),
            (no_digest, False),
            (bad_digest.to_wire(), False),
            (reply_to(request, data), False),  # F's own reply
        ]  # fmt: skip

    drain(net.fake)
    before = counters(net.a)
    fake = FakeSite(net.fake, plan)
    fake.start()
    reply = ask(net.a, "88.119.9/f")
    fake.join(10)
    assert fake.request is not None, "A's agent never asked F"
    assert fake.request.header.has(C.FLAG_REQUEST_DIGEST)  # what lets forgeries be told apart
    assert not fake.request.header.has(C.FLAG_RECURSIVE)
    assert reply.header.rc == 1
    assert triples(reply.body.values) == [(1, "URL", b"https://f.example/genuine")]
    # Each forgery is a well-formed RC 1 answer for the identifier asked, wrong in one way only.
    sent = [Message.from_wire(d) for d in fake.sent]
    genuine = sent[-1]
    asked = fake.request.body.handle
    assert asked.lower() == b"88.119.9/f"
    assert len(sent) == 5 and all(m.header.rc == 1 and m.body.handle == asked for m in sent)
    ids = [m.envelope.request_id for m in sent]
    assert ids[0] != genuine.envelope.request_id and len(set(ids[1:])) == 1
    assert sent[1].digest == genuine.digest  # only its source port is wrong
    assert sent[2].digest is None and sent[3].digest != genuine.digest
    d = delta(counters(net.a), before)
    # T1 for 0.NA/88.119.9, F once: no forgery counted as a reply, none as a failure
    assert (d["sent"], d["upstream_failures"]) == (2, 0)


def test_reply_for_another_identifier_is_refused_and_not_cached(net):
    """Right id, port and digest, but the body names another identifier: no usable reply
    (reliability.md §A3) — the client gets no values and nothing is cached."""
    drain(net.fake)
    before = counters(net.a)
    fake = FakeSite(net.fake, lambda rq, data: [
        (reply_to(rq, data, handle=b"88.119.9/other", values=forged("other")), False)])
    fake.start()
    reply = ask(net.a, "88.119.9/g")
    fake.join(10)
    assert fake.source is not None
    assert reply.header.rc != 1 and not getattr(reply.body, "values", ())
    assert delta(counters(net.a), before)["upstream_failures"] >= 1
    drain(net.fake)  # the agent may have tried F's TCP port and sent nothing more; be sure
    fake = FakeSite(net.fake, lambda rq, data: [(reply_to(rq, data), False)])
    fake.start()
    again = ask(net.a, "88.119.9/g")
    fake.join(10)
    assert fake.request is not None  # asked F again: the refused reply was not cached
    assert again.header.rc == 1 and triples(again.body.values) == [
        (1, "URL", b"https://f.example/genuine")]  # fmt: skip


# -- 4. failover ----------------------------------------------------------------------------------
def test_failover_to_t2_when_t1_freezes_then_dies(net):
    """T1 frozen (SIGSTOP: its packets vanish, its TCP backlog still accepts): A's agent asks
    T1 first, gives up after its per-server budget and asks T2.  Two such failures put T1
    down; from then on a new identifier costs no wait for T1.  Then T1 is killed (SIGKILL of
    its process group): still answered through T2 at once."""
    a, t1, t2 = net.a, net.t1, net.t2
    os.killpg(t1.pid, signal.SIGSTOP)
    try:
        for handle in ("88.119.6/a", "88.119.8/b"):  # prefixes not located yet: T1 is asked
            reply, elapsed = timed(a, handle)
            assert reply.header.rc == 1 and triples(reply.body.values) == url_of(handle)
            # measured: the client's query to A until its answer = T1's silence (the agent's
            # per-server budget) + T2 + B
            assert sum(_AGENT.udp_retry) <= elapsed < SERVER_BUDGET + 1.0, elapsed
        row = upstream_row(a, t1.handle_port)
        assert row["state"] == "down" and row["consecutive_failures"] >= 2
        assert upstream_row(a, t2.handle_port)["state"] == "up"
        # T1's death noticed (down): a new prefix is located at T2 without waiting for T1
        reply, elapsed = timed(a, "88.119.10/c")
        assert reply.header.rc == 1 and triples(reply.body.values) == url_of("88.119.10/c")
        assert elapsed < 1.0, elapsed
    finally:
        t1.kill()  # SIGKILL to the frozen group: supervisor and workers die at once
    reply, elapsed = timed(a, "88.119.11/d")
    assert reply.header.rc == 1 and triples(reply.body.values) == url_of("88.119.11/d")
    assert elapsed < 1.0, elapsed
    # T1 stays down and is probed about once a second (refused now)
    probes = counters(a)["probes"]
    wait_for(lambda: counters(a)["probes"] > probes, 5, "a probe of T1")
    assert upstream_row(a, t1.handle_port)["state"] == "down"


# -- 5. serve-stale -------------------------------------------------------------------------------
def test_stale_answer_when_every_upstream_is_dead(net):
    """88.119.7/short (TTL 1 s, its site info TTL 1 s too) cached through T2 and B; T1 is dead
    already.  T2 killed: once expired it is refreshed from B through the stale site info.  B
    killed too: once expired again it is answered stale (RFC 8767: TTL 30 s) at once."""
    a = net.a
    first = ask(a, "88.119.7/short")
    assert first.header.rc == 1 and triples(first.body.values) == url_of("88.119.7/short")
    primed = time.monotonic()
    net.t2.kill()
    time.sleep(max(0.0, primed + 1.2 - time.monotonic()))  # expired: answer and site info

    reply, elapsed = timed(a, "88.119.7/short")  # no top-level answers; B does
    assert reply.header.rc == 1 and triples(reply.body.values) == url_of("88.119.7/short")
    assert [v.ttl for v in reply.body.values] == [1] and elapsed < 1.8
    refreshed = time.monotonic()

    net.b.kill()
    time.sleep(max(0.0, refreshed + 1.2 - time.monotonic()))
    before = counters(a)
    reply, elapsed = timed(a, "88.119.7/short")
    assert reply.header.rc == 1 and triples(reply.body.values) == url_of("88.119.7/short")
    assert [v.ttl for v in reply.body.values] == [30]  # stale-answer TTL
    assert elapsed < 1.8, elapsed
    d = delta(counters(a), before)
    assert d["stale_served"] == 1 and d["upstream_failures"] >= 1  # B was asked and failed

    # Within the 30 s failure recheck timer: stale at once, nothing sent.
    before = counters(a)
    reply, elapsed = timed(a, "88.119.7/short")
    assert [v.ttl for v in reply.body.values] == [30] and elapsed < 1.8
    d = delta(counters(a), before)
    assert d["stale_served"] == 1 and d["sent"] == 0
    # nothing stale to fall back on: no answer (RC 2: upstream unavailable, not "not here")
    never = ask(a, "88.119.5/never-asked")
    assert never.header.rc == ResponseCode.ERROR
    assert b"failed" in never.body.message  # what went wrong upstream, e.g. "TCP to … failed"


# -- 9. statistics --------------------------------------------------------------------------------
def a_stats(net) -> dict:
    r = requests.get(f"{net.a.base_url}/api/v1/stats", auth=A_ADMIN, timeout=10)
    assert r.status_code == 200, r.text
    return {p["prefix"]: p for p in r.json()["prefixes"]}


def upstream_queries(prefixes: dict) -> int:
    return sum(p["upstream"]["queries"] for p in prefixes.values())


def test_statistics_after_the_scenarios(net):
    """A's ``/api/v1/stats`` after everything above: the requests A sent upstream for each
    foreign prefix add up to the agent's own count (all but the health probes), and new
    questions — answered from A's cache, every other node being dead by now — are counted
    exactly, by front-end and outcome, with no upstream query."""
    a = net.a
    sent = counters(a)["sent"]
    wait_for(lambda: upstream_queries(a_stats(net)) == counters(a)["sent"], 10,
             "the agent's flushed upstream-query counts")  # fmt: skip
    before = a_stats(net)
    assert upstream_queries(before) >= sent > 0
    assert before["88.119.5"]["upstream"]["queries"] >= 1
    # the referral loop: one Handle and one REST request, each 11 sent and RC 6
    assert before["77.1"]["resolutions"] == {"total": 2, "handle": {"recursion_limit": 1},
                                             "http": {"recursion_limit": 1}}  # fmt: skip
    assert before["77.1"]["upstream"]["queries"] == 22
    for frontend in ("handle", "http", "dns"):
        assert before["88.119.5"]["resolutions"][frontend]["ok"] >= 1

    for proto in ("udp", "udp", "tcp"):
        assert ask(a, "88.119.5/x", proto).header.rc == 1
    assert a.get("/api/handles/88.119.5/x").status == 200
    q = dns.message.make_query(to_dns_name("88.119.5/x", "id.idnode.test."), "TXT")
    assert dns.query.udp(q, HOST, port=a.dns_port, timeout=5.0).rcode() == dns.rcode.NOERROR

    def grown():
        now = a_stats(net)["88.119.5"]["resolutions"]
        return now["total"] - before["88.119.5"]["resolutions"]["total"] >= 5 and now

    after = wait_for(grown, 10, "the workers' flushed resolution counts")
    time.sleep(0.5)  # more than two flush intervals: a sixth count would show by now
    after = a_stats(net)["88.119.5"]["resolutions"]
    old = before["88.119.5"]["resolutions"]
    assert after["total"] - old["total"] == 5, (old, after)
    assert {f: after[f]["ok"] - old[f]["ok"] for f in ("handle", "http", "dns")} == {
        "handle": 3, "http": 1, "dns": 1}  # fmt: skip
    assert upstream_queries(a_stats(net)) == upstream_queries(before)  # all from the cache
