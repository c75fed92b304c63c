"""Takeover sync against real nodes (issue 7 §7): a top-level node copies a secondary's change
log and answers for it, from the copy, once the secondary is gone.

Two ``idnode serve`` processes on 127.0.0.1, shared by the module (the tests run in order: the
last ones stop A):

* **A** (secondary) homes ``88.118`` (an enterprise as Handle.net sets one up: the identity
  ``300:88.118/ADMIN`` with an HS_SECKEY, listed in A's ``server_admins``) with records
  ``88.118/x`` (two public values and one without public read) and ``88.118/y``.
* **T** (top-level) holds ``0.NA/88`` whose HS_SITE.PREFIX refers every ``88.*`` prefix to A,
  and ``[takeover] sources = [A's REST URL]`` as ``300:88.118/ADMIN``, pulling every second,
  answering from the copy once A has failed for 1 s.

While A answers, T answers for 88.118 as before (RC 301 / HTTP 400; ``0.NA/88.118`` a
referral).  A batch on A (update x, delete y, create z) reaches T's copy; then A is stopped
and T answers A's identifiers from the copy over Handle UDP and TCP and REST — the public
values only, the changed ones — and logs the non-authoritative answers (E083).
"""

from __future__ import annotations

import asyncio
import json

import pytest
from peers import site
from enterprises import enterprise

from proc import wait_for
from resolver.protocols.handle import constants as C
from resolver.record import unpack
from resolver.store.lmdb_store import LmdbStore
from resolver.upstream.agent import STATUS_FILE
from resolver.upstream.client import HandleClient

pytestmark = pytest.mark.wire

SECRET = "takeover secret 7"
ADMIN = "300:88.118/ADMIN"
BASIC = {"Authorization": "Basic " + __import__("base64").b64encode(
    f"300%3A88.118/ADMIN:{SECRET}".encode()).decode()}  # fmt: skip
TS = "2026-01-01T00:00:00Z"
X_VALUES = [
    {"index": 1, "type": "URL", "data": "https://a.example/88.118/x", "ttl": 3600,
     "timestamp": TS},
    {"index": 2, "type": "EMAIL", "data": "ops@a.example", "timestamp": TS},
    {"index": 3, "type": "SECRET", "data": "not for the public", "permissions": "1100",
     "timestamp": TS},
]  # fmt: skip
Y_VALUES = [{"index": 1, "type": "URL", "data": "https://a.example/88.118/y", "timestamp": TS}]


def status(node) -> dict | None:
    """The takeover part of a node's agent status file (None until it is written)."""
    try:
        return json.loads((node.data / STATUS_FILE).read_text())["takeover"]
    except (OSError, ValueError, KeyError):
        return None


def source_status(t, a) -> dict | None:
    s = status(t)
    return s and s["sources"][a.base_url]


def last_txn(a) -> int:
    """A's last change-log id, from its change log (as a server admin)."""
    r = a.get("/api/v1/changes?after=0&limit=10000", headers=BASIC)
    assert r.status == 200, r.body
    return json.loads(r.body)["next"]


def ask(node, handle: str, proto: str = "udp"):
    client = HandleClient(udp_retry=(2.0,), tcp_timeout=5.0)
    return asyncio.run(client.resolve(handle, server=("127.0.0.1", node.handle_port),
                                      proto=proto))  # fmt: skip


def triples(values) -> list[tuple[int, str, bytes]]:
    return [(v.index, v.type, v.data) for v in values]


@pytest.fixture(scope="module")
def pair(start_node, tmp_path_factory, load_lines):
    tmp = tmp_path_factory.mktemp("takeover")
    (tmp / "secret").write_text(SECRET + "\n")
    a_data = load_lines(tmp / "a-data", enterprise("88.118", SECRET) + [
        {"handle": "88.118/x", "values": X_VALUES},
        {"handle": "88.118/y", "values": Y_VALUES}])  # fmt: skip
    a = start_node(data=a_data, args=("--dns-port", "-1"),
                   config_text=f'[node]\nserver_admins = ["{ADMIN}"]\n')  # fmt: skip
    t_data = load_lines(tmp / "t-data", [{"handle": "0.NA/88", "values": [
        {"index": 1, "type": "HS_SITE.PREFIX", "timestamp": TS,
         "data": {"format": "site", "value": site(a.handle_port, "secondary A", http_port=a.port)}}]}])  # fmt: skip
    t = start_node(data=t_data, args=("--dns-port", "-1"), config_text=(
        '[node]\nrole = "top-level"\n'
        f'[takeover]\nsources = ["{a.base_url}/"]\nidentity = "{ADMIN}"\n'
        f'secret_file = "{tmp / "secret"}"\ninterval = 1\nenabled = true\ndown_after = 1\n'))
    return a, t


# -- while A answers -------------------------------------------------------------------------------
def test_the_copy_follows_the_secondarys_change_log(pair):
    a, t = pair
    last = last_txn(a)
    src = wait_for(lambda: (s := source_status(t, a)) and s["last_applied"] >= last and s,
                   15, "T's copy of A's change log")  # fmt: skip
    assert src["state"] == "up" and src["prefixes"] == ["88.118"] and src["error"] is None
    assert status(t)["enabled"] is True
    copy = LmdbStore(t.data, readonly=True)
    try:
        hit = copy.takeover_lookup(b"88.118", b"88.118/X")
        assert hit.source == a.base_url and hit.down_since_ms is None
        # the copy is A's public view: the value without public read is not copied
        assert triples(unpack(hit.blob)) == [(1, "URL", b"https://a.example/88.118/x"),
                                             (2, "EMAIL", b"ops@a.example")]  # fmt: skip
        assert unpack(hit.blob)[0].ttl == 3600
        assert copy.takeover_lookup(b"88.118", b"88.118/Y").blob is not None
        assert copy.get_record(b"88.118/X") is None  # the copy is not T's own data
        assert copy.get_prefix(b"88.118") is None
    finally:
        copy.close()


@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_a_reachable_secondary_is_not_answered_for(pair, proto):
    _, t = pair
    assert ask(t, "88.118/x", proto).header.rc == 301
    referral = ask(t, "0.NA/88.118", proto)  # T's own data: the referral to A, as before
    assert referral.header.rc == 303
    rest = t.get("/api/handles/88.118/x")
    assert rest.status == 400 and json.loads(rest.body)["responseCode"] == 301


def test_changes_on_the_secondary_reach_the_copy(pair):
    a, t = pair
    items = [{"op": "update", "handle": "88.118/x", "values": [
                {"index": 1, "type": "URL", "data": "https://a.example/88.118/x-v2"}]},
             {"op": "delete", "handle": "88.118/y"},
             {"op": "create", "handle": "88.118/z", "values": [
                {"index": 1, "type": "URL", "data": "https://a.example/88.118/z"}]}]  # fmt: skip
    r = a.get("/api/v1/batches", method="POST", body=json.dumps({"items": items}).encode(),
              headers={**BASIC, "Content-Type": "application/json"})  # fmt: skip
    assert r.status == 200, r.body
    body = json.loads(r.body)
    assert [x["responseCode"] for x in body["results"]] == [1, 1, 1], body
    wait_for(lambda: (s := source_status(t, a)) and s["last_applied"] >= body["txnId"], 10,
             "the batch in T's copy")  # fmt: skip
    assert ask(t, "88.118/z").header.rc == 301  # A still answers: still not T's business


# -- A stops ---------------------------------------------------------------------------------------
def test_takeover_answers_from_the_copy_once_the_secondary_is_gone(pair):
    a, t = pair
    assert a.stop() == 0
    reply = wait_for(lambda: (r := ask(t, "88.118/x")).header.rc == 1 and r, 10,
                     "T answering 88.118/x from its copy")  # fmt: skip
    assert triples(reply.body.values) == [(1, "URL", b"https://a.example/88.118/x-v2")]
    assert not reply.header.opflags & C.FLAG_AUTHORITATIVE
    # the status file is rewritten every second: it follows within one
    wait_for(lambda: source_status(t, a)["state"] == "down", 3, "A down in T's status")
    tcp = ask(t, "88.118/X", "tcp")
    assert tcp.header.rc == 1 and triples(tcp.body.values) == triples(reply.body.values)
    assert ask(t, "88.118/y").header.rc == 100  # deleted on A before it stopped
    z = ask(t, "88.118/z")
    assert z.header.rc == 1
    assert triples(z.body.values) == [(1, "URL", b"https://a.example/88.118/z")]
    rest = t.get("/api/handles/88.118/x")
    assert rest.status == 200, rest.body
    doc = json.loads(rest.body)
    assert [(v["index"], v["data"]["value"]) for v in doc["values"]] == [
        (1, "https://a.example/88.118/x-v2")]  # fmt: skip
    gone = t.get("/api/handles/88.118/y")
    assert gone.status == 404 and json.loads(gone.body)["responseCode"] == 100
    assert ask(t, "88.118.5/x").header.rc == 301  # not a prefix A homes: nothing to take over
    log = t.stderr()
    assert "E080" in log and "E083" in log and "non-authoritative" in log
    assert "88.118/x from the copy of " + a.base_url in log
