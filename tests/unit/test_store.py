"""Unit tests of ``resolver.store.lmdb_store`` on real LMDB environments under tmp_path."""

from __future__ import annotations

import lmdb
import pytest

from resolver.errors import Outcome, StoreError, StoreFormatError, StoreFull
from resolver.store import Change, LoggedChange
from resolver.store import schema as S
from resolver.store.lmdb_store import LmdbStore


def _log(store) -> list[tuple[int, int, bytes]]:
    return [(c.txn_id, c.action, c.key) for c in store.changes_since(0)]


def test_write_get_delete(store):
    assert store.get_record(b"88.118.8/A") is None
    assert store.write([Change(b"88.118.8/A", b"blob-a")]) == 1
    assert store.get_record(b"88.118.8/A") == b"blob-a"
    assert store.get_prefix(b"88.118.8/A") is None  # records and prefixes are separate
    assert store.write([Change(b"88.118.8/A", b"blob-a2")]) == 2
    assert store.get_record(b"88.118.8/A") == b"blob-a2"
    assert store.write([Change(b"88.118.8/A", None)]) == 3
    assert store.get_record(b"88.118.8/A") is None
    assert _log(store) == [
        (1, S.ACTION_CREATE, b"88.118.8/A"),
        (2, S.ACTION_UPDATE, b"88.118.8/A"),
        (3, S.ACTION_DELETE, b"88.118.8/A"),
    ]


def test_prefix_home_unhome(store):
    assert store.write([Change(b"88.118.8", b"prefix-record", prefix=True)]) == 1
    assert store.get_prefix(b"88.118.8") == b"prefix-record"
    assert store.get_record(b"88.118.8") is None
    assert store.prefixes() == [b"88.118.8"]
    assert store.write([Change(b"88.118.8", b"prefix-record-2", prefix=True)]) == 2
    assert store.write([Change(b"88.118.8", None, prefix=True)]) == 3
    assert store.get_prefix(b"88.118.8") is None
    assert [a for _, a, _ in _log(store)] == [
        S.ACTION_HOME_PREFIX, S.ACTION_HOME_PREFIX, S.ACTION_UNHOME_PREFIX]  # fmt: skip


def test_batch_is_one_transaction_with_monotonic_ids(store):
    batch = [Change(b"88/C", b"c"), Change(b"88/A", b"a"), Change(b"88", b"p", prefix=True),
             Change(b"88/B", b"b")]  # fmt: skip
    assert store.write(batch) == 4
    log = list(store.changes_since(0))
    assert [c.txn_id for c in log] == [1, 2, 3, 4]
    # sorted: records before prefixes, then by key
    assert [(c.action, c.key) for c in log] == [
        (S.ACTION_CREATE, b"88/A"), (S.ACTION_CREATE, b"88/B"), (S.ACTION_CREATE, b"88/C"),
        (S.ACTION_HOME_PREFIX, b"88")]  # fmt: skip
    assert len({c.time_ms for c in log}) == 1  # one transaction, one time
    assert all(isinstance(c, LoggedChange) and c.time_ms > 0 for c in log)
    assert store.write([Change(b"88/D", b"d"), Change(b"88/A", None)]) == 6
    assert store.last_txn_id() == 6
    assert [c.txn_id for c in store.changes_since(4)] == [5, 6]
    assert [c.txn_id for c in store.changes_since(6)] == []
    assert [c.txn_id for c in store.changes_since(100)] == []


def test_txn_ids_survive_reopen(tmp_path):
    s = LmdbStore(tmp_path / "s", map_size=8 << 20)
    s.write([Change(b"88/A", b"a"), Change(b"88/B", b"b")])
    s.close()
    s = LmdbStore(tmp_path / "s", map_size=8 << 20)
    try:
        assert s.get_record(b"88/A") == b"a"
        assert s.write([Change(b"88/C", b"c")]) == 3
        assert [c.txn_id for c in s.changes_since(0)] == [1, 2, 3]
    finally:
        s.close()


def test_idempotent_rewrite_logs_nothing(store):
    store.write([Change(b"88/A", b"a"), Change(b"88", b"p", prefix=True)])
    before = _log(store)
    assert store.write([Change(b"88/A", b"a"), Change(b"88", b"p", prefix=True)]) == 0
    assert store.write([Change(b"88/MISSING", None), Change(b"99", None, prefix=True)]) == 0
    assert store.write([]) == 0
    assert _log(store) == before
    # a mixed batch logs only the effective change
    assert store.write([Change(b"88/A", b"a"), Change(b"88/B", b"b")]) == 3
    assert _log(store)[-1] == (3, S.ACTION_CREATE, b"88/B")


def test_failed_batch_leaves_neither_records_nor_changes(store):
    store.write([Change(b"88/KEEP", b"k")])
    before = _log(store)
    # sorted order writes 88/A first; the over-long key (LMDB's limit is 511 bytes) then fails
    bad = [Change(b"88/A", b"a"), Change(b"88/" + b"Z" * 600, b"z"), Change(b"88/KEEP", None)]
    with pytest.raises(StoreError):
        store.write(bad)
    assert store.get_record(b"88/A") is None
    assert store.get_record(b"88/KEEP") == b"k"
    assert _log(store) == before
    assert store.write([Change(b"88/A", b"a")]) == 2  # ids continue without a gap


def test_list_keys_paging(store):
    keys = [b"88.118.8/%03d" % i for i in range(25)]
    neighbours = [b"88.118.80/X", b"88.118/Y", b"88.118.8.1/Z", b"88.118.7/W", b"88.118.8"]
    store.write([Change(k, b"v") for k in keys + neighbours])
    assert store.list_keys(b"88.118.8") == (25, keys)
    assert store.list_keys(b"88.118.8", 0, 10) == (25, keys[:10])
    assert store.list_keys(b"88.118.8", 10, 10) == (25, keys[10:20])
    assert store.list_keys(b"88.118.8", 20, 10) == (25, keys[20:])
    assert store.list_keys(b"88.118.8", 30, 10) == (25, [])
    assert store.list_keys(b"88.118.8", 0, 0) == (25, [])
    assert store.list_keys(b"88.118.80") == (1, [b"88.118.80/X"])
    assert store.list_keys(b"88.118") == (1, [b"88.118/Y"])
    assert store.list_keys(b"88.118.9") == (0, [])  # lands on no key of its own
    assert store.list_keys(b"ZZZ") == (0, [])  # past the last key
    assert store.list_keys(b"00") == (0, [])  # before the first key


def test_stat(store):
    store.write([Change(b"88/A", b"a"), Change(b"88/B", b"b"), Change(b"88", b"p", prefix=True)])
    store.write([Change(b"88/A", None)])
    assert store.stat() == {"records": 1, "prefixes": 1, "changes": 4}


def test_read_transaction(store):
    store.write([Change(b"88/A", b"a"), Change(b"88", b"p", prefix=True)])
    with store.read() as txn:
        assert txn.get(b"88/A", db=store.records_db) == b"a"
        assert txn.get(b"88", db=store.prefixes_db) == b"p"
        store.write([Change(b"88/A", b"new")])  # readers see their snapshot
        assert txn.get(b"88/A", db=store.records_db) == b"a"
    assert store.get_record(b"88/A") == b"new"


def test_new_store_records_its_format(tmp_path):
    s = LmdbStore(tmp_path / "s", map_size=8 << 20)
    try:
        with s.env.begin(db=s.meta_db) as txn:
            assert txn.get(S.META_FORMAT_VERSION) == str(S.FORMAT_VERSION).encode()
            assert txn.get(S.META_CREATED).isdigit()
    finally:
        s.close()


@pytest.mark.parametrize("stored", [b"3", b"0", b"999", b"v1"])
def test_other_format_version_is_refused(tmp_path, stored):
    path = tmp_path / "s"
    s = LmdbStore(path, map_size=8 << 20)
    s.write([Change(b"88/A", b"a")])
    with s.env.begin(write=True, db=s.meta_db) as txn:
        txn.put(S.META_FORMAT_VERSION, stored)
    s.close()
    for readonly in (False, True):
        with pytest.raises(StoreFormatError) as info:
            LmdbStore(path, map_size=8 << 20, readonly=readonly)
        msg = info.value.message
        assert f"format version {stored.decode()}" in msg
        assert f"version {S.FORMAT_VERSION} only" in msg
        assert str(path) in msg
    # the refusal did not rewrite the stored version
    env = lmdb.open(str(path), max_dbs=8, readonly=True)
    with env.begin() as txn:
        meta = env.open_db(S.META, txn=txn, create=False)
        assert txn.get(S.META_FORMAT_VERSION, db=meta) == stored
    env.close()


def test_store_without_format_version_is_refused_readonly(tmp_path):
    path = tmp_path / "s"
    s = LmdbStore(path, map_size=8 << 20)
    with s.env.begin(write=True, db=s.meta_db) as txn:
        txn.delete(S.META_FORMAT_VERSION)
    s.close()
    with pytest.raises(StoreFormatError, match="format version none"):
        LmdbStore(path, map_size=8 << 20, readonly=True)


def test_lmdb_env_without_idnode_databases_is_refused_readonly(tmp_path):
    env = lmdb.open(str(tmp_path / "foreign"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"some", b"thing")
    env.close()
    with pytest.raises(StoreError):
        LmdbStore(tmp_path / "foreign", map_size=1 << 20, readonly=True)


def test_store_full_rolls_back_and_stays_readable(tmp_path):
    s = LmdbStore(tmp_path / "small", map_size=1 << 20)
    try:
        blob = bytes(range(256)) * 200  # 51200 bytes
        s.write([Change(b"88", b"p", prefix=True)])
        written = []
        with pytest.raises(StoreFull) as info:
            for i in range(200):  # 1 MiB holds ~20 of these: bounded
                key = b"88/K%03d" % i
                s.write([Change(key, blob)])
                written.append(key)
        assert info.value.outcome is Outcome.STORE_FULL
        assert isinstance(info.value, StoreError)
        assert "full" in info.value.message and "map_size" in info.value.message
        assert 5 <= len(written) < 200
        # earlier data intact, the failed write left nothing behind
        for key in written:
            assert s.get_record(key) == blob
        assert s.get_record(b"88/K%03d" % len(written)) is None
        assert s.last_txn_id() == len(written) + 1
        assert [c.key for c in s.changes_since(1)] == written
        assert s.list_keys(b"88") == (len(written), written)
        # still writable for a small change after deleting some data
        assert s.write([Change(written[0], None)]) == len(written) + 2
        assert s.get_record(written[0]) is None
    finally:
        s.close()
    # and the environment reopens cleanly
    s = LmdbStore(tmp_path / "small", map_size=1 << 20, readonly=True)
    try:
        assert s.get_record(written[1]) == blob
    finally:
        s.close()


def test_store_full_batch_is_all_or_nothing(tmp_path):
    s = LmdbStore(tmp_path / "small", map_size=1 << 20)
    try:
        s.write([Change(b"88/FIRST", b"f")])
        big = [Change(b"88/B%03d" % i, b"x" * 50_000) for i in range(40)]  # ~2 MiB
        with pytest.raises(StoreFull):
            s.write(big)
        assert s.list_keys(b"88") == (1, [b"88/FIRST"])
        assert s.last_txn_id() == 1
    finally:
        s.close()


def test_readonly_open_of_missing_store(tmp_path):
    path = tmp_path / "nothing-here"
    with pytest.raises(StoreError) as info:
        LmdbStore(path, readonly=True)
    assert "no store" in info.value.message
    assert not path.exists()  # a read-only open creates nothing


def test_readonly_store_reads(tmp_path):
    s = LmdbStore(tmp_path / "s", map_size=8 << 20)
    s.write([Change(b"88/A", b"a"), Change(b"88", b"p", prefix=True)])
    s.close()
    ro = LmdbStore(tmp_path / "s", map_size=8 << 20, readonly=True)
    try:
        assert ro.get_record(b"88/A") == b"a"
        assert ro.get_prefix(b"88") == b"p"
        assert ro.list_keys(b"88") == (1, [b"88/A"])
        with pytest.raises(StoreError):
            ro.write([Change(b"88/B", b"b")])
    finally:
        ro.close()


# -- format 2: the change log names op, identity and digests; format 1 is upgraded --------------


def test_change_log_records_op_identity_and_digests(tmp_path):
    import hashlib

    s = LmdbStore(tmp_path / "s", map_size=8 << 20)
    try:
        s.write([Change(b"88/A", b"one", op=100)], identity="300:88/ADMIN")
        s.write([Change(b"88/A", b"two", op=104)], identity="300:88/ADMIN")
        s.write([Change(b"88/A", None, op=101)])
        log = list(s.changes_since(0))
        assert [(c.action, c.op, c.identity) for c in log] == [
            (S.ACTION_CREATE, 100, "300:88/ADMIN"), (S.ACTION_UPDATE, 104, "300:88/ADMIN"),
            (S.ACTION_DELETE, 101, "")]  # fmt: skip
        sha = lambda b: hashlib.sha256(b).digest()  # noqa: E731
        assert [(c.before, c.after) for c in log] == [
            (None, sha(b"one")), (sha(b"one"), sha(b"two")), (sha(b"two"), None)]
        assert [c.txn_id for c in s.changes_since(1, limit=1)] == [2]
    finally:
        s.close()


def test_update_plan_sees_its_transaction_and_an_error_rolls_back(tmp_path):
    s = LmdbStore(tmp_path / "s", map_size=8 << 20)
    try:
        s.write([Change(b"88/A", b"a")])

        def plan(view):
            assert view.get_record(b"88/A") == b"a"
            return [Change(b"88/B", b"b")]

        assert s.update(plan) == 2

        def failing(view):
            raise ValueError("refused")

        with pytest.raises(ValueError):
            s.update(failing)
        assert s.get_record(b"88/B") == b"b" and s.last_txn_id() == 2
        with s.view() as view:
            assert view.list_keys(b"88") == (2, [b"88/A", b"88/B"])
    finally:
        s.close()


def test_format_1_store_is_upgraded_by_a_writable_open(tmp_path):
    path = tmp_path / "s"
    env = lmdb.open(str(path), max_dbs=8, map_size=8 << 20)
    with env.begin(write=True) as txn:
        meta = env.open_db(S.META, txn=txn)
        changes = env.open_db(S.CHANGES, txn=txn)
        for db in (S.RECORDS, S.PREFIXES):
            env.open_db(db, txn=txn)
        txn.put(S.META_FORMAT_VERSION, b"1", db=meta)
        txn.put(S.TXN_ID.pack(1), S.CHANGE_V1.pack(S.ACTION_CREATE, 1234) + b"88/OLD", db=changes)
    env.close()
    with pytest.raises(StoreFormatError) as info:
        LmdbStore(path, map_size=8 << 20, readonly=True)
    assert "upgrade" in info.value.message
    s = LmdbStore(path, map_size=8 << 20)
    try:
        (c,) = s.changes_since(0)
        assert (c.txn_id, c.action, c.time_ms, c.key, c.op, c.identity, c.before, c.after) == (
            1, S.ACTION_CREATE, 1234, b"88/OLD", 0, "", None, None)
        s.write([Change(b"88/NEW", b"n")])
        assert [x.key for x in s.changes_since(0)] == [b"88/OLD", b"88/NEW"]
    finally:
        s.close()
    s = LmdbStore(path, map_size=8 << 20, readonly=True)  # now format 2
    s.close()


def test_meta_value_is_created_once(tmp_path):
    s = LmdbStore(tmp_path / "s", map_size=8 << 20)
    try:
        first = s.meta_value(b"k", lambda: b"first")
        assert first == b"first" and s.meta_value(b"k", lambda: b"second") == b"first"
        assert s.meta_value(b"missing") is None
    finally:
        s.close()
