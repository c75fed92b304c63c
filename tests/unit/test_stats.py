"""Statistics (issue 7 §6) below the servers, on real LMDB files: the store's counters
(schema.STATS) and the registrations it counts itself, a worker's tally and its flusher, and
the owners' and admins' report (registry.stats)."""

from __future__ import annotations

import asyncio
import io
import time

import pytest

from registry import operator as O
from registry.authz import Identity
from registry.imports import Importer
from registry.service import OPERATOR, Registry
from registry.stats import Statistics
from resolver.core import stats
from resolver.errors import (
    AlreadyExists, AuthenticationNeeded, Forbidden, InvalidIdentifier, MalformedRequest, Outcome,
)  # fmt: skip
from resolver.record import Record, pack
from resolver.store import Change
from resolver.store import schema as S
from resolver.store.lmdb_store import LmdbStore
from resolver.values import HandleValue

ROOT = Identity.parse("300:88.118/ADMIN")
NOW_HOUR = int(time.time()) // 3600


def url(n: int) -> list[HandleValue]:
    return [HandleValue(1, "URL", f"https://example.com/{n}".encode())]


@pytest.fixture
def reg(store) -> Registry:
    return Registry(store, server_admins=[ROOT])


@pytest.fixture
def enterprises(reg):
    """The node prefix 88.118 and two enterprises, 88.118.8 (Example Co) and 88.118.9
    (Other Co), with their admins' identities and secrets."""
    op = O.Operator(reg)
    op.create_prefix("88.118", "The node")
    eight, eight_secret = op.create_prefix("88.118.8", "Example Co")
    nine, _ = op.create_prefix("88.118.9", "Other Co")
    return eight, nine


# -- the store's counters ---------------------------------------------------------------------

def test_add_stats_adds_and_reads_back_by_prefix_and_hour(store):
    store.add_stats({(b"88.118.8", 10, b"res.http.ok"): 3, (b"88.118", 10, b"res.dns.ok"): 1,
                     (b"88.1180", 10, b"res.http.ok"): 5, (b"", 10, b"res.handle.malformed"): 2,
                     (b"88.118.8", 11, b"res.http.ok"): 7})  # fmt: skip
    store.add_stats({(b"88.118.8", 10, b"res.http.ok"): 4, (b"88.118.8", 12, b"x"): 0})
    assert list(store.stats(b"88.118")) == [
        (b"88.118", 10, b"res.dns.ok", 1),
        (b"88.118.8", 10, b"res.http.ok", 7),
        (b"88.118.8", 11, b"res.http.ok", 7),
    ]  # 88.1180 is not derived from 88.118; a zero count writes nothing
    assert list(store.stats(b"88.118.8", 11, 11)) == [(b"88.118.8", 11, b"res.http.ok", 7)]
    everything = list(store.stats())
    assert (b"", 10, b"res.handle.malformed", 2) in everything
    assert (b"88.1180", 10, b"res.http.ok", 5) in everything and len(everything) == 5
    assert list(store.stats(b"77")) == []


def test_the_store_counts_registrations_in_the_writing_transaction(store):
    store.write([Change(b"88.118.8", b"x", prefix=True)])  # homing a prefix is no registration
    assert list(store.stats()) == []

    def rec(n):
        return pack(Record(url(n)))

    store.write([Change(b"88.118.8/A", rec(1)), Change(b"88.118.8/B", rec(2)),
                 Change(b"88.118.9/A", rec(3))])  # fmt: skip
    store.write([Change(b"88.118.8/A", rec(4)), Change(b"88.118.8/B", rec(2))])  # B unchanged
    store.write([Change(b"88.118.8/B", None), Change(b"88.118.8/NOPE", None)])  # NOPE: absent
    got = {(p, m): n for p, h, m, n in store.stats()}
    hours = {h for _, h, _, _ in store.stats()}
    assert hours <= {NOW_HOUR, NOW_HOUR + 1}
    assert got == {(b"88.118.8", S.STATS_REG_CREATE): 2, (b"88.118.8", S.STATS_REG_UPDATE): 1,
                   (b"88.118.8", S.STATS_REG_DELETE): 1,
                   (b"88.118.9", S.STATS_REG_CREATE): 1}  # fmt: skip


def test_a_rolled_back_write_counts_nothing(store):
    def plan(view):
        raise AlreadyExists("no")

    with pytest.raises(AlreadyExists):
        store.update(plan)
    assert list(store.stats()) == []


def test_an_import_counts_every_created_record_once(reg, enterprises):
    """Chunks go in through ``LmdbStore.insert``; lines refused (an existing identifier) are
    not registrations."""
    before = {(p, m): n for p, _, m, n in reg.store.stats()}
    reg.store.write([Change(b"88.118.8/P-7", pack(Record(url(7))))])  # line 8 will be refused
    lines = b"".join(b'{"handle":"88.118.8/p-%d","values":[{"index":1,"type":"URL","data":'
                     b'"https://e.com/%d"}]}\n' % (i, i) for i in range(250))  # fmt: skip
    job = Importer(reg, chunk_lines=40).run(OPERATOR, "88.118.8", "jsonl", "best-effort",
                                            io.BytesIO(lines), piece=997)  # fmt: skip
    assert job["committed"] == 249 and job["failed"] == 1
    after = {(p, m): n for p, _, m, n in reg.store.stats()}
    created = after[(b"88.118.8", S.STATS_REG_CREATE)] - before.get(
        (b"88.118.8", S.STATS_REG_CREATE), 0)  # fmt: skip
    assert created == 249 + 1  # the import's, and the one written before it


# -- a worker's tally and its flusher -----------------------------------------------------------

def test_tally_drains_into_store_counters():
    tally = stats.Tally()
    http = tally.table("http")
    stats.count(http, b"88.118.8", Outcome.OK)
    stats.count(http, b"88.118.8", Outcome.OK)
    http[(b"88.118.8", "not_found")] = 3  # what a native fast path adds
    stats.count(tally.table("dns"), b"", Outcome.INVALID_IDENTIFIER)
    hour = 3600 * 500_000
    assert tally.drain(hour) == {
        (b"88.118.8", 500_000, b"res.http.ok"): 2,
        (b"88.118.8", 500_000, b"res.http.not_found"): 3,
        (b"", 500_000, b"res.dns.invalid_identifier"): 1,
    }
    assert tally.drain(hour) == {} and http == {}  # emptied in place


def test_flusher_keeps_the_counts_a_store_refused(tmp_path):
    """A write that fails (here: the store opened read-only) loses nothing: the counts wait
    for the next flush."""
    path = tmp_path / "s"
    store = LmdbStore(path)
    tally = stats.Tally()
    flusher = stats.Flusher(store, tally.drain, 60)
    try:
        stats.count(tally.table("handle"), b"88.118.8", Outcome.OK)
        flusher.flush_now()
        assert [(p, m, c) for p, _, m, c in store.stats()] == [(b"88.118.8", b"res.handle.ok", 1)]
        assert flusher.status() == {"flushed": 1, "pending": 0, "failures": 0}
        store.close()
        store = flusher.store = LmdbStore(path, readonly=True)
        for _ in range(5):
            stats.count(tally.table("handle"), b"88.118.8", Outcome.OK)
        flusher.flush_now()
        assert flusher.status() == {"flushed": 1, "pending": 5, "failures": 1}
        store.close()
        store = flusher.store = LmdbStore(path)
        stats.count(tally.table("handle"), b"88.118.8", Outcome.OK)
        flusher.close()  # the shutdown flush
        assert flusher.status() == {"flushed": 7, "pending": 0, "failures": 1}
        assert [(p, m, c) for p, _, m, c in store.stats()] == [(b"88.118.8", b"res.handle.ok", 7)]
    finally:
        store.close()


def test_flusher_runs_periodically_in_the_loop(store):
    tally = stats.Tally()
    flusher = stats.Flusher(store, tally.drain, 0.05)

    async def main():
        task = asyncio.get_running_loop().create_task(flusher.run())
        stats.count(tally.table("dns"), b"88.118.8", Outcome.OK)
        for _ in range(100):  # bounded: ≤ 5 s
            await asyncio.sleep(0.05)
            if flusher.flushed:
                break
        task.cancel()

    asyncio.run(main())
    assert [(p, m, n) for p, _, m, n in store.stats()] == [(b"88.118.8", b"res.dns.ok", 1)]


# -- the report -------------------------------------------------------------------------------

def test_report_sums_per_prefix_enterprise_and_hour(reg, enterprises):
    h = NOW_HOUR
    reg.store.add_stats({(b"88.118.8", h, b"res.http.ok"): 5,
                         (b"88.118.8", h - 1, b"res.handle.not_found"): 2,
                         (b"88.118.9", h, b"res.dns.ok"): 1,
                         (b"88.119", h, b"up.query"): 4,
                         (b"", h, b"res.handle.invalid_identifier"): 3})  # fmt: skip
    st = Statistics(reg)
    node = st.report(ROOT, None, 0, h, series="hour")
    assert node["prefix"] is None
    assert node["totals"]["resolutions"]["total"] == 11
    assert node["totals"]["upstream"]["queries"] == 4
    # the enterprises' own admin identities were registered: the store counted those
    assert node["totals"]["registrations"]["created"] >= 3
    by = {p["prefix"]: p for p in node["prefixes"]}
    assert by["88.118.8"]["org"] == "Example Co"
    assert by["88.118.8"]["resolutions"] == {"total": 7, "http": {"ok": 5},
                                             "handle": {"not_found": 2}}  # fmt: skip
    assert by["88.119"]["org"] is None and by[""]["resolutions"]["total"] == 3
    ents = {e["org"]: e for e in node["enterprises"]}
    assert set(ents) == {"The node", "Example Co", "Other Co"}
    assert ents["Example Co"]["prefixes"] == ["88.118.8"]
    assert ents["Example Co"]["resolutions"]["total"] == 7
    assert [x["hour"] for x in node["hours"]] == [stats_hour(h - 1), stats_hour(h)]
    assert node["hours"][0]["resolutions"]["handle"] == {"not_found": 2}

    one = st.report(ROOT, "88.118.8", h, h)
    assert [p["prefix"] for p in one["prefixes"]] == ["88.118.8"]
    assert one["totals"]["resolutions"] == {"total": 5, "http": {"ok": 5}}
    assert one["from"] == stats_hour(h) and one["to"] == stats_hour(h + 1) and "hours" not in one
    tree = st.report(ROOT, "0.NA/88.118", 0, h)
    assert {p["prefix"] for p in tree["prefixes"]} >= {"88.118.8", "88.118.9"}
    assert "" not in {p["prefix"] for p in tree["prefixes"]}


def stats_hour(h: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(h * 3600))


def test_owners_see_their_prefix_only(reg, enterprises):
    eight, nine = enterprises
    st = Statistics(reg)
    assert st.report(eight, "88.118.8", 0, NOW_HOUR)["prefix"] == "88.118.8"
    with pytest.raises(Forbidden):
        st.report(eight, "88.118.9", 0, NOW_HOUR)
    with pytest.raises(Forbidden):
        st.report(eight, "88.118", 0, NOW_HOUR)  # the parent is not theirs
    with pytest.raises(Forbidden):
        st.report(eight, None, 0, NOW_HOUR)  # the whole node: server admins
    with pytest.raises(Forbidden):
        st.report(eight, "88.119", 0, NOW_HOUR)  # foreign: no owner here
    assert st.report(nine, "88.118.9.1", 0, NOW_HOUR)["prefix"] == "88.118.9.1"  # derived
    with pytest.raises(AuthenticationNeeded):
        st.report(None, "88.118.8", 0, NOW_HOUR)
    assert st.report(ROOT, "88.119", 0, NOW_HOUR)["prefixes"] == []
    assert st.report(OPERATOR, None, 0, NOW_HOUR)["prefix"] is None


def test_bad_report_requests(reg, enterprises):
    st = Statistics(reg)
    with pytest.raises(InvalidIdentifier):
        st.report(ROOT, "88.118/x", 0, 1)
    with pytest.raises(MalformedRequest):
        st.report(ROOT, None, 5, 2)
    with pytest.raises(MalformedRequest):
        st.report(ROOT, None, 0, 1, series="minute")
    empty = st.report(ROOT, None, 5, 4)  # [from, to) with from == to: nothing
    assert empty["prefixes"] == [] and empty["totals"]["resolutions"]["total"] == 0
