"""The access log's lines, fields, escaping, rate limit and configuration
(``resolver.servers.access_log``; issue 8 §4).  Requests and replies are real wire bytes made by
our codecs (Handle) or dnspython (DNS); the clock is injected."""

from __future__ import annotations

import asyncio
import json
import re

import dns.message
import dns.rcode
import pytest
from aiohttp.test_utils import make_mocked_request

from resolver import config as config_mod
from resolver.errors import ConfigError
from resolver.protocols.handle import codec
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import (
    Envelope, Header, Message, ResolutionRequest, envelope_flags,
)  # fmt: skip
from resolver.servers import access_log
from resolver.servers.access_log import AccessLog

# Handle.net TM9 §3.7.1: client, interface, "time", op, code, latency, identity, identifier.
TEXT_LINE = re.compile(r'(\S+) (\S+) "(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}[+-]\d{4})" '
                       r"(\S+) (\S+) (\d+)ms (\S+) (\S*)\n")  # fmt: skip


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_log(tmp_path, fmt="text", rate=0, clock=None, name="access.log") -> tuple[AccessLog, object]:
    path = tmp_path / name
    return AccessLog(str(path), fmt, rate, clock=clock or Clock(),
                     wall=lambda: 1_746_000_000.25), path  # fmt: skip


def lines_of(log: AccessLog, path) -> list[str]:
    log.flush()
    return path.read_text().splitlines(keepends=True)


def handle_request(handle: bytes, opcode: int = C.OpCode.RESOLUTION, minor: int = 10,
                   env_flags: int | None = None) -> tuple[bytes, Envelope, bytes]:  # fmt: skip
    flags = envelope_flags(suggest=(2, minor)) if env_flags is None else env_flags
    env = Envelope(2, minor, flags, 0, 7)
    wire = Message(env, Header(opcode, 0, C.FLAG_PUBLIC_ONLY),
                   ResolutionRequest(handle)).to_wire()  # fmt: skip
    env = Envelope.from_wire(wire)
    return wire, env, wire[C.ENVELOPE_SIZE :]


def handle_reply(wire: bytes, rc: int) -> bytes:
    env = Envelope.from_wire(wire)
    payload = wire[C.ENVELOPE_SIZE :]
    return codec.error(env, payload, Header.from_wire(payload), rc, "not found")


# -- Handle ---------------------------------------------------------------------------------


def test_handle_text_line_has_the_handle_net_fields(tmp_path):
    clock = Clock()
    log, path = make_log(tmp_path, clock=clock)
    wire, _, _ = handle_request(b"88.118.8/demo-1", minor=10)
    started = clock.now
    clock.now += 0.0789
    log.handle_message("10.0.1.105", "UDP", wire, handle_reply(wire, 100), started)
    (line,) = lines_of(log, path)
    m = TEXT_LINE.fullmatch(line)
    assert m, line
    client, interface, _, op, code, ms, identity, ident = m.groups()
    assert (client, interface, op, code, ms, identity, ident) == (
        "10.0.1.105", "UDP:HDL(2.10)", "1", "100", "78", "-", "88.118.8/demo-1")


def test_handle_general_path_form_and_version_of_the_request(tmp_path):
    log, path = make_log(tmp_path)
    wire, env, payload = handle_request(b"88.118.8/demo-1", minor=11)
    log.handle("192.0.2.1", "TCP", env.major, env.minor, env.flags, payload,
               handle_reply(wire, 1), log.clock())  # fmt: skip
    m = TEXT_LINE.fullmatch(lines_of(log, path)[0])
    assert m and m.group(2) == "TCP:HDL(2.11)" and m.group(5) == "1"
    assert m.group(8) == "88.118.8/demo-1"


def test_handle_ops_without_a_leading_handle_log_no_identifier(tmp_path):
    log, path = make_log(tmp_path)
    # OC_GET_SITE_INFO's body is not a handle; neither is a challenge answer's.
    for opcode in (C.OpCode.GET_SITE_INFO, C.OpCode.CHALLENGE_RESPONSE):
        wire, _, _ = handle_request(b"88.118.8/demo-1", opcode=opcode)
        log.handle_message("192.0.2.1", "UDP", wire, handle_reply(wire, 1), log.clock())
    lines = lines_of(log, path)
    assert [TEXT_LINE.fullmatch(x).group(4, 8) for x in lines] == [("2", ""), ("200", "")]


def test_encrypted_or_compressed_body_is_not_read(tmp_path):
    log, path = make_log(tmp_path)
    for flag in (C.ENV_ENCRYPTED, C.ENV_COMPRESSED):
        wire, _, _ = handle_request(b"88.118.8/demo-1", env_flags=flag | envelope_flags())
        log.handle_message("192.0.2.1", "UDP", wire, handle_reply(wire, 4), log.clock())
    assert [TEXT_LINE.fullmatch(x).group(8) for x in lines_of(log, path)] == ["", ""]


def test_truncated_handle_fields_are_bounded():
    wire, _, payload = handle_request(b"88.118.8/demo-1")
    assert access_log.handle_request(payload) == (1, "88.118.8/demo-1")
    assert access_log.handle_request(payload[:23]) == (-1, "")
    # the handle's length says more than the body holds: no identifier, no exception
    cut = payload[:24 + 4 + 3]
    assert access_log.handle_request(cut) == (1, "")
    assert access_log.handle_rc(b"\x00" * 27) == -1


def test_identifier_with_space_quote_and_line_break_stays_one_line(tmp_path):
    log, path = make_log(tmp_path)
    nasty = '88.118.8/a b"c\nd\\e\x7f中'.encode()
    wire, _, _ = handle_request(nasty)
    log.handle_message("192.0.2.1", "UDP", wire, handle_reply(wire, 100), log.clock())
    (line,) = lines_of(log, path)
    m = TEXT_LINE.fullmatch(line)
    assert m, line
    assert m.group(8) == r"88.118.8/a\x20b\x22c\x0ad\x5ce\x7f中"


def test_identifier_not_utf8_is_escaped(tmp_path):
    log, path = make_log(tmp_path, fmt="json")
    wire, _, _ = handle_request(b"88.118.8/\xff")
    log.handle_message("192.0.2.1", "UDP", wire, handle_reply(wire, 100), log.clock())
    assert json.loads(lines_of(log, path)[0])["identifier"] == "88.118.8/\\xff"


# -- JSON lines ----------------------------------------------------------------------------


def test_json_line_fields(tmp_path):
    clock = Clock()
    log, path = make_log(tmp_path, fmt="json", clock=clock)
    wire, _, _ = handle_request(b"88.118.8/demo-1", minor=11)
    started = clock.now
    clock.now += 0.0012345
    log.handle_message("::1", "TCP", wire, handle_reply(wire, 100), started)
    doc = json.loads(lines_of(log, path)[0])
    assert set(doc) == {"ts", "client", "interface", "op", "code", "ms", "identity", "identifier"}
    assert doc["client"] == "::1" and doc["interface"] == "TCP:HDL(2.11)"
    assert (doc["op"], doc["code"], doc["identity"]) == (1, 100, "")
    assert doc["ms"] == pytest.approx(1.2345, abs=0.001)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.250[+-]\d\d:\d\d", doc["ts"]), doc["ts"]


# -- HTTP ----------------------------------------------------------------------------------


def test_http_logs_the_identifier_never_the_query_or_headers(tmp_path):
    log, path = make_log(tmp_path)
    req = make_mocked_request(
        "GET", "/api/handles/88.118.8/demo%201?type=URL&auth=secret-token",
        headers={"Authorization": "Basic MzAwOnNlY3JldA==", "Cookie": "s=abc"})  # fmt: skip
    log.http(req, 200, log.clock())
    (line,) = lines_of(log, path)
    m = TEXT_LINE.fullmatch(line)
    assert m, line
    assert m.group(2, 4, 5, 7, 8) == ("HTTP", "GET", "200", "-", r"88.118.8/demo\x201")
    for secret in ("secret", "MzAw", "abc", "type=URL"):
        assert secret not in line


def test_http_path_bytes_that_are_not_utf8(tmp_path):
    # aiohttp hands such bytes over as lone surrogates; JSON cannot hold them, text escapes them
    req = make_mocked_request("GET", "/api/handles/88.118.8/\udcff%E4%B8%AD")
    log, path = make_log(tmp_path, fmt="json")
    log.http(req, 200, log.clock())
    assert json.loads(lines_of(log, path)[0])["identifier"] == "88.118.8/\\udcff中"
    log, path = make_log(tmp_path, fmt="text", name="text.log")
    log.http(req, 200, log.clock())
    assert lines_of(log, path)[0].endswith(" 88.118.8/\\udcff中\n")


def test_http_paths_other_than_handles(tmp_path):
    log, path = make_log(tmp_path, fmt="json")
    for p in ("/api/v1/imports?prefix=88.118.8", "/88.118.8/demo-1?noredirect", "/metrics"):
        log.http(make_mocked_request("GET", p), 200, log.clock(), "HTTPS")
    docs = [json.loads(x) for x in lines_of(log, path)]
    assert [d["identifier"] for d in docs] == ["/api/v1/imports", "88.118.8/demo-1", "/metrics"]
    assert {d["interface"] for d in docs} == {"HTTPS"}


def test_remember_identity_puts_the_authenticated_identity_in_the_line(tmp_path):
    # A REST endpoint asks ``admin.identity(request)``; whatever that authenticates is logged
    # (the real AdminHttp: tests/wire/test_reload.py).
    class Admin:
        async def identity(self, request):
            return "300:88.118.8/ADMIN", "token"

    admin = Admin()
    access_log.remember_identity(admin)
    log, path = make_log(tmp_path)
    req = make_mocked_request("PUT", "/api/handles/88.118.8/x")
    assert asyncio.run(admin.identity(req)) == ("300:88.118.8/ADMIN", "token")
    log.http(req, 201, log.clock())
    assert TEXT_LINE.fullmatch(lines_of(log, path)[0]).group(7) == "adm=300:88.118.8/ADMIN"


def test_logged_http_wraps_a_handler(tmp_path):
    log, path = make_log(tmp_path)

    class Handler:
        api = "the api"

        async def __call__(self, request):
            from aiohttp import web

            return web.Response(status=404)

    wrapped = access_log.LoggedHttp(Handler(), log)
    resp = asyncio.run(wrapped(make_mocked_request("GET", "/api/handles/88.118.8/nothing")))
    assert resp.status == 404 and wrapped.api == "the api"
    assert TEXT_LINE.fullmatch(lines_of(log, path)[0]).group(5) == "404"


# -- DNS -----------------------------------------------------------------------------------


def test_dns_line(tmp_path):
    log, path = make_log(tmp_path)
    query = dns.message.make_query("demo-1.8.118.88.id.idnode.test.", "TXT")
    reply = dns.message.make_response(query)
    reply.set_rcode(dns.rcode.NXDOMAIN)
    log.dns("192.0.2.9", "UDP", query.to_wire(), reply.to_wire(), log.clock())
    m = TEXT_LINE.fullmatch(lines_of(log, path)[0])
    assert m.group(2, 4, 5, 8) == ("UDP:DNS", "TXT", "NXDOMAIN",
                                   "demo-1.8.118.88.id.idnode.test.")  # fmt: skip


def test_dns_question_names_are_escaped_and_bounded():
    query = dns.message.make_query(dns.name.Name([b"a b", b"x\x00", b"id", b""]), "URI")
    assert access_log.dns_question(query.to_wire()) == ("URI", "a\\032b.x\\000.id.")
    wire = query.to_wire()
    assert access_log.dns_question(wire[:14]) == ("", "")  # the name runs off the end
    assert access_log.dns_question(wire[:11]) == ("", "")
    assert access_log.dns_rcode(b"\x00\x01") == "-"


# -- rate limit ----------------------------------------------------------------------------


def _flood(log: AccessLog, n: int) -> None:
    wire, _, _ = handle_request(b"88.118.8/demo-1")
    reply = handle_reply(wire, 1)
    for _ in range(n):
        log.handle_message("192.0.2.1", "UDP", wire, reply, log.clock())


def test_rate_limit_suppresses_then_says_how_many(tmp_path):
    clock = Clock()
    log, path = make_log(tmp_path, rate=10, clock=clock)
    _flood(log, 25)  # a burst of one second's worth passes, the rest is counted
    assert (log.written, log.suppressed_total) == (10, 15)
    clock.now += 0.5  # five tokens back
    _flood(log, 1)
    lines = lines_of(log, path)
    assert len(lines) == 12
    assert re.fullmatch(r'# "[^"]+" 15 access log lines suppressed\n', lines[10]), lines[10]
    assert TEXT_LINE.fullmatch(lines[11])


def test_suppression_note_written_by_flush_once_the_flood_stops(tmp_path):
    clock = Clock()
    log, path = make_log(tmp_path, fmt="json", rate=5, clock=clock)
    _flood(log, 8)
    log.flush()
    assert len(path.read_text().splitlines()) == 5  # no token yet: no note
    clock.now += 1.0
    log.flush()
    last = json.loads(path.read_text().splitlines()[-1])
    assert last["suppressed"] == 3 and "ts" in last


def test_rate_zero_is_unlimited(tmp_path):
    log, path = make_log(tmp_path, rate=0)
    _flood(log, 3000)
    assert len(lines_of(log, path)) == 3000 and log.suppressed_total == 0


def test_buffered_lines_are_written_in_whole_lines_and_on_close(tmp_path):
    log, path = make_log(tmp_path)
    _flood(log, access_log.FLUSH_LINES - 1)
    assert path.read_text() == ""  # still buffered
    _flood(log, 1)
    assert len(path.read_text().splitlines()) == access_log.FLUSH_LINES
    _flood(log, 3)
    log.close()
    assert len(path.read_text().splitlines()) == access_log.FLUSH_LINES + 3
    assert path.read_text().endswith("\n")


def test_appends_to_an_existing_file(tmp_path):
    (tmp_path / "access.log").write_text("old line\n")
    log, path = make_log(tmp_path)
    _flood(log, 1)
    lines = lines_of(log, path)
    assert lines[0] == "old line\n" and TEXT_LINE.fullmatch(lines[1])


# -- configuration -------------------------------------------------------------------------


def test_config_log_section(tmp_path):
    cfg_file = tmp_path / "idnode.toml"
    target = tmp_path / "logs" / "access.log"
    target.parent.mkdir()
    cfg_file.write_text(f'[log]\naccess_log = "{target}"\naccess_format = "json"\n'
                        "access_rate = 50\n")  # fmt: skip
    cfg = config_mod.load(str(cfg_file))
    assert (cfg.access_log, cfg.access_format, cfg.access_rate) == (str(target), "json", 50)
    log = access_log.open_log(cfg)
    try:
        assert log.json and log.rate == 50
    finally:
        log.close()
    assert access_log.open_log(config_mod.load(None)) is None  # off by default


@pytest.mark.parametrize("text, key", [
    ('access_log = "/nonexistent-dir-for-idnode/access.log"', "log.access_log"),
    ("access_log = 3", "log.access_log"),
    ('access_format = "xml"', "log.access_format"),
    ("access_rate = -1", "log.access_rate"),
    ("access_colour = true", "log.access_colour"),
])  # fmt: skip
def test_config_log_section_refuses(tmp_path, text, key):
    cfg_file = tmp_path / "idnode.toml"
    cfg_file.write_text(f"[log]\n{text}\n")
    with pytest.raises(ConfigError) as err:
        config_mod.load(str(cfg_file))
    assert err.value.key == key


def test_config_refuses_a_directory_as_the_log_file(tmp_path):
    cfg_file = tmp_path / "idnode.toml"
    cfg_file.write_text(f'[log]\naccess_log = "{tmp_path}"\n')
    with pytest.raises(ConfigError):
        config_mod.load(str(cfg_file))


def test_check_destination(tmp_path):
    access_log.check_destination("-")
    access_log.check_destination(str(tmp_path / "new.log"))
    assert (tmp_path / "new.log").exists()
    with pytest.raises(OSError):
        access_log.check_destination(str(tmp_path / "missing" / "x.log"))
