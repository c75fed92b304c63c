"""Fixtures of the security suite: one data set of enterprises, served by real nodes and held
in real LMDB stores, and the "nothing changed" check every refusal is followed by.

The data set (``DATA``, loaded by ``idnode load`` for nodes and by ``registry.bulk.load`` for
stores) has the shape Handle.net gives enterprises (handle.md §2.3, §5):

* ``0.NA/88.118`` — the operator's prefix; its ``300`` HS_SECKEY is the server admin
  ``300:0.NA/88.118`` (``server_admins`` in the node's config).
* ``0.NA/88.118.8`` grants ``ENTERPRISE`` (every bit but the three admin bits) to the group
  ``200:0.NA/88.118.8`` — an HS_VLIST naming ``300:88.118.8/ADMIN`` — and every bit to the
  server admin; so an enterprise admin runs its prefix but cannot rewrite who administers it.
  ``88.118.9`` is built the same way; ``0.NA/88.118.88`` is homed for a third owner.
* ``88.118.8/USER`` is an identity of the same enterprise outside the admin group: it holds
  value rights only (no admin bits, no delete) on ``88.118.8/SHARED`` and ``88.118.8/GROUPS``,
  whose HS_VLIST is the group that administers ``88.118.8/GUARDED``.
* ``88.118.8/TAKEN`` lies under 88.118.8 but is administered by ``300:88.118.8/OTHER`` only.
* ``*/OWNED`` records under every other prefix are the targets of cross-prefix attempts.

``State`` is the whole store as bytes (every record, every prefix handle) plus the change log's
last txn id: a refusal must leave it equal.
"""

from __future__ import annotations

import base64
import dataclasses
import http.client
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import orjson
import pytest

from registry import bulk
from registry.authz import Identity, Perm
from registry.service import Registry
from resolver.store.lmdb_store import LmdbStore

# -- identities and their secrets (distinct strings: the log test searches for each) -------------

ROOT_SECRET = "root-Pq3vX9-secret"
SECRET_8 = "ent8-Hk2wM7-secret"
SECRET_9 = "ent9-Tz5nB4-secret"
SECRET_U = "user-Jd8cR1-secret"
SECRETS = (ROOT_SECRET, SECRET_8, SECRET_9, SECRET_U)

ROOT = "300:0.NA/88.118"
A8 = "300:88.118.8/ADMIN"
A9 = "300:88.118.9/ADMIN"
U8 = "300:88.118.8/USER"
CREDENTIALS = {ROOT: ROOT_SECRET, A8: SECRET_8, A9: SECRET_9, U8: SECRET_U}

ALL = int(Perm(0xFFF))
ADMIN_BITS = Perm.ADD_ADMIN | Perm.MODIFY_ADMIN | Perm.REMOVE_ADMIN
ENTERPRISE = int(Perm(0xFFF) & ~ADMIN_BITS)
VALUE_RIGHTS = int(Perm.ADD_VALUE | Perm.MODIFY_VALUE | Perm.REMOVE_VALUE | Perm.READ_VALUE)

CONFIG = '[node]\nserver_admins = ["300:0.NA/88.118"]\nlog_level = "debug"\n'


def admin(handle: str, index: int, perms: int, at: int = 100) -> dict:
    return {"index": at, "type": "HS_ADMIN",
            "data": {"format": "admin", "value": {"handle": handle, "index": index,
                                                  "permissions": perms}}}  # fmt: skip


def vlist(members: list[tuple[str, int]], at: int = 200) -> dict:
    return {"index": at, "type": "HS_VLIST",
            "data": {"format": "vlist", "value": [{"handle": h, "index": i} for h, i in members]}}


def seckey(secret: str, at: int = 300) -> dict:
    return {"index": at, "type": "HS_SECKEY", "data": secret, "permissions": "1100"}


def url(target: str, at: int = 1) -> dict:
    return {"index": at, "type": "URL", "data": target}


def private(text: str, at: int = 2) -> dict:
    return {"index": at, "type": "NOTE", "data": text, "permissions": "1100"}


def _enterprise(prefix: str, secret: str) -> list[dict]:
    group = f"0.NA/{prefix}"
    return [
        {"handle": group, "values": [admin(group, 200, ENTERPRISE),
                                     admin("0.NA/88.118", 300, ALL, at=101),
                                     vlist([(f"{prefix}/ADMIN", 300)])]},
        {"handle": f"{prefix}/ADMIN", "values": [admin(group, 200, ALL), seckey(secret)]},
        {"handle": f"{prefix}/OWNED", "values": [url(f"https://{prefix}.example/owned"),
                                                 private(f"note of {prefix}"),
                                                 admin(group, 200, ALL)]},
    ]  # fmt: skip


DATA: list[dict] = [
    {"handle": "0.NA/88.118", "values": [admin("0.NA/88.118", 300, ALL), seckey(ROOT_SECRET)]},
    {"handle": "88.118/OWNED", "values": [url("https://operator.example/owned"),
                                          admin("0.NA/88.118", 300, ALL)]},
    *_enterprise("88.118.8", SECRET_8),
    *_enterprise("88.118.9", SECRET_9),
    {"handle": "0.NA/88.118.88", "values": [admin("0.NA/88.118.88", 200, ALL),
                                            vlist([("88.118.88/ADMIN", 300)])]},
    {"handle": "88.118.88/OWNED", "values": [url("https://88.118.88.example/owned"),
                                             admin("0.NA/88.118.88", 200, ALL)]},
    {"handle": "88.118.8/USER", "values": [admin("0.NA/88.118.8", 200, ALL), seckey(SECRET_U)]},
    {"handle": "88.118.8/NOKEY", "values": [admin("0.NA/88.118.8", 200, ALL),
                                            url("https://no-key.example")]},
    {"handle": "88.118.8/SHARED", "values": [url("https://shared.example"), private("shared"),
                                             admin("88.118.8/USER", 300, VALUE_RIGHTS),
                                             admin("0.NA/88.118.8", 200, ALL, at=101)]},
    {"handle": "88.118.8/GROUPS", "values": [url("https://groups.example"),
                                             admin("0.NA/88.118.8", 200, ALL),
                                             admin("88.118.8/USER", 300, VALUE_RIGHTS, at=101),
                                             vlist([("88.118.8/ADMIN", 300)])]},
    {"handle": "88.118.8/GUARDED", "values": [url("https://guarded.example"),
                                              admin("88.118.8/GROUPS", 200, ALL)]},
    {"handle": "88.118.8/TAKEN", "values": [url("https://taken.example"),
                                            admin("88.118.8/OTHER", 300, ALL)]},
    {"handle": "88.118.9/café", "values": [url("https://cafe.example"),
                                           admin("0.NA/88.118.9", 200, ALL)]},
]  # fmt: skip


def jsonl() -> str:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in DATA)


# -- the "nothing changed" check ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class State:
    """Everything a write can change: the change log's head, every record, every prefix."""

    last_txn: int
    records: dict[bytes, bytes]
    prefixes: dict[bytes, bytes]

    def record(self, key: bytes) -> bytes | None:
        return self.prefixes.get(key[5:]) if key.startswith(b"0.NA/") else self.records.get(key)


def snapshot(store: LmdbStore) -> State:
    with store.env.begin() as txn:
        records = {bytes(k): bytes(v) for k, v in txn.cursor(db=store.records_db)}
        prefixes = {bytes(k): bytes(v) for k, v in txn.cursor(db=store.prefixes_db)}
    return State(store.last_txn_id(), records, prefixes)


# -- service level -----------------------------------------------------------------------------


@pytest.fixture
def sec_store(tmp_path) -> LmdbStore:
    """A real LMDB store holding ``DATA`` (fresh for every test)."""
    store = LmdbStore(tmp_path / "store", map_size=64 << 20)
    report = bulk.load(store, jsonl().splitlines())
    assert report.ok, report.errors
    yield store
    store.close()


@pytest.fixture
def registry(sec_store) -> Registry:
    return Registry(sec_store, server_admins=[Identity.parse(ROOT)])


# -- REST level --------------------------------------------------------------------------------


@dataclasses.dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def json(self):
        return orjson.loads(self.body)

    @property
    def rc(self) -> int:
        return self.json["responseCode"]


def basic(user: str, secret: str | bytes) -> str:
    """``Authorization: Basic`` as pyhandle sends it: the user's ':' percent-encoded (§7.3)."""
    pw = secret.encode("utf-8") if isinstance(secret, str) else secret
    return "Basic " + base64.b64encode(quote(user, safe="/").encode() + b":" + pw).decode()


class Api:
    """Requests to one node, sent byte for byte as given, and the node's store, read-only."""

    def __init__(self, node) -> None:
        self.node = node
        self.store = LmdbStore(node.data, readonly=True)

    def call(self, method: str, path: str, *, who: str | None = None, body=None,
             ctype: str | None = "application/json", headers: dict | None = None,
             timeout: float = 10.0) -> Reply:  # fmt: skip
        """``path`` below ``/api/handles/`` unless it starts with '/'; ``who`` logs in with its
        own secret; a non-bytes ``body`` is sent as JSON."""
        hdrs = dict(headers or {})
        if who is not None:
            hdrs["Authorization"] = basic(who, CREDENTIALS[who])
        if body is not None and not isinstance(body, bytes):
            body = orjson.dumps(body)
        if body is not None and ctype is not None:
            hdrs.setdefault("Content-Type", ctype)
        target = path if path.startswith("/") else "/api/handles/" + path
        conn = http.client.HTTPConnection("127.0.0.1", self.node.port, timeout=timeout)
        try:
            conn.putrequest(method, target, skip_accept_encoding=True)
            for k, v in hdrs.items():
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return Reply(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def state(self) -> State:
        return snapshot(self.store)

    def alive(self) -> bool:
        """The node still answers a resolution (after a hostile request)."""
        r = self.call("GET", "88.118.8/OWNED")
        return r.status == 200 and r.rc == 1

    def close(self) -> None:
        self.store.close()


def load_data(tmp: Path, env: dict) -> Path:
    src = tmp / "security.jsonl"
    src.write_text(jsonl(), encoding="utf-8")
    data = tmp / "data"
    r = subprocess.run([sys.executable, "-m", "resolver", "load", "--data", str(data), str(src)],
                       capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return data


@pytest.fixture(scope="session")
def start_secure_node(start_node, tmp_path_factory, idnode_env):
    """Factory: a fresh one-worker node holding ``DATA`` (one worker: one failure limiter)."""
    started: list[Api] = []

    def start(config: str = CONFIG) -> Api:
        data = load_data(tmp_path_factory.mktemp("secdata"), idnode_env)
        api = Api(start_node(data=data, workers=1, config_text=config))
        started.append(api)
        return api

    yield start
    for api in started:
        api.close()


@pytest.fixture(scope="session")
def api(start_secure_node) -> Api:
    """The shared node of the suite's REST cases."""
    return start_secure_node()
