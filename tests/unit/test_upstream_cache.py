"""The forwarder's answer cache (resolver/upstream/cache.py) on an injected clock.

Every time below is chosen by the test: freshness, the stale window (RFC 8767 §4–5), the
negative cap (RFC 2308), the refresh gate, the site-info serial rule and the LRU bound are
checked to the second, and the TTL arithmetic once more as properties over random answers.
"""

from __future__ import annotations

import collections

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.upstream.cache import (
    CLIENT_RESPONSE_TIMER, MAX_STALE_TTL, NEGATIVE_MAX, STALE_ANSWER_TTL, STALE_REFRESH_TIME,
    TTL_CAP, AnswerCache, answer_ttl, serial_newer,
)  # fmt: skip
from resolver.values import TTL_ABSOLUTE, TTL_RELATIVE, HandleValue

T0 = 1000.0  # the cache clock (monotonic seconds) at the start of each test
WALL = 1_767_225_600  # 2026-01-01T00:00:00Z: the UNIX time absolute TTLs are measured against
KEY = b"88.118.9/sn-1"


def url(ttl: int, ttl_type: int = TTL_RELATIVE, index: int = 1) -> HandleValue:
    return HandleValue(index, "URL", b"https://example.com/" + str(index).encode(), ttl=ttl,
                       ttl_type=ttl_type)  # fmt: skip


def test_rfc8767_defaults():
    assert (STALE_ANSWER_TTL, STALE_REFRESH_TIME, CLIENT_RESPONSE_TIMER) == (30, 30.0, 1.8)
    assert TTL_CAP == 7 * 86400 and 86400 <= MAX_STALE_TTL <= 3 * 86400
    assert NEGATIVE_MAX == 300
    c = AnswerCache(3600)
    assert (c.negative_max, c.stale_answer_ttl, c.stale_refresh_time) == (300, 30, 30.0)


# -- positive answers ----------------------------------------------------------------------------
def test_fresh_until_the_smallest_value_ttl_then_stale_then_gone():
    c = AnswerCache(3600, max_stale_ttl=100)
    assert c.put(KEY, [url(120, index=1), url(60, index=2)], T0)
    e = c.get(KEY, T0)
    assert e.fresh and not e.negative and e.ttl == 60 and e.expires == T0 + 60
    assert [v.index for v in e.values] == [1, 2]
    e = c.get(KEY, T0 + 59.5)
    assert e.fresh and e.ttl == 1
    e = c.get(KEY, T0 + 60)
    assert e.stale and e.ttl == STALE_ANSWER_TTL
    assert e.values == (url(120, index=1), url(60, index=2))
    e = c.get(KEY, T0 + 60 + 80)  # 20 s of the stale window left: told 20, not 30
    assert e.stale and e.ttl == 20
    assert c.get(KEY, T0 + 60 + 99.5).ttl == 1
    assert c.get(KEY, T0 + 60 + 100) is None
    assert KEY not in c and len(c) == 0


def test_max_ttl_caps_the_value_ttl():
    c = AnswerCache(600)
    c.put(KEY, [url(86400)], T0)
    assert c.get(KEY, T0).ttl == 600
    assert c.get(KEY, T0 + 599).fresh
    assert c.get(KEY, T0 + 600).stale


def test_absolute_ttl_counts_from_the_wall_clock():
    c = AnswerCache(3600)
    # Expires 100 s after WALL; the cache clock (T0) is unrelated to the wall clock.
    assert c.put(KEY, [url(WALL + 100, TTL_ABSOLUTE), url(500)], T0, wall=WALL)
    assert c.get(KEY, T0).ttl == 100
    assert c.get(KEY, T0 + 100).stale
    # Without ``wall`` the cache clock is taken to be UNIX time.
    c.put(KEY, [url(WALL + 40, TTL_ABSOLUTE)], float(WALL))
    assert c.get(KEY, float(WALL)).ttl == 40


@pytest.mark.parametrize("values", [
    [url(0)],                                   # TTL 0: do not cache
    [url(300), url(0, index=2)],                # one TTL 0 value spoils the answer
    [url(-5)],                                  # signed int4 below zero
    [url(WALL - 1, TTL_ABSOLUTE)],              # absolute, already past
    [url(WALL, TTL_ABSOLUTE)],                  # absolute, expiring right now
    [],                                         # nothing to take a TTL from
], ids=["ttl0", "one-ttl0", "negative", "absolute-past", "absolute-now", "empty"])  # fmt: skip
def test_uncacheable_answers_are_not_stored_and_clear_the_key(values):
    c = AnswerCache(3600)
    c.put(KEY, [url(300)], T0)
    assert not c.put(KEY, values, T0 + 1, wall=WALL)
    assert c.get(KEY, T0 + 1) is None and KEY not in c


def test_max_ttl_zero_caches_no_positive_answer():
    c = AnswerCache(0)
    assert not c.put(KEY, [url(300)], T0)
    assert c.put_negative(KEY, T0)  # the negative cap is separate


def test_values_for_client_carry_the_entry_ttl():
    c = AnswerCache(3600)
    c.put(KEY, [url(WALL + 500, TTL_ABSOLUTE), url(90, index=2)], T0, wall=WALL)
    fresh = c.get(KEY, T0 + 10).values_for_client()
    assert [(v.ttl, v.ttl_type) for v in fresh] == [(80, TTL_RELATIVE)] * 2
    assert [v.data for v in fresh] == [url(0).data, url(0, index=2).data]
    stale = c.get(KEY, T0 + 95).values_for_client()
    assert [(v.ttl, v.ttl_type) for v in stale] == [(STALE_ANSWER_TTL, TTL_RELATIVE)] * 2


# -- negative answers (RFC 2308) -----------------------------------------------------------------
def test_negative_answer_fresh_for_the_cap_by_default():
    c = AnswerCache(3600, max_stale_ttl=1000)
    assert c.put_negative(KEY, T0)
    e = c.get(KEY, T0 + 299)
    assert e.negative and e.fresh and e.values == () and e.ttl == 1
    e = c.get(KEY, T0 + 300)
    assert e.negative and e.stale and e.ttl == STALE_ANSWER_TTL  # NXDOMAIN served stale too


@pytest.mark.parametrize("given_ttl, fresh_for", [(60, 60), (300, 300), (86400, 300), (None, 300)])
def test_negative_ttl_is_the_callers_capped(given_ttl, fresh_for):
    c = AnswerCache(3600)
    c.put_negative(KEY, T0, given_ttl)
    assert c.get(KEY, T0 + fresh_for - 1).fresh
    assert c.get(KEY, T0 + fresh_for).stale


def test_negative_cap_is_configurable_and_zero_disables():
    c = AnswerCache(3600, negative_max=30)
    c.put_negative(KEY, T0, 60)
    assert c.get(KEY, T0 + 30).stale
    off = AnswerCache(3600, negative_max=0)
    off.put(KEY, [url(300)], T0)
    assert not off.put_negative(KEY, T0 + 1)
    assert off.get(KEY, T0 + 1) is None  # "not found" now: the old positive is gone


def test_negative_and_positive_replace_each_other():
    c = AnswerCache(3600)
    c.put(KEY, [url(3600)], T0)
    c.put_negative(KEY, T0 + 1)
    assert c.get(KEY, T0 + 2).negative
    c.put(KEY, [url(3600)], T0 + 3)
    e = c.get(KEY, T0 + 4)
    assert not e.negative and e.values == (url(3600),)
    assert len(c) == 1


# -- serve-stale --------------------------------------------------------------------------------
def test_max_stale_ttl_zero_turns_serve_stale_off():
    c = AnswerCache(3600, max_stale_ttl=0)
    c.put(KEY, [url(10)], T0)
    assert c.get(KEY, T0 + 9.9).fresh
    assert c.get(KEY, T0 + 10) is None


def test_refresh_gate_one_probe_per_30_s_while_stale():
    c = AnswerCache(3600)
    assert c.refresh_allowed(KEY, T0)  # nothing held: a miss is always asked
    assert c.refresh_allowed(KEY, T0)
    c.put(KEY, [url(10)], T0)
    assert all(c.refresh_allowed(KEY, T0 + t) for t in (0, 1, 5, 9))  # fresh: no gate
    assert c.refresh_allowed(KEY, T0 + 10)  # stale: the first probe
    assert not c.refresh_allowed(KEY, T0 + 10)
    assert not c.refresh_allowed(KEY, T0 + 39.9)
    assert c.refresh_allowed(KEY, T0 + 40)  # 30 s later: the next one
    assert not c.refresh_allowed(KEY, T0 + 41)
    c.put(KEY, [url(10)], T0 + 42)  # the refresh succeeded at last
    assert c.refresh_allowed(KEY, T0 + 52)  # the new entry's first stale probe is not gated
    assert not c.refresh_allowed(KEY, T0 + 53)


def test_refresh_gate_is_per_key_and_configurable():
    c = AnswerCache(3600, stale_refresh_time=5)
    c.put(b"a", [url(1)], T0)
    c.put(b"b", [url(1)], T0)
    assert c.refresh_allowed(b"a", T0 + 1)
    assert c.refresh_allowed(b"b", T0 + 1)
    assert not c.refresh_allowed(b"a", T0 + 5.9)
    assert c.refresh_allowed(b"a", T0 + 6)


def test_refresh_gate_after_the_stale_window_is_a_miss():
    c = AnswerCache(3600, max_stale_ttl=50)
    c.put(KEY, [url(10)], T0)
    assert c.refresh_allowed(KEY, T0 + 10)
    assert not c.refresh_allowed(KEY, T0 + 11)
    assert c.refresh_allowed(KEY, T0 + 60)  # the entry is gone: nothing to protect
    assert KEY not in c


@settings(max_examples=100, deadline=None)
@given(gaps=st.lists(st.floats(0, 40, allow_nan=False), min_size=1, max_size=30))
def test_refresh_probes_are_never_closer_than_the_recheck_timer(gaps):
    c = AnswerCache(3600, max_stale_ttl=10**6)
    c.put(KEY, [url(1)], T0)
    now, allowed = T0 + 1, []
    for gap in gaps:
        now += gap
        if c.refresh_allowed(KEY, now):
            allowed.append(now)
    assert allowed and allowed[0] == T0 + 1 + gaps[0]
    assert all(b - a >= STALE_REFRESH_TIME for a, b in zip(allowed, allowed[1:]))
    # ... and not further apart than needed: every refused call was within 30 s of a probe.
    now = T0 + 1
    for gap in gaps:
        now += gap
        if now not in allowed:
            assert any(0 <= now - a < STALE_REFRESH_TIME for a in allowed)


# -- the TTL arithmetic as properties -------------------------------------------------------------
ttl_values = st.lists(
    st.tuples(st.sampled_from([TTL_RELATIVE, TTL_ABSOLUTE]), st.integers(-100, 10**6)),
    min_size=1, max_size=6)  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(ttls=ttl_values, max_ttl=st.integers(0, TTL_CAP), max_stale=st.integers(0, 10**5),
       stale_ttl=st.integers(1, 60), at=st.integers(0, 2 * 10**6))  # fmt: skip
def test_freshness_follows_the_smallest_capped_ttl(ttls, max_ttl, max_stale, stale_ttl, at):
    values = [url(WALL + t if kind == TTL_ABSOLUTE else t, kind, i + 1)
              for i, (kind, t) in enumerate(ttls)]  # fmt: skip
    life = min(max_ttl, min(t for _, t in ttls))  # absolute ones were written relative to WALL
    assert answer_ttl(values, max_ttl, WALL) == life
    c = AnswerCache(max_ttl, max_stale_ttl=max_stale, stale_answer_ttl=stale_ttl)
    assert c.put(KEY, values, T0, wall=WALL) == (life > 0)
    e = c.get(KEY, T0 + at)
    if life <= 0 or at >= life + max_stale:
        assert e is None
    elif at < life:
        assert e.fresh and e.ttl == life - at and 1 <= e.ttl <= max_ttl
    else:
        assert e.stale and 1 <= e.ttl <= stale_ttl
        assert at + e.ttl <= life + max_stale  # never told to keep it past the stale window


# -- site info ----------------------------------------------------------------------------------
def test_site_info_by_ttl_and_stale_like_answers():
    c = AnswerCache(3600, max_stale_ttl=100)
    assert c.get_site("88.118.9", T0) is None
    assert c.put_site("88.118.9", ("site-a",), 120, 7, T0)
    s = c.get_site("88.118.9", T0 + 20)
    assert s.fresh and s.site == ("site-a",) and s.serial == 7 and s.ttl == 100
    s = c.get_site("88.118.9", T0 + 120)
    assert s.stale and s.ttl == STALE_ANSWER_TTL
    assert c.get_site("88.118.9", T0 + 220) is None
    assert c.stats()["site_hits"] == 2 and c.stats()["site_misses"] == 2


def test_site_ttl_is_capped_and_zero_clears():
    c = AnswerCache(600)
    c.put_site("p", "s", 86400, 1, T0)
    assert c.get_site("p", T0 + 600).stale
    assert not c.put_site("p", "s2", 0, 2, T0 + 1)
    assert c.get_site("p", T0 + 1) is None


def test_site_serial_newer_replaces_older_is_ignored_while_fresh():
    c = AnswerCache(3600)
    c.put_site("p", "v5", 100, 5, T0)
    assert not c.put_site("p", "v4", 100, 4, T0 + 1)  # a lagging mirror cannot roll it back
    assert c.get_site("p", T0 + 1).site == "v5"
    assert c.put_site("p", "v5b", 100, 5, T0 + 2)  # same serial: re-confirmed, TTL restarts
    assert c.get_site("p", T0 + 2).expires == T0 + 102
    assert c.put_site("p", "v6", 10, 6, T0 + 3)
    assert c.get_site("p", T0 + 3).site == "v6"
    # Once stale, any serial replaces (a site that reset its serial is not locked out).
    assert c.put_site("p", "v1", 100, 1, T0 + 13)
    assert c.get_site("p", T0 + 13).serial == 1


def test_site_serial_wraps_around():
    c = AnswerCache(3600)
    c.put_site("p", "last", 100, 0xFFFF, T0)
    assert c.put_site("p", "wrapped", 100, 0, T0 + 1)  # 0 follows 65535
    assert not c.put_site("p", "old", 100, 0xFFFF, T0 + 2)
    assert c.get_site("p", T0 + 2).site == "wrapped"


def test_site_is_current():
    c = AnswerCache(3600)
    c.put_site("p", "s", 100, 9, T0)
    assert c.site_is_current("p", 9, T0 + 99)
    assert not c.site_is_current("p", 10, T0 + 1)  # the header says the site changed
    assert not c.site_is_current("p", 9, T0 + 100)  # stale is not current
    assert not c.site_is_current("q", 9, T0)


@given(a=st.integers(0, 0xFFFF), d=st.integers(1, 0x7FFF))
def test_serial_arithmetic_rfc1982(a, d):
    b = (a + d) & 0xFFFF
    assert serial_newer(b, a) and not serial_newer(a, b)
    assert not serial_newer(a, a)
    assert not serial_newer(a ^ 0x8000, a) and not serial_newer(a, a ^ 0x8000)  # undefined


# -- size, eviction, counters -------------------------------------------------------------------
def test_lru_eviction_keeps_the_recently_used():
    c = AnswerCache(3600, max_entries=3)
    for k in (b"a", b"b", b"c"):
        c.put(k, [url(300)], T0)
    assert c.get(b"a", T0 + 1) is not None  # a is now the most recently used
    c.put(b"d", [url(300)], T0 + 2)
    assert b"b" not in c and all(k in c for k in (b"a", b"c", b"d"))
    c.put_negative(b"c", T0 + 3)  # re-put counts as use
    c.put(b"e", [url(300)], T0 + 4)
    assert b"a" not in c and len(c) == 3
    assert c.stats()["evictions"] == 2


def test_answers_do_not_evict_site_info():
    c = AnswerCache(3600, max_entries=2)
    c.put_site("p", "s", 300, 1, T0)
    for i in range(10):
        c.put(b"k%d" % i, [url(300)], T0)
    assert c.get_site("p", T0).site == "s" and len(c) == 2
    c.put_site("q", "s", 300, 1, T0)
    c.put_site("r", "s", 300, 1, T0)
    assert c.get_site("p", T0) is None  # sites have their own bound


@settings(max_examples=100, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["put", "neg", "get"]), st.integers(0, 7)),
                    max_size=60), size=st.integers(1, 5))  # fmt: skip
def test_lru_matches_a_model(ops, size):
    c = AnswerCache(3600, max_entries=size)
    model: collections.OrderedDict[bytes, bool] = collections.OrderedDict()  # key -> negative
    for op, n in ops:
        key = b"k%d" % n
        if op == "get":
            e = c.get(key, T0)
            assert (e is None) == (key not in model)
            if e is not None:
                assert e.negative == model[key]
                model.move_to_end(key)
        else:
            (c.put(key, [url(300)], T0) if op == "put" else c.put_negative(key, T0))
            model[key] = op == "neg"
            model.move_to_end(key)
            while len(model) > size:
                model.popitem(last=False)
        assert len(c) == len(model) <= size
    assert all(k in c for k in model)


def test_counters():
    c = AnswerCache(3600, max_stale_ttl=100)
    c.put(b"pos", [url(10)], T0)
    c.put_negative(b"neg", T0, 10)
    c.get(b"pos", T0)
    c.get(b"pos", T0 + 1)
    c.get(b"neg", T0)
    c.get(b"nothing", T0)
    c.get(b"pos", T0 + 10)  # stale
    c.note_stale_served()
    c.get(b"neg", T0 + 200)  # past the stale window: a miss and an expiration
    assert c.stats() == {
        "hits": 2, "negative_hits": 1, "stale_hits": 1, "stale_served": 1, "misses": 2,
        "inserts": 2, "evictions": 0, "expirations": 1, "site_hits": 0, "site_misses": 0,
        "entries": 1, "sites": 0,
    }  # fmt: skip


def test_purge_drops_only_what_is_past_the_stale_window():
    c = AnswerCache(3600, max_stale_ttl=100)
    c.put(b"short", [url(10)], T0)
    c.put(b"long", [url(1000)], T0)
    c.put_site("p", "s", 10, 1, T0)
    c.put_site("q", "s", 1000, 1, T0)
    assert c.purge(T0 + 109) == 0
    assert c.purge(T0 + 110) == 2
    assert b"short" not in c and b"long" in c
    assert c.get_site("q", T0 + 110) is not None and c.get_site("p", T0 + 110) is None
    assert c.stats()["expirations"] == 2


def test_invalidate_and_clear():
    c = AnswerCache(3600)
    c.put(KEY, [url(300)], T0)
    c.put_site("p", "s", 300, 1, T0)
    assert c.invalidate(KEY) and not c.invalidate(KEY)
    assert c.get(KEY, T0) is None
    assert c.invalidate_site("p") and c.get_site("p", T0) is None
    c.put(KEY, [url(300)], T0)
    c.put_site("p", "s", 300, 1, T0)
    c.clear()
    assert len(c) == 0 and c.stats()["sites"] == 0


@pytest.mark.parametrize("kwargs", [
    {"max_ttl": TTL_CAP + 1}, {"max_ttl": -1}, {"max_ttl": 60, "negative_max": -1},
    {"max_ttl": 60, "stale_answer_ttl": 0}, {"max_ttl": 60, "max_stale_ttl": -1},
    {"max_ttl": 60, "max_entries": 0}, {"max_ttl": 60, "stale_refresh_time": -1},
])  # fmt: skip
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        AnswerCache(**kwargs)
