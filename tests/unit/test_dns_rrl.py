"""Response rate limiting of DNS answers (``resolver.protocols.dns.rrl``, issue 6 §5).

Replies come from the real general-path responder (``responder.respond`` over a small
in-memory lookup) and every packet a client would see is read back with dnspython.  The clock
is injected, so Knot's RRL test (``tests-extra/tests/modules/rrl``: rate 5, instant 5, 2 s runs
— 5 s for slip 2 — of back-to-back queries with a 0.15 s client timeout; reference §A11 T3) runs
in simulated time, and its pass criteria are asserted as Knot states them.  Then: the token
bucket's exact numbers, slip patterns, dry run, whitelist forms, the /24 and /56 grouping,
response classes, the slipped form (byte-identical to the responder's own TC answer), the table
bound, a flood at 10× the limit (amplification ≤ 1 in bytes and packets) and the config.
"""

from __future__ import annotations

import ipaddress
import random
import time

import dns.flags
import dns.message
import dns.rcode
import pytest

from resolver.protocols.dns.mapping import from_dns_name, to_dns_name
from resolver.protocols.dns.responder import NOT_HELD, Zone, respond
from resolver.protocols.dns.rrl import (
    Decision,
    RateLimiter,
    ResponseClass,
    RrlConfig,
    classify,
    slip_response,
)
from resolver.values import AdminRecord, HandleValue

PASS, SLIP, DROP = Decision.PASS, Decision.SLIP, Decision.DROP
NOW = 1_700_000_000
APEX = "id.idnode.test."
ZONE = Zone(
    apex=APEX, mname="ns1.id.idnode.test.", rname="hostmaster.id.idnode.test.",
    ns=("ns1.id.idnode.test.", "ns2.other.test."),
)  # fmt: skip
T0 = 5000.0  # simulated monotonic clock origin


def _key(identifier: str) -> str:
    return from_dns_name(to_dns_name(identifier, APEX), APEX)


DEMO = "88.118.8/demo-1"
BIG = "88.118.8/big"
RECORDS = {
    _key(DEMO): (  # the shape of the demo record: URL, EMAIL, HS_ADMIN
        HandleValue(1, "URL", b"https://example.com/sn/demo-1", ttl=86400),
        HandleValue(2, "EMAIL", b"quality@example.com", ttl=86400),
        HandleValue(100, "HS_ADMIN", AdminRecord("0.NA/88.118.8", 200, 0x0FFF).to_bytes()),
    ),
    _key("88.118.8/demo-2"): (HandleValue(1, "URL", b"https://example.com/sn/demo-2"),),
    _key(BIG): tuple(HandleValue(i, "DESC", b"x" * 200) for i in range(1, 7)),  # ~1.3 kB
}


def lookup(key: str):
    if key.partition("/")[0] != "88.118.8":
        return NOT_HELD
    return RECORDS.get(key)


def exchange(qname: str, qtype: str = "TXT", *, tcp: bool = False,
             **make_kw) -> tuple[bytes, bytes]:  # fmt: skip
    """(query, reply) bytes from the general-path responder."""
    query = dns.message.make_query(qname, qtype, **make_kw).to_wire()
    return query, respond(query, ZONE, lookup, now=NOW, tcp=tcp)


def name_of(identifier: str) -> str:
    return to_dns_name(identifier, APEX)


def knot_config(rate: int, slip: int, **kw) -> RrlConfig:
    return RrlConfig(rate_limit=rate, instant_limit=rate, slip=slip, **kw)  # as Knot's test


def send_queries(limiter: RateLimiter, reply: bytes, *, start: float, run_time: float = 2.0,
                 rtt: float, timeout: float = 0.15, client: str = "127.0.0.1") -> dict:  # fmt: skip
    """Knot's ``send_queries`` in simulated time: one query at a time; an answer arrives after
    ``rtt``, a dropped one costs the client its ``timeout``.  Like Knot's test, a slipped answer
    must carry AA and every answer NOERROR."""
    replied = slipped = dropped = 0
    now = start
    seen: dict[bytes, dns.message.Message] = {}  # the same bytes parse the same: parse once
    while now < start + run_time:
        out = limiter.apply(client, reply, now)
        if out is None:
            dropped += 1
            now += timeout
            continue
        msg = seen.get(out)
        if msg is None:
            msg = seen[out] = dns.message.from_wire(out)
        assert msg.rcode() == dns.rcode.NOERROR
        if msg.flags & dns.flags.TC:
            assert msg.flags & dns.flags.AA, "missing AA flag"
            slipped += 1
        else:
            replied += 1
        now += rtt
    return {"replied": replied, "slipped": slipped, "dropped": dropped}


def check_result(res: dict, rate: int = 0, slip: int | None = None) -> None:
    """Knot's ``check_result`` criteria, verbatim in meaning."""
    if rate == 0:
        ok = res["replied"] >= 100 and res["slipped"] == 0 and res["dropped"] <= 3
    elif slip == 0:
        ok = 0 < res["replied"] < 100 and res["slipped"] == 0 and res["dropped"] >= 5
    elif slip == 1:
        ok = 0 < res["replied"] < 100 and res["slipped"] >= 100 and res["dropped"] <= 3
    else:
        ok = 0 < res["replied"] < 100 and res["slipped"] >= 5 and res["dropped"] >= 5
    assert ok, res


# -- Knot's test shape (reference §A11 T3) ---------------------------------------------------------

APEX_SOA = exchange(APEX, "SOA")[1]  # Knot's test asks each zone's apex SOA
DEMO_TXT = exchange(name_of(DEMO), "TXT", use_edns=0)[1]
RTTS = pytest.mark.parametrize("rtt", [0.001, 0.01], ids=["rtt1ms", "rtt10ms"])


@RTTS
def test_knot_shape_disabled(rtt):
    limiter = RateLimiter(RrlConfig())  # rate-limit 0: the default
    res = send_queries(limiter, APEX_SOA, start=T0, rtt=rtt)
    check_result(res)
    assert res["dropped"] == 0 and limiter.counters() == {"slipped": 0, "dropped": 0}


@RTTS
@pytest.mark.parametrize("slip,run_time", [(0, 2.0), (1, 2.0), (2, 5.0)])
def test_knot_shape_limited_and_counters_match_the_client_view(rtt, slip, run_time):
    limiter = RateLimiter(knot_config(5, slip))
    res = send_queries(limiter, APEX_SOA, start=T0, run_time=run_time, rtt=rtt)
    check_result(res, 5, slip)
    assert limiter.counters() == {"slipped": res["slipped"], "dropped": res["dropped"]}
    # "zone 2" after Knot's 2 s pause: another name, limited the same way on its own budget.
    before = limiter.counters()
    res2 = send_queries(limiter, DEMO_TXT, start=T0 + run_time + 2, run_time=run_time, rtt=rtt)
    check_result(res2, 5, slip)
    after = limiter.counters()
    assert after["slipped"] - before["slipped"] == res2["slipped"]
    assert after["dropped"] - before["dropped"] == res2["dropped"]


@RTTS
def test_knot_shape_whitelist_is_never_limited(rtt):
    limiter = RateLimiter(knot_config(5, 0, whitelist=("127.0.0.1",)))
    res = send_queries(limiter, APEX_SOA, start=T0, rtt=rtt)
    check_result(res)  # as if disabled
    assert res["dropped"] == 0 and limiter.counters() == {"slipped": 0, "dropped": 0}
    # the whitelist is of that address alone: its /24 neighbour is limited
    res = send_queries(limiter, APEX_SOA, start=T0 + 10, rtt=rtt, client="127.0.0.2")
    check_result(res, 5, 0)


# -- the bucket's numbers ------------------------------------------------------------------------


def test_burst_of_instant_limit_then_rate_limit_per_second():
    limiter = RateLimiter(RrlConfig(rate_limit=5, instant_limit=8, slip=0))
    assert [limiter.decide("192.0.2.1", DEMO_TXT, T0) for _ in range(10)] == [PASS] * 8 + [DROP] * 2
    assert limiter.decide("192.0.2.1", DEMO_TXT, T0 + 0.19) is DROP  # 1/5 s per token
    assert limiter.decide("192.0.2.1", DEMO_TXT, T0 + 0.2) is PASS
    assert limiter.decide("192.0.2.1", DEMO_TXT, T0 + 0.2) is DROP
    # a long pause refills to instant-limit, not beyond
    later = T0 + 3600
    assert [limiter.decide("192.0.2.1", DEMO_TXT, later) for _ in range(9)] == [PASS] * 8 + [DROP]


def test_steady_rate_over_ten_seconds():
    limiter = RateLimiter(RrlConfig(rate_limit=20, instant_limit=20, slip=0))
    passed = sum(limiter.decide("198.51.100.7", DEMO_TXT, T0 + i / 1000) is PASS
                 for i in range(10_000))  # fmt: skip
    assert 20 + 20 * 10 - 1 <= passed <= 20 + 20 * 10 + 1
    assert limiter.dropped == 10_000 - passed


def test_a_limited_reply_costs_no_token():
    # a flood must not push the bucket into debt: 1/rate after the flood, the client is served
    limiter = RateLimiter(knot_config(5, 0))
    for i in range(5000):
        limiter.decide("192.0.2.1", DEMO_TXT, T0 + i / 10_000)  # 10 000 q/s for 0.5 s
    assert limiter.decide("192.0.2.1", DEMO_TXT, T0 + 0.5 + 0.2) is PASS


@pytest.mark.parametrize("slip,pattern", [
    (0, [DROP] * 6), (1, [SLIP] * 6), (2, [SLIP, DROP] * 3), (3, [SLIP, DROP, DROP] * 2),
])  # fmt: skip
def test_every_slip_th_limited_reply_slips(slip, pattern):
    limiter = RateLimiter(RrlConfig(rate_limit=1, instant_limit=1, slip=slip))
    assert limiter.decide("192.0.2.1", DEMO_TXT, T0) is PASS
    assert [limiter.decide("192.0.2.1", DEMO_TXT, T0) for _ in range(6)] == pattern
    assert limiter.counters() == {"slipped": pattern.count(SLIP), "dropped": pattern.count(DROP)}


def test_apply_sends_the_reply_its_slipped_form_or_nothing():
    limiter = RateLimiter(RrlConfig(rate_limit=1, instant_limit=1, slip=2))
    assert limiter.apply("192.0.2.1", DEMO_TXT, T0) == DEMO_TXT
    assert limiter.apply("192.0.2.1", DEMO_TXT, T0) == slip_response(DEMO_TXT)
    assert limiter.apply("192.0.2.1", DEMO_TXT, T0) is None
    assert limiter.slip_response(DEMO_TXT) == slip_response(DEMO_TXT)  # as a method too


def test_dry_run_passes_everything_and_counts_what_it_would_limit():
    real = RateLimiter(knot_config(5, 2))
    dry = RateLimiter(knot_config(5, 2, dry_run=True))
    decisions = []
    for i in range(300):
        now = T0 + i / 100
        decisions.append(real.decide("192.0.2.1", DEMO_TXT, now))
        assert dry.decide("192.0.2.1", DEMO_TXT, now) is PASS
    assert SLIP in decisions and DROP in decisions
    assert dry.counters() == real.counters() == {
        "slipped": decisions.count(SLIP), "dropped": decisions.count(DROP)}


def test_disabled_and_empty_replies_pass_uncharged():
    off = RateLimiter(RrlConfig(slip=0))
    assert all(off.decide("192.0.2.1", DEMO_TXT, T0) is PASS for _ in range(1000))
    limiter = RateLimiter(knot_config(1, 0))
    for _ in range(100):
        assert limiter.decide("192.0.2.1", b"", T0) is PASS  # the responder's "send nothing"
    assert limiter.decide("192.0.2.1", DEMO_TXT, T0) is PASS  # the budget is untouched
    assert limiter.decide("192.0.2.1", DEMO_TXT, T0) is DROP


# -- who shares a bucket -----------------------------------------------------------------------


def exhaust(limiter: RateLimiter, client: str, reply: bytes = DEMO_TXT) -> None:
    while limiter.decide(client, reply, T0) is PASS:
        pass


def test_ipv4_clients_are_grouped_by_24():
    limiter = RateLimiter(knot_config(3, 0))
    exhaust(limiter, "10.0.0.1")
    assert limiter.decide("10.0.0.254", DEMO_TXT, T0) is DROP  # same /24
    assert limiter.decide("::ffff:10.0.0.9", DEMO_TXT, T0) is DROP  # dual-stack mapped form
    assert limiter.decide("10.0.1.1", DEMO_TXT, T0) is PASS  # next /24
    assert limiter.decide("11.0.0.1", DEMO_TXT, T0) is PASS


def test_ipv6_clients_are_grouped_by_56():
    limiter = RateLimiter(knot_config(3, 0))
    exhaust(limiter, "2001:db8:0:100::1")
    for same in ("2001:db8:0:1ff:ffff:ffff:ffff:ffff", "2001:0db8:0000:0180:0:0:0:1",
                 "2001:db8:0:100::1%eth0"):  # fmt: skip
        assert limiter.decide(same, DEMO_TXT, T0) is DROP, same
    for other in ("2001:db8:0:200::1", "2001:db8:0:ff::1", "2001:db8:1:100::1", "::1"):
        assert limiter.decide(other, DEMO_TXT, T0) is PASS, other


def test_every_ipv6_spelling_of_a_56_is_one_network():
    rng = random.Random(6)
    limiter = RateLimiter(knot_config(1, 0))
    for i in range(200):
        net = rng.getrandbits(56) << 72
        a = ipaddress.IPv6Address(net | rng.getrandbits(72) & rng.choice([0xFFFF, 1 << 71, 0]))
        b = ipaddress.IPv6Address(net | rng.getrandbits(72))
        now = T0 + 10 * i  # a fresh second each time: buckets are full again
        assert limiter.decide(str(a), DEMO_TXT, now) is PASS, a
        assert limiter.decide(b.exploded, DEMO_TXT, now) is DROP, (a, b)
        assert limiter.decide(str(ipaddress.IPv6Address(net ^ (1 << 72))), DEMO_TXT, now) is PASS


def test_a_bad_client_address_is_an_error():
    limiter = RateLimiter(RrlConfig(rate_limit=5, whitelist=("192.0.2.0/24",)))
    for bad in ("2001:db8::1::2", "1:2:3:4:5:6:7:8:9", "12345::", "999.1.2.3", "1.2.3"):
        with pytest.raises(ValueError):
            limiter.decide(bad, DEMO_TXT, T0)


def test_normal_answers_are_counted_per_qname_errors_per_zone():
    limiter = RateLimiter(knot_config(2, 0))
    exhaust(limiter, "192.0.2.1", DEMO_TXT)
    assert limiter.decide("192.0.2.1", exchange(name_of("88.118.8/demo-2"))[1], T0) is PASS
    # 0x20 case randomisation does not buy a new budget
    upper = exchange(name_of(DEMO).upper(), "TXT", use_edns=0)[1]
    assert upper != DEMO_TXT and limiter.decide("192.0.2.1", upper, T0) is DROP
    # NXDOMAIN for any name shares one bucket per network
    exhaust(limiter, "192.0.2.1", exchange(name_of("88.118.8/none-1"))[1])
    assert limiter.decide("192.0.2.1", exchange(name_of("88.118.8/none-2"))[1], T0) is DROP
    # so do errors (REFUSED outside the apex), in a bucket of their own
    exhaust(limiter, "192.0.2.1", exchange("www.example.org.")[1])
    assert limiter.decide("192.0.2.1", exchange("other.example.")[1], T0) is DROP
    assert limiter.decide("192.0.2.9", exchange(name_of("88.118.8/none-3"))[1], T0) is DROP
    assert limiter.decide("192.0.3.1", exchange(name_of("88.118.8/none-3"))[1], T0) is PASS


def test_classes_read_from_the_reply():
    demo = name_of(DEMO)
    qname = dns.message.make_query(demo, "TXT").question[0].name.to_wire()
    badvers = dns.message.make_query(demo, "TXT", use_edns=1).to_wire()
    cases = {
        ResponseClass.NORMAL: exchange(demo, "TXT")[1],
        ResponseClass.EMPTY: exchange(demo, "A")[1],  # NODATA
        ResponseClass.ANY: exchange(demo, "ANY")[1],
        ResponseClass.DNSSEC: exchange(demo, "DNSKEY")[1],
        ResponseClass.LARGE: exchange(name_of(BIG), "TXT", tcp=True)[1],
    }
    big = dns.message.make_query(name_of(BIG), "TXT").question[0].name.to_wire()
    for cls, reply in cases.items():
        assert classify(reply) == (cls, big if cls is ResponseClass.LARGE else qname), cls
    assert len(cases[ResponseClass.LARGE]) >= 1024
    assert classify(exchange(name_of("88.118.8/nope"))[1]) == (ResponseClass.NXDOMAIN, b"")
    assert classify(exchange("www.example.org.")[1]) == (ResponseClass.ERROR, b"")
    r = respond(badvers, ZONE, lookup, now=NOW)
    assert dns.message.from_wire(r).rcode() == dns.rcode.BADVERS
    assert classify(r) == (ResponseClass.ERROR, b"")  # RCODE 16 lives in the OPT RR
    formerr = respond(b"\x12\x34\x01\x00" + b"\xff" * 20, ZONE, lookup, now=NOW)
    for garbage in (formerr, b"\x12\x34\x81\x00\x00\x01\x00\x01\x00\x00\x00\x00\x40abc", b"\0" * 5):
        assert classify(garbage) == (ResponseClass.ERROR, b"")
    # the QNAME bucket key is case-folded
    assert classify(exchange(demo.upper())[1])[1] == qname


# -- the whitelist ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry,inside,outside", [
    ("192.0.2.7", ["192.0.2.7", "::ffff:192.0.2.7"], ["192.0.2.8"]),
    ("192.0.2.0/25", ["192.0.2.0", "192.0.2.127"], ["192.0.2.128", "192.0.3.1"]),
    ("192.0.2.10-192.0.2.20", ["192.0.2.10", "192.0.2.15", "192.0.2.20"],
     ["192.0.2.9", "192.0.2.21"]),
    ("2001:db8::/32", ["2001:db8:ffff::1", "2001:db8::"], ["2001:db9::1", "::1"]),
    ("2001:db8::5", ["2001:db8::5", "2001:0db8:0:0::5%lo"], ["2001:db8::6"]),
    ("::ffff:198.51.100.0/120", ["198.51.100.200", "::ffff:198.51.100.1"], ["198.51.101.1"]),
    ("10.1.2.3/8", ["10.200.0.1"], ["11.0.0.1"]),  # host bits ignored, as ADDR/LEN means
])  # fmt: skip
def test_whitelist_forms(entry, inside, outside):
    limiter = RateLimiter(RrlConfig(rate_limit=1, instant_limit=1, slip=0, whitelist=(entry,)))
    for ip in inside:
        assert all(limiter.decide(ip, DEMO_TXT, T0) is PASS for _ in range(20)), ip
    assert limiter.counters() == {"slipped": 0, "dropped": 0}
    for ip in outside:
        assert [limiter.decide(ip, DEMO_TXT, T0 + 100) for _ in range(3)][-1] is DROP, ip


# -- the slipped form ---------------------------------------------------------------------------


@pytest.mark.parametrize("make_kw", [{"use_edns": False}, {"use_edns": 0, "payload": 512},
                                     {"use_edns": 0, "payload": 1232, "want_dnssec": True}])
def test_slip_response_is_the_responders_own_tc_answer(make_kw):
    query = dns.message.make_query(name_of(BIG), "TXT", **make_kw).to_wire()
    full = respond(query, ZONE, lookup, now=NOW, tcp=True)
    over_udp = respond(query, ZONE, lookup, now=NOW)  # too big: the responder truncates
    assert dns.message.from_wire(over_udp).flags & dns.flags.TC
    assert slip_response(full) == over_udp
    assert slip_response(over_udp) == over_udp  # idempotent


@pytest.mark.parametrize("reply", [
    DEMO_TXT, APEX_SOA, exchange(name_of(DEMO), "TXT")[1], exchange(name_of(DEMO), "A")[1],
    exchange(name_of("88.118.8/nope"))[1], exchange("www.example.org.", use_edns=0)[1],
], ids=["txt", "soa", "txt-edns", "nodata", "nxdomain", "refused"])  # fmt: skip
def test_slip_response_keeps_header_question_and_opt(reply):
    full, slipped = dns.message.from_wire(reply), dns.message.from_wire(slip_response(reply))
    assert len(slip_response(reply)) <= len(reply)
    assert slipped.id == full.id and slipped.rcode() == full.rcode()
    assert slipped.flags == full.flags | dns.flags.TC
    assert slipped.question == full.question
    assert slipped.answer == slipped.authority == slipped.additional == []
    assert (slipped.edns, slipped.payload, slipped.ednsflags) == \
        (full.edns, full.payload, full.ednsflags)  # fmt: skip


def test_slip_response_of_short_or_unreadable_replies():
    assert slip_response(b"") == b"" and slip_response(b"\x12" * 11) == b""
    header_only = respond(b"\x12\x34\x01\x00" + b"\xff" * 20, ZONE, lookup, now=NOW)  # FORMERR
    assert len(header_only) == 12
    assert slip_response(header_only) == header_only[:2] + bytes(
        [header_only[2] | 0x02]) + header_only[3:]  # fmt: skip
    cut = APEX_SOA[:-7]  # the answer RR runs past the end
    assert slip_response(cut) == cut[:2] + bytes([cut[2] | 0x02, cut[3]]) + bytes(8)


# -- memory bound and flood ---------------------------------------------------------------------


def test_the_table_never_holds_more_than_table_size_buckets():
    # 1000 distinct /24s at one instant: with 4 buckets at most 4 × instant-limit replies pass
    small = RateLimiter(RrlConfig(rate_limit=5, instant_limit=5, slip=0, table_size=4))
    passed = sum(small.decide(f"10.{i // 256}.{i % 256}.1", DEMO_TXT, T0) is PASS
                 for i in range(1000))  # fmt: skip
    assert 5 <= passed <= 4 * 5
    big = RateLimiter(RrlConfig(rate_limit=5, instant_limit=5, slip=0))
    assert all(big.decide(f"10.{i // 256}.{i % 256}.1", DEMO_TXT, T0) is PASS for i in range(1000))


@pytest.mark.parametrize("qtype", ["TXT", "ANY"])
def test_flood_at_ten_times_the_limit_amplifies_nothing(qtype):
    """10 s of forged queries (EDNS, as attackers and dig send them) from a victim's /24 at 10×
    rate-limit, slip 2: what leaves the server is fewer bytes and fewer packets than what came
    in (reference §A11 T3).  In steady state bytes_out / bytes_in = 0.1·A + 0.45 for an answer
    A times the query's size: ≤ 1 while A ≤ 5.5 (the demo record's answer is 4.4×)."""
    query, reply = exchange(name_of(DEMO), qtype, use_edns=0)
    assert len(reply) > 2.5 * len(query)  # without RRL this reflection amplifies
    limiter = RateLimiter(knot_config(5, 2))
    bytes_in = bytes_out = packets_in = packets_out = 0
    for i in range(10 * 50):  # 50 q/s for 10 s
        out = limiter.apply(f"203.0.113.{i % 250 + 1}", reply, T0 + i / 50)
        bytes_in, packets_in = bytes_in + len(query), packets_in + 1
        if out is not None:
            bytes_out, packets_out = bytes_out + len(out), packets_out + 1
    assert bytes_out / bytes_in <= 1.0 and packets_out / packets_in <= 1.0, (
        bytes_out / bytes_in, packets_out / packets_in)
    assert limiter.slipped >= 5 and limiter.dropped >= 5


def test_decide_is_fast():
    limiter = RateLimiter(RrlConfig(rate_limit=50, whitelist=("198.51.100.0/24",)))
    clients = [f"192.0.{i % 200}.{i % 250 + 1}" for i in range(1000)] + \
        [f"2001:db8:{i:x}::1" for i in range(1000)]  # fmt: skip
    start = time.perf_counter()
    for i in range(20_000):
        limiter.decide(clients[i % 2000], DEMO_TXT, T0 + i / 1000)
    per_call = (time.perf_counter() - start) / 20_000
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs per decide"


# -- configuration ------------------------------------------------------------------------------


def test_defaults_are_knots_except_rate_limit_off():
    c = RrlConfig()
    assert (c.rate_limit, c.instant_limit, c.slip, c.whitelist, c.dry_run, c.table_size) == \
        (0, 125, 1, (), False, 524288)  # fmt: skip
    assert not c.enabled and RrlConfig(rate_limit=1).enabled
    assert RrlConfig.from_mapping({}) == c


def test_from_mapping_takes_knots_option_names():
    c = RrlConfig.from_mapping({"rate-limit": 200, "instant-limit": 50, "slip": 2,
                                "whitelist": ["127.0.0.1", "10.0.0.0/8", "::1"],
                                "dry-run": True, "table-size": 1024})  # fmt: skip
    assert c == RrlConfig(rate_limit=200, instant_limit=50, slip=2, dry_run=True, table_size=1024,
                          whitelist=("127.0.0.1", "10.0.0.0/8", "::1"))
    assert RrlConfig.from_mapping({"whitelist": "192.0.2.1"}).whitelist == ("192.0.2.1",)


@pytest.mark.parametrize("options,option", [
    ({"rate-limit": -1}, "rate-limit"),
    ({"rate-limit": "5"}, "rate-limit"),
    ({"rate-limit": True}, "rate-limit"),
    ({"rate-limit": 5.0}, "rate-limit"),
    ({"instant-limit": 0}, "instant-limit"),
    ({"rate-limit": 2001, "instant-limit": 2}, "rate-limit"),  # Knot: ≤ 1000 × instant-limit
    ({"slip": 101}, "slip"),
    ({"slip": -1}, "slip"),
    ({"table-size": 0}, "table-size"),
    ({"dry-run": "yes"}, "dry-run"),
    ({"dry-run": 1}, "dry-run"),
    ({"whitelist": ["10.0.0.0/33"]}, "whitelist"),
    ({"whitelist": ["example.com"]}, "whitelist"),
    ({"whitelist": ["10.0.0.9-10.0.0.1"]}, "whitelist"),
    ({"whitelist": ["10.0.0.1-::1"]}, "whitelist"),
    ({"whitelist": [1]}, "whitelist"),
    ({"whitelist": {"a": 1}}, "whitelist"),
    ({"ratelimit": 5}, "ratelimit"),
    ({"log-period": 1000}, "log-period"),
    ({"time-rate-limit": 5000}, "time-rate-limit"),
])  # fmt: skip
def test_bad_options_are_refused_by_name(options, option):
    with pytest.raises(ValueError, match=f"^{option}: "):
        RrlConfig.from_mapping(options)


def test_dataclass_checks_too():
    with pytest.raises(ValueError, match="^slip: "):
        RrlConfig(slip=1000)
    with pytest.raises(ValueError, match="^whitelist: "):
        RrlConfig(whitelist=["127.0.0.1"])  # type: ignore[arg-type]
