"""``POST /api/v1/batches``: up to 2000 creates/updates/deletes in one transaction, a result per
item, idempotent on retry (issue 5 §2; the IDIS secondary-node batch calls, idis.md §1.5).
"""

from __future__ import annotations

import uuid

import pytest
import requests
from enterprises import enterprise

pytestmark = pytest.mark.wire

SECRET_8, SECRET_9 = "batch secret 8", "batch secret 9"
A8 = ("300%3A88.118.8/ADMIN", SECRET_8)
A9 = ("300%3A88.118.9/ADMIN", SECRET_9)


@pytest.fixture(scope="module")
def bnode(start_node, tmp_path_factory, load_lines):
    lines = enterprise("88.118.8", SECRET_8) + enterprise("88.118.9", SECRET_9)
    return start_node(data=load_lines(tmp_path_factory.mktemp("batch") / "data", lines))


def _admin() -> dict:
    return {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
        "handle": "0.NA/88.118.8", "index": 200, "permissions": "011111111111"}}}  # fmt: skip


def _item(op: str, handle: str, url: str | None = None) -> dict:
    item = {"op": op, "handle": handle}
    if url is not None:
        item["values"] = [{"index": 1, "type": "URL", "data": url}, _admin()]
    return item


def _post(node, items, auth=A8, key=None):
    headers = {"Idempotency-Key": key} if key else {}
    return requests.post(f"{node.base_url}/api/v1/batches", json={"items": items}, auth=auth,
                         headers=headers, timeout=60)  # fmt: skip


def _url(node, handle):
    r = requests.get(f"{node.api_url}{handle}", timeout=10)
    if r.status_code != 200:
        return None
    return [v["data"]["value"] for v in r.json()["values"] if v["type"] == "URL"][0]


def test_create_update_delete_with_a_result_per_item(bnode):
    tag = uuid.uuid4().hex[:8]
    h = [f"88.118.8/B-{tag}-{n}" for n in range(4)]
    r = _post(bnode, [_item("create", h[0], "https://a0"), _item("create", h[1], "https://a1"),
                      _item("create", h[2], "https://a2")])  # fmt: skip
    assert r.status_code == 200
    doc = r.json()
    assert doc["responseCode"] == 1 and doc["txnId"] > 0
    assert [x["responseCode"] for x in doc["results"]] == [1, 1, 1]
    r = _post(bnode, [
        _item("update", h[0], "https://b0"),      # ok
        _item("create", h[1], "https://b1"),      # exists: 101, unchanged
        _item("delete", h[2]),                    # ok
        _item("update", h[3], "https://b3"),      # missing: 100
        _item("create", "88.118.9/B-" + tag, "https://evil"),  # another enterprise's: 401
        _item("frobnicate", f"88.118.8/B-{tag}-x", "https://x"),  # unknown op: 4
        _item("create", h[0], "https://again"),   # same identifier twice in one batch: 4
    ])  # fmt: skip
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["handle"] for x in results][:4] == [h[0], h[1], h[2], h[3]]
    assert [x["responseCode"] for x in results] == [1, 101, 1, 100, 401, 4, 4]
    assert all("message" in x for x in results if x["responseCode"] != 1)
    assert _url(bnode, h[0]) == "https://b0" and _url(bnode, h[1]) == "https://a1"
    assert _url(bnode, h[2]) is None and _url(bnode, h[3]) is None
    assert _url(bnode, "88.118.9/B-" + tag) is None


def test_a_retry_with_the_same_idempotency_key_changes_nothing(bnode):
    tag = uuid.uuid4().hex[:8]
    items = [_item("create", f"88.118.8/I-{tag}-{n}", f"https://i{n}") for n in range(50)]
    first = _post(bnode, items, key=f"job-{tag}")
    assert first.status_code == 200 and "Idempotent-Replay" not in first.headers
    # the items now exist: without the key a retry would answer 101 for each
    again = _post(bnode, items, key=f"job-{tag}")
    assert again.status_code == 200 and again.headers["Idempotent-Replay"] == "true"
    assert again.json()["results"] == first.json()["results"]
    assert {x["responseCode"] for x in again.json()["results"]} == {1}
    plain = _post(bnode, items)
    assert {x["responseCode"] for x in plain.json()["results"]} == {101}
    other = _post(bnode, items[:1], key=f"job-{tag}")  # same key, another request
    assert other.status_code == 400 and other.json()["responseCode"] == 4
    # keys are per identity: A9 using A8's key is a request of its own (and refused per item)
    theirs = _post(bnode, [_item("create", f"88.118.8/I-{tag}-new", "https://n")], auth=A9,
                   key=f"job-{tag}")  # fmt: skip
    assert theirs.status_code == 200 and theirs.json()["results"][0]["responseCode"] == 401


def test_limits_and_refusals(bnode):
    r = _post(bnode, [_item("create", f"88.118.8/L-{n}", "https://l") for n in range(2001)])
    assert r.status_code == 400 and r.json()["responseCode"] == 4
    r = requests.post(f"{bnode.base_url}/api/v1/batches", json={"items": []}, timeout=10)
    assert r.status_code == 401 and r.json()["responseCode"] == 402
    r = requests.post(f"{bnode.base_url}/api/v1/batches", data=b"{not json", auth=A8,
                      headers={"Content-Type": "application/json"}, timeout=10)  # fmt: skip
    assert r.status_code == 400 and r.json()["responseCode"] == 4
    r = _post(bnode, [{"op": "create", "handle": "88.118.8/bad-values",
                       "values": [{"index": "x", "type": "URL", "data": "u"}]},
                      {"op": "create"},
                      {"op": "create", "handle": "88.118.8/int-values", "values": 5}])  # fmt: skip
    assert [x["responseCode"] for x in r.json()["results"]] == [202, 4, 202]
    assert requests.get(f"{bnode.base_url}/api/v1/batches", auth=A8, timeout=10).status_code == 405


def test_a_full_batch_of_2000(bnode):
    tag = uuid.uuid4().hex[:8]
    items = [_item("create", f"88.118.8/F-{tag}-{n:04d}", f"https://f{n}") for n in range(2000)]
    r = _post(bnode, items)
    assert r.status_code == 200
    assert {x["responseCode"] for x in r.json()["results"]} == {1}
    assert _url(bnode, f"88.118.8/F-{tag}-0000") == "https://f0"
    assert _url(bnode, f"88.118.8/F-{tag}-1999") == "https://f1999"
