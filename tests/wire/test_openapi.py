"""The OpenAPI document (issue 8 §6) is served, is valid OpenAPI 3.1, and is true: schemathesis
runs every operation it describes against a live node — anonymously, and with the Basic
credentials of a server admin — and finds no 5xx, no undocumented status or media type, and no
body that contradicts the documented schema.

The node holds the demo data and the enterprise 88.118.9 (``tests/enterprises.py``), whose
``300:88.118.9/ADMIN`` is the node's server admin; it is this test's own node (the run writes:
handles, prefixes, templates, imports).  Generation is deterministic (derandomized) and bounded
by ``MAX_EXAMPLES`` per operation; schemathesis's own security parameters are off, so no
invented credential can trip the failed-login limit (429) that would lock the admin out.
"""

from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import schemathesis
from enterprises import enterprise
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)  # fmt: skip

from resolver.protocols.http import openapi

pytestmark = pytest.mark.wire

DEMO = Path(__file__).resolve().parents[2] / "registry" / "demo.jsonl"
SECRET = "openapi test secret"
ADMIN = "300:88.118.9/ADMIN"
BASIC = "Basic " + base64.b64encode(f"{quote(ADMIN, safe='/')}:{SECRET}".encode()).decode()
MAX_EXAMPLES = 6
SEED = 20260801
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]  # fmt: skip

# The import bodies are text; schemathesis sends them as it sends text/plain.
schemathesis.serializer.alias(["application/x-ndjson", "text/csv"], "text/plain")


def _requires_credentials(ctx) -> bool:
    """Operations that need credentials (each of their security requirements names one)."""
    return all(req for req in ctx.operation.definition.raw.get("security", [{}]))


def _load(max_examples: int, *, coverage: bool = True):
    loaded = schemathesis.openapi.from_dict(openapi.document())
    loaded.config.generation.update(max_examples=max_examples, deterministic=True,
                                    database="none", with_security_parameters=False)  # fmt: skip
    loaded.config.seed = SEED
    loaded.config.phases.coverage.enabled = coverage
    return loaded


# Anonymous: the operations open to everyone in full; the others refuse before they read a
# parameter or a body, so a few examples of each say enough.  Authenticated: everything in
# full, except that the three operations with the largest request bodies get positive
# coverage cases only (their keyword-by-keyword negative cases are hundreds of requests; the
# fuzzing phase still sends them invalid bodies) and that the probes with undocumented methods
# are the anonymous run's.
BODIES = ["putHandle", "batch", "defineTemplate"]
open_ops = _load(MAX_EXAMPLES).exclude(func=_requires_credentials)
closed_ops = _load(2, coverage=False).include(func=_requires_credentials)
with_credentials = _load(MAX_EXAMPLES).exclude(operation_id=BODIES)
with_credentials.config.phases.coverage.unexpected_methods = set()
bodies = _load(MAX_EXAMPLES).include(operation_id=BODIES)
bodies.config.phases.coverage.unexpected_methods = set()
bodies.config.phases.coverage.generation.update(modes=["positive"])
_keys = itertools.count()


# 0.NA/88.118 delegates its derived prefixes that are not held here (88.118.7) to another site:
# resolving their prefix handles (0.NA/88.118.7) answers a prefix referral (HTTP 300).
DELEGATION = {"handle": "0.NA/88.118", "values": [{
    "index": 1, "type": "HS_SITE.PREFIX", "data": {"format": "site", "value": {
        "version": 1, "protocolVersion": "2.11", "serialNumber": 1, "primarySite": True,
        "multiPrimary": False, "attributes": [],
        "servers": [{"serverId": 1, "address": "192.0.2.8",
                     "publicKey": {"format": "base64", "value": ""},
                     "interfaces": [{"query": True, "admin": True, "protocol": "TCP",
                                     "port": 2641}]}]}}}]}  # fmt: skip


@pytest.fixture(scope="module")
def api_node(start_node, tmp_path_factory, load_lines):
    demo = [json.loads(line) for line in DEMO.read_text().splitlines() if line.strip()]
    data = load_lines(tmp_path_factory.mktemp("openapi") / "data",
                      [*demo, DELEGATION, *enterprise("88.118.9", SECRET)])  # fmt: skip
    return start_node(data=data, config_text=f'[node]\nserver_admins = ["{ADMIN}"]\n')


@pytest.fixture(scope="module")
def anonymous():
    """Kept-alive connections for the anonymous runs; they are never given a cookie."""
    with requests.Session() as s:
        yield s


@pytest.fixture(scope="module")
def authenticated():
    """The authenticated run's connections (they keep the session cookie the node sets)."""
    with requests.Session() as s:
        yield s


def _secured(case) -> bool:
    """Whether the operation takes credentials (the sessions' own Authorization header is a
    parameter of theirs, not a credential to replace)."""
    return any(req for req in case.operation.definition.raw.get("security", [{}]))


def _anonymous(case) -> None:
    for name in list(case.headers or {}):
        if name.lower() == "authorization" and _secured(case):
            del case.headers[name]
    if case.cookies:
        case.cookies.pop("idnode_session", None)


def _fresh_key(case) -> None:
    # One generated Idempotency-Key would otherwise be "used for another request" (400) by
    # every later case, and the bodies behind it would never be read.
    for name in list(case.headers or {}):
        if name.lower() == "idempotency-key":
            case.headers[name] = f"{str(case.headers[name])[:200]}-{next(_keys)}"


AUTH = {"Authorization": BASIC}
CHOSEN = [  # (method, path, case arguments, status[, headers]): what generation rarely reaches
    ("GET", "/api/handles/{handle}", {"path_parameters": {"handle": "0.NA/88.118.7"}}, 300),
    ("GET", "/api/handles/{handle}", {"path_parameters": {"handle": "0.NA/88.118.7"},
                                      "query": {"callback": "cb"}}, 300),
    ("GET", "/api/handles/{handle}", {"path_parameters": {"handle": "0.NA/88.118.7"},
                                      "query": {"doNotRefer": "true"}}, 400),
    ("GET", "/api/handles/{handle}", {"path_parameters": {"handle": "88.118.8/demo-2"},
                                      "query": {"publicOnly": "false", "callback": "cb"}}, 401),
    ("GET", "/api/handles/{handle}", {"path_parameters": {"handle": "88.118.8/demo-2"},
                                      "query": {"type": ["NOPE"], "pretty": "true"}}, 200),
    ("GET", "/api/handles/{handle}", {"path_parameters": {"handle": "88.118.8/demo-2"},
                                      "headers": AUTH}, 200),
    ("GET", "/api/handles/{handle}", {"path_parameters": {"handle": "88.118.8/demo-2"},
                                      "headers": AUTH, "query": {"type": ["NOPE"]}}, 200),
    ("GET", "/api/handles/{handle}", {"path_parameters": {"handle": "88.118.8/demo-2"},
                                      "headers": {"Authorization": "Bearer x"}}, 401),
    ("PUT", "/api/handles/{handle}", {"path_parameters": {"handle": "88.118.9/chosen"},
                                      "query": {"overwrite": "false"}, "headers": AUTH,
                                      "body": [openapi._URL_VALUE]}, 201),
    ("PUT", "/api/handles/{handle}", {"path_parameters": {"handle": "88.118.9/chosen"},
                                      "query": {"overwrite": "false"}, "headers": AUTH,
                                      "body": [openapi._URL_VALUE]}, 409),
    ("PUT", "/api/handles/{handle}", {"path_parameters": {"handle": "88.118.9/chosen"},
                                      "query": {"index": [1], "overwrite": "false"},
                                      "headers": AUTH, "body": [openapi._URL_VALUE]}, 409),
    ("DELETE", "/api/handles/{handle}", {"path_parameters": {"handle": "88.118.9/chosen"},
                                         "query": {"index": [99]}, "headers": AUTH}, 400),
    ("DELETE", "/api/handles/{handle}", {"path_parameters": {"handle": "88.118.9/chosen"},
                                         "headers": AUTH}, 200),
    ("POST", "/api/v1/batches", {"headers": {**AUTH, "Idempotency-Key": "chosen"},
                                 "body": {"items": [{"op": "create", "handle": "88.118.9/b1",
                                                     "values": [openapi._URL_VALUE]}]}}, 200),
    ("POST", "/api/v1/batches", {"headers": {**AUTH, "Idempotency-Key": "chosen"},
                                 "body": {"items": [{"op": "create", "handle": "88.118.9/b1",
                                                     "values": [openapi._URL_VALUE]}]}}, 200,
     {"idempotent-replay": "true"}),
    ("POST", "/api/v1/imports", {"headers": {**AUTH, "Idempotency-Key": "chosen"},
                                 "query": {"prefix": "88.118.9", "mode": "atomic"},
                                 "media_type": "application/x-ndjson",
                                 "body": '{"handle":"88.118.9/i1","values":[]}\nnot json\n'}, 200),
    ("GET", "/api/v1/imports", {"headers": AUTH, "query": {"key": "chosen"}}, 200),
    ("POST", "/api/v1/templates", {"headers": AUTH, "query": {"scope": "88.118.9"},
                                   "body": {"name": "cell", "fields": [
                                       {"name": "serial", "type": "char"}]}}, 201),
    ("POST", "/api/v1/templates/{scope}/{name}/{version}/publish",
     {"headers": AUTH, "path_parameters": {"scope": "88.118.9", "name": "cell", "version": 1}},
     200),
    ("POST", "/api/v1/templates/{scope}/{name}/{version}/withdraw",
     {"headers": AUTH, "path_parameters": {"scope": "88.118.9", "name": "cell", "version": 1}},
     200),
    ("GET", "/api/v1/templates", {"query": {"scope": "88.118.9"}}, 200),
    ("POST", "/api/v1/templates", {"headers": AUTH, "query": {"scope": "88.118.9"},
                                   "body": {"name": "cell", "fields": [
                                       {"name": "serial", "type": "nope"}]}}, 400),
    ("GET", "/api/v1/stats", {"headers": AUTH, "query": {"prefix": "88.118.9",
                                                         "series": "hour"}}, 200),
    ("GET", "/api/v1/prefixes/{prefix}", {"headers": AUTH,
                                          "path_parameters": {"prefix": "88.118.9"}}, 200),
]  # fmt: skip


def test_chosen_cases_conform(api_node):
    """Situations random generation seldom reaches — a referral, JSONP errors, authenticated
    reads, conflicts, replays, a template's lifecycle, an import's error rows — sent through
    the same checks, in order, each expected to reach its status."""
    doc = _load(1)
    with requests.Session() as session:
        for method, path, kw, status, *headers in CHOSEN:
            case = doc[path][method].Case(**kw)
            r = case.call_and_validate(base_url=api_node.base_url, session=session,
                                       checks=CHECKS, timeout=20)  # fmt: skip
            assert r.status_code == status, (method, path, kw, r.status_code, r.text)
            for name, value in (headers[0] if headers else {}).items():
                assert r.headers.get(name) == [value], (method, path, r.headers)
        job = session.get(f"{api_node.base_url}/api/v1/imports", params={"key": "chosen"},
                          headers=AUTH, timeout=10).json()  # fmt: skip
        assert job["state"] == "failed" and job["errors"], job
        for path in ("/api/v1/imports/{id}", "/api/v1/imports/{id}/errors"):
            case = doc[path]["GET"].Case(path_parameters={"id": job["id"]}, headers=AUTH)
            r = case.call_and_validate(base_url=api_node.base_url, session=session,
                                       checks=CHECKS, timeout=20)  # fmt: skip
            assert r.status_code == 200, r.text
        sid = session.post(f"{api_node.base_url}/api/sessions", timeout=10).json()["sessionId"]
        this = {"Authorization": f'Handle sessionId="{sid}"'}
        for method, status in (("GET", 200), ("PUT", 401), ("DELETE", 204)):
            case = doc["/api/sessions/this"][method].Case(headers=this)
            r = case.call_and_validate(base_url=api_node.base_url, session=session,
                                       checks=CHECKS, timeout=20)  # fmt: skip
            assert r.status_code == status, (method, r.text)


def _anonymous_run(case, node, session) -> None:
    _anonymous(case)
    _fresh_key(case)
    case.call_and_validate(base_url=node.base_url, session=session, checks=CHECKS, timeout=20)


@open_ops.parametrize()
def test_open_operations_anonymously(case, api_node, anonymous):
    _anonymous_run(case, api_node, anonymous)


@closed_ops.parametrize()
def test_closed_operations_anonymously(case, api_node, anonymous):
    _anonymous_run(case, api_node, anonymous)


def _authenticated_run(case, node, session) -> None:
    _anonymous(case)
    _fresh_key(case)
    headers = {"Authorization": BASIC} if _secured(case) else None
    case.call_and_validate(base_url=node.base_url, session=session, headers=headers,
                           checks=CHECKS, timeout=20)  # fmt: skip


@bodies.parametrize()
def test_write_bodies_with_credentials(case, api_node, authenticated):
    _authenticated_run(case, api_node, authenticated)


@with_credentials.parametrize()
def test_operations_with_credentials(case, api_node, authenticated):
    _authenticated_run(case, api_node, authenticated)


def test_the_admin_credentials_work(api_node):
    # Else the authenticated run would only ever see 401/403 and prove little.
    r = requests.get(f"{api_node.base_url}/api/v1/changes?limit=1",
                     headers={"Authorization": BASIC}, timeout=10)  # fmt: skip
    assert r.status_code == 200, r.text
    r = requests.get(f"{api_node.base_url}/api/v1/prefixes", headers={"Authorization": BASIC},
                     timeout=10)  # fmt: skip
    assert r.status_code == 200 and "88.118.9" in {p["prefix"] for p in r.json()["prefixes"]}


@pytest.mark.parametrize("query", [
    "/api/v1/changes?after=18446744073709551616",  # past u64: the store could not pack it (500)
    "/api/v1/changes?limit=-99999999999999999999",
    "/api/handles?prefix=88.118.8&page=99999999999999999999&pageSize=10",  # JSON overflow (500)
    "/api/handles?prefix=88.118.8&page=0&pageSize=2147483648",  # the reference's Java int
])  # fmt: skip
def test_out_of_range_integers_are_bad_requests(api_node, query):
    r = requests.get(api_node.base_url + query, headers={"Authorization": BASIC}, timeout=10)
    assert r.status_code == 400 and r.json()["responseCode"] == 4, r.text


def test_the_served_document_is_the_built_one(api_node):
    r = requests.get(f"{api_node.base_url}/api/openapi.json", timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == openapi.document()
    head = requests.head(f"{api_node.base_url}/api/openapi.json", timeout=10)
    assert head.status_code == 200 and head.content == b""
    post = requests.post(f"{api_node.base_url}/api/openapi.json", timeout=10)
    assert post.status_code == 405 and post.json()["responseCode"] == 4


def test_the_document_is_valid_openapi_3_1():
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(openapi.document())  # raises on any violation


def test_every_route_is_described():
    """A drift guard: each route constant of the HTTP drivers is a documented path (or the
    root of documented paths), and schemathesis can build every operation."""
    from resolver.servers import (
        http_app, http_imports, http_operator, http_stats, http_templates,
    )  # fmt: skip

    ops = [r.ok() for r in _load(1).get_all_operations()]  # .ok() raises on a broken operation
    paths = {op.path for op in ops}
    routes = {http_app.API, http_app.CHANGES, http_app.SESSIONS, http_app.BATCHES,
              http_app.OPENAPI, http_imports.PATH, *http_operator.PATHS, *http_templates.PATHS,
              *http_stats.PATHS}  # fmt: skip
    for route in routes:
        assert route in paths, route
    labels = {op.label for op in ops}
    for method, path in (("GET", "/api/handles/{handle}"), ("PUT", "/api/handles/{handle}"),
                         ("DELETE", "/api/handles/{handle}"), ("POST", "/api/sessions"),
                         ("DELETE", "/api/sessions/this"), ("POST", "/api/v1/prefixes"),
                         ("POST", "/api/v1/identities/rotate"),
                         ("GET", "/api/v1/imports/{id}/errors"),
                         ("POST", "/api/v1/templates/{scope}/{name}/{version}/publish")):
        assert f"{method} {path}" in labels


def test_document_shape():
    doc = openapi.document()
    assert doc["openapi"] == "3.1.0"
    schemes = doc["components"]["securitySchemes"]
    assert schemes["basic"] == {**schemes["basic"], "type": "http", "scheme": "basic"}
    assert schemes["sessionCookie"]["name"] == "idnode_session"
    # every error status is a JSON object with a responseCode (the API's one error shape)
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, resp in op["responses"].items():
                if status.startswith(("4", "5")):
                    body = resp["content"]["application/json"]["schema"]
                    assert body["allOf"][0] == {"$ref": "#/components/schemas/Error"}, \
                        (method, path, status)  # fmt: skip
    doc["paths"].clear()
    assert openapi.document()["paths"], "document() hands out a copy"
