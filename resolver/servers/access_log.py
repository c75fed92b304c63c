"""The access log (issue 8 §4): one line per answered request, from every front-end, in the
Handle.net access-log form or as JSON lines; rate-limited; off by default.

Configuration (``[log]``, ``resolver.config``): ``access_log`` — ``""`` off, ``"-"`` standard
error, else a file appended to (every worker appends whole lines with ``O_APPEND``; a SIGHUP
reload starts workers that open it anew, which is what log rotation needs); ``access_format`` —
``"text"`` or ``"json"``; ``access_rate`` — lines per second per worker (0: no limit).

**Text** (Handle.net TM9 §3.7.1, handle.md §5)::

    10.0.1.105 TCP:HDL(2.10) "2015-05-27 13:31:42.011-0400" 100 1 78ms adm=300:0.NA/88.118 88.118/7
    127.0.0.1 UDP:HDL(2.11) "2026-05-09 07:35:25.123+0000" 1 1 0ms - 88.118.8/demo-1
    127.0.0.1 HTTP "2026-05-09 07:35:25.130+0000" GET 200 1ms - 88.118.8/demo-1
    127.0.0.1 UDP:DNS "2026-05-09 07:35:25.131+0000" TXT NOERROR 0ms - demo-1.8.118.88.id.test.

Eight fields, separated by one space: client address; interface and protocol (``UDP:HDL(maj.min)``
and ``TCP:HDL(maj.min)`` with the request's protocol version, ``HTTP`` or ``HTTPS`` for the REST
API and the pages, ``UDP:DNS``/``TCP:DNS``); local time in double quotes; operation (Handle: the
op code number; HTTP: the method; DNS: the question's type); response code (Handle: the RC of
the reply; HTTP: the status; DNS: the RCODE); latency in whole milliseconds, as Handle.net
writes it; ``adm=<index:handle>`` of the authenticated identity, or ``-``; the identifier
(Handle: the request's handle; HTTP: the identifier of ``/api/handles/{id}`` and of the
proxy's ``/{id}`` — a path outside ``/api/`` with a second ``/`` —, else the path;
DNS: the question's name).  Only the last field may be empty.  No field holds a space, a double
quote or a control character: those are written as ``\\xHH`` / ``\\uHHHH`` escapes (an
identifier may hold any of them; a log line must stay one line).

**JSON lines**: one object per line, ``{"ts", "client", "interface", "op", "code", "ms",
"identity", "identifier"}`` — ``ts`` in ISO 8601 with the offset, ``ms`` a number with
microseconds, ``identity`` ``""`` when anonymous, ``op``/``code`` numbers for Handle and HTTP
codes, text otherwise.

**Never logged**: request headers (Authorization, cookies), query strings and bodies.  The
identity is the one the request *authenticated* as (REST: recorded by the admin's
``identity(request)``, see ``remember_identity``); the Handle protocol's challenge-response
identity is not known to the drivers and is logged as anonymous.

**Rate limit**: a token bucket per worker (``access_rate`` lines per second, as many in a burst).
Lines beyond it are counted, not written; the next line written after them (or the next flush
once the bucket has a token again) is preceded by one line saying how many were suppressed
(text: ``# "<time>" <N> access log lines suppressed``; JSON: ``{"ts", "suppressed": N}``).

**Cost**: off, the drivers pay one ``is not None`` test per request (per burst on the UDP fast
path).  On, each line costs a few microseconds in the worker's event loop, and the UDP pumps
hand every datagram back to Python with its reply (``UdpPump(hand_back=True)``) instead of
sending the fast answers in C: one ``sendto`` and one log line per datagram — measured
in-process, a text or JSON line costs about four fast-path Handle answers, a line the rate
limit suppresses less than one (the bucket is asked before any field is read).  Lines are buffered and written every ``FLUSH_SECONDS`` (or every
``FLUSH_LINES`` lines) with one ``write``, and at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from typing import Callable
from urllib.parse import unquote

import dns.rcode
import dns.rdatatype
import orjson
from aiohttp import web

log = logging.getLogger("idnode.access")

#: ``access_format`` values.
FORMATS = ("text", "json")
#: Buffered lines are written at least this often (seconds) ...
FLUSH_SECONDS = 0.5
#: ... and whenever this many are waiting.
FLUSH_LINES = 256
#: Where the REST admin leaves the identity a request authenticated as (``remember_identity``).
IDENTITY_KEY = web.RequestKey("idnode.access.identity", str)

_API_HANDLE = "/api/handles/"
# Op codes whose request body begins with a handle (RFC 3652 §3: resolution, the
# administration requests, list handles / NAs, home / unhome NA).
_HANDLE_FIRST = frozenset((1, 100, 101, 102, 103, 104, 105, 106, 300, 301))
# Envelope message flags (RFC 3652 §2.2.1.2): compressed, encrypted — a body we cannot read.
_UNREADABLE = 0xC000


def _escape(text: str) -> str:
    """``text`` with spaces, double quotes, backslashes and unprintable characters escaped."""
    if text.isprintable() and " " not in text and '"' not in text and "\\" not in text:
        return text
    out = []
    for ch in text:
        if ch.isprintable() and ch not in ' "\\':
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    return "".join(out)


# -- reading the log fields out of requests and replies ---------------------------------------
# Bounds-checked reads of a few fixed offsets; they never decide anything about the request.


_U32 = struct.Struct(">I").unpack_from
# Header (RFC 3652 §2.2.2): op code, 16 bytes, body length; then the body's handle length.
_HEAD = struct.Struct(">I16xII").unpack_from


def handle_request(data, offset: int = 0) -> tuple[int, str]:
    """(op code, identifier) of a Handle request whose header starts at ``offset`` of ``data``
    (header + body, RFC 3652 §2.2.2): the identifier is the body's leading handle for the op
    codes that have one, else ``""``; op code -1 when there is no whole header."""
    size = len(data) - offset
    if size < 28:
        return (-1 if size < 24 else _U32(data, offset)[0]), ""
    op, body, n = _HEAD(data, offset)
    if op not in _HANDLE_FIRST or n > min(body, size - 24) - 4:
        return op, ""
    start = offset + 28
    return op, bytes(data[start : start + n]).decode("utf-8", "backslashreplace")


def handle_rc(reply) -> int:
    """The response code of a Handle reply (envelope + header ...); -1 when too short."""
    return _U32(reply, 24)[0] if len(reply) >= 28 else -1


def dns_question(query) -> tuple[str, str]:
    """(type, name) of a DNS query's first question (RFC 1035 §4.1.2), the name in master-file
    text with ``\\DDD`` escapes; ("", "") when it has none or it is malformed."""
    if len(query) < 12 or not (query[4] or query[5]):
        return "", ""
    i, labels, end = 12, [], len(query)
    while True:
        if i >= end:
            return "", ""
        n = query[i]
        if n == 0:
            i += 1
            break
        if n & 0xC0 or i + 1 + n > end or len(labels) >= 127:
            return "", ""  # a query's question has no compression pointer
        labels.append(bytes(query[i + 1 : i + 1 + n]))
        i += 1 + n
    name = ".".join(_label(b) for b in labels) + "." if labels else "."
    if i + 2 > end:
        return "", name
    return dns.rdatatype.to_text(int.from_bytes(query[i : i + 2], "big")), name


def _label(raw: bytes) -> str:
    if raw.isalnum() or all(c == 0x2D or c == 0x5F or 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A
                            or 0x61 <= c <= 0x7A for c in raw):  # fmt: skip
        return raw.decode("ascii")
    return "".join(chr(c) if 0x21 <= c <= 0x7E and c not in b'."\\;()' else f"\\{c:03d}"
                   for c in raw)  # fmt: skip


def dns_rcode(reply) -> str:
    """The RCODE of a DNS reply (header bits only, RFC 1035 §4.1.1), as text."""
    return dns.rcode.to_text(reply[3] & 0x0F) if len(reply) >= 4 else "-"


class _Clock:
    """Wall-clock text for log lines; the second-level part is formatted once per second."""

    def __init__(self, wall: Callable[[], float]) -> None:
        self.wall = wall
        self.second = -1
        self.text_head = self.text_zone = self.iso_head = self.iso_zone = ""

    def parts(self) -> tuple[int, int]:
        now = self.wall()
        second = int(now)
        if second != self.second:
            tm = time.localtime(second)
            zone = time.strftime("%z", tm)
            self.text_head = time.strftime("%Y-%m-%d %H:%M:%S", tm)
            self.iso_head = time.strftime("%Y-%m-%dT%H:%M:%S", tm)
            self.text_zone = zone
            self.iso_zone = f"{zone[:3]}:{zone[3:]}" if len(zone) == 5 else zone
            self.second = second
        return second, int((now - second) * 1000)

    def text(self) -> str:
        _, ms = self.parts()
        return f"{self.text_head}.{ms:03d}{self.text_zone}"

    def iso(self) -> str:
        _, ms = self.parts()
        return f"{self.iso_head}.{ms:03d}{self.iso_zone}"


class AccessLog:
    """One worker's access log: formats, rate-limits, buffers and writes lines.

    ``destination``: ``"-"`` (standard error) or a file path (created, appended to).
    ``fmt``: ``"text"`` or ``"json"``.  ``rate``: lines per second (0: unlimited).
    ``clock``: monotonic seconds (latency, bucket); ``wall``: UNIX time (the line's time).
    Counters: ``written`` lines, ``suppressed_total`` lines dropped by the rate limit,
    ``write_errors`` failed writes (the lines are lost; logged once).
    """

    def __init__(self, destination: str, fmt: str = "text", rate: float = 1000, *,
                 clock: Callable[[], float] = time.perf_counter,
                 wall: Callable[[], float] = time.time) -> None:  # fmt: skip
        if fmt not in FORMATS:
            raise ValueError(f"access log format {fmt!r}: expected one of {', '.join(FORMATS)}")
        if destination == "-":
            self.fd, self.owned = 2, False
        else:
            self.fd = os.open(destination, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                              0o640)  # fmt: skip
            self.owned = True
        self.json = fmt == "json"
        self.rate = float(rate)
        self.tokens = self.burst = max(self.rate, 1.0)
        self.clock = clock
        self.last = clock()
        self.stamp = _Clock(wall)
        self.buffer: list[bytes] = []
        self.suppressed = 0  # since the last note
        self.suppressed_total = 0
        self.written = 0
        self.write_errors = 0
        self.interfaces: dict[tuple[str, int, int], str] = {}

    # -- the line --------------------------------------------------------------------------
    def write(self, client: str | None, interface: str, op: int | str, code: int | str,
              seconds: float, identity: str, identifier: str) -> None:  # fmt: skip
        """Log one request (subject to the rate limit)."""
        if self._admit():
            self._emit(client, interface, op, code, seconds, identity, identifier)

    def _admit(self) -> bool:
        # First, so that a suppressed line costs no parsing and no formatting.
        if self.rate > 0 and not self._take():
            self.suppressed += 1
            self.suppressed_total += 1
            return False
        return True

    def _emit(self, client: str | None, interface: str, op: int | str, code: int | str,
              seconds: float, identity: str, identifier: str) -> None:  # fmt: skip
        if self.suppressed:
            self._note()
        client = client or "-"
        if self.json:
            line = orjson.dumps({"ts": self.stamp.iso(), "client": client, "interface": interface,
                                 "op": op, "code": code, "ms": round(seconds * 1000, 3),
                                 "identity": identity, "identifier": identifier}) + b"\n"
        else:
            adm = f"adm={_escape(identity)}" if identity else "-"
            line = (f'{_escape(client)} {interface} "{self.stamp.text()}" {op} {code} '
                    f'{int(seconds * 1000)}ms {adm} {_escape(identifier)}\n'
                    ).encode("utf-8", "backslashreplace")  # fmt: skip
        self.buffer.append(line)
        self.written += 1
        if len(self.buffer) >= FLUSH_LINES:
            self.flush()

    def _take(self) -> bool:
        now = self.clock()
        tokens = self.tokens + (now - self.last) * self.rate
        self.last = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens < 1.0:
            self.tokens = tokens
            return False
        self.tokens = tokens - 1.0
        return True

    def _note(self) -> None:
        n, self.suppressed = self.suppressed, 0
        if self.json:
            line = orjson.dumps({"ts": self.stamp.iso(), "suppressed": n}) + b"\n"
        else:
            line = f'# "{self.stamp.text()}" {n} access log lines suppressed\n'.encode("ascii")
        self.buffer.append(line)

    # -- per front-end -----------------------------------------------------------------------
    def http(self, request, status: int, started: float, interface: str = "HTTP") -> None:
        """A REST or page request (aiohttp ``BaseRequest``) answered with ``status``."""
        if not self._admit():
            return
        raw = request.raw_path
        q = raw.find("?")
        path = raw[:q] if q >= 0 else raw  # the query string is never logged
        if path.startswith(_API_HANDLE):
            path = path[len(_API_HANDLE) :]
        elif not path.startswith("/api/") and "/" in path[1:]:
            path = path[1:]  # the proxy's /{identifier}: an identifier always holds a "/"
        ident = unquote(path, errors="backslashreplace")
        if self.json and not ident.isascii():  # the request line may hold non-UTF-8 bytes,
            ident = ident.encode("utf-8", "backslashreplace").decode("utf-8")  # JSON can't
        self._emit(request.remote, interface, request.method, status, self.clock() - started,
                   request.get(IDENTITY_KEY, ""), ident)  # fmt: skip

    def handle(self, client: str | None, transport: str, major: int, minor: int, flags: int,
               payload, reply, started: float) -> None:  # fmt: skip
        """A Handle request (``payload``: header + body) answered with ``reply`` (a whole
        message, envelope first), over ``transport`` "UDP" or "TCP"."""
        if self._admit():
            self._handle(client, transport, major, minor, flags, payload, 0, reply, started)

    def handle_message(self, client: str | None, transport: str, message, reply,
                       started: float) -> None:  # fmt: skip
        """A Handle request as it came (envelope + header + body: a datagram, a TCP frame)."""
        if len(message) >= 20 and self._admit():
            self._handle(client, transport, message[0], message[1],
                         (message[2] << 8) | message[3], message, 20, reply, started)  # fmt: skip

    def _handle(self, client, transport, major, minor, flags, data, offset, reply, started):
        key = (transport, major, minor)
        interface = self.interfaces.get(key)
        if interface is None:
            interface = self.interfaces[key] = f"{transport}:HDL({major}.{minor})"
        op, ident = handle_request(data, offset)
        if flags & _UNREADABLE:
            ident = ""
        self._emit(client, interface, op, handle_rc(reply), self.clock() - started, "", ident)

    def dns(self, client: str | None, transport: str, query, reply, started: float) -> None:
        """A DNS query answered with ``reply``, over ``transport`` "UDP" or "TCP"."""
        if not self._admit():
            return
        qtype, name = dns_question(query)
        self._emit(client, f"{transport}:DNS", qtype or "-", dns_rcode(reply),
                   self.clock() - started, "", name)  # fmt: skip

    # -- output ----------------------------------------------------------------------------
    def flush(self) -> None:
        """Write what is buffered (and a pending suppression note, once a token is back)."""
        if self.suppressed and (self.rate <= 0 or self._take()):
            self._note()
        if not self.buffer:
            return
        data = b"".join(self.buffer)
        self.buffer.clear()
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            self.write_errors += 1
            if self.write_errors == 1:
                log.error("E050 cannot write the access log: %s (lines are dropped)", exc)

    async def run(self, interval: float = FLUSH_SECONDS) -> None:
        """Flush every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.flush()

    def close(self) -> None:
        self.flush()
        if self.owned and self.fd >= 0:
            os.close(self.fd)
        self.fd = -1


def open_log(config) -> AccessLog | None:
    """The worker's access log per ``[log]`` (``resolver.config.Config``), None when off."""
    if not config.access_log:
        return None
    return AccessLog(config.access_log, config.access_format, config.access_rate)


def check_destination(path: str) -> None:
    """Open ``path`` for appending once (before forking workers), so that an unwritable file
    is a start-up error, not a worker crash loop; OSError when it cannot be."""
    if path and path != "-":
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640))


def wrap_http(access: AccessLog | None, handler, *, tls: bool = False, admin=None):
    """``handler`` (the worker's aiohttp request handler) logging to ``access``; itself when
    the log is off.  ``admin``: the REST admin whose authenticated identities are logged."""
    if access is None:
        return handler
    if admin is not None:
        remember_identity(admin)
    return LoggedHttp(handler, access, "HTTPS" if tls else "HTTP")


class LoggedHttp:
    """An aiohttp low-level request handler wrapped to log every answered request; attributes
    of the wrapped handler stay reachable."""

    def __init__(self, handler, access: AccessLog, interface: str = "HTTP") -> None:
        self.handler = handler
        self.access = access
        self.interface = interface

    async def __call__(self, request):
        started = self.access.clock()
        resp = await self.handler(request)
        try:
            self.access.http(request, resp.status, started, self.interface)
        except Exception:  # the answer matters more than its log line
            log.exception("E051 cannot log an HTTP request")
        return resp

    def __getattr__(self, name):
        return getattr(self.handler, name)


def remember_identity(admin) -> None:
    """Make the REST admin (``http_admin.AdminHttp``) note in each request the identity it
    authenticated (``request[IDENTITY_KEY]``, as ``index:handle``), for the access log.  Every
    authenticating endpoint asks ``admin.identity(request)``; this wraps that one method on
    this one object."""
    inner = admin.identity

    async def identity(request):
        found = await inner(request)
        who = found[0] if isinstance(found, tuple) else found
        if who is not None:
            request[IDENTITY_KEY] = str(who)
        return found

    admin.identity = identity
