"""The takeover copy in the store (schema.TAKEOVER, ``LmdbStore.takeover_*``) and the worker's
handler that answers from it (``resolver.core.takeover``), on real LMDB stores in tmp_path."""

from __future__ import annotations

import asyncio
import logging

import lmdb
import pytest

from resolver.core.request import ResolveRequest
from resolver.core.takeover import NON_AUTHORITATIVE, TakeoverHandler
from resolver.errors import Outcome, StoreError
from resolver.identifier import Identifier
from resolver.record import Record, pack, unpack
from resolver.store import Change
from resolver.store import schema as S
from resolver.store.lmdb_store import LmdbStore
from resolver.values import HandleValue

A = "http://192.0.2.7:8000"
B = "http://192.0.2.8:8000"
X = pack(Record([HandleValue(1, "URL", b"https://a.example/x", timestamp=1),
                 HandleValue(2, "EMAIL", b"ops@a.example", timestamp=1)]))  # fmt: skip
Y = pack(Record([HandleValue(1, "URL", b"https://a.example/y", timestamp=1)]))
NA = pack(Record([HandleValue(1, "DESC", b"prefix handle at A", timestamp=1)]))


def test_apply_lookup_and_resume_point(store):
    assert store.takeover_last(A) == 0 and store.takeover_lookup(b"88.118", b"88.118/X") is None
    n = store.takeover_apply(A, 5, [(b"88.118/X", X), (b"88.118/Y", Y)], [(b"88.118", NA)])
    assert n == 3 and store.takeover_last(A) == 5
    hit = store.takeover_lookup(b"88.118", b"88.118/X")
    assert (hit.source, hit.down_since_ms, hit.blob) == (A, None, X)
    assert store.takeover_lookup(b"88.118", b"88.118/NONE").blob is None  # a miss in the copy
    assert store.takeover_lookup(b"88.118", None).blob == NA  # the copied prefix handle
    assert store.takeover_lookup(b"88.119", b"88.119/X") is None  # no source homes 88.119
    assert store.takeover_prefixes() == {b"88.118": A}
    # applying the same page again changes nothing: the copy is idempotent
    assert store.takeover_apply(A, 5, [(b"88.118/X", X), (b"88.118/Y", Y)],
                                [(b"88.118", NA)]) == 0  # fmt: skip
    assert store.takeover_apply(A, 7, [(b"88.118/Y", None), (b"88.118/GONE", None)]) == 1
    assert store.takeover_get(b"88.118/Y") is None and store.takeover_last(A) == 7
    assert store.takeover_last(B) == 0  # per source


def test_the_copy_is_apart_from_the_stores_own_data(store):
    store.write([Change(b"88.1/OWN", b"own")])
    store.takeover_apply(A, 3, [(b"88.118/X", X)], [(b"88.118", NA)])
    assert store.get_record(b"88.118/X") is None and store.get_prefix(b"88.118") is None
    assert store.takeover_get(b"88.1/OWN") is None
    assert store.last_txn_id() == 1  # nothing of the copy in the change log
    assert store.stat() == {"records": 1, "prefixes": 0, "changes": 1}


def test_a_prefix_is_removed_only_by_its_own_source(store):
    store.takeover_apply(A, 1, prefixes=[(b"88.118", NA)])
    store.takeover_apply(B, 1, prefixes=[(b"88.118", None)])  # B never homed it
    assert store.takeover_prefixes() == {b"88.118": A}
    store.takeover_apply(B, 2, prefixes=[(b"88.118", NA)])  # homed last by B: B's now
    assert store.takeover_prefixes() == {b"88.118": B}
    store.takeover_apply(B, 3, prefixes=[(b"88.118", None)])
    assert store.takeover_prefixes() == {}


def test_down_state_is_published_and_cleared(store):
    store.takeover_apply(A, 1, [(b"88.118/X", X)], [(b"88.118", NA)])
    store.takeover_set_down(A, 1_767_225_600_000)
    assert store.takeover_down() == {A: 1_767_225_600_000}
    assert store.takeover_lookup(b"88.118", b"88.118/X").down_since_ms == 1_767_225_600_000
    store.takeover_set_down(A, None)
    assert store.takeover_down() == {}
    assert store.takeover_lookup(b"88.118", b"88.118/X").down_since_ms is None
    store.takeover_set_down(A, None)  # clearing twice is no error


def test_keys_of_another_namespace_are_refused(store):
    with pytest.raises(StoreError):
        store.takeover_apply(A, 1, [(S.TAKEOVER_DOWN + A.encode(), b"x")])
    assert store.takeover_down() == {} and store.takeover_last(A) == 0  # rolled back
    with pytest.raises(StoreError):
        store.takeover_apply("", 1)


def test_an_older_store_without_the_database(tmp_path):
    path = tmp_path / "s"
    old = LmdbStore(path, map_size=8 << 20)
    old.write([Change(b"88.1/A", b"a")])
    old.close()
    env = lmdb.open(str(path), max_dbs=16, map_size=8 << 20)  # as written before TAKEOVER existed
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(S.TAKEOVER, txn=txn), delete=True)
    env.close()
    ro = LmdbStore(path, map_size=8 << 20, readonly=True)
    try:
        assert ro.takeover_db is None
        assert ro.takeover_lookup(b"88.1", b"88.1/A") is None and ro.takeover_last(A) == 0
        assert ro.takeover_prefixes() == {} and ro.takeover_down() == {}
        with pytest.raises(StoreError, match="read-only"):
            ro.takeover_set_down(A, 1)
        assert ro.get_record(b"88.1/A") == b"a"
    finally:
        ro.close()
    rw = LmdbStore(path, map_size=8 << 20)  # a writable open creates it, empty
    try:
        assert rw.takeover_db is not None and rw.takeover_prefixes() == {}
        rw.takeover_apply(A, 1, [(b"88.118/X", X)])
        assert rw.takeover_get(b"88.118/X") == X and rw.get_record(b"88.1/A") == b"a"
    finally:
        rw.close()


# -- the handler ---------------------------------------------------------------------------------
def _resolve(handler, text: str, **kw):
    return asyncio.run(handler.resolve(ResolveRequest(Identifier.parse(text), **kw)))


@pytest.fixture
def copied(store):
    store.takeover_apply(A, 9, [(b"88.118/X", X)], [(b"88.118", NA)])
    return store


def test_handler_passes_on_while_the_source_is_reachable(copied):
    handler = TakeoverHandler(copied, [A])
    assert _resolve(handler, "88.118/x") is None
    assert _resolve(handler, "0.NA/88.118") is None
    assert _resolve(handler, "88.119/x") is None  # not a copied prefix
    assert handler.answered == 0


def test_handler_answers_from_the_copy_when_the_source_is_down(copied, caplog):
    copied.takeover_set_down(A, 1_767_225_600_000)
    now = [100.0]
    handler = TakeoverHandler(copied, [A], log_every=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="idnode.takeover"):
        ok = _resolve(handler, "88.118/x")
        assert ok.outcome is Outcome.OK and ok.message == NON_AUTHORITATIVE
        assert ok.values == unpack(X)
        typed = _resolve(handler, "88.118/X", types=("EMAIL",))  # the request's selection
        assert [v.type for v in typed.values] == ["EMAIL"]
        assert _resolve(handler, "88.118/none").outcome is Outcome.NOT_FOUND
        na = _resolve(handler, "0.NA/88.118")
        assert na.outcome is Outcome.OK and na.values == unpack(NA)
        now[0] += 10
        _resolve(handler, "88.118/x")
    lines = [r.getMessage() for r in caplog.records if "E083" in r.getMessage()]
    # one line at once, the next one after log_every seconds counting the quiet answers
    assert len(lines) == 2 and handler.answered == 5
    assert "88.118/x from the copy of " + A in lines[0] and "non-authoritative" in lines[0]
    assert "2026-01-01T00:00:00Z" in lines[0] and "3 more answer(s)" in lines[1]


def test_handler_ignores_sources_no_longer_configured(copied):
    copied.takeover_set_down(A, 1)
    assert _resolve(TakeoverHandler(copied, [B]), "88.118/x") is None
