"""Response rate limiting (RRL) of DNS answers over UDP (issue 6 §5; Knot DNS ``mod-rrl``).

Owns ``RrlConfig`` (Knot's option names and ranges), ``RateLimiter`` (one decision per UDP
reply: pass, slip or drop, with Knot's ``slipped`` / ``dropped`` counters), ``classify`` (the
response class and the name a reply is accounted under) and ``slip_response`` (the truncated
form of a reply).  Sans-IO: no sockets and no clock — the caller passes the client address as
text and the time; one limiter per worker, not thread-safe.

Why: a UDP query's source can be forged, so a server answering every query reflects (and
amplifies, 3–4× for our TXT answers) traffic onto a victim.  RRL caps the answers per client
network; a capped answer is dropped or replaced by a TC=1 answer about the size of the query,
which a real client retries over TCP (where sources cannot be forged).

How a UDP server drives it
==========================

For every reply it would send over UDP (never for TCP: Knot limits UDP only)::

    d = limiter.decide(addr[0], reply, time.monotonic())
    PASS → send reply · SLIP → send slip_response(reply) · DROP → send nothing

(``limiter.apply(addr[0], reply, now)`` does exactly that and returns the bytes to send or
``None``.)  ``now`` is any clock in seconds that never goes back (``time.monotonic()``).  With
``rate_limit == 0`` (the default) ``decide`` returns PASS at once.

Accounting (what shares a budget)
=================================

A reply is charged to the bucket of (client network, response class, name), as Knot's token
bucket RRL (Knot ≤ 3.3 ``functions.c``; BIND's RRL is the same model):

* client network: IPv4 /24, IPv6 /56; an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``, from a
  dual-stack socket) counts as its IPv4 address; an IPv6 zone (``%eth0``) is ignored.
* class, read from the reply bytes, first match wins (Knot's ``rrl_clsid``)::

      RCODE NXDOMAIN                              NXDOMAIN   name: the zone
      RCODE other than NOERROR (incl. BADVERS,    ERROR      name: the zone
        the extended RCODE of the OPT RR)
      QTYPE ANY                                   ANY        name: QNAME
      QTYPE DNSKEY, RRSIG, DS                     DNSSEC     name: QNAME
      reply ≥ 1024 bytes                          LARGE      name: QNAME
      ANCOUNT 0 (NODATA, or already TC=1)         EMPTY      name: QNAME
      otherwise                                   NORMAL     name: QNAME

  WILDCARD exists for Knot parity but never occurs: no answer of ours is synthesised from a
  wildcard.  The QNAME is lower-cased (RFC 4343: 0x20-randomised spellings are one name, and
  varying the case must not buy a fresh budget).  "The zone" is one constant: a server serves
  one apex, so every error/NXDOMAIN reply to a network shares one bucket, as in Knot.

Budget (per bucket): a token bucket of capacity ``instant_limit`` refilled continuously at
``rate_limit`` tokens per second, kept as its theoretical arrival time (GCRA, 8 bytes a bucket
— Knot's figure too).  A reply that finds a token passes and takes it; otherwise it is
*limited* and costs nothing (a flood cannot push a bucket further into debt, so the client
recovers ``1 / rate_limit`` s after the flood stops).  A new or idle bucket is full: a client
may burst ``instant_limit`` replies, then gets ``rate_limit`` per second.  (Knot ≥ 3.4 keeps
these two options but limits per address and several wider prefixes, without classes, with
exponentially decaying counters; its burst and steady rate are close to these.  Knot exempts
replies carrying a valid server DNS cookie; idnode issues no cookies, so nothing is exempt.)

Limited replies: the whitelist (addresses, ``ADDR/LEN`` networks, ``ADDR-ADDR`` ranges) is
never limited nor counted.  Otherwise a limited reply is counted and, one in every ``slip``
limited replies (a counter over the limiter: slip, drop, …, slip, drop, …), SLIPped, else
DROPped; ``slip`` 0 drops all, 1 slips all, 2 alternates (Knot rolls a die with the same odds;
a counter is exact and testable).  ``dry_run``: counted the same, but every decision is PASS.

Memory: exactly ``table_size`` buckets, allocated when the limiter is built with a non-zero
rate (``8 * table_size`` bytes), never more.  A bucket is a slot chosen by a salted hash of the
(network, class, name) key and stores no key: keys that collide share a budget.  Sharing can
only limit more, never less, and it is what lets a flood of forged sources leave the table's
size alone; size the table as Knot advises (``1.4 × max_qps / rate_limit``) to keep sharing
between real clients rare.  Besides, each limiter remembers the network of up to 65536 client
addresses (emptied when full), so a repeat client costs no address parsing.

Slipped form (``slip_response``): the reply's header with TC=1 (id, AA, RD, CD, RCODE kept),
QDCOUNT questions copied, ANCOUNT = NSCOUNT = 0, and the OPT RR if the reply had one (the only
additional record kept) — byte for byte what ``responder`` sends when an answer does not fit
UDP (RFC 7766 §5: the client retries over TCP).  It is never larger than the reply.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import random
import struct
from array import array
from collections.abc import Iterable, Mapping

HEADER = struct.Struct(">HHHHHH")  # id, flags, qdcount, ancount, nscount, arcount
_RR_FIXED = struct.Struct(">HHIH")  # type, class, ttl, rdlength (RFC 1035 §4.1.3)
_TC = 0x0200  # RFC 1035 §4.1.1
_OPT = 41  # RFC 6891 §6.1.2
_LARGE = 1024  # Knot's RRL_PSIZE_LARGE
_ANY = 255
_DNSSEC_TYPES = frozenset((43, 46, 48))  # DS, RRSIG, DNSKEY (Knot's "DNSSEC" class)
_ZONE = b""  # the bucket name of zone-wide classes (one apex per server)

# Knot's option ranges (mod-rrl ``rrl_conf``; 768 = the largest prefix multiplier there).
MAX_INSTANT_LIMIT = (1 << 32) // 768 - 1
MAX_RATE_LIMIT = MAX_INSTANT_LIMIT * 1000
MAX_SLIP = 100
MAX_TABLE_SIZE = (1 << 31) - 1
DEFAULT_INSTANT_LIMIT = 125
DEFAULT_SLIP = 1
DEFAULT_TABLE_SIZE = 524288


class Decision(enum.Enum):
    """What to do with one UDP reply."""

    PASS = "pass"  # send the reply
    SLIP = "slip"  # send slip_response(reply)
    DROP = "drop"  # send nothing


_PASS, _SLIP, _DROP = Decision.PASS, Decision.SLIP, Decision.DROP  # member lookup is slow in 3.11
_MISSING = object()
_NETS_MAX = 1 << 16  # addresses remembered per limiter


class ResponseClass(enum.IntEnum):
    """Knot's RRL response classes (their bit values in Knot's ``functions.c``)."""

    NORMAL = 1
    ERROR = 2
    NXDOMAIN = 4
    EMPTY = 8
    LARGE = 16
    WILDCARD = 32
    ANY = 64
    DNSSEC = 128


# The same values as plain ints for the hot path: an IntEnum member hashes by name, slowly.
_NORMAL, _ERROR, _NXDOMAIN, _EMPTY, _LARGE_CLS, _ANY_CLS, _DNSSEC = 1, 2, 4, 8, 16, 64, 128

#: Knot option name → RrlConfig field.
OPTIONS: dict[str, str] = {
    "rate-limit": "rate_limit",
    "instant-limit": "instant_limit",
    "slip": "slip",
    "whitelist": "whitelist",
    "dry-run": "dry_run",
    "table-size": "table_size",
}
#: Knot options idnode does not implement (time limiting is for TCP/TLS/QUIC; no RRL log).
UNSUPPORTED = ("time-rate-limit", "time-instant-limit", "log-period")


@dataclasses.dataclass(frozen=True, slots=True)
class RrlConfig:
    """``[dns.rrl]``: Knot ``mod-rrl`` options, Knot's ranges and defaults except
    ``rate_limit`` (0 = off, idnode's default; Knot's is 50).  ``whitelist`` holds addresses,
    ``ADDR/LEN`` networks and ``ADDR-ADDR`` ranges, IPv4 or IPv6.  Raises ``ValueError`` naming
    the option (Knot's spelling) for a bad value."""

    rate_limit: int = 0
    instant_limit: int = DEFAULT_INSTANT_LIMIT
    slip: int = DEFAULT_SLIP
    whitelist: tuple[str, ...] = ()
    dry_run: bool = False
    table_size: int = DEFAULT_TABLE_SIZE

    def __post_init__(self) -> None:
        _int("rate-limit", self.rate_limit, 0, MAX_RATE_LIMIT)
        _int("instant-limit", self.instant_limit, 1, MAX_INSTANT_LIMIT)
        _int("slip", self.slip, 0, MAX_SLIP)
        _int("table-size", self.table_size, 1, MAX_TABLE_SIZE)
        if not isinstance(self.dry_run, bool):
            raise ValueError(f"dry-run: must be true or false, got {self.dry_run!r}")
        if not isinstance(self.whitelist, tuple):
            raise ValueError("whitelist: must be a list of addresses, networks or ranges")
        _networks(self.whitelist)  # raises for a bad entry
        if self.rate_limit > 1000 * self.instant_limit:  # Knot's rrl_conf_check
            raise ValueError("rate-limit: higher than 1000 times instant-limit "
                             f"({self.rate_limit} > 1000 × {self.instant_limit})")  # fmt: skip

    @property
    def enabled(self) -> bool:
        return self.rate_limit > 0

    @classmethod
    def from_mapping(cls, options: Mapping[str, object]) -> RrlConfig:
        """The config from Knot-named options (``{"rate-limit": 5, "slip": 2, ...}``); absent
        options keep their defaults.  ``whitelist`` may be one string or a list of them.
        Raises ``ValueError`` naming the option for an unknown, unsupported or bad one."""
        kwargs: dict[str, object] = {}
        for name, value in options.items():
            if name in UNSUPPORTED:
                raise ValueError(f"{name}: this mod-rrl option is not supported by idnode")
            field = OPTIONS.get(name)
            if field is None:
                raise ValueError(f"{name}: unknown RRL option (known: {', '.join(OPTIONS)})")
            if field == "whitelist":
                if isinstance(value, str):
                    value = (value,)
                elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
                    value = tuple(value)
                else:
                    raise ValueError("whitelist: must be a list of address strings, "
                                     f"got {value!r}")  # fmt: skip
            kwargs[field] = value
        return cls(**kwargs)  # type: ignore[arg-type]


def _int(option: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{option}: must be an integer {lo}..{hi}, got {value!r}")


# -- addresses ----------------------------------------------------------------------------------


def _networks(entries: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Whitelist entries → networks (a range becomes the networks that cover it exactly; an
    IPv4-mapped IPv6 network becomes its IPv4 network, as client addresses do)."""
    out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for entry in entries:
        try:
            if not isinstance(entry, str):
                raise ValueError
            text = entry.strip()
            if "-" in text:
                first, _, last = text.partition("-")
                lo, hi = ipaddress.ip_address(first.strip()), ipaddress.ip_address(last.strip())
                nets = list(ipaddress.summarize_address_range(lo, hi))  # type: ignore[arg-type]
            else:
                nets = [ipaddress.ip_network(text, strict=False)]
        except (ValueError, TypeError):
            raise ValueError(f"whitelist: {entry!r} is not an address, a network (ADDR/LEN) "
                             "or a range (ADDR-ADDR)") from None  # fmt: skip
        for net in nets:
            mapped = net.network_address.ipv4_mapped if net.version == 6 else None
            if mapped is not None and net.prefixlen >= 96:
                net = ipaddress.IPv4Network((mapped, net.prefixlen - 96))
            out.append(net)
    return out


def _v4_int(text: str) -> int:
    parts = text.split(".")
    if len(parts) != 4:
        raise ValueError(f"not an IPv4 address: {text!r}")
    n = 0
    for p in parts:
        b = int(p)
        if not 0 <= b <= 255:
            raise ValueError(f"not an IPv4 address: {text!r}")
        n = (n << 8) | b
    return n


def _v6_int(text: str) -> int:
    """The 128-bit value of an IPv6 address in text (RFC 4291 §2.2 forms, zone stripped).
    Hand-written: ``ipaddress`` costs several times more, and this runs for IPv6 replies."""
    text = text.partition("%")[0]
    if "." in text:  # trailing dotted quad (RFC 4291 §2.2 form 3)
        head, _, quad = text.rpartition(":")
        v4 = _v4_int(quad)
        text = f"{head}:{v4 >> 16:x}:{v4 & 0xFFFF:x}"
    if "::" in text:
        head, _, tail = text.partition("::")
        h = head.split(":") if head else []
        t = tail.split(":") if tail else []
        if len(h) + len(t) > 7:  # "::" stands for at least one zero group
            raise ValueError(f"not an IPv6 address: {text!r}")
        groups = h + ["0"] * (8 - len(h) - len(t)) + t
    else:
        groups = text.split(":")
    digits = "".join([g.rjust(4, "0") for g in groups])
    if len(groups) != 8 or len(digits) != 32 or "" in groups:
        raise ValueError(f"not an IPv6 address: {text!r}")
    return int(digits, 16)


class _Whitelist:
    """Networks as {prefix length: set of masked address values}, per family: a lookup is one
    shift and one set probe per distinct prefix length."""

    __slots__ = ("v4", "v6")

    def __init__(self, nets: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        v4: dict[int, set[int]] = {}
        v6: dict[int, set[int]] = {}
        for net in nets:
            table, bits = (v4, 32) if net.version == 4 else (v6, 128)
            table.setdefault(net.prefixlen, set()).add(
                int(net.network_address) >> (bits - net.prefixlen))
        self.v4 = tuple((32 - plen, frozenset(s)) for plen, s in sorted(v4.items()))
        self.v6 = tuple((128 - plen, frozenset(s)) for plen, s in sorted(v6.items()))

    def matches(self, v6: bool, n: int) -> bool:
        for shift, nets in self.v6 if v6 else self.v4:
            if n >> shift in nets:
                return True
        return False


def _network(ip: str, white: _Whitelist | None) -> object:
    """The bucket network of a client address as the socket layer gives it (dotted quad or
    RFC 5952 IPv6 text): "192.0.2" for IPv4 /24, the top 56 bits for IPv6; ``None`` if it is
    whitelisted.  ``ValueError`` when it is no address (IPv4 is only checked with a whitelist)."""
    if ":" in ip and not (ip.startswith("::ffff:") and "." in ip):
        n = _v6_int(ip)
        return None if white is not None and white.matches(True, n) else n >> 72
    if ip.startswith("::ffff:"):  # IPv4-mapped (RFC 4291 §2.5.5.2), from a dual-stack socket
        ip = ip[7:]
    if white is not None and white.matches(False, _v4_int(ip)):
        return None
    head, dot, _ = ip.rpartition(".")
    if not dot:
        raise ValueError(f"not an IPv4 address: {ip!r}")
    return head


# -- the response -------------------------------------------------------------------------------


def _skip_name(msg: bytes, pos: int) -> int:
    """Offset after the (possibly compressed) name at ``pos``; IndexError/ValueError if bad."""
    while True:
        n = msg[pos]
        if n == 0:
            return pos + 1
        if n >= 0xC0:  # a pointer ends the name (RFC 1035 §4.1.4)
            if pos + 2 > len(msg):
                raise IndexError(pos)
            return pos + 2
        if n > 63:
            raise ValueError("bad label length")
        pos += n + 1


def _skip_rr(msg: bytes, pos: int) -> int:
    pos = _skip_name(msg, pos)
    end = pos + 10 + _RR_FIXED.unpack_from(msg, pos)[3]
    if end > len(msg):
        raise IndexError(end)
    return end


def _classify(msg: bytes) -> tuple[int, bytes]:
    """(class, bucket name) of a reply; a reply we cannot read counts as an ERROR."""
    try:
        _, flags, qd, an, ns, ar = HEADER.unpack_from(msg)
    except struct.error:
        return _ERROR, _ZONE
    rcode = flags & 0xF
    if rcode == 3:
        return _NXDOMAIN, _ZONE
    if rcode or qd == 0:
        return _ERROR, _ZONE
    try:
        end = 12
        while n := msg[end]:  # the QNAME: uncompressed, it is the message's first name
            if n > 63:
                raise ValueError("bad label length")
            end += n + 1
        end += 1
        if end + 4 > len(msg):
            raise IndexError(end)
        qtype = (msg[end] << 8) | msg[end + 1]
        if an == 0 and ar:  # BADVERS keeps header RCODE 0: its upper bits sit in the OPT RR
            pos = end + 4
            for _ in range(qd - 1):
                pos = _skip_name(msg, pos) + 4
            for _ in range(ns):
                pos = _skip_rr(msg, pos)
            for _ in range(ar):
                start, pos = pos, _skip_rr(msg, pos)
                if msg[start] == 0 and msg[start + 1] == 0 and msg[start + 2] == _OPT:
                    if msg[start + 5]:  # extended RCODE, RFC 6891 §6.1.3
                        return _ERROR, _ZONE
                    break
    except (IndexError, ValueError, struct.error):
        return _ERROR, _ZONE
    name = msg[12:end].lower()
    if qtype == _ANY:
        return _ANY_CLS, name
    if qtype in _DNSSEC_TYPES:
        return _DNSSEC, name
    if len(msg) >= _LARGE:
        return _LARGE_CLS, name
    if an == 0:
        return _EMPTY, name
    return _NORMAL, name


def classify(response: bytes) -> tuple[ResponseClass, bytes]:
    """The RRL class of a reply and the name its bucket is keyed by: the lower-cased QNAME in
    wire form, or ``b""`` (the zone) for ERROR and NXDOMAIN (module docstring, "Accounting")."""
    cls, name = _classify(response)
    return ResponseClass(cls), name


def slip_response(response: bytes) -> bytes:
    """The TC=1 form of a reply (module docstring, "Slipped form"); ``b""`` for fewer than 12
    bytes.  A reply whose sections cannot be walked gives the header alone, TC=1, no records."""
    if len(response) < HEADER.size:
        return b""
    qid, flags, qd, an, ns, ar = HEADER.unpack_from(response)
    flags |= _TC
    try:
        pos = HEADER.size
        for _ in range(qd):
            pos = _skip_name(response, pos) + 4
        if pos > len(response):
            raise IndexError(pos)
        question_end = pos
        for _ in range(an + ns):
            pos = _skip_rr(response, pos)
        opt = b""
        for _ in range(ar):
            start, pos = pos, _skip_rr(response, pos)
            if response[start] == 0 and response[start + 1] == 0 and response[start + 2] == _OPT:
                opt = response[start:pos]
                break
    except (IndexError, ValueError, struct.error):
        return HEADER.pack(qid, flags, 0, 0, 0, 0)
    return (HEADER.pack(qid, flags, qd, 0, 0, 1 if opt else 0)
            + response[HEADER.size:question_end] + opt)  # fmt: skip


# -- the limiter --------------------------------------------------------------------------------


class RateLimiter:
    """Per-worker RRL state (module docstring).  ``slipped`` and ``dropped`` are Knot's
    counters (limited replies slipped / dropped, dry run included); ``counters()`` returns
    them by Knot's names."""

    __slots__ = ("config", "slipped", "dropped", "_on", "_interval", "_tau", "_size", "_tat",
                 "_salt", "_white", "_nets", "_slip", "_slip_count", "_dry")  # fmt: skip

    def __init__(self, config: RrlConfig, *, seed: int | None = None) -> None:
        """``seed`` fixes the bucket hash salt (tests); by default it is random per limiter,
        so nobody outside can tell which keys share a bucket."""
        self.config = config
        self.slipped = 0
        self.dropped = 0
        self._on = config.rate_limit > 0
        self._interval = 1.0 / config.rate_limit if self._on else 0.0
        # GCRA: a reply passes while its bucket's arrival time is at most tau ahead of now.
        # The slack absorbs float error after many additions of the interval.
        self._tau = (config.instant_limit - 1) * self._interval + self._interval * 1e-6
        self._size = config.table_size
        # -inf: every bucket starts full, whatever the clock's origin.
        self._tat = array("d", [float("-inf")]) * config.table_size if self._on else array("d")
        self._salt = random.SystemRandom().getrandbits(61) if seed is None else seed
        nets = _networks(config.whitelist)
        self._white = _Whitelist(nets) if nets else None
        self._nets: dict[str, object] = {}  # address → _network(address)
        self._slip = config.slip
        self._slip_count = 0
        self._dry = config.dry_run

    def counters(self) -> dict[str, int]:
        return {"slipped": self.slipped, "dropped": self.dropped}

    #: ``slip_response`` reachable from the limiter too (``limiter.slip_response(reply)``).
    slip_response = staticmethod(slip_response)

    def decide(self, client_ip: str, response: bytes, now: float) -> Decision:
        """PASS, SLIP or DROP for one UDP reply to ``client_ip`` (the address as the socket
        gives it) at time ``now`` (seconds, never going back).  A reply under 12 bytes (the
        responder's "send nothing") passes uncharged.  Text that is no address may raise
        ``ValueError`` (IPv4 is fully checked only when there is a whitelist)."""
        if not self._on or len(response) < 12:
            return _PASS
        # Addresses repeat (real clients) or do not (forged floods): a bounded memo serves the
        # first kind and is emptied whenever it fills, so the second cannot grow it.
        net = self._nets.get(client_ip, _MISSING)
        if net is _MISSING:
            net = _network(client_ip, self._white)
            if len(self._nets) >= _NETS_MAX:
                self._nets.clear()
            self._nets[client_ip] = net
        if net is None:
            return _PASS
        cls, name = _classify(response)
        slot = hash((self._salt, net, cls, name)) % self._size
        tat = self._tat[slot]
        if tat < now:
            tat = now
        if tat - now <= self._tau:
            self._tat[slot] = tat + self._interval
            return _PASS
        # Limited: the bucket is left as it is (a refused reply costs no token).
        if self._slip and self._slip_count == 0:
            decision = _SLIP
            self.slipped += 1
        else:
            decision = _DROP
            self.dropped += 1
        if self._slip:
            self._slip_count = (self._slip_count + 1) % self._slip
        return _PASS if self._dry else decision

    def apply(self, client_ip: str, response: bytes, now: float) -> bytes | None:
        """What to send for one UDP reply: the reply, its slipped form, or ``None``."""
        decision = self.decide(client_ip, response, now)
        if decision is _PASS:
            return response
        if decision is _SLIP:
            return slip_response(response)
        return None
