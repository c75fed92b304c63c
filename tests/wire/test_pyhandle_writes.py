"""pyhandle 1.5 writes against a running node: the Handle.net v9 REST semantics (handle.md §7, §8).

Two enterprises, each with an admin identity holding an HS_SECKEY (readable by admins only):
``300:88.118.8/ADMIN`` — a member, through the HS_VLIST at ``200:0.NA/88.118.8``, of the admin
group the prefix handle and pyhandle's default HS_ADMIN name — and ``300:88.118.9/ADMIN``.
Every call is pyhandle's own code path (the HTTP requests it sends are in handle.md §8).
"""

from __future__ import annotations


import pytest
import requests
from pyhandle.client.resthandleclient import RESTHandleClient
from pyhandle.handleexceptions import (
    GenericHandleError, HandleAlreadyExistsException, HandleAuthenticationError,
    HandleNotFoundException,
)  # fmt: skip

pytestmark = pytest.mark.wire

SECRET_8 = "pw-8-correct horse"
SECRET_9 = "pw-9-battery staple"
ADMIN_ALL = "011111111111"


def _admin(handle: str, index: int, perms: str = ADMIN_ALL) -> dict:
    return {"index": 100, "type": "HS_ADMIN",
            "data": {"format": "admin", "value": {"handle": handle, "index": index,
                                                  "permissions": perms}}}  # fmt: skip


def _enterprise(prefix: str, secret: str) -> list[dict]:
    return [
        {"handle": f"0.NA/{prefix}", "values": [
            _admin(f"0.NA/{prefix}", 200),
            {"index": 200, "type": "HS_VLIST",
             "data": {"format": "vlist", "value": [{"handle": f"{prefix}/ADMIN", "index": 300}]}},
        ]},
        {"handle": f"{prefix}/ADMIN", "values": [
            _admin(f"0.NA/{prefix}", 200),
            {"index": 300, "type": "HS_SECKEY", "data": secret, "permissions": "1100"},
        ]},
    ]  # fmt: skip


@pytest.fixture(scope="module")
def wnode(start_node, tmp_path_factory, load_lines):
    tmp = tmp_path_factory.mktemp("writes")
    lines = _enterprise("88.118.8", SECRET_8) + _enterprise("88.118.9", SECRET_9)
    return start_node(data=load_lines(tmp / "data", lines))


def _client(node, user: str, password: str) -> RESTHandleClient:
    return RESTHandleClient.instantiate_with_username_and_password(
        node.base_url, user, password, HTTPS_verify=False)


@pytest.fixture(scope="module")
def owner(wnode) -> RESTHandleClient:
    return _client(wnode, "300:88.118.8/ADMIN", SECRET_8)


@pytest.fixture(scope="module")
def other(wnode) -> RESTHandleClient:
    return _client(wnode, "300:88.118.9/ADMIN", SECRET_9)


def _get(node, handle: str) -> dict:
    return requests.get(f"{node.api_url}{handle}", timeout=10).json()


def _urls(rec: dict) -> list[str]:
    return [v["data"]["value"] for v in rec["values"] if v["type"] == "URL"]


def test_register_handle_overwrite_false_then_true(wnode, owner):
    h = "88.118.8/pyh-reg-1"
    assert owner.register_handle(h, "https://example.com/one") == h
    assert _urls(_get(wnode, h)) == ["https://example.com/one"]
    with pytest.raises(HandleAlreadyExistsException):
        owner.register_handle(h, "https://example.com/two", overwrite=False)
    assert _urls(_get(wnode, h)) == ["https://example.com/one"]
    assert owner.register_handle(h, "https://example.com/two", overwrite=True) == h
    assert _urls(_get(wnode, h)) == ["https://example.com/two"]


def test_put_overwrite_false_on_existing_is_409_rc_101(wnode):
    body = {"values": [{"index": 1, "type": "URL", "data": "https://x"}]}
    auth = ("300%3A88.118.8/ADMIN", SECRET_8)
    url = f"{wnode.api_url}88.118.8/pyh-409"
    r = requests.put(url + "?overwrite=false", json=body, auth=auth, timeout=10)
    assert r.status_code == 201 and r.json() == {"responseCode": 1, "handle": "88.118.8/pyh-409"}
    r = requests.put(url + "?overwrite=false", json=body, auth=auth, timeout=10)
    assert r.status_code == 409 and r.json()["responseCode"] == 101


def test_register_handle_json_and_private_values(wnode, owner, other):
    h = "88.118.8/pyh-json-1"
    entries = [{"index": 1, "type": "URL", "data": "https://example.com/json"},
               {"index": 2, "type": "SECRET_NOTE", "data": "for owners", "permissions": "1100"}]
    assert owner.register_handle_json(h, entries, overwrite=False) == h
    anon = _get(wnode, h)
    assert [v["type"] for v in anon["values"]] == ["URL", "HS_ADMIN"]  # pyhandle added HS_ADMIN
    mine = owner.retrieve_handle_record_json(h, auth=True)
    assert "SECRET_NOTE" in [v["type"] for v in mine["values"]]
    other.register_handle("88.118.9/pyh-other-1", "https://example.com/nine")  # a session of its own
    theirs = other.retrieve_handle_record_json(h, auth=True)
    assert "SECRET_NOTE" not in [v["type"] for v in theirs["values"]]
    reader = RESTHandleClient(handle_server_url=wnode.base_url, HTTPS_verify=False)
    assert "SECRET_NOTE" not in [v["type"] for v in
                                 reader.retrieve_handle_record_json(h, auth=True)["values"]]


def test_generate_and_register_handle(wnode, owner):
    h = owner.generate_and_register_handle("88.118.8", "https://example.com/minted")
    assert h.startswith("88.118.8/") and len(h) > len("88.118.8/") + 30
    assert _urls(_get(wnode, h)) == ["https://example.com/minted"]


def test_modify_handle_value(wnode, owner):
    h = "88.118.8/pyh-mod-1"
    owner.register_handle(h, "https://example.com/before", CHECKSUM="abc")
    owner.modify_handle_value(h, URL="https://example.com/after", EMAIL="qa@example.com")
    rec = _get(wnode, h)
    by_type = {v["type"]: v["data"]["value"] for v in rec["values"]}
    assert by_type["URL"] == "https://example.com/after"
    assert by_type["EMAIL"] == "qa@example.com" and by_type["CHECKSUM"] == "abc"


def test_delete_handle_value(wnode, owner):
    h = "88.118.8/pyh-delval-1"
    owner.register_handle(h, "https://example.com/x", CHECKSUM="abc")
    owner.delete_handle_value(h, "CHECKSUM")
    assert "CHECKSUM" not in [v["type"] for v in _get(wnode, h)["values"]]


def test_delete_handle(wnode, owner):
    h = "88.118.8/pyh-del-1"
    owner.register_handle(h, "https://example.com/x")
    owner.delete_handle(h)
    assert _get(wnode, h)["responseCode"] == 100
    with pytest.raises(HandleNotFoundException):
        owner.delete_handle(h)


def test_another_enterprise_cannot_write_here(wnode, owner, other):
    h = "88.118.8/pyh-guarded"
    owner.register_handle(h, "https://example.com/guarded")
    with pytest.raises(GenericHandleError, match="403"):
        other.register_handle("88.118.8/pyh-intruder", "https://evil.example")
    with pytest.raises(GenericHandleError, match="403"):
        other.modify_handle_value(h, URL="https://evil.example")
    with pytest.raises(GenericHandleError, match="403"):
        other.delete_handle(h)
    assert _urls(_get(wnode, h)) == ["https://example.com/guarded"]
    assert _get(wnode, "88.118.8/pyh-intruder")["responseCode"] == 100
    r = requests.delete(f"{wnode.api_url}{h}", auth=("300%3A88.118.9/ADMIN", SECRET_9), timeout=10)
    assert r.status_code == 403 and r.json()["responseCode"] == 401  # INSUFFICIENT_PERMISSIONS


def test_wrong_password_is_refused(wnode):
    with pytest.raises(GenericHandleError, match="403"):
        bad = _client(wnode, "300:88.118.8/ADMIN", "not the secret")
        bad.register_handle("88.118.8/pyh-badpw", "https://x")
    assert _get(wnode, "88.118.8/pyh-badpw")["responseCode"] == 100
    r = requests.put(f"{wnode.api_url}88.118.8/pyh-badpw", json=[], timeout=10,
                     auth=("300%3A88.118.8/ADMIN", "wrong"))  # fmt: skip
    assert r.status_code == 403 and r.json()["responseCode"] == 403


def test_write_without_credentials_is_401_rc_402(wnode):
    with pytest.raises(HandleAuthenticationError):
        anon = RESTHandleClient(handle_server_url=wnode.base_url, HTTPS_verify=False)
        anon.register_handle("88.118.8/pyh-anon", "https://x", overwrite=True)
    r = requests.put(f"{wnode.api_url}88.118.8/pyh-anon", json=[], timeout=10)
    assert r.status_code == 401 and r.json()["responseCode"] == 402
    assert r.headers["WWW-Authenticate"] == 'Basic realm="handle"'
