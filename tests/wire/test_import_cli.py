"""``idnode import`` end to end, as a real process (``python -m registry.import_cli``, the same
``register``/``run`` the ``idnode`` entry point wires).

Two kinds of peer:

* a real ``idnode serve`` with an enterprise prefix (``POST /api/v1/imports``, issue 5 §1):
  JSON Lines and CSV files, bad lines in the report and the exit code, a repeated key that
  creates nothing, refused credentials; and the in-process import on a store (``--data``);
* a scripted HTTP peer on a real socket, for what a healthy node never does on its own: a
  connection lost in the middle of the body (the CLI must send the whole file again with the
  same Idempotency-Key), a slow answer (the progress bar must show the job's counts meanwhile),
  a finished key (nothing is sent again), errors beyond the job body, no node at all.
"""

from __future__ import annotations

import base64
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import orjson
import pytest
import requests
from enterprises import enterprise

from registry import import_cli
from resolver.identifier import Identifier
from resolver.record import unpack
from resolver.store.lmdb_store import LmdbStore

pytestmark = pytest.mark.wire

REPO = Path(__file__).resolve().parents[2]
SECRET = "import secret 8"
AUTH = "300:88.118.8/ADMIN"


def run_cli(*args: str, stdin: bytes | None = None, timeout: float = 60
            ) -> subprocess.CompletedProcess:  # fmt: skip
    return subprocess.run([sys.executable, "-m", "registry.import_cli", "import", *args],
                          cwd=REPO, input=stdin, capture_output=True, timeout=timeout)  # fmt: skip


def out(r: subprocess.CompletedProcess) -> str:
    return r.stdout.decode("utf-8", "replace")


def err(r: subprocess.CompletedProcess) -> str:
    return r.stderr.decode("utf-8", "replace")


def explain(r: subprocess.CompletedProcess) -> str:
    return f"rc {r.returncode}\n--- stdout ---\n{out(r)}\n--- stderr ---\n{err(r)}"


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cred") / "admin.secret"
    path.write_text(SECRET + "\n")  # one trailing line break is not part of the secret
    return path


def jsonl_line(handle: str, n: int) -> bytes:
    return orjson.dumps({"handle": handle, "values": [
        {"index": 1, "type": "URL", "data": f"https://example.com/sn/{n}"},
        {"index": 2, "type": "EMAIL", "data": f"ops{n}@example.com"}]}) + b"\n"  # fmt: skip


# -- against a real node ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def inode(start_node, tmp_path_factory, load_lines):
    data = tmp_path_factory.mktemp("import") / "data"
    return start_node(data=load_lines(data, enterprise("88.118.8", SECRET)))


def remote(node, secret_file: Path, *more: str) -> list[str]:
    return ["--prefix", "88.118.8", "--server", node.base_url, "--auth", AUTH,
            "--secret-file", str(secret_file), *more]  # fmt: skip


def resolve(node, handle: str) -> dict | None:
    r = requests.get(f"{node.api_url}{handle}", timeout=10)
    return r.json() if r.status_code == 200 else None


def test_jsonl_import_commits_good_lines_and_reports_bad_ones(inode, secret_file, tmp_path):
    tag = uuid.uuid4().hex[:8]
    lines = [jsonl_line(f"88.118.8/J-{tag}-{n}", n) for n in range(300)]
    lines[10] = b"{not json\n"                                               # line 11
    lines[20] = orjson.dumps({"handle": f"88.118.8/J-{tag}-bad",             # line 21
                              "values": [{"index": "x", "type": "URL", "data": "u"}]}) + b"\n"
    lines.insert(0, b"# a comment line\n")                                  # all shift by one
    src = tmp_path / "parts.jsonl"
    src.write_bytes(b"".join(lines))
    report = tmp_path / "errors.jsonl"
    r = run_cli(str(src), *remote(inode, secret_file, "--report", str(report), "--quiet"))
    assert r.returncode == 1, explain(r)
    text = out(r)
    assert "lines 301" in text and "committed 298" in text and "failed 2" in text, text
    assert "line 12: -: 4 " in text and f"line 22: 88.118.8/J-{tag}-bad: 202 " in text, text
    errors = [json.loads(x) for x in report.read_text().splitlines()]
    assert [(e["line"], e["code"]) for e in errors] == [(12, 4), (22, 202)]
    doc = resolve(inode, f"88.118.8/J-{tag}-299")
    assert doc is not None and "https://example.com/sn/299" in json.dumps(doc)
    assert resolve(inode, f"88.118.8/J-{tag}-10") is None


def test_csv_import_and_a_repeated_key_creates_nothing(inode, secret_file, tmp_path):
    tag = uuid.uuid4().hex[:8]
    src = tmp_path / "parts.csv"
    rows = [f'88.118.8/C-{tag}-{n},https://example.com/c/{n},"model {n}, rev ""A"""\n'
            for n in range(100)]  # fmt: skip
    src.write_text("handle,1:URL,2000:model\n" + "".join(rows))
    key = f"csv-{tag}"
    r = run_cli(str(src), *remote(inode, secret_file, "--key", key))
    assert r.returncode == 0, explain(r)
    assert "committed 100" in out(r) and "failed 0" in out(r), explain(r)
    doc = resolve(inode, f"88.118.8/C-{tag}-7")
    assert doc is not None
    model = [v for v in doc["values"] if v["index"] == 2000][0]
    assert model["type"] == "model" and model["data"]["value"] == 'model 7, rev "A"'
    # the same key again: the stored result, nothing created or sent twice
    again = run_cli(str(src), *remote(inode, secret_file, "--key", key, "--quiet"))
    assert again.returncode == 0, explain(again)
    assert "committed 100" in out(again) and "earlier run" in out(again), explain(again)


def test_atomic_import_with_a_bad_line_commits_nothing(inode, secret_file, tmp_path):
    tag = uuid.uuid4().hex[:8]
    src = tmp_path / "atomic.jsonl"
    src.write_bytes(jsonl_line(f"88.118.8/A-{tag}-1", 1) + b"[]\n"
                    + jsonl_line(f"88.118.8/A-{tag}-3", 3))  # fmt: skip
    r = run_cli(str(src), *remote(inode, secret_file, "--mode", "atomic", "--quiet"))
    assert r.returncode == 1, explain(r)
    assert "failed" in out(r).splitlines()[0] and "line 2: -: 4" in out(r), explain(r)
    assert resolve(inode, f"88.118.8/A-{tag}-1") is None


def test_refused_credentials_exit_2_before_sending(inode, tmp_path):
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not the secret")
    src = tmp_path / "x.jsonl"
    src.write_bytes(jsonl_line("88.118.8/never", 1))
    r = run_cli(str(src), "--prefix", "88.118.8", "--server", inode.base_url, "--auth", AUTH,
                "--secret-file", str(wrong), "--quiet", "--retries", "0")  # fmt: skip
    assert r.returncode == 2, explain(r)
    assert "refused" in err(r) or "HTTP 40" in err(r), explain(r)
    assert resolve(inode, "88.118.8/never") is None


def test_every_error_reaches_the_report_beyond_the_job_body(inode, secret_file, tmp_path):
    """More bad lines than a job answer lists (10000): the rest are paged into --report."""
    tag = uuid.uuid4().hex[:8]
    src = tmp_path / "many.jsonl"
    src.write_bytes(b"[]\n" * 10_003 + jsonl_line(f"88.118.8/M-{tag}", 1))
    report = tmp_path / "many-errors.jsonl"
    r = run_cli(str(src), *remote(inode, secret_file, "--report", str(report), "--quiet"))
    assert r.returncode == 1, explain(r)
    lines = [json.loads(x)["line"] for x in report.read_text().splitlines()]
    assert lines == list(range(1, 10_004))
    assert "failed 10,003" in out(r) and "... 9,953 more bad lines in" in out(r), explain(r)
    assert len([x for x in out(r).splitlines() if x.startswith("line ")]) == 50


def test_local_import_into_a_store(tmp_path, load_lines):
    data = load_lines(tmp_path / "data", enterprise("88.118.8", SECRET))
    tag = uuid.uuid4().hex[:8]
    src = tmp_path / "local.jsonl"
    src.write_bytes(b"".join(jsonl_line(f"88.118.8/L-{tag}-{n}", n) for n in range(50))
                    + b'{"handle": "88.118.8/L-bad"}\n')  # fmt: skip
    r = run_cli(str(src), "--prefix", "88.118.8", "--data", str(data))
    assert r.returncode == 1, explain(r)
    assert "idempotency key" in err(r) and "import:" in err(r), explain(r)  # key, bar
    assert "committed 50" in out(r) and "line 51: 88.118.8/L-bad: 202" in out(r), explain(r)
    store = LmdbStore(str(data), readonly=True)
    try:
        raw = store.get_record(Identifier.parse(f"88.118.8/L-{tag}-49").key)
        assert raw is not None
        assert unpack(raw)[0].data == b"https://example.com/sn/49"
    finally:
        store.close()


# -- against a scripted peer -----------------------------------------------------------------


class Script:
    """What the scripted node does, and what it saw."""

    def __init__(self) -> None:
        self.refuse = False  # answer every request 401
        self.drop_first_post = False  # close the first POST's connection after one chunk
        self.slow_post = 0.0  # seconds to wait before answering a POST
        self.finished: dict | None = None  # the job a GET ?key= returns (else 404 / running)
        self.extra_errors: list[dict] = []  # served by GET /api/v1/imports/{id}/errors
        self.requests: list[dict] = []
        self.lock = threading.Lock()

    def job(self, key: str, body: bytes, fmt: str, mode: str) -> dict:
        lines = body.splitlines()
        errors = [{"line": n, "handle": None, "code": 4, "outcome": "MALFORMED",
                   "message": "not JSON"}
                  for n, line in enumerate(lines, 1) if line.startswith(b"BAD")]  # fmt: skip
        return {"id": "j1", "key": key, "prefix": "88.118.8", "format": fmt, "mode": mode,
                "state": "done", "lines": len(lines), "committed": len(lines) - len(errors),
                "failed": len(errors) + len(self.extra_errors), "skipped": 0,
                "startedAt": "2024-05-01T00:00:00Z", "updatedAt": "2024-05-01T00:00:01Z",
                "elapsed": 0.5, "replayed": False, "errors": errors,
                "errorsTruncated": bool(self.extra_errors)}  # fmt: skip


def _read_chunked(rfile) -> tuple[bytes, list[int]]:
    body, sizes = [], []
    while True:
        size = int(rfile.readline().split(b";")[0].strip(), 16)
        if size == 0:
            while rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(body), sizes
        body.append(rfile.read(size))
        sizes.append(size)
        rfile.readline()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    script: Script

    def log_message(self, *args) -> None:
        pass

    def _answer(self, status: int, doc) -> None:
        body = orjson.dumps(doc)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self, **more) -> dict:
        url = urllib.parse.urlsplit(self.path)
        seen = {"method": self.command, "path": url.path,
                "query": dict(urllib.parse.parse_qsl(url.query)),
                "headers": {k.lower(): v for k, v in self.headers.items()}, **more}  # fmt: skip
        with self.script.lock:
            self.script.requests.append(seen)
        return seen

    def do_GET(self) -> None:
        seen = self._record()
        if self.script.refuse:
            return self._answer(401, {"responseCode": 403, "message": "Authentication failed"})
        if seen["path"] == "/api/v1/imports/j1/errors":
            after = int(seen["query"]["after"])
            page = [e for e in self.script.extra_errors if e["line"] > after][:2]
            return self._answer(200, {"errors": page, "errorsTruncated": len(page) == 2})
        if self.script.finished is not None:
            return self._answer(200, self.script.finished)
        posts = [r for r in self.script.requests if r["method"] == "POST"]
        if posts:  # a POST is under way
            return self._answer(200, {"id": "j1", "key": seen["query"].get("key"),
                                      "state": "running", "lines": 4321, "committed": 4000,
                                      "failed": 7, "errors": []})  # fmt: skip
        return self._answer(404, {"responseCode": 100, "message": "no such import"})

    def do_POST(self) -> None:
        posts = sum(1 for r in self.script.requests if r["method"] == "POST")
        if self.script.refuse:
            self._record(body=b"", sizes=[])
            return self._answer(401, {"responseCode": 403, "message": "Authentication failed"})
        if posts == 0 and self.script.drop_first_post:
            size = int(self.rfile.readline().strip(), 16)
            self.rfile.read(size)
            self._record(body=None, sizes=[size])
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        body, sizes = _read_chunked(self.rfile)
        seen = self._record(body=body, sizes=sizes)
        time.sleep(self.script.slow_post)
        q = seen["query"]
        self._answer(200, self.script.job(seen["headers"].get("idempotency-key"), body,
                                          q.get("format"), q.get("mode")))  # fmt: skip


@pytest.fixture
def peer():
    script = Script()
    handler = type("Handler", (_Handler,), {"script": script})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield script
    finally:
        server.shutdown()
        server.server_close()


def big_file(tmp_path: Path, bad_at: tuple[int, ...] = ()) -> tuple[Path, bytes]:
    lines = [b"BAD line\n" if n in bad_at else jsonl_line(f"88.118.8/P-{n}", n)
             for n in range(1, 6001)]  # fmt: skip
    body = b"".join(lines)  # about 700 KiB: three pieces or more
    path = tmp_path / "parts.jsonl"
    path.write_bytes(body)
    return path, body


def peer_args(peer, secret_file, *more) -> list[str]:
    return ["--prefix", "88.118.8", "--server", peer.url, "--auth", AUTH,
            "--secret-file", str(secret_file), *more]  # fmt: skip


def test_lost_connection_sends_the_file_again_with_the_same_key(peer, secret_file, tmp_path):
    peer.drop_first_post = True
    path, body = big_file(tmp_path, bad_at=(3, 4000))
    report = tmp_path / "report.jsonl"
    r = run_cli(str(path), *peer_args(peer, secret_file, "--report", str(report)))
    assert r.returncode == 1, explain(r)
    posts = [x for x in peer.requests if x["method"] == "POST"]
    assert len(posts) == 2
    assert posts[1]["body"] == body  # the whole file again, streamed in pieces
    assert len(posts[1]["sizes"]) >= 3 and max(posts[1]["sizes"]) <= 256 << 10
    keys = {p["headers"]["idempotency-key"] for p in posts}
    assert len(keys) == 1 and keys.pop() in err(r)  # a new key, printed for a resume
    for p in posts:
        assert p["path"] == "/api/v1/imports"
        assert p["query"] == {"prefix": "88.118.8", "format": "jsonl", "mode": "best-effort"}
        assert p["headers"]["transfer-encoding"] == "chunked"
        assert p["headers"]["content-type"] == "application/x-ndjson"
        user, _, password = base64.b64decode(
            p["headers"]["authorization"].removeprefix("Basic ")).partition(b":")
        assert (user, password) == (b"300%3A88.118.8/ADMIN", SECRET.encode())
    text = out(r)
    assert "lines 6,000, committed 5,998, failed 2" in text, text
    assert "line 3: -: 4 not JSON" in text and "line 4000: -: 4 not JSON" in text
    assert [json.loads(x)["line"] for x in report.read_text().splitlines()] == [3, 4000]


def test_progress_bar_shows_the_job_counts_while_waiting(peer, secret_file, tmp_path):
    peer.slow_post = 1.5
    path, _ = big_file(tmp_path)
    r = run_cli(str(path), *peer_args(peer, secret_file, "--key", "k-progress", "--format",
                                      "jsonl", "--mode", "atomic"))  # fmt: skip
    assert r.returncode == 0, explain(r)
    assert "errors 7" in err(r) and "committed 4,000" in err(r), explain(r)  # polled counts
    polls = [x for x in peer.requests if x["method"] == "GET" and x["query"].get("key")]
    assert len(polls) >= 2 and all(p["query"]["key"] == "k-progress" for p in polls)
    assert all(p["headers"]["authorization"].startswith("Basic ") for p in polls)
    assert "k-progress" in out(r) and "atomic" in out(r)
    peer.slow_post = 0.0
    quiet = run_cli(str(path), *peer_args(peer, secret_file, "--key", "k-quiet", "--quiet"))
    assert quiet.returncode == 0 and err(quiet) == "", explain(quiet)


def test_a_finished_key_is_reported_without_sending_the_file(peer, secret_file, tmp_path):
    path, body = big_file(tmp_path)
    peer.finished = dict(peer.job("k-done", body, "jsonl", "best-effort"), key="k-done")
    r = run_cli(str(path), *peer_args(peer, secret_file, "--key", "k-done", "--quiet"))
    assert r.returncode == 0, explain(r)
    assert not [x for x in peer.requests if x["method"] == "POST"]
    assert "earlier run" in out(r) and "committed 6,000" in out(r)


def test_errors_beyond_the_job_body_are_fetched_for_the_report(peer, secret_file, tmp_path):
    path, _ = big_file(tmp_path, bad_at=(2,))
    peer.extra_errors = [{"line": n, "handle": f"88.118.8/P-{n}", "code": 202,
                          "outcome": "INVALID_VALUE", "message": "bad value"}
                         for n in range(10, 70, 10)]  # fmt: skip
    report = tmp_path / "all.jsonl"
    r = run_cli(str(path), *peer_args(peer, secret_file, "--report", str(report), "--quiet"))
    assert r.returncode == 1, explain(r)
    lines = [json.loads(x)["line"] for x in report.read_text().splitlines()]
    assert lines == [2, 10, 20, 30, 40, 50, 60]
    assert "line 60: 88.118.8/P-60: 202 bad value" in out(r)


def test_csv_from_standard_input(peer, secret_file):
    body = b"handle,URL\n88.118.8/S-1,https://e/1\nBAD,row\n"
    r = run_cli("-", *peer_args(peer, secret_file, "--format", "csv", "--quiet"), stdin=body)
    assert r.returncode == 1, explain(r)
    (post,) = [x for x in peer.requests if x["method"] == "POST"]
    assert post["body"] == body and post["query"]["format"] == "csv"
    assert post["headers"]["content-type"].startswith("text/csv")


def test_no_node_exit_2(secret_file, tmp_path):
    path, _ = big_file(tmp_path)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_cli(str(path), "--prefix", "88.118.8", "--server", f"http://127.0.0.1:{port}",
                "--auth", AUTH, "--secret-file", str(secret_file), "--retries", "0")  # fmt: skip
    assert r.returncode == 2 and "no answer" in err(r), explain(r)


def test_usage_errors_exit_2(secret_file, tmp_path, capsys):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"")
    cases = [
        [str(tmp_path / "missing.jsonl"), "--prefix", "88.118.8", "--server", "http://127.0.0.1:1",
         "--auth", AUTH, "--secret-file", str(secret_file)],
        [str(path), "--prefix", "88.118.8", "--server", "ftp://x", "--auth", AUTH,
         "--secret-file", str(secret_file)],
        [str(path), "--prefix", "88.118.8", "--server", "http://127.0.0.1:1"],
        [str(path), "--prefix", "88.118.8", "--server", "http://127.0.0.1:1", "--auth", AUTH,
         "--secret-file", str(tmp_path / "nope")],
        [str(path), "--prefix", "88.118.8", "--server", "http://127.0.0.1:1", "--auth", "300:",
         "--secret-file", str(secret_file)],
        [str(path), "--prefix", "88.118.8", "--auth", AUTH, "--data", str(tmp_path / "d")],
        [str(path), "--prefix", "88.118.8", "--key", " ", "--data", str(tmp_path / "d")],
    ]  # fmt: skip
    for args in cases:
        assert import_cli.main(["import", *args, "--quiet"]) == 2, args
        text = capsys.readouterr().err
        assert text.startswith("idnode import: ") and text.count("\n") == 1, (args, text)
    assert not (tmp_path / "d").exists()  # no store was created on the way
