"""The DNS front-end over real sockets (issue 6 §2–4, acceptance): dnspython as the client, and
``dig`` / ``kdig`` when installed (CI installs them).

A node with the demo data (and, where needed, records loaded for the test) on a free port of
127.0.0.1; every answer is read back with dnspython: TXT/URI/NAPTR of the demo identifiers,
NXDOMAIN with the SOA for unknown ones, NODATA for empty non-terminals, REFUSED outside the
apex, SOA/NS at the apex, TC=1 over UDP and the whole answer over TCP, TCP pipelining and
idle close (RFC 7766), garbage datagrams that leave the worker answering.
"""

from __future__ import annotations

import random
import shutil
import socket
import struct
import subprocess
import time

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from resolver.protocols.dns.answers import parse_txt
from resolver.protocols.dns.mapping import to_dns_name

APEX = "id.idnode.test."
DEMO1 = "88.118.8/demo-1"
DEMO2 = "88.118.8/demo-2"
UNICODE = ("88.118.8/设备-压缩机/批次-2026-11/序列号-0001-温州工厂-二号生产线-质检合格-出口型号"
           "-αβγ")  # fmt: skip
TIMEOUT = 5.0


def name(identifier: str) -> str:
    return to_dns_name(identifier, APEX)


def udp(node, qname, qtype="TXT", **kw) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype, **kw)
    r = dns.query.udp(q, "127.0.0.1", port=node.dns_port, timeout=TIMEOUT, ignore_trailing=False)
    assert r.id == q.id
    return r


def tcp(node, qname, qtype="TXT", **kw) -> dns.message.Message:
    q = dns.message.make_query(qname, qtype, **kw)
    r = dns.query.tcp(q, "127.0.0.1", port=node.dns_port, timeout=TIMEOUT)
    assert r.id == q.id
    return r


def txt_values(r: dns.message.Message) -> dict[int, tuple[str, bytes]]:
    (rrset,) = r.answer
    assert rrset.rdtype == dns.rdatatype.TXT
    out = {}
    for rd in rrset:
        index, vtype, data = parse_txt(b"".join(rd.strings))
        out[index] = (vtype, data)
    return out


# -- answers for the demo identifiers -------------------------------------------------------------


@pytest.mark.parametrize("via", [udp, tcp], ids=["udp", "tcp"])
def test_txt_answer_carries_every_public_value(node, via):
    r = via(node, name(DEMO1))
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    values = txt_values(r)
    assert values[1] == ("URL", b"https://example.com/sn/demo-1")
    assert values[2] == ("EMAIL", b"quality@example.com")
    assert r.answer[0].ttl == 86400


def test_non_public_values_are_never_served(node):
    values = txt_values(udp(node, name(DEMO2)))
    assert 3 not in values  # PRODUCT.COST has permissions 1100: no public read
    assert values[2] == ("PRODUCT.BATCH", b'{"batch":"B-2026-11","line":3}')
    assert values[1] == ("URL", b"https://example.com/sn/demo-2")


def test_uri_answer(node):
    r = udp(node, name(DEMO1), "URI")
    (rrset,) = r.answer
    assert [(rd.priority, rd.weight, rd.target) for rd in rrset] == [
        (1, 1, b"https://example.com/sn/demo-1")]  # fmt: skip


def test_naptr_answer_is_ons_style(node):
    r = udp(node, name(DEMO1), "NAPTR", use_edns=0)
    (rrset,) = r.answer
    (rd,) = list(rrset)
    assert (rd.flags, rd.service, rd.regexp) == (b"U", b"URL", b"!^.*$!https://example.com/sn/demo-1!")
    assert rd.replacement.to_text() == "."


def test_unicode_identifier_answers_with_its_encoded_name_and_an_iri_mapped_uri(node):
    qname = name(UNICODE)
    assert qname.startswith("sb--")
    assert txt_values(udp(node, qname))[1] == ("URL", "https://example.com/设备/0001".encode())
    (rrset,) = udp(node, qname, "URI").answer
    assert [rd.target for rd in rrset] == [b"https://example.com/%E8%AE%BE%E5%A4%87/0001"]


def test_question_case_is_echoed(node):  # 0x20-randomising resolvers (RFC 4343)
    mixed = "".join(c.upper() if i % 2 else c for i, c in enumerate(name(DEMO1)))
    r = udp(node, mixed)
    assert r.question[0].name.to_text() == mixed and len(r.answer) == 1


# -- negative answers and the zone ------------------------------------------------------------------


def assert_negative(r, rcode):
    assert r.rcode() == rcode and r.flags & dns.flags.AA and r.answer == []
    (soa,) = r.authority
    assert soa.rdtype == dns.rdatatype.SOA and soa.name.to_text().lower() == APEX


def test_unknown_identifier_is_nxdomain_with_the_soa(node):
    assert_negative(udp(node, name("88.118.8/NO-SUCH-THING")), dns.rcode.NXDOMAIN)


@pytest.mark.parametrize("qname", ["88." + APEX, "118.88." + APEX, "8.118.88." + APEX])
def test_ancestors_of_the_held_prefix_are_empty_non_terminals(node, qname):
    assert_negative(udp(node, qname), dns.rcode.NOERROR)


def test_existing_name_without_the_type_is_nodata(node):
    assert_negative(udp(node, name(DEMO1), "A"), dns.rcode.NOERROR)


def test_outside_the_apex_is_refused(node):
    r = udp(node, "example.com.")
    assert r.rcode() == dns.rcode.REFUSED and not r.flags & dns.flags.AA


def test_prefix_not_held_is_refused(node):
    assert udp(node, name("20.500/x")).rcode() == dns.rcode.REFUSED


def test_soa_and_ns_at_the_apex(node):
    (soa,) = udp(node, APEX, "SOA").answer
    assert soa[0].mname.to_text() == "ns1." + APEX and soa[0].rname.to_text() == "hostmaster." + APEX
    (ns,) = udp(node, APEX, "NS").answer
    assert [rd.target.to_text() for rd in ns] == ["ns1." + APEX]


def test_unknown_opcode_is_notimp_and_malformed_is_formerr(node):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(TIMEOUT)
        s.sendto(struct.pack(">HHHHHH", 0x1234, 0x2800, 0, 0, 0, 0), ("127.0.0.1", node.dns_port))
        r = dns.message.from_wire(s.recv(65535))
        assert r.id == 0x1234 and r.rcode() == dns.rcode.NOTIMP  # opcode 5 (UPDATE)
        s.sendto(struct.pack(">HHHHHH", 0x4321, 0x0100, 1, 0, 0, 0) + b"\x05ab", ("127.0.0.1",
                 node.dns_port))  # fmt: skip
        r = dns.message.from_wire(s.recv(65535))
        assert r.id == 0x4321 and r.rcode() == dns.rcode.FORMERR


# -- size: EDNS, truncation, TCP --------------------------------------------------------------------

BIG = "88.118.8/BIG-RECORD"


@pytest.fixture(scope="module")
def big_node(start_node, tmp_path_factory, load_lines):
    """A node whose store has the demo prefix and one record too big for a UDP answer."""
    data = tmp_path_factory.mktemp("dns-big") / "data"
    prefix = {"handle": "0.NA/88.118.8", "values": [{"index": 1, "type": "DESC", "data": "demo"}]}
    values = [{"index": i, "type": "URL", "data": f"https://example.com/part/{i}/" + "x" * 80}
              for i in range(1, 31)]  # fmt: skip
    load_lines(data, [prefix, {"handle": BIG, "values": values}])
    return start_node(data=data, config_text="[dns]\ntcp_idle_seconds = 0.5\n")


def test_answer_too_big_for_udp_is_truncated_then_whole_over_tcp(big_node):
    r = udp(big_node, name(BIG), use_edns=0, payload=1232)
    assert r.flags & dns.flags.TC and r.answer == [] and r.rcode() == dns.rcode.NOERROR
    assert r.edns == 0 and r.payload == 1232
    r = udp(big_node, name(BIG))  # no EDNS: 512 bytes
    assert r.flags & dns.flags.TC and r.answer == []
    r = tcp(big_node, name(BIG))
    assert not r.flags & dns.flags.TC and len(txt_values(r)) == 30


def test_client_buffer_size_is_honoured(big_node):
    r = udp(big_node, name(BIG), "URI", use_edns=0, payload=4096)  # ours caps it at 1232
    assert r.flags & dns.flags.TC
    r = udp(big_node, name(BIG), "URI", use_edns=0, payload=65000)  # still 1232 (≤ max_udp)
    assert r.flags & dns.flags.TC
    r = tcp(big_node, name(BIG), "URI")
    assert len(r.answer[0]) == 30


def test_tcp_pipelining_answers_every_query_in_order(big_node, node):
    queries = [dns.message.make_query(name(q), t) for q, t in
               [(BIG, "TXT"), ("88.118.8/nope", "TXT"), (BIG, "URI"), (BIG, "NAPTR")] * 5]
    with socket.create_connection(("127.0.0.1", big_node.dns_port), timeout=TIMEOUT) as s:
        s.sendall(b"".join(struct.pack(">H", len(w)) + w for w in (q.to_wire() for q in queries)))
        answers = [_read_framed(s) for _ in queries]
    assert [a.id for a in answers] == [q.id for q in queries]
    assert [a.rcode() for a in answers[:4]] == [0, dns.rcode.NXDOMAIN, 0, 0]


def test_idle_tcp_connection_is_closed(big_node):
    with socket.create_connection(("127.0.0.1", big_node.dns_port), timeout=TIMEOUT) as s:
        w = dns.message.make_query(name(BIG), "URI").to_wire()
        s.sendall(struct.pack(">H", len(w)) + w)
        _read_framed(s)
        start = time.monotonic()
        assert s.recv(1) == b""  # closed by the server: tcp_idle_seconds = 0.5
        assert 0.3 < time.monotonic() - start < 4.0


def _read_framed(s: socket.socket) -> dns.message.Message:
    def exactly(n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            assert chunk, "connection closed early"
            buf += chunk
        return buf

    (size,) = struct.unpack(">H", exactly(2))
    return dns.message.from_wire(exactly(size))


# -- robustness ------------------------------------------------------------------------------------


def test_garbage_datagrams_leave_the_workers_answering(node):
    rng = random.Random(6)
    good = dns.message.make_query(name(DEMO1), "TXT").to_wire()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        for i in range(600):
            if i % 3 == 0:
                pkt = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 80)))
            else:
                b = bytearray(good)
                for _ in range(rng.randrange(1, 6)):
                    b[rng.randrange(len(b))] = rng.randrange(256)
                pkt = bytes(b[: rng.randrange(1, len(b) + 1)])
            s.sendto(pkt, ("127.0.0.1", node.dns_port))
        while True:  # drain whatever came back
            try:
                s.recv(65535)
            except TimeoutError:
                break
    for _ in range(4):  # both workers (SO_REUSEPORT spreads the sources)
        assert len(udp(node, name(DEMO1)).answer) == 1


def test_a_response_is_not_answered(node):
    q = dns.message.make_query(name(DEMO1), "TXT")
    q.flags |= dns.flags.QR
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        s.sendto(q.to_wire(), ("127.0.0.1", node.dns_port))
        with pytest.raises(TimeoutError):
            s.recv(65535)


# -- dig and kdig (bind9-dnsutils, knot-dnsutils) ----------------------------------------------------


def _tool(tool: str, *args: str) -> str:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (Debian: bind9-dnsutils / knot-dnsutils)")
    r = subprocess.run([tool, *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.parametrize("tool", ["dig", "kdig"])
def test_dig_and_kdig_get_txt_uri_naptr_and_nxdomain(node, tool):
    at = ["@127.0.0.1", "-p", str(node.dns_port)]
    txt = _tool(tool, *at, name(DEMO1), "TXT", "+short")
    assert '"type=URL;index=1;data=https://example.com/sn/demo-1"' in txt
    assert '"type=EMAIL;index=2;data=quality@example.com"' in txt
    uri = _tool(tool, *at, name(DEMO1), "URI", "+short")
    assert '1 1 "https://example.com/sn/demo-1"' in uri
    naptr = _tool(tool, *at, name(DEMO1), "NAPTR", "+short")
    assert '100 10 "U" "URL" "!^.*$!https://example.com/sn/demo-1!" .' in naptr
    missing = _tool(tool, *at, name("88.118.8/NO-SUCH"), "TXT")
    assert "NXDOMAIN" in missing and "SOA" in missing


@pytest.mark.parametrize("tool", ["dig", "kdig"])
def test_dig_and_kdig_fall_back_to_tcp_after_truncation(big_node, tool):
    at = ["@127.0.0.1", "-p", str(big_node.dns_port)]
    # kdig retries over TCP on TC by default; dig too (+ignore would keep the truncated one).
    out = _tool(tool, *at, name(BIG), "TXT", "+bufsize=512" if tool == "dig" else "+bufsize=512")
    assert out.count("type=URL;index=") == 30, out
    assert "TCP" in out.upper()
