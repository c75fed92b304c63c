"""The answer cache of the forwarder: foreign identifiers' answers, negative answers and the site
info of foreign prefixes, with serve-stale (RFC 8767) and capped negative caching (RFC 2308).

Owns the freshness rules, the stale window, the refresh gate and the size bound; no I/O and no
clock of its own — every call takes ``now`` (seconds on one clock the caller keeps, e.g.
``time.monotonic()``) so the rules are testable to the second.  One instance lives in one
process and one event loop (no locks); sharing it between the workers of a node is wiring's
business (entries are plain frozen data).

Contract
========

Keys
    Answers are kept per *key*: the identifier's storage key bytes
    (``resolver.identifier.key_of``).  The key must name everything that shapes the stored
    answer: the cache holds what it is given and never filters it.  Only the values of the
    identifier that was asked belong under its key — an upstream reply never teaches the cache
    about other identifiers (reliability.md §A3, BIND CVE-2025-40778).  Site info is kept per
    *prefix* in a separate table with its own bound, so a flood of answers cannot push out the
    site info that failover needs.

Positive answers — ``put(key, values, now, wall=None)``
    Fresh from ``now`` for ``min(max_ttl, min over values of the value's TTL)`` seconds.  A
    relative TTL (``ttl_type`` 0) counts in seconds; an absolute one (``ttl_type`` 1) is a UNIX
    time, so its TTL is ``ttl - wall`` (``wall``: the UNIX time, defaulting to ``now`` for
    callers whose clock is ``time.time()``) (RFC 3651 §3.1; handle.md §2.1).  An answer whose
    TTL comes out ≤ 0 — a TTL 0 value, a negative relative TTL (the field is a signed int4), an
    absolute TTL in the past — or with no values is *not cached*, and it removes what the key
    held: the newest word from upstream is that the older answer must not be reused.
    ``max_ttl`` may not exceed 7 days (RFC 8767 §4 suggests that cap; HNv9 itself keeps at
    most 2 days).

Negative answers — ``put_negative(key, now, ttl=None)``
    RC 100 "handle not found" from upstream.  Fresh for ``min(negative_max, ttl)`` seconds
    (``ttl=None``: ``negative_max``); ≤ 0 is not cached and clears the key.  The Handle
    protocol carries no negative TTL (DNS takes it from the SOA, RFC 2308 §5), hence the cap
    alone by default: 300 s, the ceiling RFC 2308 §7.1 sets for caching failures, short
    because a long negative TTL would hide identifiers registered meanwhile
    (reliability.md §A5).  A negative answer replaces a positive one and vice versa.

Lookup — ``get(key, now) -> Entry | None``
    * ``now < expires``: a *fresh* ``Entry``; ``ttl`` is the whole seconds left (≥ 1).
    * ``expires <= now < expires + max_stale_ttl``: a *stale* ``Entry``; ``ttl`` is
      ``stale_answer_ttl`` (RFC 8767 §4: 30 s RECOMMENDED), cut so that a client is never told
      to keep the data past ``expires + max_stale_ttl``.  RFC 8767 §5's "maximum stale timer"
      is ``max_stale_ttl`` (RECOMMENDED 1–3 days; default 1 day as Unbound's
      ``serve-expired-ttl``; 0 turns serve-stale off).  Negative answers go stale the same
      way, as BIND serves NXDOMAIN stale.
    * otherwise ``None`` (the entry is dropped).
    A stale entry is *usable*, not an answer: RFC 8767 §5 serves it only when refreshing
    fails.  The intended use::

        entry = cache.get(key, now)
        if entry is not None and entry.fresh:
            answer from entry
        elif entry is not None:                    # stale
            if cache.refresh_allowed(key, now):    # the failure recheck gate below
                ask upstream for at most CLIENT_RESPONSE_TIMER s (RFC 8767 §5: 1.8 s)
                on an answer: cache.put / put_negative, answer it
            on no answer (or no refresh allowed): cache.note_stale_served(); answer entry
        else:
            ask upstream; no answer → UPSTREAM_UNAVAILABLE

Refresh gate — ``refresh_allowed(key, now)``
    RFC 8767 §5 "failure recheck timer" (BIND ``stale-refresh-time``): while a key's entry is
    stale, at most one refresh attempt per ``stale_refresh_time`` (30 s) — the first call
    returns True and starts the timer, later calls within 30 s return False, so a dead
    upstream is not asked again for every query and stale answers go out at once.  Fresh
    entries and keys without a usable entry always return True (a miss has to be asked; the
    health tracker and single-flight bound that traffic).  Storing a new answer resets it.

Site info — ``put_site(prefix, site, ttl, serial, now)`` / ``get_site(prefix, now)``
    ``site`` is whatever the caller resolved the prefix to (typically the ``SiteInfo`` values
    of its HS_SITE / HS_SITE.PREFIX values); the cache does not look inside.  Fresh for
    ``min(max_ttl, ttl)``, stale like answers.  ``serial`` is the HS_SITE serial number
    (int2; handle.md §2.4), compared in RFC 1982 serial arithmetic on 16 bits because it
    wraps: while the held site info is fresh an *older* serial is ignored (a lagging mirror
    cannot roll it back), an equal or newer one replaces it; once it is stale anything
    replaces it (a site that reset its serial is not locked out).  ``site_is_current(prefix,
    serial, now)`` tells whether a reply's header SiteInfoSerialNumber matches what is held.

Size and counters
    At most ``max_entries`` answers and ``max_entries`` prefixes, least recently used evicted
    first (``get`` and ``put`` count as use).  ``purge(now)`` drops what is no longer usable.
    ``stats()`` reports ``hits`` (fresh positive), ``negative_hits`` (fresh negative),
    ``stale_hits`` (a stale entry returned), ``stale_served`` (callers' ``note_stale_served``),
    ``misses``, ``inserts``, ``evictions``, ``expirations``, ``site_hits``, ``site_misses`` and
    the gauges ``entries`` and ``sites``.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from typing import Hashable, Iterable

from resolver.values import TTL_ABSOLUTE, TTL_RELATIVE, HandleValue

#: RFC 8767 §4: the TTL of a stale answer (RECOMMENDED 30 s; BIND ``stale-answer-ttl``).
STALE_ANSWER_TTL = 30
#: RFC 8767 §5 failure recheck timer: refresh a stale key at most this often (seconds).
STALE_REFRESH_TIME = 30.0
#: RFC 8767 §5 client response timer: answer stale if upstream is silent this long (seconds).
CLIENT_RESPONSE_TIMER = 1.8
#: RFC 8767 §5 maximum stale timer default (1–3 days RECOMMENDED; Unbound uses 1 day).
MAX_STALE_TTL = 86400
#: RFC 8767 §4: cap on any TTL (7 days).
TTL_CAP = 604800
#: RFC 2308 §7.1: cache failures at most 5 minutes; the default negative cap.
NEGATIVE_MAX = 300
MAX_ENTRIES = 100_000

_SERIAL_BITS = 16


def serial_newer(a: int, b: int) -> bool:
    """Is HS_SITE serial ``a`` newer than ``b``?  RFC 1982 §3.2 on 16 bits (undefined when the
    two are exactly 2^15 apart: answered False)."""
    half = 1 << (_SERIAL_BITS - 1)
    a &= (1 << _SERIAL_BITS) - 1
    b &= (1 << _SERIAL_BITS) - 1
    return (a < b and b - a > half) or (a > b and a - b < half)


def answer_ttl(values: Iterable[HandleValue], max_ttl: float, wall: float) -> float:
    """Seconds a positive answer of ``values`` may be cached: the smallest value TTL
    (absolute ones relative to UNIX time ``wall``), capped at ``max_ttl``; ≤ 0 means never,
    and so does an empty answer."""
    ttl = None
    for v in values:
        t = v.ttl - wall if v.ttl_type == TTL_ABSOLUTE else v.ttl
        ttl = t if ttl is None else min(ttl, t)
    return 0 if ttl is None else min(ttl, max_ttl)


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """A usable cached answer as seen at one instant.

    ``values``: the answer as stored (``()`` for a negative answer).  ``ttl``: the TTL to give
    clients now — whole seconds of freshness left, or the stale-answer TTL when ``stale``.
    ``expires``: when freshness ends (cache clock)."""

    values: tuple[HandleValue, ...]
    negative: bool
    stale: bool
    ttl: int
    expires: float

    @property
    def fresh(self) -> bool:
        return not self.stale

    def values_for_client(self) -> tuple[HandleValue, ...]:
        """The values with their TTL set to ``ttl`` (relative): what to hand a client so it
        does not cache them past what this cache may (RFC 8767 §4 for stale ones)."""
        return tuple(v.replace(ttl=self.ttl, ttl_type=TTL_RELATIVE) for v in self.values)


@dataclasses.dataclass(frozen=True, slots=True)
class SiteEntry:
    """Cached site info of a prefix as seen at one instant (``ttl`` as in ``Entry``)."""

    site: object
    serial: int
    stale: bool
    ttl: int
    expires: float

    @property
    def fresh(self) -> bool:
        return not self.stale


class _Slot:
    __slots__ = ("values", "negative", "expires", "probe")

    def __init__(self, values: tuple[HandleValue, ...], negative: bool, expires: float) -> None:
        self.values, self.negative, self.expires = values, negative, expires
        self.probe: float | None = None  # when the last refresh of the stale entry was allowed


class _SiteSlot:
    __slots__ = ("site", "serial", "expires")

    def __init__(self, site: object, serial: int, expires: float) -> None:
        self.site, self.serial, self.expires = site, serial, expires


class AnswerCache:
    """Answers, negative answers and site info of foreign identifiers (contract above)."""

    def __init__(self, max_ttl: float, negative_max: float = NEGATIVE_MAX,
                 stale_answer_ttl: int = STALE_ANSWER_TTL, max_stale_ttl: float = MAX_STALE_TTL,
                 max_entries: int = MAX_ENTRIES,
                 stale_refresh_time: float = STALE_REFRESH_TIME) -> None:  # fmt: skip
        if not 0 <= max_ttl <= TTL_CAP:
            raise ValueError(f"max_ttl must be within 0..{TTL_CAP} s (RFC 8767 §4), not {max_ttl}")
        if negative_max < 0 or max_stale_ttl < 0 or stale_refresh_time < 0:
            raise ValueError("negative_max, max_stale_ttl and stale_refresh_time must be ≥ 0")
        if stale_answer_ttl < 1:
            raise ValueError(f"stale_answer_ttl must be ≥ 1 s, not {stale_answer_ttl}")
        if max_entries < 1:
            raise ValueError(f"max_entries must be ≥ 1, not {max_entries}")
        self.max_ttl = max_ttl
        self.negative_max = negative_max
        self.stale_answer_ttl = int(stale_answer_ttl)
        self.max_stale_ttl = max_stale_ttl
        self.max_entries = max_entries
        self.stale_refresh_time = stale_refresh_time
        self._entries: collections.OrderedDict[Hashable, _Slot] = collections.OrderedDict()
        self._sites: collections.OrderedDict[Hashable, _SiteSlot] = collections.OrderedDict()
        self._counts = dict.fromkeys(
            ("hits", "negative_hits", "stale_hits", "stale_served", "misses", "inserts",
             "evictions", "expirations", "site_hits", "site_misses"), 0)  # fmt: skip

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:  # held at all, usable or not
        return key in self._entries

    # -- answers -------------------------------------------------------------------------------
    def put(self, key: bytes, values: Iterable[HandleValue], now: float,
            wall: float | None = None) -> bool:  # fmt: skip
        """Cache the positive answer ``values`` for ``key``; False when it is not cacheable
        (and then whatever ``key`` held is gone)."""
        values = tuple(values)
        ttl = answer_ttl(values, self.max_ttl, now if wall is None else wall)
        return self._store(key, values, False, ttl, now)

    def put_negative(self, key: bytes, now: float, ttl: float | None = None) -> bool:
        """Cache "not found" (RC 100) for ``key``; False when not cacheable (key cleared)."""
        ttl = self.negative_max if ttl is None else min(self.negative_max, ttl)
        return self._store(key, (), True, ttl, now)

    def _store(self, key, values, negative: bool, ttl: float, now: float) -> bool:
        if ttl <= 0:
            self._entries.pop(key, None)
            return False
        self._entries[key] = _Slot(values, negative, now + ttl)
        self._entries.move_to_end(key)
        self._counts["inserts"] += 1
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self._counts["evictions"] += 1
        return True

    def _usable(self, key, now: float) -> _Slot | None:
        """The slot of ``key`` unless it is past its stale window (then it is dropped)."""
        slot = self._entries.get(key)
        if slot is not None and now >= slot.expires + self.max_stale_ttl:
            del self._entries[key]
            self._counts["expirations"] += 1
            return None
        return slot

    def get(self, key: bytes, now: float) -> Entry | None:
        """The usable entry for ``key`` — fresh or stale — or None (a miss)."""
        slot = self._usable(key, now)
        if slot is None:
            self._counts["misses"] += 1
            return None
        self._entries.move_to_end(key)
        stale = now >= slot.expires
        if stale:
            self._counts["stale_hits"] += 1
        else:
            self._counts["negative_hits" if slot.negative else "hits"] += 1
        return Entry(slot.values, slot.negative, stale, self._ttl(slot.expires, now), slot.expires)

    def _ttl(self, expires: float, now: float) -> int:
        if now < expires:
            return math.ceil(expires - now)
        left = math.ceil(expires + self.max_stale_ttl - now)  # never past the stale window
        return max(1, min(self.stale_answer_ttl, left))

    def refresh_allowed(self, key: bytes, now: float) -> bool:
        """May the caller ask upstream to refresh ``key`` now?  For a stale entry: once per
        ``stale_refresh_time`` (RFC 8767 §5 failure recheck timer); otherwise always."""
        slot = self._usable(key, now)
        if slot is None or now < slot.expires:
            return True
        if slot.probe is not None and now - slot.probe < self.stale_refresh_time:
            return False
        slot.probe = now
        return True

    def note_stale_served(self) -> None:
        """Count one answer a caller served from a stale entry (the stats' ``stale_served``)."""
        self._counts["stale_served"] += 1

    def invalidate(self, key: bytes) -> bool:
        """Forget ``key`` (e.g. it now lives under a prefix this node holds)."""
        return self._entries.pop(key, None) is not None

    # -- site info -----------------------------------------------------------------------------
    def put_site(self, prefix: Hashable, site: object, ttl: float, serial: int,
                 now: float) -> bool:  # fmt: skip
        """Cache the site info of ``prefix``; False when ignored (an older serial than the
        fresh one held) or not cacheable (``ttl`` ≤ 0: then the held one is gone too)."""
        held = self._sites.get(prefix)
        if held is not None and now < held.expires and serial_newer(held.serial, serial):
            return False
        ttl = min(ttl, self.max_ttl)
        if ttl <= 0:
            self._sites.pop(prefix, None)
            return False
        self._sites[prefix] = _SiteSlot(site, serial, now + ttl)
        self._sites.move_to_end(prefix)
        while len(self._sites) > self.max_entries:
            self._sites.popitem(last=False)
            self._counts["evictions"] += 1
        return True

    def get_site(self, prefix: Hashable, now: float) -> SiteEntry | None:
        """The usable site info of ``prefix`` — fresh or stale — or None."""
        held = self._sites.get(prefix)
        if held is not None and now >= held.expires + self.max_stale_ttl:
            del self._sites[prefix]
            self._counts["expirations"] += 1
            held = None
        if held is None:
            self._counts["site_misses"] += 1
            return None
        self._sites.move_to_end(prefix)
        self._counts["site_hits"] += 1
        return SiteEntry(held.site, held.serial, now >= held.expires,
                         self._ttl(held.expires, now), held.expires)  # fmt: skip

    def site_is_current(self, prefix: Hashable, serial: int, now: float) -> bool:
        """Is fresh site info with exactly ``serial`` held for ``prefix``?  (A reply whose
        header SiteInfoSerialNumber differs means the site changed: fetch it again.)"""
        held = self._sites.get(prefix)
        return held is not None and now < held.expires and held.serial == serial

    def invalidate_site(self, prefix: Hashable) -> bool:
        return self._sites.pop(prefix, None) is not None

    # -- housekeeping ----------------------------------------------------------------------------
    def purge(self, now: float) -> int:
        """Drop every answer and site info past its stale window; how many were dropped."""
        limit = self.max_stale_ttl
        dead = [k for k, s in self._entries.items() if now >= s.expires + limit]
        for k in dead:
            del self._entries[k]
        dead_sites = [p for p, s in self._sites.items() if now >= s.expires + limit]
        for p in dead_sites:
            del self._sites[p]
        self._counts["expirations"] += len(dead) + len(dead_sites)
        return len(dead) + len(dead_sites)

    def clear(self) -> None:
        self._entries.clear()
        self._sites.clear()

    def stats(self) -> dict[str, int]:
        return {**self._counts, "entries": len(self._entries), "sites": len(self._sites)}
