"""The record cache is exact: with it, every answer is the one the store gives without it.

Both twins of ``RecordCache`` over real LMDB stores: answers with a cache (filling it, then
from it) equal answers without one for every Handle parity case; writes — from this process
and from another — are seen by the next transaction synced; prefix changes, gaps and backward
steps in the change log and large batches empty it; its memory stays within its budget.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from test_handle_parity import CASES, request, twins
from test_udp_pump_parity import pump_burst

import native
import vectors
from native import constants as NC
from resolver.identifier import Identifier
from resolver.protocols.handle.codes import ResponseCode as RC
from resolver.protocols.handle.message import Message
from resolver.record import Record, pack
from resolver.store import Change
from resolver.store import schema as S
from resolver.store.lmdb_store import LmdbStore

SN = b"88.118.8/SN-2026-0001"
SN_KEY = SN.upper()


def _store(path) -> LmdbStore:
    store = LmdbStore(path, map_size=64 << 20)
    store.write(vectors.changes(False))
    return store


def _rec(url: str) -> bytes:
    return pack(Record([vectors.v(1, "URL", url)]))


def _each_twin(tmp_path, cython_twin):
    """(twin, fresh store, 1 MiB cache of that twin) for each twin; closes the store after."""
    for i, twin in enumerate(twins(cython_twin)):
        store = _store(tmp_path / str(i))
        try:
            yield twin, store, twin.RecordCache(1 << 20, store.changes_db)
        finally:
            store.close()


def _answer(twin, store, data: bytes, cache, case_sensitive=False):
    with store.read() as txn:
        if cache is not None:
            cache.sync(txn)
        return twin.handle_resolve(data, txn, store.records_db, store.prefixes_db,
                                   case_sensitive, cache)  # fmt: skip


def _url(reply: bytes) -> bytes | None:
    msg = Message.from_wire(reply)
    if msg.header.rc != RC.SUCCESS:
        return None
    return next(v.data for v in msg.body.values if v.type == "URL")


def test_cache_constants_match_the_schema():
    assert NC.CHANGE_HEADER == S.CHANGE.size
    assert S.CHANGE.pack(0, 0, 0, 0x1234)[NC.CHANGE_KEY_LENGTH :] == b"\x12\x34"
    assert NC.ACTION_HOME_PREFIX == S.ACTION_HOME_PREFIX
    assert NC.ACTION_UNHOME_PREFIX == S.ACTION_UNHOME_PREFIX
    assert S.TXN_ID.size == 8


@pytest.mark.parametrize("case_sensitive", [False, True])
def test_cached_answers_equal_uncached(parity_stores, cython_twin_or_none, case_sensitive):
    store = parity_stores[case_sensitive]
    cases = [c for c in CASES if c.case_sensitive == case_sensitive]
    for twin in twins(cython_twin_or_none):
        cache = twin.RecordCache(64 << 20, store.changes_db)
        for _ in range(2):  # first fills the cache, second answers from it
            for c in cases:
                assert _answer(twin, store, c.data, cache, case_sensitive) == \
                    _answer(twin, store, c.data, None, case_sensitive), c.id
        assert len(cache) > 5, "the cases must have filled the cache"


def test_twins_keep_the_same_entries(parity_stores, cython_twin_or_none):
    store = parity_stores[False]
    seen = []
    for twin in twins(cython_twin_or_none):
        cache = twin.RecordCache(20_000, store.changes_db)
        for c in CASES:
            _answer(twin, store, c.data, cache)
        seen.append((len(cache), cache.size, cache.last_change))
    assert all(x == seen[0] for x in seen) and seen[0][0] > 0


def test_a_write_is_seen_by_the_next_sync(tmp_path, cython_twin_or_none):
    for twin, store, cache in _each_twin(tmp_path, cython_twin_or_none):
        data = request(SN)
        assert _url(_answer(twin, store, data, cache)) == b"https://example.com/sn/0001"
        assert cache.get(SN_KEY) is not None
        store.write([Change(SN_KEY, _rec("https://example.com/v2"))])
        assert _url(_answer(twin, store, data, cache)) == b"https://example.com/v2"
        store.write([Change(SN_KEY, None)])
        reply = _answer(twin, store, data, cache)
        assert Message.from_wire(reply).header.rc == RC.HANDLE_NOT_FOUND
        assert cache.get(SN_KEY) is None


def test_a_prefix_change_empties_the_cache(tmp_path, cython_twin_or_none):
    for twin, store, cache in _each_twin(tmp_path, cython_twin_or_none):
        _answer(twin, store, request(SN), cache)
        _answer(twin, store, request(b"88.118.9/only"), cache)
        assert len(cache) == 2
        store.write([Change(b"88.118.8", None, prefix=True)])  # unhome 88.118.8
        assert _answer(twin, store, request(SN), cache) is None  # general path: not ours
        assert len(cache) == 0


def test_a_write_from_another_process_is_seen(tmp_path, cython_twin_or_none):
    """The real deployment: workers cache, another process (loader, registry) writes."""
    for twin, store, cache in _each_twin(tmp_path, cython_twin_or_none):
        path = store.path
        assert _url(_answer(twin, store, request(SN), cache)) == b"https://example.com/sn/0001"
        script = textwrap.dedent(f"""
            from resolver.record import Record, pack
            from resolver.store import Change
            from resolver.store.lmdb_store import LmdbStore
            import vectors
            s = LmdbStore({str(path)!r}, map_size=64 << 20)
            s.write([Change({SN_KEY!r}, pack(Record([vectors.v(1, "URL", "https://other")])))])
            s.close()
        """)  # fmt: skip
        subprocess.run([sys.executable, "-c", script], check=True, timeout=60,
                       env={"PYTHONPATH": ":".join(sys.path)})  # fmt: skip
        assert _url(_answer(twin, store, request(SN), cache)) == b"https://other"


def test_the_pump_sees_a_write_in_its_next_burst(tmp_path, cython_twin_or_none):
    for twin, store, cache in _each_twin(tmp_path, cython_twin_or_none):
        replies, rest, _, _ = pump_burst(twin, store, [request(SN)], cache=cache)
        assert not rest and _url(replies[0]) == b"https://example.com/sn/0001"
        store.write([Change(SN_KEY, _rec("https://example.com/v3"))])
        replies, rest, _, _ = pump_burst(twin, store, [request(SN)], cache=cache)
        assert not rest and _url(replies[0]) == b"https://example.com/v3"


def test_a_gap_or_a_backward_log_empties_the_cache(tmp_path, cython_twin_or_none):
    for twin, store, cache in _each_twin(tmp_path, cython_twin_or_none):
        _answer(twin, store, request(SN), cache)
        _answer(twin, store, request(b"88.118.9/only"), cache)
        assert len(cache) == 2
        # a log that went backwards (another store under the same path)
        cache.last_change += 100
        store.write([Change(b"88.118.8/NEW-1", _rec("https://n1"))])
        _answer(twin, store, request(SN), cache)
        assert len(cache) == 1  # emptied, then refilled by this answer
        _answer(twin, store, request(b"88.118.9/only"), cache)
        # a gap: a change the cache never saw is missing from the log
        first = store.write([Change(b"88.118.8/NEW-2", _rec("https://n2"))])
        store.write([Change(b"88.118.8/NEW-3", _rec("https://n3"))])
        with store.env.begin(write=True) as txn:
            assert txn.delete(S.TXN_ID.pack(first), db=store.changes_db)
        _answer(twin, store, request(SN), cache)
        assert len(cache) == 1


def test_a_large_batch_empties_the_cache(tmp_path, cython_twin_or_none):
    for twin, store, cache in _each_twin(tmp_path, cython_twin_or_none):
        _answer(twin, store, request(SN), cache)
        store.write([Change(b"88.118.8/BULK-%d" % n, _rec("https://b"))
                     for n in range(NC.RESYNC_LIMIT + 1)])  # fmt: skip
        with store.read() as txn:
            cache.sync(txn)
        assert len(cache) == 0


def test_memory_stays_within_the_budget(parity_stores, cython_twin_or_none):
    store = parity_stores[False]
    for twin in twins(cython_twin_or_none):
        blob = b"x" * 100
        per = len(b"K-000") + len(blob) + NC.ENTRY_OVERHEAD
        cache = twin.RecordCache(3 * per, store.changes_db)
        for n in range(10):
            cache.put(b"K-%03d" % n, blob)
            assert cache.size <= cache.budget
        assert len(cache) == 3
        assert cache.get(b"K-000") is None and cache.get(b"K-009") == blob  # oldest went first
        cache.put(b"HUGE", b"y" * (4 * per))  # larger than the whole budget: not kept
        assert cache.get(b"HUGE") is None and len(cache) == 3
        empty = twin.RecordCache(0, store.changes_db)
        empty.put(b"K", blob)
        assert len(empty) == 0 and empty.get(b"K") is None


def test_identifier_keys_are_what_the_cache_is_keyed_by():
    assert Identifier.parse(SN.decode()).key == SN_KEY
    assert native.normalize_key(SN) == SN_KEY
