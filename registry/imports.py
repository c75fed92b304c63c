"""Import jobs: JSON Lines or CSV bodies of new identifiers, streamed into the store.

Owns ``Importer`` (one per store) and ``ImportSession`` (one running job): lines arrive in byte
pieces of any size (``feed``), are parsed by ``registry.import_lines``, encoded into stored
records at once (``resolver.record.pack_from_json``: the native encoder where it pays) and
committed in chunks of ``chunk_lines`` identifiers, each chunk ONE write transaction of sorted
create-only puts (``LmdbStore.insert``).  Memory is bounded by one chunk of encoded records,
never by the body.

Modes (issue 5):

``best-effort``  every good line commits; a bad line (unparsable, invalid value, not under the
                 job's prefix, already existing, refused by its template) is reported with its
                 line number, identifier, outcome code and message.
``atomic``       all or nothing.  The body is spooled to a temporary file while every chunk is
                 checked in a write transaction that is then rolled back (a dry run: existence,
                 templates and uniqueness are seen exactly as a commit would see them); with any
                 bad line the job fails, reporting every bad line, and nothing was ever written.
                 Otherwise the spool is committed chunk by chunk.  A conflict that only a commit
                 can see (the same identifier in two chunks, a concurrent writer, a full store)
                 rolls back: every identifier the job created is deleted again (logged) before the
                 job answers "failed".  Readers may see an atomic job's identifiers while it
                 commits — atomic is about the outcome, not isolation: one multi-gigabyte write
                 transaction would hold the writer lock for minutes and its dirty pages in RAM.

Durability and resumption.  A job's state lives in the store's ``meta`` database and every
chunk writes it in the transaction that commits the chunk, so after ``kill -9`` the state says
exactly which lines are handled (``done``: every line up to it is committed or reported)::

    import:job:<id>                       orjson job state (see ``_State``)
    import:err:<id>:<line, 10 digits>     orjson {"line", "handle", "code", "outcome", "message"}
    import:key:<hex of sha256(identity NUL key)[:20]>   the job id of an Idempotency-Key

A request with the Idempotency-Key of a finished job answers that job and writes nothing.
With the key of an interrupted job (its worker died) it resumes: the client sends the same
body again and lines up to ``done`` are skipped (``skipped``), so every line ends up present
exactly once.  A job still running in a live process answers ``ImportRunning`` (HTTP 409).
The change log gets the per-identifier CREATE entries and one ``ACTION_IMPORT`` entry per
committed chunk (schema.CHANGES).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Callable

import orjson

from registry.authz import Op
from registry.import_lines import Encoded, LineParser
from registry.service import OPERATOR, Registry, _who
from resolver.errors import (
    AlreadyExists, AuthenticationNeeded, IdnodeError, InvalidIdentifier, InvalidValue,
    MalformedRequest, NotResponsible, Outcome, StoreFull,
)  # fmt: skip
from resolver.identifier import Identifier, key_of
from resolver.protocols.handle.codes import RC_FOR
from resolver.record import TEMPLATE_INDEX, Record, fast_csv, fast_jsonl, pack, pack_fast
from resolver.store import Change
from resolver.valuejson import value_from_json

MODES = ("best-effort", "atomic")
FORMATS = ("jsonl", "csv")
#: Identifiers per write transaction: large enough that the commit (two fsyncs) is a small
#: share of the chunk's time, small enough that a chunk's encoded records stay a few MB.
CHUNK_LINES = 20_000
#: Errors listed in a job answer; the rest are paged through ``errors(after=...)``.
MAX_LISTED_ERRORS = 10_000

_JOB = b"import:job:"
_ERR = b"import:err:"
_KEY = b"import:key:"


class ImportRunning(IdnodeError):
    """An import job with this Idempotency-Key is running"""

    outcome = Outcome.ALREADY_EXISTS  # HTTP 409: the job exists and is running


#: CPU niceness of import threads: on a busy node the scheduler runs the threads that answer
#: resolutions first (Linux schedules threads, not processes, so a worker's event loop keeps
#: its priority while its import threads yield); an import only slows down.
IMPORT_NICE = 10


def background() -> None:
    """Run the calling thread at ``IMPORT_NICE`` (a thread initializer; best effort)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), IMPORT_NICE)
    except (OSError, AttributeError):
        pass


def _process_tag() -> str:
    """``pid:start time`` of this process: a pid reused after a crash does not match."""
    return f"{os.getpid()}:{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    """The start time of a live process (``/proc/<pid>/stat`` field 22); "?" when there is
    none — or only its zombie, which a killed worker stays until it is reaped."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        fields = stat[stat.rfind(b")") + 2 :].split()
        return "?" if fields[0] in (b"Z", b"X") else fields[19].decode()
    except (OSError, IndexError):
        return "?"


def _alive(tag: str) -> bool:
    pid, _, start = tag.partition(":")
    try:
        return _start_time(int(pid)) == start and start != "?"
    except ValueError:
        return False


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


@dataclasses.dataclass
class _State:
    """A job's durable state (``import:job:<id>``)."""

    id: str
    key: str | None
    who: str
    prefix: str
    format: str
    mode: str
    state: str = "running"  # running | done | failed
    phase: str = "import"  # import (best-effort), check / commit / rollback (atomic)
    lines: int = 0  # the highest line number read
    done: int = 0  # every line up to this one is committed or reported
    committed: int = 0
    failed: int = 0
    skipped: int = 0
    started_ms: int = 0
    updated_ms: int = 0
    owner: str = ""  # _process_tag of the process running it
    error: str = ""  # a job-level failure (bad CSV header, rollback after a conflict)

    def to_bytes(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self))

    @classmethod
    def from_bytes(cls, data: bytes) -> "_State":
        return cls(**orjson.loads(data))


def job_figures(store):
    """``(state, committed, failed)`` of every import job kept in ``store`` (for metrics); a
    running job whose process is gone is "interrupted", as ``Importer.get`` shows it."""
    for _key, value in store.meta_scan(_JOB):
        job = _State.from_bytes(value)
        state = "interrupted" if job.state == "running" and not _alive(job.owner) else job.state
        yield state, job.committed, job.failed


@dataclasses.dataclass(slots=True)
class _Pending:
    """Encoded lines waiting for their chunk: the fast ones as stored bytes, the templated
    ones as records still to be checked in the transaction.  ``items`` holds exactly the
    ``(key, stored record)`` pairs the store takes; which line each came from is kept in
    ``where`` (lines encoded one by one) and ``blocks`` (natively encoded regions), and only
    looked up for the rare line that fails (refused, or the same identifier twice)."""

    items: list = dataclasses.field(default_factory=list)  # (key, blob)
    where: dict = dataclasses.field(default_factory=dict)  # key → (line, handle, blob)
    blocks: list = dataclasses.field(default_factory=list)  # import_lines.Encoded
    templated: list = dataclasses.field(default_factory=list)  # (ident, record, line, handle)
    errors: list = dataclasses.field(default_factory=list)  # (line, handle, IdnodeError)
    first: int = 0  # first line number in the chunk
    last: int = 0
    _sorted: bool = False
    _lines: dict | None = None

    def __len__(self) -> int:
        return len(self.items) + len(self.templated) + len(self.errors)

    def note(self, number: int) -> None:
        if not self.first or number < self.first:
            self.first = number

    def add(self, key: bytes, blob: bytes, number: int, handle: str) -> None:
        """A line encoded one by one (a repeat of such a line is refused here at once)."""
        seen = self.where.get(key)
        if seen is not None:
            self.errors.append((number, handle, _twice(seen[0])))
            return
        self.where[key] = (number, handle, blob)
        self.items.append((key, blob))

    def _occurrences(self) -> dict:
        """key → [(line, handle-or-(block, j), record)] over the blocks and the single lines."""
        found: dict = {}
        for b in self.blocks:
            for j, (k, blob) in enumerate(b.pairs):
                found.setdefault(k, []).append((b.first + b.taken[j], (b, j), blob))
        return found

    def line_of(self, key: bytes) -> tuple[int, str | None]:
        """(line number, handle) of the line of ``key`` that stayed in this chunk."""
        single = self.where.get(key)
        if self._lines is None:
            self._lines = self._occurrences()
        block = self._lines.get(key)
        if block is None or (single is not None and single[0] < block[0][0]):
            return None if single is None else single[:2]
        number, (b, j), _blob = min(block, key=lambda o: o[0])
        return number, b.handle(j)

    def sorted(self) -> list:
        """The items sorted by key, each identifier once — its first line stays, the later
        ones become errors (once, outside the write transaction: a plan may run twice)."""
        if self._sorted:
            return self.items
        self._sorted = True
        self.items.sort()
        if len(dict(self.items)) == len(self.items):  # no key twice (checked in C)
            return self.items
        found = self._lines = self._occurrences()
        unique: list = []
        for key, _blob in self.items:
            if unique and unique[-1][0] == key:
                continue
            lines = sorted(found.get(key, []), key=lambda o: o[0])
            single = self.where.get(key)
            if single is not None:
                lines = sorted(lines + [single], key=lambda o: o[0])
            first, rest = lines[0], lines[1:]
            unique.append((key, first[2]))
            for number, who, _b in rest:
                handle = who if not isinstance(who, tuple) else who[0].handle(who[1])
                self.errors.append((number, handle, _twice(first[0])))
        self.items = unique
        return unique


class _DryRun(Exception):
    """Raised at the end of an atomic check chunk to roll its transaction back."""

    def __init__(self, refused: list, errors: list) -> None:
        super().__init__("dry run")
        self.refused, self.errors = refused, errors


class Importer:
    """Import jobs of one store, for identities authorized by ``registry``."""

    def __init__(self, registry: Registry, *, chunk_lines: int = CHUNK_LINES,
                 spool_dir: str | None = None) -> None:  # fmt: skip
        self.registry = registry
        self.store = registry.store
        self.chunk_lines = chunk_lines
        self.spool_dir = spool_dir
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._tag = _process_tag()
        #: Threads for a front-end to run sessions' ``feed``/``close`` in (background priority)
        self.executor = ThreadPoolExecutor(4, thread_name_prefix="import",
                                           initializer=background)  # fmt: skip

    # -- jobs ----------------------------------------------------------------------------------
    def open(self, identity, prefix: str, fmt: str = "jsonl", mode: str = "best-effort",
             key: str | None = None) -> "ImportSession | dict":  # fmt: skip
        """Start (or resume) a job; a finished job of the same key is answered as its dict."""
        if identity is None:
            raise AuthenticationNeeded("Authentication needed")
        if fmt not in FORMATS:
            raise MalformedRequest(f"format must be one of {', '.join(FORMATS)}")
        if mode not in MODES:
            raise MalformedRequest(f"mode must be one of {', '.join(MODES)}")
        if key is not None and not 0 < len(key) <= 255:
            raise MalformedRequest("Idempotency-Key must be 1 to 255 characters")
        ident = self.registry.parse(f"0.NA/{prefix}")  # a valid prefix, normalised
        prefix_key = ident.suffix_key
        who = _who(identity)
        self._authorize(identity, prefix)
        key_name = _KEY + hashlib.sha256(f"{who}\0{key}".encode()).hexdigest()[:40].encode() \
            if key is not None else None
        with self._lock:
            if key_name is not None:
                found = self.store.meta_value(key_name)
                if found is not None:
                    state = self._state(found.decode())
                    if state is not None:
                        if (state.prefix, state.format, state.mode) != (prefix, fmt, mode):
                            raise MalformedRequest("Idempotency-Key already used for another "
                                                   "import")  # fmt: skip
                        if state.state != "running":
                            return self.describe(state, replayed=True)
                        if state.id in self._running or (
                                state.owner != self._tag and _alive(state.owner)):
                            raise ImportRunning(f"import job {state.id} with this "
                                                "Idempotency-Key is running")  # fmt: skip
                        self._running.add(state.id)
                        state.owner = self._tag
                        return ImportSession(self, identity, state, prefix_key, resumed=True)
            now = int(time.time() * 1000)
            state = _State(secrets.token_hex(8), key, who, prefix, fmt, mode,
                           phase="import" if mode == "best-effort" else "check",
                           started_ms=now, updated_ms=now, owner=self._tag)  # fmt: skip
            self._save(state, key_name)
            self._running.add(state.id)
            return ImportSession(self, identity, state, prefix_key)

    def run(self, identity, prefix: str, fmt: str, mode: str, source: BinaryIO, *,
            key: str | None = None, progress: Callable[[dict], None] | None = None,
            piece: int = 1 << 20) -> dict:  # fmt: skip
        """A whole job from a binary file object (``idnode import --data``)."""
        session = self.open(identity, prefix, fmt, mode, key)
        if isinstance(session, dict):
            return session
        session.progress = progress
        try:
            while data := source.read(piece):
                session.feed(data)
            return session.close()
        finally:
            session.release()

    def get(self, identity, job_id: str) -> dict | None:
        """A job's dict for the identity that ran it (or a server admin / the operator)."""
        state = self._state(job_id)
        if state is None or not self._may_see(identity, state):
            return None
        return self.describe(state)

    def find(self, identity, key: str) -> dict | None:
        """The job of an Idempotency-Key of this identity."""
        if identity is None:
            raise AuthenticationNeeded("Authentication needed")
        name = _KEY + hashlib.sha256(f"{_who(identity)}\0{key}".encode()).hexdigest()[:40].encode()
        found = self.store.meta_value(name)
        return None if found is None else self.get(identity, found.decode())

    def errors(self, job_id: str, after: int = 0, limit: int = MAX_LISTED_ERRORS) -> list[dict]:
        base = _ERR + job_id.encode() + b":"
        start = f"{after:010d}".encode() if after else b""
        return [orjson.loads(v) for _k, v in self.store.meta_scan(base, start, limit)]

    def describe(self, state: _State, *, replayed: bool = False, errors: bool = True) -> dict:
        """The job as the API shows it (see the module docstring of registry.import_cli);
        ``errors=False``: without the error list (progress reports)."""
        shown = state.state
        if shown == "running" and state.id not in self._running and not _alive(state.owner):
            shown = "interrupted"
        listed = self.errors(state.id, 0, MAX_LISTED_ERRORS + 1) if errors else []
        return {
            "id": state.id, "key": state.key, "prefix": state.prefix, "format": state.format,
            "mode": state.mode, "state": shown, "phase": state.phase, "lines": state.lines,
            "done": state.done, "committed": state.committed, "failed": state.failed,
            "skipped": state.skipped, "startedAt": _iso(state.started_ms),
            "updatedAt": _iso(state.updated_ms),
            "elapsed": round((state.updated_ms - state.started_ms) / 1000, 3),
            "replayed": replayed, "message": state.error,
            "errors": listed[:MAX_LISTED_ERRORS],
            "errorsTruncated": len(listed) > MAX_LISTED_ERRORS,
        }  # fmt: skip

    # -- internals ---------------------------------------------------------------------------
    def _state(self, job_id: str) -> _State | None:
        found = self.store.meta_value(_JOB + job_id.encode("utf-8", "replace"))
        return None if found is None else _State.from_bytes(found)

    def _save(self, state: _State, key_name: bytes | None = None) -> None:
        def plan(view):
            view.put_meta(_JOB + state.id.encode(), state.to_bytes())
            if key_name is not None:
                view.put_meta(key_name, state.id.encode())
            return []

        self.store.update(plan, state.who)

    def _may_see(self, identity, state: _State) -> bool:
        if identity is None:
            return False
        if identity is OPERATOR or _who(identity) == state.who:
            return True
        with self.store.view() as view:
            return self.registry._authorizer(view).is_server_admin(identity)

    def _authorize(self, identity, prefix: str, view=None) -> None:
        """The prefix must be homed here and the identity allowed to create under it
        (handle.md §2.3 ADD_HANDLE on ``0.NA/<prefix>``, registry.authz)."""
        if view is None:
            with self.store.view() as v:
                return self._authorize(identity, prefix, v)
        ident = self.registry.parse(f"0.NA/{prefix}")
        if view.get_prefix(ident.suffix_key) is None:
            raise NotResponsible(f"prefix {prefix} is not homed here")
        # Any new handle under the prefix asks the same question of 0.NA/<prefix>; the name
        # below is only the operand (an existing handle of that name would be asked more).
        self.registry._check(self.registry._authorizer(view), identity, Op.CREATE_HANDLE,
                             f"{prefix}/.import")  # fmt: skip


class ImportSession:
    """One running job: ``feed`` byte pieces, then ``close`` → the job dict; ``release``
    always (it frees the job for a resume by another request)."""

    def __init__(self, importer: Importer, identity, state: _State, prefix_key: bytes, *,
                 resumed: bool = False) -> None:  # fmt: skip
        self.im = importer
        self.identity = identity
        self.state = state
        self.prefix_key = prefix_key
        self._under = prefix_key + b"/"
        self.parser = LineParser(state.format)
        self._encoder_second = -1
        self.pending = _Pending()
        self.progress: Callable[[dict], None] | None = None
        self.case_sensitive = importer.registry.case_sensitive
        self.skip_through = state.done if resumed else 0
        if resumed:
            state.skipped = state.done
        self.atomic = state.mode == "atomic"
        self.spool = None
        if self.atomic:
            self.spool = tempfile.TemporaryFile(dir=importer.spool_dir)
            if resumed and state.phase in ("commit", "rollback"):
                pass  # committed lines are skipped when committing; rollback needs them all
            else:  # the check starts again from the first line (its error rows are rewritten)
                state.phase, self.skip_through, state.skipped, state.failed = "check", 0, 0, 0
        self._failed_fast = False
        self._committer: ThreadPoolExecutor | None = None
        self._inflight: Future | None = None

    # -- streaming -----------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self.spool is not None:
            self.spool.write(data)
        now = int(time.time())
        if now != self._encoder_second:  # the native encoders stamp values with ``now``
            self._encoder_second = now
            self.parser.fast = self._fast(now)
        try:
            lines = self.parser.feed(data)
        except IdnodeError as exc:  # a job-level error, e.g. a bad CSV header
            self._fail_job(exc)
            return
        self._take(lines)

    def close(self) -> dict:
        try:
            if not self._failed_fast:
                try:
                    self._take(self.parser.close())
                except IdnodeError as exc:
                    self._fail_job(exc)
            if not self._failed_fast:
                self._flush()
                self._wait()
                if self.atomic:
                    self._finish_atomic()
                else:
                    self.state.state = "done"
                    self._save_state()
            return self.im.describe(self.state)
        finally:
            if self.spool is not None:
                self.spool.close()

    def release(self) -> None:
        """Always, after ``close`` or a failure: stop the committer (a chunk in flight still
        commits: a client that went away leaves an interrupted job, resumable), free the job."""
        if self._committer is not None:
            self._committer.shutdown(wait=True)
            self._committer = None
        try:
            if self.state.state == "running":  # abandoned (the client went away): no owner,
                self._disown()  # so any worker may resume it, not only this one
        finally:
            with self.im._lock:
                self.im._running.discard(self.state.id)

    # -- lines ---------------------------------------------------------------------------------
    def _take(self, lines) -> None:
        """The inner loop of an import (issue 5 §4), kept flat: most lines arrive already
        encoded (``Encoded`` blocks of JSON Lines, ``(key, record)`` CSV rows).  A chunk is
        handed on only after a whole ``lines`` list, so that ``done`` (the chunk's last line)
        never passes a line of the same region still unhandled."""
        if self._failed_fast or not lines:
            return
        st, p = self.state, self.pending
        skip, under, cs = self.skip_through, self._under, self.case_sensitive
        now = int(time.time())
        items = p.items
        for number, handle, values, error in lines:
            if number <= skip:
                continue
            if error is not None:
                p.note(number)
                p.errors.append((number, handle, error))
            elif type(values) is Encoded:
                if values.first <= skip:
                    values = _after(values, skip)
                p.note(max(values.first, skip + 1))
                items.extend(values.pairs)
                p.blocks.append(values)
            elif type(values) is tuple:  # a CSV row the native encoder took
                p.note(number)
                if values[0].startswith(under):
                    p.add(values[0], values[1], number, handle)
                else:
                    p.errors.append((number, handle, self._outside(handle)))
            else:
                p.note(number)
                try:
                    key = key_of(handle, case_sensitive=cs)
                    blob = pack_fast(values, now) if key.startswith(under) else None
                    if blob is not None:
                        p.add(key, blob, number, handle)
                    else:
                        self._encode(key, number, handle, values, now)
                except IdnodeError as exc:
                    p.errors.append((number, handle, exc))
        st.lines = lines[-1][0]
        if len(p):
            p.last = st.lines
        if len(p) >= self.im.chunk_lines:
            self._flush()

    def _fast(self, now: int):
        if self.parser.fmt == "csv":
            return fast_csv(now, self.case_sensitive, self._under, self.parser.max_line)
        return fast_jsonl(now, self.case_sensitive, self._under, self.parser.max_line)

    def _outside(self, handle: str) -> IdnodeError:
        return InvalidIdentifier(f"{handle} is not under the prefix {self.state.prefix} "
                                 "of this import")  # fmt: skip

    def _encode(self, key: bytes, number: int, handle: str, values, now: int) -> None:
        """A line the native encoder declined: not under the prefix, an error, a value shape
        it does not take, or a template (checked later, in the chunk's transaction)."""
        if not key.startswith(self._under):
            raise self._outside(handle)
        record = Record(value_from_json(v, now=now) for v in _listed(values)).validate()
        if any(v.index == TEMPLATE_INDEX for v in record):
            ident = Identifier.parse(handle, case_sensitive=self.case_sensitive)
            self.pending.templated.append((ident, record, number, handle))
            return
        self.pending.add(key, pack(record), number, handle)

    # -- chunks --------------------------------------------------------------------------------
    def _flush(self) -> None:
        """Hand the pending chunk on.  Best-effort chunks commit in the session's committer
        thread while the next chunk is parsed (LMDB's commit waits for the disk without the
        GIL); one chunk in flight at most, so memory stays two chunks."""
        p = self.pending
        if not len(p):
            return
        self.pending = _Pending()
        if self.atomic:
            if self.state.phase == "check":
                self._check_chunk(p)
            else:
                self._commit_chunk(p)
            self._report()
            return
        self._wait()
        if self._committer is None:
            self._committer = ThreadPoolExecutor(1, thread_name_prefix="import-commit",
                                                 initializer=background)  # fmt: skip
        self._inflight = self._committer.submit(self._commit_and_report, p)

    def _commit_and_report(self, p: _Pending) -> None:
        self._commit_chunk(p)
        self._report()

    def _wait(self) -> None:
        """Until the chunk in flight is committed; its failure is raised here."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            inflight.result()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.im.describe(self.state, errors=False))

    def _plan(self, p: _Pending, view):
        """Inside the chunk's write transaction: authorize, check the templated lines (they
        need the transaction's view: templates write their unique index there), merge them
        in.  → (items sorted by key, errors, line_of).  Leaves ``p`` as it was: the plan runs
        again when the store retries the chunk."""
        self.im._authorize(self.identity, self.state.prefix, view)
        items = p.sorted()
        if not p.templated:
            return items, p.errors, p.line_of
        errors, lines = list(p.errors), {}
        keys = {k for k, _ in items}
        templates = getattr(self.im.registry, "templates", None)
        checked = []
        for ident, record, number, handle in p.templated:
            try:
                if ident.key in keys:
                    raise _twice(p.line_of(ident.key)[0])
                if ident.key in lines:
                    raise _twice(lines[ident.key][0])
                if view.get_record(ident.key) is not None:
                    raise _exists()
                if templates is not None:
                    record = templates.apply(view, ident, record, None)
                checked.append((ident.key, pack(record)))
                lines[ident.key] = (number, handle)
            except IdnodeError as exc:
                errors.append((number, handle, exc))
        return sorted(items + checked), errors, lambda k: lines.get(k) or p.line_of(k)

    @staticmethod
    def _refused(line_of, items: list, refused: list) -> list:
        """The error rows of items the store refused (their identifiers exist)."""
        return [(*line_of(items[i][0]), _exists()) for i in refused]

    def _commit_chunk(self, p: _Pending) -> None:
        st = self.state
        outcome: dict = {}

        def plan(view):
            items, errors, line_of = self._plan(p, view)

            def finish(view, refused):
                failed = errors + self._refused(line_of, items, refused)
                if self.atomic and failed:
                    raise _DryRun(refused, failed)  # a conflict only the commit sees
                for number, handle, exc in failed:
                    view.put_meta(*_error_row(st.id, number, handle, exc))
                new = dataclasses.replace(st, done=p.last, committed=st.committed + len(items)
                                          - len(refused), failed=st.failed + len(failed),
                                          updated_ms=int(time.time() * 1000))  # fmt: skip
                view.put_meta(_JOB + st.id.encode(), new.to_bytes())
                outcome["state"] = new

            return items, finish, f"import:{st.id}:{p.first}-{p.last}".encode()

        try:
            self.im.store.insert(plan, st.who)
        except _DryRun as conflict:
            self._rollback(conflict.errors)
            return
        except StoreFull as exc:
            if self.atomic:
                self._rollback([], str(exc))
                return
            raise
        new = outcome["state"]
        st.done, st.committed, st.failed, st.updated_ms = (new.done, new.committed, new.failed,
                                                           new.updated_ms)  # fmt: skip

    def _check_chunk(self, p: _Pending) -> None:
        """Atomic, first pass: the chunk as a commit would see it, rolled back."""
        st = self.state

        def plan(view):
            items, errors, line_of = self._plan(p, view)

            def finish(view, refused):
                raise _DryRun(refused, errors + self._refused(line_of, items, refused))

            return items, finish, b""

        try:
            self.im.store.insert(plan, st.who)
        except _DryRun as dry:
            if dry.errors:
                self._record_errors(dry.errors)
        st.done = p.last
        st.updated_ms = int(time.time() * 1000)

    def _record_errors(self, errors: list) -> None:
        st = self.state
        st.failed += len(errors)

        def plan(view):
            for number, handle, exc in errors:
                view.put_meta(*_error_row(st.id, number, handle, exc))
            view.put_meta(_JOB + st.id.encode(), st.to_bytes())
            return []

        self.im.store.update(plan, st.who)

    def _finish_atomic(self) -> None:
        st = self.state
        if st.phase == "check":
            if st.failed:
                st.state, st.error = "failed", "atomic import: bad lines, nothing committed"
                self._save_state()
                return
            st.phase, self.skip_through = "commit", 0
            self._save_state()
        elif st.phase == "rollback":
            self._rollback([], st.error or "rolled back")
            return
        # Second pass over the spool: commit (lines up to ``done`` of an earlier run are in).
        self.skip_through = st.done if st.committed else 0
        self._replay(commit=True)
        if st.state == "running":
            st.state = "done"
            self._save_state()

    def _replay(self, *, commit: bool) -> None:
        """Read the spool again, through the parser, into commit chunks (or rollback)."""
        assert self.spool is not None
        self.spool.seek(0)
        parser = LineParser(self.state.format)
        parser.fast = self._fast(int(time.time())) if commit else None
        keys: list[bytes] = []
        while data := self.spool.read(1 << 20):
            lines = parser.feed(data)
            if commit:
                self._take(lines)
                if self.state.state != "running":
                    return
            else:
                keys += self._keys_of(lines)
                if len(keys) >= self.im.chunk_lines:
                    self._delete(keys)
                    keys = []
        if commit:
            self._take(parser.close())
            self._flush()
        else:
            keys += self._keys_of(parser.close())
            self._delete(keys)

    def _keys_of(self, lines) -> list[bytes]:
        out = []
        for number, handle, _values, error in lines:
            if error is None and number <= self.state.done:
                try:
                    out.append(Identifier.parse(handle, case_sensitive=self.case_sensitive).key)
                except IdnodeError:
                    pass
        return out

    def _delete(self, keys: list[bytes]) -> None:
        if keys:
            self.im.store.write([Change(k, None) for k in keys], self.state.who)

    def _rollback(self, errors: list, message: str = "") -> None:
        """Atomic: a conflict seen only at commit.  Delete what the job created, fail."""
        st = self.state
        self.pending = _Pending()
        if errors:
            self._record_errors(errors)
        st.phase = "rollback"
        st.error = message or "atomic import: a conflict at commit, every line rolled back"
        self._save_state()
        if st.committed:
            self._replay(commit=False)
        st.committed = 0
        st.state = "failed"
        self._save_state()
        self._failed_fast = True

    def _fail_job(self, exc: IdnodeError) -> None:
        self._wait()
        st = self.state
        self.pending = _Pending()
        self._record_errors([(getattr(exc, "line", None) or st.lines + 1, None, exc)])
        st.state, st.error = "failed", exc.message
        self._save_state()
        self._failed_fast = True

    def _disown(self) -> None:
        """Clear the stored job's owner if it is still this process (read and written in one
        write transaction: another process may have taken the job over meanwhile)."""
        name, tag = _JOB + self.state.id.encode(), self.im._tag

        def plan(view):
            stored = view.get_meta(name)
            if stored is not None:
                state = _State.from_bytes(stored)
                if state.state == "running" and state.owner == tag:
                    state.owner = ""
                    view.put_meta(name, state.to_bytes())
            return []

        self.im.store.update(plan, self.state.who)

    def _save_state(self) -> None:
        self.state.updated_ms = int(time.time() * 1000)
        self.im.store.meta_put(_JOB + self.state.id.encode(), self.state.to_bytes())


def _after(block: Encoded, skip: int) -> Encoded:
    """The lines of ``block`` after line ``skip`` (a resumed job skips what is done)."""
    keep = [j for j, i in enumerate(block.taken) if block.first + i > skip]
    return Encoded(block.first, [block.pairs[j] for j in keep], [block.taken[j] for j in keep],
                   block.parts)


def _twice(first: int) -> IdnodeError:
    return MalformedRequest(f"the same identifier is on line {first} of this import")


def _listed(values) -> list:
    if not isinstance(values, list):
        raise InvalidValue("values must be a JSON array")
    return values


def _exists() -> IdnodeError:
    return AlreadyExists("Handle already exists")


def _error_row(job_id: str, number: int, handle, exc: IdnodeError) -> tuple[bytes, bytes]:
    name = _ERR + f"{job_id}:{number:010d}".encode()
    return name, orjson.dumps({"line": number, "handle": handle, "code": int(RC_FOR[exc.outcome]),
                               "outcome": exc.outcome.name, "message": exc.message})
