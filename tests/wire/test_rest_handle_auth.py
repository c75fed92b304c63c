"""The REST ``Authorization: Handle`` challenge scheme and its sessions (handle.md §7.3).

A node with two workers (so a session made on one must work on the other) and one enterprise
with an HS_SECKEY identity and an HS_PUBKEY (RSA) identity.  The client signs the server's
nonce ‖ its own cnonce, as the reference's ``HandleAuthorizationHeader`` clients do.
"""

from __future__ import annotations

import base64
import secrets

import pytest
from enterprises import enterprise
import requests

from registry.identities import Authenticator
from registry.sessions import HandleSessions, SessionTokens
from resolver.errors import AuthenticationFailed
from resolver.protocols.handle import auth as A
from resolver.record import Record, pack
from resolver.store import Change
from resolver.store.lmdb_store import LmdbStore
from resolver.values import HandleValue

pytestmark = pytest.mark.wire

SECRET = "handle-scheme secret"


@pytest.fixture(scope="module")
def hnode(start_node, tmp_path_factory, load_lines):
    key = A.generate_rsa_key(2048)
    lines = enterprise("88.118.8", SECRET, A.rsa_public_key_bytes(key.public_key()))
    node = start_node(workers=2, data=load_lines(tmp_path_factory.mktemp("hs") / "data", lines))
    node.key = key
    return node


def _new_session(node) -> tuple[str, bytes]:
    r = requests.post(f"{node.base_url}/api/sessions", timeout=10)
    assert r.status_code == 201
    doc = r.json()
    return doc["sessionId"], base64.b64decode(doc["nonce"])


def _signed(sid: str, nonce: bytes, *, who="300:88.118.8/ADMIN", kind="HS_SECKEY", alg="SHA1",
            secret=SECRET.encode(), key=None) -> str:  # fmt: skip
    cnonce = secrets.token_bytes(16)
    params = {"sessionId": sid, "id": who, "type": kind, "cnonce": base64.b64encode(cnonce).decode(),
              "alg": alg}  # fmt: skip
    if kind == "HS_PUBKEY":
        sig = A.rest_public_key_signature(key, nonce, cnonce, alg)
    elif alg.upper() == "PBKDF2-HMAC-SHA1":
        salt = secrets.token_bytes(16)
        sig = A.rest_secret_signature(secret, nonce, cnonce, alg, salt=salt, iterations=10000,
                                      length=160)  # fmt: skip
        params.update(salt=base64.b64encode(salt).decode(), iterations="10000", length="160")
    else:
        sig = A.rest_secret_signature(secret, nonce, cnonce, alg)
    params["signature"] = base64.b64encode(sig).decode()
    return A.format_authorization_header(params)


def _put(node, handle, header, url="https://example.com/h"):
    return requests.put(f"{node.api_url}{handle}", json=[{"index": 1, "type": "URL", "data": url}],
                        headers={"Authorization": header}, timeout=10)  # fmt: skip


@pytest.mark.parametrize("kind, alg", [("HS_SECKEY", "SHA1"), ("HS_SECKEY", "SHA256"),
                                       ("HS_SECKEY", "PBKDF2-HMAC-SHA1"), ("HS_PUBKEY", "SHA256")])
def test_session_authenticated_then_used_by_id_alone(hnode, kind, alg):
    sid, nonce = _new_session(hnode)
    who = "300:88.118.8/ADMIN" if kind == "HS_SECKEY" else "300:88.118.8/KEYS"
    header = _signed(sid, nonce, who=who, kind=kind, alg=alg, key=hnode.key)
    r = requests.put(f"{hnode.base_url}/api/sessions/this", headers={"Authorization": header},
                     timeout=10)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json() == {"sessionId": sid, "nonce": base64.b64encode(nonce).decode(),
                        "authenticated": True, "id": who}  # fmt: skip
    by_id = A.format_authorization_header({"sessionId": sid})
    for n in range(6):  # fresh connections: both workers see the session
        r = _put(hnode, f"88.118.8/hs-{kind}-{alg}-{n}", by_id)
        assert r.status_code == 200 and r.json()["responseCode"] == 1, r.text
    state = requests.get(f"{hnode.base_url}/api/sessions/this", headers={"Authorization": by_id},
                         timeout=10).json()  # fmt: skip
    assert state["authenticated"] is True and state["id"] == who
    assert requests.delete(f"{hnode.base_url}/api/sessions/this",
                           headers={"Authorization": by_id}, timeout=10).status_code == 204
    r = _put(hnode, f"88.118.8/hs-{kind}-{alg}-after", by_id)
    assert r.status_code == 401 and r.json()["responseCode"] == 402
    assert r.headers["WWW-Authenticate"].startswith('Handle sessionId="')


def test_inline_challenge_and_answer(hnode):
    r = _put(hnode, "88.118.8/hs-inline", "Handle id=\"300:88.118.8/ADMIN\"")
    assert r.status_code == 401
    challenge = A.parse_authorization_header(r.headers["WWW-Authenticate"])
    sid, nonce = challenge["sessionId"], base64.b64decode(challenge["nonce"])
    r = _put(hnode, "88.118.8/hs-inline", _signed(sid, nonce))
    assert r.status_code == 200 and r.json() == {"responseCode": 1, "handle": "88.118.8/hs-inline"}


def test_wrong_or_replayed_signatures_fail_and_write_nothing(hnode):
    sid, nonce = _new_session(hnode)
    bad = _signed(sid, nonce, secret=b"not the secret")
    r = _put(hnode, "88.118.8/hs-bad", bad)
    assert r.status_code == 403 and r.json()["responseCode"] == 403
    good_for_first = _signed(sid, nonce)
    other_sid, _ = _new_session(hnode)
    replayed = good_for_first.replace(sid, other_sid)  # same signature, another session's nonce
    r = _put(hnode, "88.118.8/hs-bad", replayed)
    assert r.status_code == 403 and r.json()["responseCode"] == 403
    forged = good_for_first.replace(sid, sid[:-2] + ("AA" if not sid.endswith("AA") else "BB"))
    r = _put(hnode, "88.118.8/hs-bad", forged)  # a session this node never issued
    assert r.status_code == 403 and r.json()["responseCode"] == 403
    assert requests.get(f"{hnode.api_url}88.118.8/hs-bad", timeout=10).status_code == 404


def test_the_nonce_must_be_answered_within_the_window(tmp_path):
    """The same correct signature is accepted inside the window and refused after it."""
    store = LmdbStore(tmp_path / "s", map_size=16 << 20)
    try:
        secret = SECRET.encode()
        record = Record([HandleValue(300, "HS_SECKEY", secret, permissions=0x0C)])
        store.write([Change(b"88.118.8/ADMIN", pack(record))])
        clock = [1000.0]
        hs = HandleSessions(store, Authenticator(store), SessionTokens(store),
                            clock=lambda: clock[0])  # fmt: skip

        def answer(sid, nonce):
            return A.parse_authorization_header(_signed(sid, nonce))

        late_sid, late_nonce = hs.new()
        sid, nonce = hs.new()
        assert hs.open(sid) == (nonce, 1000) and hs.identity_of(sid) is None
        clock[0] += HandleSessions.AUTH_WINDOW  # the last second of the window
        assert str(hs.authenticate(sid, answer(sid, nonce), "c")) == "300:88.118.8/ADMIN"
        assert str(hs.identity_of(sid)) == "300:88.118.8/ADMIN"
        clock[0] += 1  # one second too late for a session made at the same time
        with pytest.raises(AuthenticationFailed):
            hs.authenticate(late_sid, answer(late_sid, late_nonce), "c")
        assert hs.identity_of(late_sid) is None
        assert hs.open("garbage") is None and hs.open(sid + "x") is None
    finally:
        store.close()


def test_rotating_the_key_ends_cookie_and_handle_sessions(start_node, tmp_path_factory,
                                                          load_lines, idnode_env):  # fmt: skip
    import subprocess
    import sys

    lines = enterprise("88.118.8", SECRET)
    node = start_node(data=load_lines(tmp_path_factory.mktemp("rot") / "data", lines))
    cookie_client = requests.Session()
    r = cookie_client.put(f"{node.api_url}88.118.8/rot-1", json=[], timeout=10,
                          auth=("300%3A88.118.8/ADMIN", SECRET))  # fmt: skip
    assert r.status_code in (200, 201) and "idnode_session" in cookie_client.cookies
    sid, nonce = _new_session(node)
    assert requests.put(f"{node.base_url}/api/sessions/this", timeout=10,
                        headers={"Authorization": _signed(sid, nonce)}).status_code == 200
    by_id = A.format_authorization_header({"sessionId": sid})
    assert _put(node, "88.118.8/rot-2", by_id).status_code == 200
    assert cookie_client.put(f"{node.api_url}88.118.8/rot-3", json=[], timeout=10).status_code \
        == 200  # the cookie alone
    r = subprocess.run([sys.executable, "-m", "resolver", "identity", "rotate", "88.118.8/ADMIN",
                        "--index", "300", "--data", str(node.data)], capture_output=True,
                       text=True, env=idnode_env, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert _put(node, "88.118.8/rot-4", by_id).status_code == 401
    r = cookie_client.put(f"{node.api_url}88.118.8/rot-5", json=[], timeout=10)
    assert r.status_code == 401 and r.json()["responseCode"] == 402
