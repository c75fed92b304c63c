"""Import jobs (registry.imports) over a real LMDB store: modes, reports, idempotency, resume.

The store holds the enterprises ``88.118.8`` and ``88.118.9`` (tests/enterprises.py) loaded
with ``idnode load``'s loader; jobs run as ``300:88.118.8/ADMIN``.  Small chunks make every
job span several transactions, so chunk boundaries are exercised.
"""

from __future__ import annotations

import hashlib
import io

import orjson
import pytest

from registry import bulk
from registry.authz import Identity
from registry.imports import Importer, ImportRunning
from registry.service import OPERATOR, Registry
from resolver.errors import AuthenticationNeeded, Forbidden, MalformedRequest, NotResponsible
from resolver.record import unpack
from resolver.store import schema as S
from resolver.store.lmdb_store import LmdbStore
from tests.enterprises import enterprise

A8 = Identity.parse("300:88.118.8/ADMIN")
A9 = Identity.parse("300:88.118.9/ADMIN")


@pytest.fixture
def store(tmp_path):
    s = LmdbStore(tmp_path / "s", map_size=256 << 20)
    lines = [orjson.dumps(x).decode() for x in enterprise("88.118.8", "s8")
             + enterprise("88.118.9", "s9")]  # fmt: skip
    assert bulk.load(s, lines).ok
    yield s
    s.close()


@pytest.fixture
def importer(store):
    return Importer(Registry(store), chunk_lines=40)


def line(i: int, prefix: str = "88.118.8", **extra) -> bytes:
    values = [{"index": 1, "type": "URL", "data": f"https://f.example/p/{i}"},
              {"index": 2, "type": "EMAIL", "data": {"format": "string", "value": "qa@f.example"}},
              {"index": 3, "type": "DESC", "data": f"battery {i} \u7535\u6c60"}]  # fmt: skip
    return orjson.dumps({"handle": f"{prefix}/SN-{i:06d}", "values": values, **extra}) + b"\n"


def body(n: int, bad=frozenset(), start: int = 0) -> bytes:
    out = []
    for i in range(start, start + n):
        if i in bad:
            out.append(b'{"handle": "88.118.8/BAD-%d", "values": [{"index": 0, "type": "URL", '
                       b'"data": "x"}]}\n' % i)  # fmt: skip
        else:
            out.append(line(i))
    return b"".join(out)


def run(importer, data: bytes, *, mode="best-effort", key=None, fmt="jsonl", who=A8, piece=997):
    return importer.run(who, "88.118.8", fmt, mode, io.BytesIO(data), key=key, piece=piece)


def count(store, prefix=b"88.118.8") -> int:
    return store.list_keys(prefix)[0]


def test_best_effort_commits_exactly_the_good_lines_and_reports_every_bad_one(importer, store):
    bad = {5, 57, 99, 140}  # 1 % of 400 — on both sides of chunk boundaries
    before = count(store)
    job = run(importer, body(400, bad))
    assert job["state"] == "done" and job["lines"] == 400
    assert job["committed"] == 396 and job["failed"] == 4
    assert count(store) == before + 396
    assert [e["line"] for e in job["errors"]] == [i + 1 for i in sorted(bad)]
    for e in job["errors"]:
        assert e["handle"].startswith("88.118.8/BAD-") and e["code"] == 202
        assert e["outcome"] == "INVALID_VALUE" and "index" in e["message"]
    for i in set(range(400)) - bad:
        rec = unpack(store.get_record(f"88.118.8/SN-{i:06d}".upper().encode()))
        assert [v.index for v in rec] == [1, 2, 3]
        assert rec[0].data == f"https://f.example/p/{i}".encode()
    for i in bad:
        assert store.get_record(f"88.118.8/BAD-{i}".upper().encode()) is None


def test_change_log_has_one_entry_per_chunk_with_per_identifier_detail(importer, store):
    last = store.last_txn_id()
    run(importer, body(100, {50}) + line(3))  # line 101 exists by then: refused, not logged
    entries = list(store.changes_since(last))
    assert [c.action for c in entries] == [S.ACTION_IMPORT] * 3
    # chunks of at least chunk_lines (40) lines, ending where a piece of the body ended,
    # contiguous from the first line to the last
    spans = [tuple(map(int, c.key.decode().split(":")[2].split("-"))) for c in entries]
    assert spans[0][0] == 1 and spans[-1][1] == 101
    assert all(b[0] == a[1] + 1 for a, b in zip(spans, spans[1:]))
    assert all(hi - lo + 1 >= 40 for lo, hi in spans[:-1])
    assert all(c.identity == "300:88.118.8/ADMIN" and c.op == 0 for c in entries)
    assert [k for c in entries for k in c.detail] == [
        f"88.118.8/SN-{i:06d}".upper().encode() for i in range(100) if i != 50]
    for c in entries:  # "after" digests the chunk's records, in the order of the detail
        assert c.before is None
        assert hashlib.sha256(b"".join(store.get_record(k) for k in c.detail)).digest() == c.after


def test_atomic_with_bad_lines_commits_nothing_and_reports_all(importer, store):
    before, last = count(store), store.last_txn_id()
    job = run(importer, body(200, {3, 150}), mode="atomic")
    assert job["state"] == "failed" and job["committed"] == 0 and job["failed"] == 2
    assert [e["line"] for e in job["errors"]] == [4, 151]
    assert count(store) == before
    assert not [c for c in store.changes_since(last) if c.key.startswith(b"88.118.8/")]


def test_atomic_good_file_commits_everything(importer, store):
    before = count(store)
    job = run(importer, body(150), mode="atomic")
    assert (job["state"], job["committed"], job["failed"]) == ("done", 150, 0)
    assert count(store) == before + 150


def test_atomic_conflict_seen_only_at_commit_rolls_everything_back(importer, store):
    # line 101 repeats line 8's identifier: the check pass rolls back each chunk, so only
    # the commit pass sees it (in one chunk: the body is replayed in 1 MiB pieces)
    data = body(100) + line(7)
    before = count(store)
    job = run(importer, data, mode="atomic")
    assert job["state"] == "failed" and job["committed"] == 0
    assert [e["line"] for e in job["errors"]] == [101]
    assert job["errors"][0]["message"] == "the same identifier is on line 8 of this import"
    assert count(store) == before
    # seen only at commit, across chunks: a duplicate of an identifier created meanwhile
    im = Importer(importer.registry, chunk_lines=40)
    session = im.open(A8, "88.118.8", "jsonl", "atomic")
    try:
        session.feed(body(60, start=1000))
        run(importer, line(1050))  # another writer creates line 51's identifier
        job = session.close()
    finally:
        session.release()
    assert job["state"] == "failed" and job["committed"] == 0
    assert [(e["line"], e["code"]) for e in job["errors"]] == [(51, 101)]
    assert count(store) == before + 1  # only the other writer's identifier


def test_existing_identifiers_and_duplicates_in_one_chunk(importer, store):
    run(importer, body(10))
    job = run(importer, body(5, start=8) + line(20) + line(20))
    assert job["committed"] == 4  # 8 and 9 exist; 10, 11, 12 and 20 (once) are new
    assert sorted(e["line"] for e in job["errors"]) == [1, 2, 7]
    msgs = {e["line"]: e for e in job["errors"]}
    assert msgs[1]["outcome"] == "ALREADY_EXISTS" and msgs[7]["outcome"] == "MALFORMED"


def test_lines_not_under_the_prefix_and_malformed_lines(importer, store):
    data = line(1) + line(2, prefix="88.118.9") + b"not json\n" + b"\n# comment\n" + line(3)
    job = run(importer, data)
    assert job["committed"] == 2
    errs = {e["line"]: e for e in job["errors"]}
    assert set(errs) == {2, 3}
    assert errs[2]["outcome"] == "INVALID_IDENTIFIER" and "not under" in errs[2]["message"]
    assert (errs[3]["code"], errs[3]["outcome"]) == (4, "MALFORMED")


def test_idempotency_key_replays_the_first_job(importer, store):
    first = run(importer, body(60, {10}), key="job-1")
    last = store.last_txn_id()
    again = run(importer, body(60, {10}), key="job-1")
    assert again["replayed"] and again["id"] == first["id"]
    assert (again["committed"], again["failed"]) == (59, 1)
    assert store.last_txn_id() == last  # nothing written
    with pytest.raises(MalformedRequest):
        run(importer, body(60), key="job-1", mode="atomic")
    assert importer.find(A8, "job-1")["id"] == first["id"]
    assert importer.find(A9, "job-1") is None  # keys are per identity


def test_resume_after_an_interrupted_job_keeps_every_line_exactly_once(store):
    data = body(130, {60})
    im1 = Importer(Registry(store), chunk_lines=40)
    session = im1.open(A8, "88.118.8", "jsonl", "best-effort", "resume-1")
    cut = data.index(b"\n", len(data) * 2 // 3) + 1
    fed = data[:cut].count(b"\n")  # whole lines, 61 among them
    session.feed(data[:cut])  # a chunk (≥ 40 lines) committed, then the worker "dies"
    session.feed(b'{"handle": "88.118.8/SN-0')  # and a line it never finished
    session.release()
    mid = im1.find(A8, "resume-1")
    assert mid["state"] == "interrupted" and mid["done"] == fed and mid["committed"] == fed - 1
    im2 = Importer(Registry(store), chunk_lines=40)  # a restarted worker
    job = run(im2, data, key="resume-1")
    assert job["state"] == "done" and job["skipped"] == fed
    assert (job["committed"], job["failed"]) == (129, 1)
    assert [e["line"] for e in job["errors"]] == [61]  # not reported twice, nothing "exists"
    for i in set(range(130)) - {60}:
        assert store.get_record(f"88.118.8/SN-{i:06d}".upper().encode()) is not None


def test_a_running_job_of_the_same_key_is_refused(importer):
    session = importer.open(A8, "88.118.8", "jsonl", "best-effort", "busy")
    try:
        with pytest.raises(ImportRunning):
            importer.open(A8, "88.118.8", "jsonl", "best-effort", "busy")
    finally:
        session.release()


def test_authorization(importer):
    with pytest.raises(AuthenticationNeeded):
        importer.open(None, "88.118.8")
    with pytest.raises(Forbidden):
        importer.open(A9, "88.118.8")
    with pytest.raises(NotResponsible):
        importer.open(A8, "88.118.77")
    job = run(importer, body(3), who=OPERATOR)
    assert job["committed"] == 3
    assert importer.get(A9, job["id"]) is None and importer.get(A8, job["id"]) is None
    assert importer.get(OPERATOR, job["id"])["committed"] == 3


def test_csv_import(importer, store):
    data = ("handle,1:URL,2:EMAIL\n"
            "88.118.8/C-1,https://f.example/1,a@f.example\n"
            "88.118.8/C-2,https://f.example/2,\n"
            "88.118.8/C-3,https://f.example/3,c@f.example,extra\n").encode()  # fmt: skip
    job = run(importer, data, fmt="csv")
    assert job["committed"] == 2 and [e["line"] for e in job["errors"]] == [4]
    rec = unpack(store.get_record(b"88.118.8/C-2"))
    assert [(v.index, v.type, v.data) for v in rec] == [(1, "URL", b"https://f.example/2")]


def test_bad_csv_header_fails_the_job(importer, store):
    before = count(store)
    job = run(importer, b"1:URL,2:EMAIL\nx,y\n", fmt="csv")
    assert job["state"] == "failed" and job["committed"] == 0
    assert job["errors"][0]["line"] == 1 and "handle" in job["errors"][0]["message"]
    assert count(store) == before


BATTERY = {"name": "battery", "fields": [
    {"name": "serial", "type": "char", "maxLength": 8, "required": True, "unique": True},
    {"name": "made", "type": "date", "required": True, "grade": "important"}]}  # fmt: skip


def templated(i: int, serial: str, made: str = "2026-03-01") -> bytes:
    values = [{"index": 1, "type": "URL", "data": f"https://f.example/t/{i}"},
              {"index": 1001, "type": "TEMPLATE", "data": "88.118.8/battery/1"},
              {"index": 2000, "type": "serial", "data": serial},
              {"index": 2001, "type": "made", "data": made}]  # fmt: skip
    return orjson.dumps({"handle": f"88.118.8/T-{i}", "values": values}) + b"\n"


def test_template_lines_are_validated_field_by_field(importer, store):
    tpl = importer.registry.templates
    tpl.publish(A8, "88.118.8", "battery", tpl.define(A8, "88.118.8", BATTERY).version)
    data = b"".join([templated(0, "S-0"), templated(1, "S-1", made="2026-02-30"),
                     templated(2, "S-0"),  # unique within the prefix: S-0 is line 1's
                     body(45, start=500),  # the next chunk starts inside these
                     templated(3, "S-3"), templated(4, "S-1")])  # S-1 was refused: free
    job = run(importer, data)
    errs = {e["line"]: e for e in job["errors"]}
    assert set(errs) == {2, 3} and job["committed"] == 48
    assert errs[2]["code"] == 202 and "made" in errs[2]["message"]
    assert errs[3]["code"] == 202 and "serial" in errs[3]["message"]
    made = [v for v in unpack(store.get_record(b"88.118.8/T-0")) if v.index == 2001][0]
    assert not made.public_read  # "important": the grade's permissions were applied


def test_only_a_live_other_process_holds_a_job(store):
    """A job another live process runs is refused (409); one whose process is gone — or that
    its worker gave up when the client went away — is resumed by any process."""
    from registry import imports

    im = Importer(Registry(store), chunk_lines=40)
    session = im.open(A8, "88.118.8", "jsonl", "best-effort", "held")
    session.feed(body(50))
    session._wait()  # its chunk is committed
    state = session.state
    state.owner = f"1:{imports._start_time(1)}"  # as if pid 1 (alive) were running it
    session._save_state()
    im._running.discard(state.id)
    with pytest.raises(ImportRunning):
        Importer(Registry(store)).open(A8, "88.118.8", "jsonl", "best-effort", "held")
    state.owner = "999999999:1"  # a process that is gone
    session._save_state()
    assert im.find(A8, "held")["state"] == "interrupted"
    job = run(Importer(Registry(store), chunk_lines=40), body(60), key="held")
    assert (job["state"], job["committed"], job["skipped"]) == ("done", 60, 50)
    session.release()
