"""``idnode import``: register a file of identifiers under a prefix, at a node or in a store.

    idnode import FILE --prefix 88.118.8 [--format csv|jsonl] [--mode atomic|best-effort]
        [--key IDEMPOTENCY_KEY] [--report FILE] [--quiet]
        [--server URL --auth INDEX:HANDLE (--secret-file F | --password-file F)
                  [--cacert F | --insecure] [--retries N] [--timeout S]]
        [--data DIR | --config FILE]

FILE holds one identifier per line, JSON Lines or CSV (``registry.import_lines`` documents both
formats and the CSV header convention); ``-`` reads standard input.  The format follows the
file name (``.csv`` → csv, anything else → jsonl) unless ``--format`` says otherwise.

With ``--server`` the file is streamed, never read whole, in 256 KiB pieces of a chunked
``POST {URL}/api/v1/imports?prefix=P&format=F&mode=M`` (issue 5 §1), authenticated with HTTP
Basic as the Handle REST API takes it (handle.md §7.3: user = the URL-encoded ``INDEX:HANDLE``,
password = the identity's HS_SECKEY secret, read from the file as ``idnode create`` does: one
trailing line break is not part of it; ``--password-file`` is the same option under the REST
API's name).  Every import carries an ``Idempotency-Key``: ``--key``, or a new random one that
is printed so that an interrupted import can be resumed by running the same command with
``--key``.  While the body goes up, ``GET {URL}/api/v1/imports?key=K`` is polled about every
second for the server's counts.  A lost connection or a 5xx answer (or 409: the previous
attempt still running at the server) repeats the whole POST with the same key, up to
``--retries`` times with growing pauses; the node skips the lines it already committed.  A
retry needs to read FILE again, so standard input can only be retried before its first byte
went out.  Before sending anything the CLI asks for the key's job: when that job has already
ended, for the same prefix, format and mode, its result is reported without sending the file.

Without ``--server`` the import runs in this process on the node's store (``--data`` /
``--config`` as ``idnode load``) as the local operator, through the same import engine
(``registry.imports.Importer``), so a running node sees the identifiers at once.

A progress bar (tqdm, on standard error, refreshed at least every second) shows the bytes
read or sent, their rate, the ETA and the job's counts ("errors" is the bad lines so far);
``--quiet`` turns it off.  The final report goes to standard output: state, lines, committed,
failed, skipped, elapsed time and rate, then one line per bad line, ``line N: HANDLE: CODE
MESSAGE`` (the first 50; all of them, as JSON Lines of the job's error objects, in ``--report
FILE``).

The job object (the same dict from the node's answers, its ``GET /api/v1/imports?key=K`` /
``GET /api/v1/imports/{id}``, and ``Importer.run`` in process) is what the report shows::

    {"id", "key", "prefix", "format", "mode",
     "state": "running" | "done" | "failed" | "interrupted",   # failed: atomic with bad lines,
                                                              # or a job-level error (CSV header)
     "lines": lines read, "committed": identifiers created, "failed": bad lines,
     "skipped": lines already handled by an earlier attempt with the key,
     "startedAt", "updatedAt", "elapsed": seconds, "replayed": the answer of a finished job,
     "message": why the job failed (or null), "phase", "done": the engine's own progress,
     "errors": [{"line", "handle", "code": Handle RC, "outcome", "message"}, …],  # ≤ 10000
     "errorsTruncated": more at GET /api/v1/imports/{id}/errors?after=LINE}

Exit codes: 0 every line was committed (or skipped as already committed by an earlier attempt);
1 some lines failed, or an atomic import failed; 2 bad usage, credentials refused, unreadable
FILE, or no answer from the server after the retries.  ``python -m registry.import_cli ...``
runs the command without the ``idnode`` entry point.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import os
import ssl
import stat
import sys
import threading
import time
import urllib.parse
import uuid
from typing import Callable

import orjson

from resolver import config as config_mod
from resolver.errors import ConfigError, IdnodeError, StoreError

COMMANDS = frozenset(("import",))
PIECE = 256 << 10  # bytes per read of FILE and per chunk of the POST body
SHOWN_ERRORS = 50
POLL_SECONDS = 1.0
CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
_RETRY_STATUS = frozenset((409, 500, 502, 503, 504))
_FINAL = frozenset(("done", "failed"))


class UsageError(Exception):
    """Exit code 2: bad usage, refused credentials, unreadable file, no server."""


def register(subparsers) -> None:
    """Add ``import`` to an argparse sub-parser collection (``idnode``'s)."""
    p = subparsers.add_parser(
        "import", help="register identifiers from a JSON Lines or CSV file",
        description="Register one identifier per line of FILE under --prefix, at a node "
                    "(--server) or in a store.")  # fmt: skip
    p.add_argument("file", help="JSON Lines or CSV file, '-' for standard input")
    p.add_argument("--prefix", required=True, help="prefix the identifiers belong to")
    p.add_argument("--format", choices=("jsonl", "csv"),
                   help="default: csv for a .csv file, else jsonl")  # fmt: skip
    p.add_argument("--mode", choices=("best-effort", "atomic"), default="best-effort",
                   help="best-effort (default): commit the good lines; atomic: all or nothing")
    p.add_argument("--key", metavar="IDEMPOTENCY_KEY",
                   help="resume or repeat the import with this key (default: a new one)")
    p.add_argument("--report", metavar="FILE", help="write every bad line here, as JSON Lines")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    remote = p.add_argument_group("at a node (REST)")
    remote.add_argument("--server", metavar="URL", help="the node, e.g. https://node:8000")
    remote.add_argument("--auth", metavar="INDEX:HANDLE",
                        help="identity to act as, e.g. 300:88.118.8/ADMIN")  # fmt: skip
    cred = remote.add_mutually_exclusive_group()
    cred.add_argument("--secret-file", metavar="FILE", help="HS_SECKEY secret of --auth")
    cred.add_argument("--password-file", metavar="FILE", help="the same (REST's name for it)")
    tls = remote.add_mutually_exclusive_group()
    tls.add_argument("--cacert", metavar="FILE", help="CA certificate(s) to trust for https")
    tls.add_argument("--insecure", action="store_true", help="https without certificate checks")
    remote.add_argument("--retries", type=int, default=5,
                        help="repeat the POST this often after a lost connection or 5xx (5)")
    remote.add_argument("--timeout", type=float, default=600.0,
                        help="seconds to wait for any one network operation (600)")  # fmt: skip
    local = p.add_argument_group("in this process, on the node's store")
    config_mod.add_store_arguments(local)


# -- common --------------------------------------------------------------------------------


def _format(args) -> str:
    if args.format:
        return args.format
    return "csv" if args.file.lower().endswith(".csv") else "jsonl"


def _open_input(path: str):
    """(binary file, size in bytes or None); ``UsageError`` when it cannot be read."""
    if path == "-":
        return sys.stdin.buffer, None
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fh.fileno())
        size = st.st_size if stat.S_ISREG(st.st_mode) else None
    except OSError:
        size = None
    return fh, size


class _Counted(io.RawIOBase):
    """A binary file that counts the bytes read from it (what the progress bar shows)."""

    def __init__(self, fh) -> None:
        super().__init__()
        self._fh = fh
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        data = self._fh.read(len(buf))
        n = len(data)
        buf[:n] = data
        self.count += n
        return n


class _Progress:
    """The tqdm bar on standard error: bytes of FILE done, and the job's counts as postfix.
    ``tick`` is called at least every second by the waiting thread, so the bar moves (rate,
    ETA) even while no answer arrives."""

    def __init__(self, quiet: bool, size: int | None, label: str) -> None:
        self.bar = None
        if quiet:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=size, desc=label, unit="B", unit_scale=True,
                        unit_divisor=1024, file=sys.stderr, mininterval=0.5,
                        dynamic_ncols=True, leave=True)  # fmt: skip
        self._shown = 0

    def tick(self, done: int, job: dict | None) -> None:
        if self.bar is None:
            return
        if done > self._shown:
            self.bar.update(done - self._shown)
            self._shown = done
        if job:
            lines, elapsed = job.get("lines") or 0, job.get("elapsed") or 0
            rate = f" ({lines / elapsed:,.0f}/s)" if elapsed else ""
            self.bar.set_postfix_str(f"lines {lines:,}{rate} committed "
                                     f"{job.get('committed') or 0:,} errors "
                                     f"{job.get('failed') or 0:,}", refresh=False)  # fmt: skip
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _say(text: str) -> None:
    print(f"idnode import: {text}", file=sys.stderr, flush=True)


def _exit_code(job: dict) -> int:
    if job.get("state") == "done" and not job.get("failed"):
        return 0
    return 1


def _error_line(e: dict) -> str:
    handle = e.get("handle") or "-"
    return f"line {e.get('line')}: {handle}: {e.get('code')} {e.get('message', '')}".rstrip()


def _print_report(job: dict, shown: list[dict], failed: int, report_path: str | None) -> None:
    elapsed = float(job.get("elapsed") or 0.0)
    lines = int(job.get("lines") or 0)
    rate = f"{lines / elapsed:,.0f} lines/s" if elapsed > 0 else "-"
    out = [f"idnode import {job.get('prefix', '')} ({job.get('format', '')}, "
           f"{job.get('mode', '')}): {job.get('state')}"
           + (" (the result of an earlier run with this key)" if job.get("replayed") else ""),
           f"  lines {lines:,}, committed {int(job.get('committed') or 0):,}, "
           f"failed {int(job.get('failed') or 0):,}, skipped {int(job.get('skipped') or 0):,}",
           f"  elapsed {elapsed:.2f} s, {rate}",
           f"  job {job.get('id')}, idempotency key {job.get('key')}"]  # fmt: skip
    if job.get("message"):
        out.append(f"  {job['message']}")
    out += [_error_line(e) for e in shown]
    if failed > len(shown):
        where = f"in {report_path}" if report_path else "with --report FILE"
        out.append(f"... {failed - len(shown):,} more bad lines {where}")
    print("\n".join(out), flush=True)


Pages = Callable[[int], list]  # errors after line N (the next page; empty at the end)


def _errors(job: dict, more: Pages | None):
    """Every error of the job: those in its body, then (when truncated) page by page."""
    errors = job.get("errors") or []
    yield from errors
    if more is None or not job.get("errorsTruncated") or not errors:
        return
    after = errors[-1].get("line") or 0
    while page := more(after):
        yield from page
        after = page[-1].get("line") or 0


def _finish(args, job: dict, more: Pages | None) -> int:
    """Print the report (and write ``--report``, streamed: never every error in memory)."""
    shown: list[dict] = []
    count = 0
    try:
        if args.report:
            with open(args.report, "wb") as fh:
                for e in _errors(job, more):
                    fh.write(orjson.dumps(e) + b"\n")
                    count += 1
                    if len(shown) < SHOWN_ERRORS:
                        shown.append(e)
        else:
            shown = (job.get("errors") or [])[:SHOWN_ERRORS]
    except OSError as exc:
        _print_report(job, shown, int(job.get("failed") or 0), None)
        raise UsageError(f"--report {args.report}: {exc.strerror or exc}") from None
    _print_report(job, shown, max(int(job.get("failed") or 0), count), args.report)
    return _exit_code(job)


# -- at a node -----------------------------------------------------------------------------


class _Node:
    """The node's REST API: where it is, how to reach it, who we are."""

    def __init__(self, args) -> None:
        url = urllib.parse.urlsplit(args.server)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise UsageError(f"--server {args.server!r}: expected http(s)://HOST[:PORT]")
        if url.scheme == "http" and (args.cacert or args.insecure):
            raise UsageError("--cacert and --insecure are for an https --server")
        self.https = url.scheme == "https"
        self.host = url.hostname
        try:
            self.port = url.port or (443 if self.https else 80)
        except ValueError:
            raise UsageError(f"--server {args.server!r}: bad port") from None
        self.base = url.path.rstrip("/")
        self.timeout = args.timeout
        self.context = None
        if self.https:
            try:
                if args.insecure:
                    self.context = ssl._create_unverified_context()
                else:
                    self.context = ssl.create_default_context(cafile=args.cacert)
            except (OSError, ssl.SSLError) as exc:
                raise UsageError(f"--cacert {args.cacert}: {exc}") from None
        self.authorization = _basic(args)

    def connect(self, timeout: float | None = None) -> http.client.HTTPConnection:
        t = self.timeout if timeout is None else timeout
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=t,
                                               context=self.context)  # fmt: skip
        return http.client.HTTPConnection(self.host, self.port, timeout=t)

    def path(self, tail: str, query: dict | None = None) -> str:
        return self.base + tail + ("?" + urllib.parse.urlencode(query) if query else "")

    def get(self, tail: str, query: dict | None = None, timeout: float | None = None
            ) -> tuple[int, object]:  # fmt: skip
        """One GET on a new connection: (status, parsed JSON or None)."""
        conn = self.connect(timeout)
        try:
            conn.request("GET", self.path(tail, query),
                         headers={"Authorization": self.authorization,
                                  "Accept": "application/json"})  # fmt: skip
            resp = conn.getresponse()
            return resp.status, _json(resp.read())
        finally:
            conn.close()


def _basic(args) -> str:
    if not args.auth:
        raise UsageError("--server needs --auth INDEX:HANDLE")
    from resolver.protocols.handle import auth as A

    try:
        A.parse_identity(args.auth)
    except IdnodeError as exc:
        raise UsageError(f"--auth {args.auth!r}: {exc.message}") from None
    path = args.secret_file or args.password_file
    if not path:
        raise UsageError("--server needs --secret-file FILE (or --password-file FILE)")
    try:
        with open(path, "rb") as fh:
            secret = fh.read(1 << 20)
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror or exc}") from None
    secret = secret[:-2] if secret.endswith(b"\r\n") else secret.removesuffix(b"\n")
    if not secret:
        raise UsageError(f"{path}: empty secret")
    # handle.md §7.3: the identity's own ':' is percent-encoded; the password is raw bytes
    user = urllib.parse.quote(args.auth, safe="/").encode("ascii")
    return "Basic " + base64.b64encode(user + b":" + secret).decode("ascii")


def _json(body: bytes):
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _message(status: int, doc) -> str:
    if isinstance(doc, dict) and doc.get("message"):
        rc = doc.get("responseCode")
        return f"HTTP {status}" + (f" (rc {rc})" if rc is not None else "") + f": {doc['message']}"
    return f"HTTP {status}"


class _Attempt:
    """One POST of the whole file, run in a thread; the waiting thread polls meanwhile."""

    def __init__(self, node: _Node, path: str, headers: dict, source, counter: list[int]) -> None:
        self.node, self.path, self.headers = node, path, headers
        self.source, self.counter = source, counter
        self.status: int | None = None
        self.doc = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="import-post", daemon=True)

    def _body(self):
        while True:
            piece = self.source.read(PIECE)
            if not piece:
                return
            self.counter[0] += len(piece)
            yield piece

    def _run(self) -> None:
        conn = self.node.connect()
        try:
            try:
                conn.request("POST", self.path, body=self._body(), headers=self.headers)
            except (OSError, http.client.HTTPException) as exc:
                # the node may have answered and closed early (e.g. 401 before the body)
                self.error = exc
            try:
                resp = conn.getresponse()
                self.status, self.doc = resp.status, _json(resp.read())
                self.error = None
            except (OSError, http.client.HTTPException) as exc:
                self.error = self.error or exc
        except BaseException as exc:  # reported by the waiting thread
            self.error = exc
        finally:
            conn.close()


def _poll(node: _Node, key: str) -> dict | None:
    try:
        status, doc = node.get("/api/v1/imports", {"key": key}, timeout=10.0)
    except (OSError, http.client.HTTPException):
        return None
    return doc if status == 200 and isinstance(doc, dict) else None


def _same_job(job: dict, prefix: str, fmt: str, mode: str) -> bool:
    return (job.get("state") in _FINAL and job.get("format") == fmt and job.get("mode") == mode
            and str(job.get("prefix", "")).upper() == prefix.upper())  # fmt: skip


def _pages(node: _Node, job: dict) -> Pages:
    """``GET /api/v1/imports/{id}/errors?after=LINE``: the errors beyond the job body."""
    tail = "/api/v1/imports/" + urllib.parse.quote(str(job.get("id")), safe="") + "/errors"

    def more(after: int) -> list:
        status, doc = node.get(tail, {"after": after, "limit": 10_000})
        if status != 200:
            raise UsageError(f"the rest of the errors: {_message(status, doc)}")
        page = doc.get("errors") if isinstance(doc, dict) else None
        return page if isinstance(page, list) else []

    return more


def _server_import(args, fmt: str, key: str) -> int:
    node = _Node(args)
    if not 0 <= args.retries <= 100:
        raise UsageError("--retries must be 0..100")
    if not 0 < args.timeout <= 86400:
        raise UsageError(f"--timeout {args.timeout:g}: expected 0 < seconds <= 86400")
    source, size = _open_input(args.file)
    query = {"prefix": args.prefix, "format": fmt, "mode": args.mode}
    path = node.path("/api/v1/imports", query)
    headers = {"Authorization": node.authorization, "Idempotency-Key": key,
               "Content-Type": CONTENT_TYPES[fmt], "Accept": "application/json"}  # fmt: skip
    # Before sending: are the credentials good, is the node there, did this key already finish?
    job = _preflight(node, key, args.retries)
    if job is not None and _same_job(job, args.prefix, fmt, args.mode):
        return _finish(args, dict(job, replayed=True), _pages(node, job))
    progress = _Progress(args.quiet, size, "import")
    try:
        attempt = 0
        while True:
            counter = [0]
            post = _Attempt(node, path, headers, source, counter)
            post.thread.start()
            latest = None
            next_poll = time.monotonic() + POLL_SECONDS
            while post.thread.is_alive():
                post.thread.join(0.5)
                if time.monotonic() >= next_poll:
                    latest = _poll(node, key) or latest
                    next_poll = time.monotonic() + POLL_SECONDS
                progress.tick(counter[0], latest)
            progress.tick(counter[0], post.doc if post.status == 200 else latest)
            if post.error is None and post.status == 200 and isinstance(post.doc, dict):
                if post.doc.get("state") in _FINAL:
                    progress.close()
                    return _finish(args, post.doc, _pages(node, post.doc))
                reason = f"the job ended {post.doc.get('state')}"
            elif post.error is None and post.status not in _RETRY_STATUS:
                raise UsageError(_message(post.status or 0, post.doc))
            else:
                reason = (f"{type(post.error).__name__}: {post.error}" if post.error
                          else _message(post.status or 0, post.doc))  # fmt: skip
            attempt += 1
            if attempt > args.retries:
                raise UsageError(f"giving up after {attempt} attempt(s): {reason}; "
                                 f"resume with --key {key}")  # fmt: skip
            if not _rewind(source, counter[0]):
                raise UsageError(f"{reason}; standard input cannot be sent again: "
                                 f"rerun with the file and --key {key} to resume")  # fmt: skip
            pause = min(30.0, 2.0 ** (attempt - 1))
            if progress.bar is not None:
                progress.bar.write(f"idnode import: {reason}; again in {pause:g} s "
                                   f"({attempt}/{args.retries})", file=sys.stderr)  # fmt: skip
                progress.bar.reset(total=size)
                progress._shown = 0
            elif not args.quiet:
                _say(f"{reason}; again in {pause:g} s ({attempt}/{args.retries})")
            time.sleep(pause)
    finally:
        progress.close()
        if source is not sys.stdin.buffer:
            source.close()


def _preflight(node: _Node, key: str, retries: int) -> dict | None:
    """The key's job if the node knows it; ``UsageError`` for refused credentials or no node."""
    for attempt in range(retries + 1):
        try:
            status, doc = node.get("/api/v1/imports", {"key": key}, timeout=min(node.timeout, 30))
        except (OSError, http.client.HTTPException) as exc:
            if attempt == retries:
                raise UsageError(f"no answer from {node.host}:{node.port}: {exc}") from None
            time.sleep(min(30.0, 2.0**attempt))
            continue
        if status == 200 and isinstance(doc, dict):
            return doc
        if status == 404:
            return None
        if status in _RETRY_STATUS and status != 409 and attempt < retries:
            time.sleep(min(30.0, 2.0**attempt))
            continue
        if status in (401, 403):
            raise UsageError(f"credentials refused: {_message(status, doc)}")
        return None  # anything else: let the POST tell
    return None


def _rewind(source, sent: int) -> bool:
    if sent == 0:
        return True
    try:
        source.seek(0)
        return True
    except (OSError, ValueError, io.UnsupportedOperation):
        return False


# -- in this process -----------------------------------------------------------------------


def _local_import(args, fmt: str, key: str) -> int:
    overrides = {n: getattr(args, n) for n in ("data", "map_size", "case_sensitive")
                 if getattr(args, n, None) is not None}  # fmt: skip
    try:
        cfg = config_mod.load(args.config, overrides)
    except ConfigError as exc:
        raise UsageError(f"configuration: {exc.key}: {exc.reason}") from None
    from registry.authz import Identity
    from registry.imports import Importer
    from registry.service import OPERATOR, Registry
    from resolver.store.lmdb_store import LmdbStore

    raw, size = _open_input(args.file)
    store = None
    try:
        store = LmdbStore(cfg.data, map_size=cfg.map_size)
        registry = Registry(store, server_admins=[Identity.parse(a) for a in cfg.server_admins],
                            case_sensitive=cfg.case_sensitive)  # fmt: skip
        importer = Importer(registry)
        counted = _Counted(raw)
        source = io.BufferedReader(counted, PIECE)
        latest: list[dict | None] = [None]
        result: list = [None, None]  # job, exception

        def progress_cb(job: dict) -> None:
            latest[0] = job

        def work() -> None:
            try:
                result[0] = importer.run(OPERATOR, args.prefix, fmt, args.mode, source, key=key,
                                         progress=progress_cb)  # fmt: skip
            except BaseException as exc:  # handed to the waiting thread
                result[1] = exc

        bar = _Progress(args.quiet, size, "import")
        try:
            _wait(threading.Thread(target=work, name="import", daemon=True),
                  lambda: bar.tick(counted.count, latest[0]))  # fmt: skip
        except KeyboardInterrupt:
            # The engine thread is inside a store transaction: leave at once (LMDB aborts it;
            # the committed chunks and the job state are durable) rather than close the store
            # under it.
            bar.close()
            _say(f"interrupted; resume with --key {key}")
            sys.stdout.flush()
            os._exit(2)
        finally:
            bar.close()
        if result[1] is not None:
            raise result[1]
        job = result[0]
        return _finish(args, job, lambda after: importer.errors(job["id"], after, 10_000))
    finally:
        if store is not None:
            store.close()
        if raw is not sys.stdin.buffer:
            raw.close()


def _wait(thread: threading.Thread, tick: Callable[[], None]) -> None:
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
        tick()


# -- entry points --------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Execute a parsed ``idnode import``; the exit code (module docstring)."""
    fmt = _format(args)
    key = args.key
    if key is not None and not key.strip():
        _say("--key must not be empty")
        return 2
    if key is None:
        key = uuid.uuid4().hex
        if not args.quiet:
            _say(f"idempotency key {key} (to resume this import: the same command with "
                 f"--key {key})")  # fmt: skip
    try:
        if args.server:
            if args.data or args.config:
                raise UsageError("--server and --data/--config exclude each other")
            return _server_import(args, fmt, key)
        if args.auth or args.secret_file or args.password_file:
            raise UsageError("--auth and its secret go with --server")
        return _local_import(args, fmt, key)
    except UsageError as exc:
        _say(str(exc))
        return 2
    except StoreError as exc:
        _say(exc.message)
        return 1
    except IdnodeError as exc:
        _say(exc.message)
        return 2
    except OSError as exc:
        _say(f"{exc.filename or ''}: {exc.strerror or exc}")
        return 2
    except KeyboardInterrupt:
        _say(f"interrupted; resume with --key {key}")
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="idnode", description="Bulk import of identifiers")
    register(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
