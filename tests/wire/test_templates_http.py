"""Metadata templates and data grading end to end (issue 5 §5, §6): ``/api/v1/templates`` on a
running node over HTTPS, an instance registered through ``PUT /api/handles``, and what each
front-end serves of its general, important and core values — the anonymous REST fast path,
the authenticated REST read (owner over TLS: everything; another enterprise: general only), and
Handle resolutions over UDP and TCP (general only).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
import requests
from enterprises import admin_value, enterprise

from resolver.upstream.client import HandleClient

from .test_tls import _self_signed

pytestmark = pytest.mark.wire

SECRET_8, SECRET_9 = "template secret 8", "template secret 9"
A8 = ("300%3A88.118.8/ADMIN", SECRET_8)
A9 = ("300%3A88.118.9/ADMIN", SECRET_9)
TEMPLATES = "/api/v1/templates"
BATTERY = {"name": "battery", "description": "cells", "industry": "C/38/384/3841", "fields": [
    {"name": "serial", "type": "char", "maxLength": 16, "required": True, "unique": True},
    {"name": "capacity", "type": "numeric", "precision": 5, "scale": 2},
    {"name": "made", "type": "date", "grade": "important"},
    {"name": "manual", "type": "url"},
    {"name": "chemistry", "type": "enum", "values": ["LFP", "NMC"], "grade": "core"}]}  # fmt: skip
GENERAL = {1, 100, 1001, 2000, 2001, 2003}


@pytest.fixture(scope="module")
def tnode(start_node, tmp_path_factory, load_lines):
    tmp = tmp_path_factory.mktemp("templates")
    cert, key = _self_signed(tmp)
    lines = enterprise("88.118.8", SECRET_8) + enterprise("88.118.9", SECRET_9)
    node = start_node(data=load_lines(tmp / "data", lines),
                      config_text=f'[http]\ntls_cert = "{cert}"\ntls_key = "{key}"\n')  # fmt: skip
    node.cert = str(cert)
    return node


def _call(node, method: str, path: str, auth=None, body=None) -> requests.Response:
    return requests.request(method, node.base_url + path, auth=auth, json=body,
                            verify=node.cert, timeout=20)  # fmt: skip


@pytest.fixture(scope="module")
def published(tnode):
    r = _call(tnode, "POST", f"{TEMPLATES}?scope=88.118.8", A8, {**BATTERY, "name": "cell"})
    assert r.status_code == 201, r.text
    r = _call(tnode, "POST", f"{TEMPLATES}/88.118.8/cell/{r.json()['version']}/publish", A8)
    assert r.status_code == 200 and r.json()["state"] == "published"
    return r.json()["ref"]


def _values(ref: str, serial: str, made: str = "2026-03-01") -> list[dict]:
    return [{"index": 1, "type": "URL", "data": "https://example.com/p"}, admin_value("88.118.8"),
            {"index": 1001, "type": "TEMPLATE", "data": ref},
            {"index": 2000, "type": "serial", "data": serial},
            {"index": 2001, "type": "capacity", "data": "12.50"},
            {"index": 2002, "type": "made", "data": made},
            {"index": 2003, "type": "manual", "data": "https://example.com/m"},
            {"index": 2004, "type": "chemistry", "data": "LFP"}]  # fmt: skip


def _indexes(r: requests.Response) -> set[int]:
    assert r.status_code == 200, r.text
    return {v["index"] for v in r.json()["values"]}


def test_template_lifecycle_over_rest(tnode):
    r = _call(tnode, "POST", f"{TEMPLATES}?scope=88.118.8", A8, BATTERY)
    assert r.status_code == 201, r.text
    doc = r.json()
    assert (doc["responseCode"], doc["scope"], doc["name"], doc["version"], doc["state"]) == (
        1, "88.118.8", "battery", 1, "draft")
    assert [f["index"] for f in doc["fields"]] == [2000, 2001, 2002, 2003, 2004]
    assert _call(tnode, "POST", f"{TEMPLATES}?scope=88.118.8", None, BATTERY).status_code == 401
    r = _call(tnode, "POST", f"{TEMPLATES}?scope=88.118.8", A9, BATTERY)
    assert r.status_code == 403 and r.json()["responseCode"] == 401
    assert _call(tnode, "GET", f"{TEMPLATES}?scope=88.118.8").json()["templates"] in (
        [], [{"name": "cell", "latest": 1, "versions": [{"version": 1, "state": "published"}]}])
    listed = _call(tnode, "GET", f"{TEMPLATES}?scope=88.118.8", A8).json()["templates"]
    assert {"name": "battery", "latest": 1,
            "versions": [{"version": 1, "state": "draft"}]} in listed  # fmt: skip
    assert _call(tnode, "GET", f"{TEMPLATES}/88.118.8/battery/1").status_code == 404  # draft
    r = _call(tnode, "POST", f"{TEMPLATES}/88.118.8/battery/1/publish", A8)
    assert r.status_code == 200 and r.json()["state"] == "published"
    r = _call(tnode, "GET", f"{TEMPLATES}/88.118.8/battery")
    assert r.status_code == 200 and r.json()["version"] == 1 and r.json()["industry"] == \
        "C/38/384/3841"  # fmt: skip
    assert _call(tnode, "POST", f"{TEMPLATES}/88.118.8/battery/1/withdraw",
                 A8).json()["state"] == "withdrawn"  # fmt: skip
    assert _call(tnode, "POST", f"{TEMPLATES}/88.118.8/battery/1/publish",
                 A8).json()["state"] == "published"  # fmt: skip
    assert _call(tnode, "POST", f"{TEMPLATES}?scope=88.118.8", A8, BATTERY).json()["version"] == 2
    r = _call(tnode, "DELETE", f"{TEMPLATES}/88.118.8/battery/2", A8)
    assert r.status_code == 200 and r.json()["deleted"] is True
    r = _call(tnode, "DELETE", f"{TEMPLATES}/88.118.8/battery/1", A8)
    assert r.status_code == 400 and "only drafts" in r.json()["message"]
    assert _call(tnode, "GET", f"{TEMPLATES}/88.118.8/battery/9").status_code == 404
    assert _call(tnode, "PUT", TEMPLATES, A8, BATTERY).status_code == 405
    assert _call(tnode, "GET", f"{TEMPLATES}/88.118.8/battery/one").status_code == 404
    assert _call(tnode, "POST", f"{TEMPLATES}/88.118.8/battery/1/erase", A8).status_code == 404
    assert _call(tnode, "GET", f"{TEMPLATES}/88.118.8/battery/1/publish").status_code == 405
    assert _call(tnode, "GET", f"{TEMPLATES}?scope=88.118.77").status_code == 400  # not here


def test_an_invalid_definition_gets_per_field_errors(tnode):
    body = {"name": "bad", "fields": [{"name": "a", "type": "text"},
                                      {"name": "b", "type": "char", "index": 12}]}  # fmt: skip
    r = _call(tnode, "POST", f"{TEMPLATES}?scope=88.118.8", A8, body)
    assert r.status_code == 400
    doc = r.json()
    assert doc["responseCode"] == 202
    assert [(e["path"], e["field"], e["index"]) for e in doc["errors"]] == [
        ("fields[0].type", "a", 2000), ("fields[1].index", "b", 12)]


def test_graded_values_on_every_front_end(tnode, published):
    handle = "88.118.8/G-1"
    r = _call(tnode, "PUT", f"/api/handles/{handle}", A8, _values(published, "SN-G1"))
    assert r.status_code in (200, 201), r.text
    # anonymous REST (fast path and general path): general values only
    assert _indexes(_call(tnode, "GET", f"/api/handles/{handle}")) == GENERAL
    assert _indexes(_call(tnode, "GET", f"/api/handles/{handle}?pretty")) == GENERAL
    r = _call(tnode, "GET", f"/api/handles/{handle}?index=2004")
    assert r.json()["responseCode"] == 200 and r.json()["values"] == []
    # the owner over TLS reads everything; another enterprise's admin only what is general
    assert _indexes(_call(tnode, "GET", f"/api/handles/{handle}", A8)) == GENERAL | {2002, 2004}
    assert _indexes(_call(tnode, "GET", f"/api/handles/{handle}", A9)) == GENERAL
    # Handle resolutions, UDP and TCP: general values only, core never in a datagram
    client = HandleClient(udp_retry=(2.0,), tcp_timeout=5.0)
    server = ("127.0.0.1", tnode.handle_port)

    async def resolve(proto, indexes=()):
        return await client.resolve(handle, server=server, proto=proto, indexes=indexes)

    for proto in ("udp", "tcp"):
        reply = asyncio.run(asyncio.wait_for(resolve(proto), 20))
        assert reply.header.rc == 1 and {v.index for v in reply.body.values} == GENERAL
        reply = asyncio.run(asyncio.wait_for(resolve(proto, (2002, 2004)), 20))
        assert reply.header.rc == 200


def test_template_violations_are_400_with_per_field_errors(tnode, published):
    r = _call(tnode, "PUT", "/api/handles/88.118.8/G-2", A8,
              _values(published, "SN-G2", made="2026-13-01"))  # fmt: skip
    assert r.status_code == 400
    doc = r.json()
    assert doc["responseCode"] == 202 and "values[5].data.value" in doc["message"]
    assert doc["errors"] == [{"path": "values[5].data.value", "field": "made", "index": 2002,
                              "message": "field 'made' (date): '2026-13-01' is not a calendar "
                                         "date"}]  # fmt: skip
    assert _call(tnode, "GET", "/api/handles/88.118.8/G-2").status_code == 404
    r = _call(tnode, "PUT", "/api/handles/88.118.8/G-3", A8, _values(published, "SN-G3"))
    assert r.status_code in (200, 201)
    r = _call(tnode, "PUT", "/api/handles/88.118.8/G-4", A8, _values(published, "SN-G3"))
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "values[3].data.value"


def test_native_protocol_writes_are_checked_too(tnode, published, idnode_env, tmp_path):
    """OC_CREATE_HANDLE (``idnode create`` over TCP 2641) with a value that breaks its field:
    RC 202 naming the field; a valid one is created with its grades applied."""
    secret = tmp_path / "secret"
    secret.write_text(SECRET_8)

    def create(handle, made):
        return subprocess.run(
            [sys.executable, "-m", "resolver", "create", handle, "--auth", "300:88.118.8/ADMIN",
             "--secret-file", str(secret), "--server", f"127.0.0.1:{tnode.handle_port}",
             "--value", f"1001:TEMPLATE:{published}", "--value", "2000:serial:SN-N1",
             "--value", f"2002:made:{made}"],
            capture_output=True, text=True, env=idnode_env, timeout=60)  # fmt: skip

    r = create("88.118.8/N-1", "2026-02-30")
    assert r.returncode == 1 and "202" in r.stdout + r.stderr
    assert "'made'" in r.stdout + r.stderr
    assert _call(tnode, "GET", "/api/handles/88.118.8/N-1").status_code == 404
    r = create("88.118.8/N-2", "2026-02-27")
    assert r.returncode == 0, r.stdout + r.stderr
    assert 2002 not in _indexes(_call(tnode, "GET", "/api/handles/88.118.8/N-2"))
    assert 2002 in _indexes(_call(tnode, "GET", "/api/handles/88.118.8/N-2", A8))
