"""The DNS benchmark's fixed parts (``bench/dns.py``, ``bench/knot.py``), without servers: the
zone Knot serves holds exactly the RRsets idnode answers (``answers.rrsets_for``), read back
through dnspython's zone parser; its fast writer agrees with the direct one; dnsperf's output
and the query mix are read as documented."""

from __future__ import annotations

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone
import pytest

from bench import data, knot
from bench import dns as bench_dns
from bench.__main__ import SCENARIOS
from resolver.protocols.dns import answers, mapping

IDS = (1, 2, 4_711_000)


def zone_text(ids, apex=knot.DNS_APEX) -> str:
    return knot.dns_zone_head(apex) + "".join(knot.dns_zone_lines(i, apex=apex) for i in ids)


def rrsets_of_record(i: int) -> dict[int, tuple[int, set[bytes]]]:
    values = data.record(data.url_for(i))
    out = {}
    for qtype in (answers.TXT, answers.URI, answers.NAPTR):
        rrs = answers.rrsets_for(values, qtype, now=0)
        out[qtype] = (rrs[0].ttl, {rr.rdata for rr in rrs})
    return out


@pytest.mark.parametrize("apex", [knot.DNS_APEX, "nodes.example.org."])
def test_zone_parses_and_holds_what_idnode_answers(apex):
    zone = dns.zone.from_text(zone_text(IDS, apex), origin=apex, relativize=False,
                              check_origin=True)  # fmt: skip
    origin = dns.name.from_text(apex)
    owners = {dns.name.from_text(mapping.to_dns_name(data.handle(i), apex)): i for i in IDS}
    assert set(zone.nodes) == {origin, *owners}
    for name, i in owners.items():
        node = zone.nodes[name]
        want = rrsets_of_record(i)
        got = {rds.rdtype: (rds.ttl, {rd.to_wire() for rd in rds}) for rds in node.rdatasets}
        assert got == want
        assert len(want[answers.TXT][1]) == 3  # URL, EMAIL, HS_ADMIN: all public here
    soa = zone.nodes[origin].get_rdataset(dns.rdataclass.IN, dns.rdatatype.SOA)
    assert soa[0].mname == dns.name.from_text("ns1." + apex)


def test_template_writer_agrees_with_the_direct_one():
    template = knot._ZoneTemplate(data.DEFAULT_SEED, knot.DNS_APEX)
    for i in (1, 9, 10, 123_456, data.MAX_RECORDS):
        assert template.lines(i) == knot.dns_zone_lines(i)


def test_ensure_dns_zone_writes_then_reuses(tmp_path):
    logs = []
    path = knot.ensure_dns_zone(3, build_dir=tmp_path, log=logs.append)
    zone = dns.zone.from_text(path.read_text(), origin=knot.DNS_APEX, relativize=False)
    assert len(zone.nodes) == 4
    assert knot.ensure_dns_zone(3, build_dir=tmp_path, log=logs.append) == path
    assert "wrote" in logs[0] and "reusing" in logs[1]


DNSPERF_OUT = """\
DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.0.1 -p 5300 -d q.txt -l 2 -c 1 -q 64 -v
[Status] Sending queries (to 127.0.0.1:5300)
> NOERROR sn-2026-0000005.8.118.88.id.idnode.test. TXT 0.000100
> NOERROR sn-2026-0000006.8.118.88.id.idnode.test. URI 0.000200
> NOERROR sn-2026-0000007.8.118.88.id.idnode.test. NAPTR 0.000300
> NXDOMAIN sn-2026-0000008.8.118.88.id.idnode.test. NAPTR 0.004000
> T sn-2026-0000009.8.118.88.id.idnode.test. TXT
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         5
  Queries completed:    4 (80.00%)
  Queries lost:         1 (20.00%)

  Response codes:       NOERROR 3 (75.00%), NXDOMAIN 1 (25.00%)
  Average packet size:  request 57, response 192
  Run time (s):         2.013553
  Queries per second:   1.986537

  Average Latency (s):  0.001150 (min 0.000100, max 0.004000)
  Latency StdDev (s):   0.001900

"""


def test_dnsperf_output_is_read():
    r = bench_dns.parse_dnsperf(DNSPERF_OUT)
    assert (r.sent, r.completed, r.lost, r.failed) == (5, 4, 1, 1)
    assert r.rcodes == {"NOERROR": 3, "NXDOMAIN": 1}
    assert (r.qps, r.avg_ms, r.min_ms, r.max_ms, r.stddev_ms) == (2.0, 1.15, 0.1, 4.0, 1.9)
    assert (r.request_bytes, r.response_bytes) == (57, 192)
    assert (r.p50_ms, r.p99_ms) == (0.3, 4.0)  # from the four latency lines, not the timeout
    plain = bench_dns.parse_dnsperf("\n".join(x for x in DNSPERF_OUT.splitlines()
                                              if not x.startswith(">")))  # fmt: skip
    assert plain.p50_ms is None and plain.qps == 2.0
    with pytest.raises(ValueError):
        bench_dns.parse_dnsperf("dnsperf: fatal error")


def test_mix_and_queries(tmp_path):
    assert bench_dns.parse_mix("txt=3, NAPTR=1") == {"TXT": 3.0, "NAPTR": 1.0}
    for bad in ("TXT", "A=1", "TXT=1,TXT=2", "TXT=0", "URI=-1,TXT=2"):
        with pytest.raises(ValueError):
            bench_dns.parse_mix(bad)
    path = tmp_path / "q"
    counts = bench_dns.write_queries(path, 1000, 50, bench_dns.parse_mix(bench_dns.DEFAULT_MIX),
                                     7, knot.DNS_APEX)  # fmt: skip
    lines = path.read_text().splitlines()
    assert len(lines) == 1000 and sum(counts.values()) == 1000
    assert 500 < counts["TXT"] < 700 and counts["URI"] > 100 and counts["NAPTR"] > 100
    names = {knot.dns_owner(i) for i in range(1, 51)}
    assert all(n in names and t in knot.DNS_TYPES for n, t in (x.split() for x in lines))
    assert SCENARIOS["dns"][0] == "bench.dns"
