"""Prefix registration upstream (issue 7 §2) with real ``idnode serve`` processes on 127.0.0.1.

* **T** (top-level) homes ``88``.  How the national node grants a secondary the right to
  register (handle.md §5; ``registry.authz``), both ways shown:

  - it allocates ``88.121`` to A by writing ``0.NA/88.121`` with ``HS_ADMIN 300:0.NA/88.121``
    (every right but LIST_HANDLES, so ADD_DERIVED_PREFIX too) and A's RSA public key as
    ``HS_PUBKEY`` at index 300 — the Handle.net way of handing out a prefix; A proves
    ``300:0.NA/88.121`` with its private key and writes the HS_SITE itself;
  - it lets the identity ``300:88/SECONDARY-C`` (an HS_SECKEY held at T) create derived
    prefixes of ``88`` through an HS_ADMIN of ``0.NA/88`` with ADD_DERIVED_PREFIX only;
  - its own operator ``300:88/ADMIN`` is in ``[node] server_admins`` (used here to tamper).

* **A** (secondary) homes ``88.121``, the enterprise prefix ``88.121.7`` and ``77.5`` (not
  under its own prefix: never registered), with ``[upstream] prefixes = ["88.121"]``,
  ``identity = "300:0.NA/88.121"``, ``key_file`` and ``register_interval = 1``.

A's agent completes ``0.NA/88.121`` at T with its HS_SITE and creates ``0.NA/88.121.7``; a
tampered HS_SITE at T is put back; once T delegates ``88.121``'s derived prefixes to A
(HS_SITE.PREFIX), a new enterprise prefix is not registered (``delegated``) and T refers it to
A (RC 303).  ``PrefixRegistrar`` is also driven directly against T (secret-key identity, a wrong
secret, a dead upstream).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import sys

import pytest

from proc import wait_for
from resolver.protocols.handle import auth as A
from resolver.protocols.handle import constants as C
from resolver.protocols.handle.message import ValuesBody
from resolver.upstream.agent import STATUS_FILE
from resolver.upstream.client import HandleClient, PublicKeyAuth, SecretKeyAuth
from resolver.upstream.registration import PrefixRegistrar, plan_prefixes
from resolver.values import AdminRecord, HandleValue, Interface, ServerInfo, SiteInfo

pytestmark = pytest.mark.wire

HOST = "127.0.0.1"
TS = "2026-01-01T00:00:00Z"
ALL = "011111111111"  # every HS_ADMIN right but LIST_HANDLES (handle.md §2.3)
T_ADMIN_SECRET = "top-level operator secret"
C_SECRET = "secondary C secret"


def admin(handle: str, index: int, perms: str = ALL, at: int = 100) -> dict:
    return {"index": at, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
        "handle": handle, "index": index, "permissions": perms}}, "timestamp": TS}  # fmt: skip


def secret_key(secret: str) -> dict:
    return {"index": 300, "type": "HS_SECKEY", "data": secret, "permissions": "1100",
            "timestamp": TS}  # fmt: skip


def a_site_of(port: int) -> bytes:
    """A one-server site on 127.0.0.1 (handle.md §2.4), as some other node would have it."""
    server = ServerInfo(1, ServerInfo.pack_address(HOST), b"",
                        (Interface(3, 1, port), Interface(2, 0, port)))  # fmt: skip
    return SiteInfo(attributes=(("desc", f"site {port}"),), servers=(server,)).to_bytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def nodes(start_node, tmp_path_factory, load_lines):
    tmp = tmp_path_factory.mktemp("registration")
    key = A.generate_rsa_key(2048)
    (tmp / "a.pem").write_bytes(A.private_key_pem(key))
    pubkey = base64.b64encode(A.rsa_public_key_bytes(key.public_key())).decode()
    t_data = load_lines(tmp / "t-data", [
        {"handle": "0.NA/88", "values": [
            admin("88/ADMIN", 300),
            admin("88/SECONDARY-C", 300, perms="000000000100", at=101)]},  # ADD_DERIVED_PREFIX
        {"handle": "88/ADMIN", "values": [admin("88/ADMIN", 300), secret_key(T_ADMIN_SECRET)]},
        {"handle": "88/SECONDARY-C", "values": [admin("88/ADMIN", 300), secret_key(C_SECRET)]},
        # prefixes of C whose index 1 is taken: by a public value, by one C cannot read
        {"handle": "0.NA/88.123", "values": [admin("88/SECONDARY-C", 300), {
            "index": 1, "type": "DESC", "data": "taken", "timestamp": TS}]},
        {"handle": "0.NA/88.124", "values": [admin("88/SECONDARY-C", 300), {
            "index": 1, "type": "NOTE", "data": "hidden", "permissions": "1100",
            "timestamp": TS}]},
        # the national node's allocation of 88.121 to A: A's identity and public key
        {"handle": "0.NA/88.121", "values": [
            admin("0.NA/88.121", 300),
            {"index": 300, "type": "HS_PUBKEY", "timestamp": TS,
             "data": {"format": "base64", "value": pubkey}}]},
    ])  # fmt: skip
    t = start_node(data=t_data, config_text='[node]\nrole = "top-level"\n'
                                            'server_admins = ["300:88/ADMIN"]\n',
                   args=("--dns-port", "-1"))  # fmt: skip
    a_data = load_lines(tmp / "a-data", [
        {"handle": f"0.NA/{p}", "values": [admin(f"0.NA/{p}", 300)]}
        for p in ("88.121", "88.121.7", "77.5")])  # fmt: skip
    a = start_node(data=a_data, args=("--dns-port", "-1"), config_text=(
        f'[upstream]\nservers = ["{HOST}:{t.handle_port}"]\nprefixes = ["88.121"]\n'
        f'identity = "300:0.NA/88.121"\nkey_file = "{tmp / "a.pem"}"\n'
        "register_interval = 1\n"))  # fmt: skip
    reply = asyncio.run(HandleClient().get_site_info((HOST, a.handle_port), proto="tcp"))
    a.site = reply.body.site  # A's HS_SITE record, exactly as A serves (and registers) it
    return t, a


def at(node, handle: str):
    """``handle`` at ``node`` over TCP (the client's default flags)."""
    return asyncio.run(HandleClient().resolve(handle, server=(HOST, node.handle_port),
                                              proto="tcp"))  # fmt: skip


def sites(node, handle: str) -> list[bytes] | None:
    """The HS_SITE data of ``handle`` at ``node``; None when it is not there."""
    reply = at(node, handle)
    if reply.header.rc != 1:
        return None
    return [v.data for v in reply.body.values if v.type == "HS_SITE"]


def registration(node) -> dict | None:
    try:
        return json.loads((node.data / STATUS_FILE).read_text())["registration"]
    except (OSError, ValueError, KeyError):
        return None


def row(node, upstream, prefix: str) -> dict | None:
    doc = registration(node)
    return doc and doc["upstreams"][f"{HOST}:{upstream.handle_port}"].get(prefix)


def as_t_admin(t, opcode: int, handle: str, values: list[HandleValue]):
    auth = SecretKeyAuth("300:88/ADMIN", T_ADMIN_SECRET.encode())
    return asyncio.run(HandleClient().request_authenticated(
        opcode, ValuesBody(handle.encode(), tuple(values)), auth, server=(HOST, t.handle_port)))


# -- the agent of a running secondary --------------------------------------------------------------
def test_the_prefix_and_its_enterprise_prefix_point_at_the_secondary(nodes):
    t, a = nodes
    wait_for(lambda: sites(t, "0.NA/88.121") == [a.site], 10, "0.NA/88.121 at T naming A")
    wait_for(lambda: sites(t, "0.NA/88.121.7") == [a.site], 10, "0.NA/88.121.7 at T")
    kept = {(v.index, v.type) for v in at(t, "0.NA/88.121").body.values}
    assert kept == {(1, "HS_SITE"), (100, "HS_ADMIN"), (300, "HS_PUBKEY")}  # only added to
    created = {v.type: v for v in at(t, "0.NA/88.121.7").body.values}
    assert created["HS_SITE"].index == 1
    grant = AdminRecord.from_bytes(created["HS_ADMIN"].data)
    assert (grant.handle, grant.index, grant.permissions) == ("0.NA/88.121", 300, 0x7FF)
    assert at(t, "0.NA/77.5").header.rc == 301  # A homes it, but it is not under 88.121


def test_a_tampered_hs_site_is_put_back(nodes):
    t, a = nodes
    wait_for(lambda: sites(t, "0.NA/88.121") == [a.site], 10, "the first registration")
    elsewhere = a_site_of(9)
    reply = as_t_admin(t, C.OpCode.MODIFY_VALUE, "0.NA/88.121",
                       [HandleValue(1, "HS_SITE", elsewhere)])  # fmt: skip
    assert reply.header.rc == 1
    wait_for(lambda: (r := row(a, t, "88.121")) and r["action"] == "repaired", 10,
             "A's agent to repair the drift")  # fmt: skip
    assert sites(t, "0.NA/88.121") == [a.site]


def test_upstream_status_shows_the_registrations(nodes, idnode_env):
    t, a = nodes
    wait_for(lambda: (r := row(a, t, "88.121.7")) and r["state"] == "registered", 10,
             "a check that finds 88.121.7 registered")  # fmt: skip
    r = subprocess.run([sys.executable, "-m", "resolver", "upstream", "status", "--data",
                        str(a.data)], capture_output=True, text=True, env=idnode_env,
                       timeout=30)  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)["registration"]
    assert doc["identity"] == "300:0.NA/88.121" and doc["interval"] == 1
    assert doc["prefixes"] == ["88.121", "88.121.7"]  # 77.5 is not under 88.121
    rows = doc["upstreams"][f"{HOST}:{t.handle_port}"]
    assert set(rows) == {"88.121", "88.121.7"}
    assert rows["88.121.7"]["action"] == "created" and rows["88.121.7"]["changed"] > 0
    assert rows["88.121"]["state"] in ("registered", "repaired")
    assert doc["counters"]["checks"] >= 2 and doc["counters"]["created"] == 2


def test_delegated_derived_prefixes_are_not_registered(nodes, load_lines):
    t, a = nodes
    wait_for(lambda: sites(t, "0.NA/88.121") == [a.site], 10, "the first registration")
    reply = as_t_admin(t, C.OpCode.ADD_VALUE, "0.NA/88.121",
                       [HandleValue(2, "HS_SITE.PREFIX", a.site)])  # fmt: skip
    assert reply.header.rc == 1
    load_lines(a.data, [{"handle": "0.NA/88.121.9", "values": [admin("0.NA/88.121.9", 300)]}])
    wait_for(lambda: (r := row(a, t, "88.121.9")) and r["state"] == "delegated", 10,
             "88.121.9 seen as delegated")  # fmt: skip
    assert at(t, "0.NA/88.121.9").header.rc == 303  # T refers it to A's site
    assert row(a, t, "88.121.7")["state"] == "registered"  # a handle T holds is kept current


# -- PrefixRegistrar driven directly ---------------------------------------------------------------
def test_plan_prefixes():
    held = [b"88.122.1", b"88.122", b"88.1223", b"77.1", b"88.122.1.5", "0.NA/88.122.2"]
    assert plan_prefixes(["88.122"], held) == ["88.122", "88.122.1", "88.122.2", "88.122.1.5"]
    assert plan_prefixes(["88.122", "88.123"], []) == ["88.122", "88.123"]


def test_registrar_creates_prefix_handles_with_a_derived_prefix_grant(nodes):
    t, _ = nodes
    our = a_site_of(12345)
    auth = SecretKeyAuth("300:88/SECONDARY-C", C_SECRET.encode())
    reg = PrefixRegistrar([(HOST, t.handle_port)], auth, our, ["88.122"],
                          held=lambda: [b"88.122.1", b"77.1"])  # fmt: skip
    status = asyncio.run(reg.check_once())
    rows = status["upstreams"][f"{HOST}:{t.handle_port}"]
    assert {p: r["state"] for p, r in rows.items()} == {"88.122": "created",
                                                        "88.122.1": "created"}  # fmt: skip
    assert sites(t, "0.NA/88.122") == [our] and sites(t, "0.NA/88.122.1") == [our]
    again = asyncio.run(reg.check_once())["upstreams"][f"{HOST}:{t.handle_port}"]
    assert {p: (r["state"], r["action"]) for p, r in again.items()} == {
        "88.122": ("registered", "created"), "88.122.1": ("registered", "created")}  # fmt: skip
    assert reg.counters == {"checks": 2, "created": 2, "repaired": 0, "failed": 0}


def test_registrar_never_overwrites_a_value_it_did_not_write(nodes):
    t, _ = nodes
    our = a_site_of(12346)
    auth = SecretKeyAuth("300:88/SECONDARY-C", C_SECRET.encode())
    reg = PrefixRegistrar([(HOST, t.handle_port)], auth, our, ["88.123", "88.124"])
    rows = asyncio.run(reg.check_once())["upstreams"][f"{HOST}:{t.handle_port}"]
    assert (rows["88.123"]["state"], rows["88.123"]["message"]) == (
        "created", "added HS_SITE at index 2 to 0.NA/88.123")  # fmt: skip
    assert {(v.index, v.type) for v in at(t, "0.NA/88.123").body.values} == {
        (1, "DESC"), (2, "HS_SITE"), (100, "HS_ADMIN")}  # fmt: skip
    # index 1 holds a value without public read: the upstream refuses the add (RC 201)
    assert rows["88.124"]["state"] == "failed"
    assert rows["88.124"]["message"].startswith("adding HS_SITE to 0.NA/88.124: RC 201")
    assert sites(t, "0.NA/88.124") == []


def test_registrar_reports_a_refusal_and_a_dead_upstream(nodes):
    t, _ = nodes
    wrong = PublicKeyAuth("300:0.NA/88.121", A.generate_rsa_key(1024))  # not A's key
    dead = (HOST, free_port())
    reg = PrefixRegistrar([dead, (HOST, t.handle_port)], wrong, a_site_of(7), ["88.121"],
                          held=lambda: ["88.121.4", "88.121.5"])  # fmt: skip
    status = asyncio.run(reg.check_once())
    at_t = status["upstreams"][f"{HOST}:{t.handle_port}"]
    assert [r["state"] for r in at_t.values()] == ["failed"] * 3
    # the parent's RC 403 (our credential) fails its children without sending them
    assert {r["message"] for r in at_t.values()} == {at_t["88.121"]["message"]}
    assert at_t["88.121"]["message"].startswith("modifying 0.NA/88.121: RC 403")
    assert sites(t, "0.NA/88.121") != [a_site_of(7)] and sites(t, "0.NA/88.121.4") is None
    at_dead = status["upstreams"][f"{HOST}:{dead[1]}"]
    assert [r["state"] for r in at_dead.values()] == ["failed"] * 3
    assert len({r["message"] for r in at_dead.values()}) == 1  # one failure ends the round
    assert reg.counters["failed"] == 6 and reg.counters["checks"] == 1


def test_the_secondary_stops_cleanly(nodes):
    t, a = nodes
    assert row(a, t, "88.121")["state"] == "registered"
    assert a.stop() == 0
    log = a.stderr()
    # no failed registration, no crash, no task left running at shutdown
    assert "E070" not in log and "E071" not in log and "Traceback" not in log, log
    assert registration(a) is None  # the agent removed its status file
