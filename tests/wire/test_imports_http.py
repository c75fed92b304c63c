"""``/api/v1/imports`` on a running node: streamed JSONL/CSV jobs, reports, idempotency, and a
job that survives ``kill -9`` of the whole node (issue 5 §1 and its acceptance list).
"""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import pytest
import requests
from enterprises import enterprise

from resolver.store.lmdb_store import LmdbStore

pytestmark = pytest.mark.wire

SECRET_8, SECRET_9 = "import secret 8", "import secret 9"
A8 = ("300%3A88.118.8/ADMIN", SECRET_8)
A9 = ("300%3A88.118.9/ADMIN", SECRET_9)
URL = "/api/v1/imports"


@pytest.fixture(scope="module")
def inode(start_node, tmp_path_factory, load_lines):
    lines = enterprise("88.118.8", SECRET_8) + enterprise("88.118.9", SECRET_9)
    return start_node(data=load_lines(tmp_path_factory.mktemp("imp") / "data", lines),
                      workers=2)  # fmt: skip


def jsonl(tag: str, n: int, bad=frozenset(), start: int = 0) -> bytes:
    out = []
    for i in range(start, start + n):
        values = [{"index": 1, "type": "URL", "data": f"https://f.example/{tag}/{i}"},
                  {"index": 2, "type": "EMAIL", "data": "qa@f.example"},
                  {"index": 0 if i in bad else 3, "type": "DESC", "data": f"unit {i}"}]  # fmt: skip
        out.append(orjson.dumps({"handle": f"88.118.8/{tag}-{i}", "values": values}) + b"\n")
    return b"".join(out)


def post(node, data, *, mode=None, fmt=None, key=None, auth=A8, ctype="application/x-ndjson"):
    params = {"prefix": "88.118.8"}
    if mode:
        params["mode"] = mode
    if fmt:
        params["format"] = fmt
    headers = {"Content-Type": ctype}
    if key:
        headers["Idempotency-Key"] = key
    return requests.post(node.base_url + URL, params=params, data=data, auth=auth,
                         headers=headers, timeout=120)  # fmt: skip


def resolves(node, handle: str) -> bool:
    return requests.get(node.api_url + handle, timeout=10).status_code == 200


def test_best_effort_job_reports_every_bad_line(inode):
    tag = uuid.uuid4().hex[:8]
    bad = {0, 99, 100, 250, 500, 501, 702, 877, 998, 999}  # 1 %
    r = post(inode, jsonl(tag, 1000, bad))
    assert r.status_code == 200, r.text
    job = r.json()
    assert (job["state"], job["lines"], job["committed"], job["failed"]) == ("done", 1000, 990, 10)
    assert [(e["line"], e["handle"], e["code"]) for e in job["errors"]] == [
        (i + 1, f"88.118.8/{tag}-{i}", 202) for i in sorted(bad)]
    assert resolves(inode, f"88.118.8/{tag}-1") and not resolves(inode, f"88.118.8/{tag}-99")
    assert all(resolves(inode, f"88.118.8/{tag}-{i}") != (i in bad) for i in range(0, 1000, 7))
    doc = requests.get(f"{inode.api_url}88.118.8/{tag}-7", timeout=10).json()
    assert [v["data"]["value"] for v in doc["values"]] == [
        f"https://f.example/{tag}/7", "qa@f.example", "unit 7"]
    # the job stays readable: by id, by page of errors, by key-less id only for its owner
    got = requests.get(f"{inode.base_url}{URL}/{job['id']}", auth=A8, timeout=10)
    assert got.status_code == 200 and got.json()["committed"] == 990
    page = requests.get(f"{inode.base_url}{URL}/{job['id']}/errors", auth=A8,
                        params={"after": 100, "limit": 2}, timeout=10).json()  # fmt: skip
    assert [e["line"] for e in page["errors"]] == [101, 251]
    other = requests.get(f"{inode.base_url}{URL}/{job['id']}", auth=A9, timeout=10)
    assert other.status_code == 404 and other.json()["responseCode"] == 100


def test_atomic_job_with_bad_lines_commits_nothing(inode):
    tag = uuid.uuid4().hex[:8]
    job = post(inode, jsonl(tag, 500, {250}), mode="atomic").json()
    assert (job["state"], job["committed"], job["failed"]) == ("failed", 0, 1)
    assert job["errors"][0]["line"] == 251
    assert not any(resolves(inode, f"88.118.8/{tag}-{i}") for i in (0, 1, 249, 499))
    good = post(inode, jsonl(tag, 500), mode="atomic").json()
    assert (good["state"], good["committed"]) == ("done", 500)


def test_same_idempotency_key_creates_nothing_twice(inode):
    tag, key = uuid.uuid4().hex[:8], str(uuid.uuid4())
    first = post(inode, jsonl(tag, 300, {5}), key=key)
    again = post(inode, jsonl(tag, 300, {5}), key=key)
    assert again.status_code == 200 and again.headers.get("Idempotent-Replay") == "true"
    a, b = first.json(), again.json()
    assert b["id"] == a["id"] and b["replayed"] and (b["committed"], b["failed"]) == (299, 1)
    assert b["errors"] == a["errors"]  # no "already exists" errors: nothing was attempted
    found = requests.get(inode.base_url + URL, params={"key": key}, auth=A8, timeout=10)
    assert found.json()["id"] == a["id"]
    assert requests.get(inode.base_url + URL, params={"key": key}, auth=A9,
                        timeout=10).status_code == 404  # fmt: skip


def test_csv_job(inode):
    tag = uuid.uuid4().hex[:8]
    rows = ["handle,1:URL,2:EMAIL,DESC"] + [
        f"88.118.8/{tag}-{i},https://f.example/{i},\"q{i}@f.example\",\"unit, {i}\""
        for i in range(50)] + [f"88.118.9/{tag}-x,https://f.example/x,,"]
    r = post(inode, ("\n".join(rows) + "\n").encode(), ctype="text/csv")
    job = r.json()
    assert (job["format"], job["committed"], job["failed"]) == ("csv", 50, 1)
    assert job["errors"][0]["line"] == 52 and "not under" in job["errors"][0]["message"]
    doc = requests.get(f"{inode.api_url}88.118.8/{tag}-3", timeout=10).json()
    assert [(v["index"], v["type"], v["data"]["value"]) for v in doc["values"]] == [
        (1, "URL", "https://f.example/3"), (2, "EMAIL", "q3@f.example"), (3, "DESC", "unit, 3")]


def test_refusals_are_json(inode):
    r = post(inode, jsonl("x", 1), auth=None)
    assert r.status_code == 401 and r.json()["responseCode"] == 402
    r = post(inode, jsonl("x", 1), auth=A9)
    assert r.status_code == 403 and r.json()["responseCode"] in (400, 401)
    r = post(inode, jsonl("x", 1), mode="sometimes")
    assert r.status_code == 400 and "mode" in r.json()["message"]
    r = requests.put(inode.base_url + URL, auth=A8, timeout=10)
    assert r.status_code == 405 and "GET" in r.headers["Allow"]


def test_import_survives_kill_9_of_the_node(start_node, tmp_path_factory, load_lines):
    """The node is killed (SIGKILL, every process) after some chunks committed; a restarted
    node resumes the job of the same key and every line ends up present exactly once."""
    data = load_lines(tmp_path_factory.mktemp("kill") / "data", enterprise("88.118.8", SECRET_8))
    node = start_node(data=data)
    n, key, tag = 60_000, str(uuid.uuid4()), "K"
    body = jsonl(tag, n)
    half = body.index(b"\n", len(body) * 3 // 4) + 1
    release = threading.Event()

    def slow():
        yield body[:half]
        release.wait(60)  # hold the request open until the node is dead

    errors: list[BaseException] = []

    def send():
        try:
            post(node, slow(), key=key)
        except requests.RequestException as exc:
            errors.append(exc)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    deadline = time.monotonic() + 60
    while True:  # wait until at least one chunk is committed
        r = requests.get(node.base_url + URL, params={"key": key}, auth=A8, timeout=10)
        if r.status_code == 200 and r.json()["committed"] > 0:
            break
        assert time.monotonic() < deadline, r.text
        time.sleep(0.1)
    node.kill()
    release.set()
    sender.join(30)
    assert errors, "the request must have failed with the node"

    node2 = start_node(data=data)
    mid = requests.get(node2.base_url + URL, params={"key": key}, auth=A8, timeout=10).json()
    assert mid["state"] == "interrupted" and 0 < mid["committed"] == mid["done"] < n
    job = post(node2, body, key=key).json()
    assert job["state"] == "done" and job["skipped"] == mid["done"]
    assert (job["committed"], job["failed"]) == (n, 0)
    store = LmdbStore(data, readonly=True)  # the node's own files, read beside it
    try:
        total, keys = store.list_keys(b"88.118.8")
    finally:
        store.close()
    names = [k for k in keys if k.startswith(f"88.118.8/{tag}-".encode())]
    assert len(names) == len(set(names)) == n
    for i in (0, n // 2, n - 1):  # and they resolve
        assert resolves(node2, f"88.118.8/{tag}-{i}")


def test_a_client_that_goes_away_leaves_a_resumable_job(inode):
    """The connection drops mid-body: the worker keeps what it committed, gives the job up
    (no owner: any worker may resume it) and logs no error; the same key finishes it."""
    import base64
    import socket

    tag, key = uuid.uuid4().hex[:8], str(uuid.uuid4())
    body = jsonl(tag, 60_000)
    auth = base64.b64encode(f"{A8[0]}:{A8[1]}".encode()).decode()
    with socket.create_connection(("127.0.0.1", inode.port), timeout=10) as s:
        s.sendall((f"POST {URL}?prefix=88.118.8 HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Basic {auth}\r\nIdempotency-Key: {key}\r\n"
                   "Transfer-Encoding: chunked\r\n\r\n").encode())  # fmt: skip
        for i in range(0, len(body) * 2 // 3, 65536):
            piece = body[i : i + 65536]
            s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        deadline = time.monotonic() + 30
        while requests.get(inode.base_url + URL, params={"key": key}, auth=A8,
                           timeout=10).json()["committed"] == 0:  # fmt: skip
            assert time.monotonic() < deadline
            time.sleep(0.05)
    deadline = time.monotonic() + 30
    while (mid := requests.get(inode.base_url + URL, params={"key": key}, auth=A8,
                               timeout=10).json())["state"] != "interrupted":  # fmt: skip
        assert time.monotonic() < deadline, mid
        time.sleep(0.05)
    job = post(inode, body, key=key).json()
    assert job["state"] == "done" and job["skipped"] == mid["done"] > 0
    assert (job["committed"], job["failed"]) == (60_000, 0)
    assert "Traceback" not in inode.stderr()
