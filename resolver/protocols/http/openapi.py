"""The OpenAPI 3.1 document of the REST and registration API, as built (issue 8 §6).

``document()`` returns the document as a dict (a deep copy: callers may change it);
``document_bytes()`` its JSON, built once per process — ``servers/http_app`` serves it at
``GET /api/openapi.json``.  It is data, not code that answers requests: the drivers are the
truth, and tests/wire/test_openapi.py runs schemathesis against a live node so that the two
cannot drift apart (no 5xx; no status, media type or body the document does not describe).

What it describes, and where the behaviour lives: ``/api/handles/{handle}``,
``/api/handles?prefix=``, ``/api/sessions`` — the Handle.net v9 REST API (handle.md §7;
servers/http_app, servers/http_admin); ``/api/v1/batches``, ``/api/v1/changes``
(servers/http_admin); ``/api/v1/prefixes``, ``/api/v1/identities`` (servers/http_operator);
``/api/v1/imports`` (servers/http_imports); ``/api/v1/templates`` (servers/http_templates);
``/api/v1/stats`` (servers/http_stats).  The conventions every operation shares (the
``responseCode`` of every answer, the error shape, the credentials) are in ``DESCRIPTION``,
the document's own introduction; each error status lists the response codes it carries.

Keeping it true: a driver that gains a route, a status, a parameter or a member in a body
changes this document in the same commit; the contract test fails otherwise (object schemas
are closed — ``additionalProperties: false`` — exactly so).
"""

from __future__ import annotations

import copy
import functools

import orjson

from resolver import __version__

VERSION = __version__
JSON = "application/json"
JSONP = "application/javascript"

DESCRIPTION = """\
The Handle.net v9 REST API (resolution, registration, listing, sessions) and idnode's own
registration API under /api/v1/ (batches, change log, operator tools, import jobs, metadata
templates, statistics).

Every answer is JSON with an integer `responseCode`, the Handle response code: 1 success,
2 server error, 3 busy, 4 protocol error, 100 handle not found, 101 exists, 102 invalid
handle, 200 no values, 201 value exists, 202 invalid value, 301 prefix not homed here, 303
prefix referral, 401 insufficient permissions, 402 authentication needed, 403 authentication
failed.  Errors add `message` and, when the request named one, `handle`.

Credentials: HTTP Basic with the identity `index:handle` percent-encoded as the user
(`300%3A88.118.8/ADMIN`) and its HS_SECKEY secret as the password; the `Authorization:
Handle` challenge/response session (POST /api/sessions); or the `idnode_session` cookie that a
successful authentication sets.  Over plain HTTP, credentials are accepted from loopback
clients only unless the node is configured otherwise (`[http] auth_requires_tls`).
"""

# -- schemas ----------------------------------------------------------------------------------

_REF = "#/components/schemas/"


def _ref(name: str) -> dict:
    return {"$ref": _REF + name}


def _obj(required: tuple[str, ...], /, closed: bool = True, **props) -> dict:
    """An object schema; ``closed``: no members beyond ``props`` (the servers write exactly
    these, so anything else would be a change the document must follow)."""
    out: dict = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    return out


_INT = {"type": "integer"}
_STR = {"type": "string"}
_BOOL = {"type": "boolean"}
_NULLSTR = {"type": ["string", "null"]}
_TIME = {"type": "string", "description": "ISO 8601 UTC, e.g. 2026-01-01T00:00:00Z"}
_RC = {"type": "integer", "description": "Handle response code (handle.md §3.4)"}


def _rc(*codes: int) -> dict:
    return {"type": "integer", "enum": list(codes)}


def _ok_object(required=(), /, **props) -> dict:
    """A success body: ``{"responseCode": 1, ...props}``."""
    return _obj(("responseCode", *required), responseCode=_rc(1), **props)


# Open (no additionalProperties): a prefix, enterprise or hour adds its own members to them.
_FIGURES = _obj(
    ("registrations", "resolutions", "upstream"), closed=False,
    registrations=_obj(("created", "updated", "deleted"), created=_INT, updated=_INT,
                       deleted=_INT),  # fmt: skip
    resolutions={"type": "object", "required": ["total"], "properties": {"total": _INT},
                 "additionalProperties": {"type": "object",
                                          "additionalProperties": _INT},
                 "description": "total, then per front-end (http, handle, dns) the counts "
                                "per outcome (ok, not_found, ...)"},  # fmt: skip
    upstream=_obj(("queries",), queries=_INT),
    other={"type": "object", "additionalProperties": _INT,
           "description": "counters this version does not know, by name"},
)  # fmt: skip

_FIELD = _obj(
    ("name", "type", "index", "valueType", "required", "unique", "grade"),
    name=_STR, type={"enum": ["char", "numeric", "date", "url", "enum"]}, index=_INT,
    valueType=_STR, required=_BOOL, unique=_BOOL,
    grade={"enum": ["general", "important", "core"]}, description=_STR,
    maxLength=_INT, minLength=_INT, precision=_INT, scale=_INT,
    values={"type": "array", "items": _STR},
)  # fmt: skip

_TEMPLATE = _obj(
    ("scope", "name", "version", "state", "description", "industry", "ref", "fields", "created",
     "updated", "author"),
    scope=_STR, name=_STR, version=_INT, state={"enum": ["draft", "published", "withdrawn"]},
    description=_STR, industry=_NULLSTR,
    ref={"type": "string", "description": "what an instance holds at index 1001: "
                                          "<scope>/<name>/<version>"},
    fields={"type": "array", "items": _ref("TemplateField")},
    created={"type": "integer", "description": "UNIX seconds"}, updated=_INT, author=_STR,
)  # fmt: skip

SCHEMAS: dict = {
    "Data": _obj(
        ("format", "value"),
        format={"enum": ["string", "base64", "hex", "admin", "vlist", "site", "key"]},
        value={"description": "a string (string, base64, hex), an object (admin: {handle, "
                              "index, permissions}; site; key: a JWK) or an array (vlist: "
                              "[{handle, index}])",
               "type": ["string", "object", "array"]},
    ),  # fmt: skip
    "Reference": _obj(("handle", "index"), handle=_STR, index=_INT),
    "HandleValue": _obj(
        ("index", "type", "data", "ttl"),
        index=_INT, type=_STR, data=_ref("Data"),
        permissions={"type": "string", "pattern": "^[01]{4}$",
                     "description": "admin read, admin write, public read, public write; "
                                    "absent: 1110"},  # fmt: skip
        ttl={"type": ["integer", "string"],
             "description": "seconds (relative) or an ISO 8601 time (absolute)"},
        timestamp=_TIME,
        references={"type": "array", "items": _ref("Reference")},
    ),
    "HandleValueInput": {
        "type": "object",
        "description": "A value as the Handle.net API takes it (handle.md §7.2): data may be "
                       "a bare string (UTF-8); index and admin indexes may be decimal strings; "
                       "ttl defaults to 86400, timestamp to now.",
        "required": ["index", "type", "data"],
        "properties": {
            "index": {"type": ["integer", "string"]},
            "type": _STR,
            "data": {"anyOf": [_STR, {"type": "object", "required": ["value"], "properties": {
                "format": _STR, "value": {}}}]},  # fmt: skip
            "ttl": {"type": ["integer", "string"]},
            "timestamp": _STR,
            "permissions": _STR,
            "references": {"type": "array", "items": _ref("Reference")},
        },
    },  # fmt: skip
    "Error": _obj(
        ("responseCode",),
        responseCode=_RC, message=_STR, handle=_STR,
        values={"type": "array", "maxItems": 0,
                "description": "empty; only with responseCode 200 of a resolution"},
        errors={"type": "array", "items": _ref("FieldError"),
                "description": "the violated fields of a metadata template (responseCode 202)"},
    ),  # fmt: skip
    "FieldError": _obj(("path", "field", "index", "message"), path=_STR, field=_STR,
                       index={"type": ["integer", "null"]}, message=_STR),  # fmt: skip
    "Resolution": _obj(
        ("responseCode", "handle", "values"),
        responseCode=_rc(1), handle=_STR, values={"type": "array", "items": _ref("HandleValue")},
    ),
    "NoValues": _obj(
        ("responseCode", "handle", "values"),
        responseCode=_rc(200), message=_STR, handle=_STR, values={"type": "array", "maxItems": 0},
    ),  # fmt: skip
    "Referral": _obj(
        ("responseCode", "values", "handle"),
        responseCode=_rc(303), handle=_STR,
        values={"type": "array", "items": _ref("HandleValue"),
                "description": "HS_SITE.PREFIX / HS_NA_DELEGATE / HS_SERV.PREFIX values of "
                               "the nearest held ancestor prefix"},
    ),  # fmt: skip
    "WriteResult": _ok_object(("handle",), handle=_STR),
    "Listing": _ok_object(
        ("prefix", "totalCount", "handles"),
        prefix=_STR, totalCount={"type": "string", "pattern": "^[0-9]+$",
                                 "description": "a string, as Handle.net writes it"},
        page=_INT, pageSize=_INT, handles={"type": "array", "items": _STR},
    ),  # fmt: skip
    "SessionCreated": _obj(("sessionId", "nonce"), sessionId=_STR,
                           nonce={"type": "string", "contentEncoding": "base64"}),  # fmt: skip
    "SessionState": _obj(("sessionId", "nonce", "authenticated"), sessionId=_STR, nonce=_STR,
                         authenticated=_BOOL,
                         id={"type": "string", "description": "index:handle"}),  # fmt: skip
    "BatchItem": {"type": "object", "required": ["op", "handle"], "properties": {
        "op": {"enum": ["create", "update", "delete"]}, "handle": _STR,
        "values": {"type": "array", "items": _ref("HandleValueInput")}}},  # fmt: skip
    "BatchRequest": {"anyOf": [
        {"type": "object", "required": ["items"], "properties": {
            "items": {"type": "array", "maxItems": 2000, "items": _ref("BatchItem")}}},
        {"type": "array", "maxItems": 2000, "items": _ref("BatchItem")}]},  # fmt: skip
    "BatchResult": _ok_object(
        ("txnId", "results"), txnId=_INT,
        results={"type": "array", "items": _obj(("handle", "responseCode"), handle=_STR,
                                                responseCode=_RC, message=_STR)},
    ),  # fmt: skip
    "Changes": _ok_object(
        ("changes", "next"), next=_INT,
        changes={"type": "array", "items": _obj(
            ("txnId", "time", "action", "op", "handle", "identity", "before", "after"),
            txnId=_INT, time=_TIME, action=_STR, op=_INT, handle=_STR, identity=_STR,
            before=_NULLSTR, after=_NULLSTR, created={"type": "array", "items": _STR})},
    ),  # fmt: skip
    "PrefixSummary": _obj(("prefix", "enabled", "org"), prefix=_STR, enabled=_BOOL,
                          org=_NULLSTR),  # fmt: skip
    "PrefixList": _ok_object(("prefixes",),
                             prefixes={"type": "array", "items": _ref("PrefixSummary")}),
    "PrefixDetail": _ok_object(
        ("prefix", "enabled", "org", "identifiers", "admins", "values"),
        prefix=_STR, enabled=_BOOL, org=_NULLSTR, identifiers=_INT,
        admins={"type": "array", "items": _obj(
            ("index", "handle", "adminIndex", "permissions", "members"), index=_INT,
            handle=_STR, adminIndex=_INT, permissions=_STR,
            members={"type": "array", "items": _STR})},
        values={"type": "array", "items": _ref("HandleValue")},
    ),  # fmt: skip
    "PrefixCreated": _ok_object(("prefix", "org", "identity", "secret"), prefix=_STR, org=_STR,
                                identity=_STR, secret=_NULLSTR),  # fmt: skip
    "PrefixSwitched": _ok_object(("prefix", "enabled", "changed", "txnId"), prefix=_STR,
                                 enabled=_BOOL, changed=_BOOL, txnId=_INT),  # fmt: skip
    "IdentityCreated": _ok_object(("identity", "secret"), identity=_STR, secret=_NULLSTR),
    "ImportError": _obj(("line", "handle", "code", "outcome", "message"), line=_INT,
                        handle=_NULLSTR, code=_RC, outcome=_STR, message=_STR),  # fmt: skip
    "ImportJob": _obj(
        ("id", "key", "prefix", "format", "mode", "state", "phase", "lines", "done", "committed",
         "failed", "skipped", "startedAt", "updatedAt", "elapsed", "replayed", "message",
         "errors", "errorsTruncated"),
        id=_STR, key=_NULLSTR, prefix=_STR, format={"enum": ["jsonl", "csv"]},
        mode={"enum": ["best-effort", "atomic"]},
        state={"enum": ["running", "done", "failed", "interrupted"]},
        phase={"enum": ["import", "check", "commit", "rollback"]},
        lines=_INT, done=_INT, committed=_INT, failed=_INT, skipped=_INT, startedAt=_TIME,
        updatedAt=_TIME, elapsed={"type": "number"}, replayed=_BOOL, message=_STR,
        errors={"type": "array", "maxItems": 10000, "items": _ref("ImportError")},
        errorsTruncated=_BOOL,
    ),  # fmt: skip
    "ImportErrors": _obj(("id", "errors"), id=_STR,
                         errors={"type": "array", "items": _ref("ImportError")}),  # fmt: skip
    "TemplateField": _FIELD,
    "Template": {**_TEMPLATE, "required": ["responseCode", *_TEMPLATE["required"]],
                 "properties": {"responseCode": _rc(1), **_TEMPLATE["properties"]}},
    "TemplateDefinition": {
        "type": "object", "required": ["name", "fields"],
        "properties": {
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
            "description": _STR, "industry": _STR,
            "fields": {"type": "array", "items": {
                "type": "object", "required": ["name", "type"], "properties": {
                    "name": _STR, "type": {"enum": ["char", "numeric", "date", "url", "enum"]},
                    "index": _INT, "valueType": _STR, "required": _BOOL, "unique": _BOOL,
                    "grade": {"enum": ["general", "important", "core"]}, "description": _STR,
                    "maxLength": _INT, "minLength": _INT, "precision": _INT, "scale": _INT,
                    "values": {"type": "array", "items": _STR}}}}},
    },  # fmt: skip
    "TemplateList": _ok_object(
        ("scope", "templates"), scope=_STR,
        templates={"type": "array", "items": _obj(
            ("name", "latest", "versions"), name=_STR, latest=_INT,
            versions={"type": "array", "items": _obj(("version", "state"), version=_INT,
                                                     state=_STR)})},
    ),  # fmt: skip
    "TemplateDeleted": _ok_object(("scope", "name", "version", "deleted"), scope=_STR,
                                  name=_STR, version=_INT, deleted={"const": True}),  # fmt: skip
    "Figures": _FIGURES,
    "Stats": _ok_object(
        ("prefix", "from", "to", "totals", "prefixes", "enterprises"),
        prefix=_NULLSTR, **{"from": _TIME}, to=_TIME, totals=_ref("Figures"),
        prefixes={"type": "array", "items": {"allOf": [_ref("Figures"), {
            "required": ["prefix", "org"],
            "properties": {"prefix": _STR, "org": _NULLSTR}}]}},
        enterprises={"type": "array", "items": {"allOf": [_ref("Figures"), {
            "required": ["org", "prefixes"],
            "properties": {"org": _STR, "prefixes": {"type": "array", "items": _STR}}}]}},
        hours={"type": "array", "items": {"allOf": [_ref("Figures"), {
            "required": ["hour"], "properties": {"hour": _TIME}}]}},
    ),  # fmt: skip
}

# -- responses --------------------------------------------------------------------------------

_CODE_TEXT = {
    1: "success", 2: "server error", 3: "busy / too many failed authentications",
    4: "protocol error (bad request)", 6: "recursion limit", 100: "handle not found",
    101: "handle already exists", 102: "invalid handle", 200: "no such value",
    201: "value already exists", 202: "invalid value", 301: "prefix not homed here",
    303: "prefix referral", 401: "insufficient permissions", 402: "authentication needed",
    403: "authentication failed",
}


def _json(schema: dict, *, jsonp: bool = False) -> dict:
    content = {JSON: {"schema": schema}}
    if jsonp:
        content[JSONP] = {"schema": {"type": "string",
                                     "description": "callback(<the JSON body>);"}}  # fmt: skip
    return content


def _ok(description: str, schema: dict, **kw) -> dict:
    return {"description": description, "content": _json(schema, **kw)}


def _err(description: str, *codes: int, jsonp: bool = False, challenge: bool = False) -> dict:
    text = ", ".join(f"{c} {_CODE_TEXT[c]}" for c in codes)
    schema = {"allOf": [_ref("Error"), {"properties": {"responseCode": _rc(*codes)}}]}
    out = {"description": f"{description} (responseCode {text})",
           "content": _json(schema, jsonp=jsonp)}  # fmt: skip
    if challenge:
        out["headers"] = {"WWW-Authenticate": {
            "description": 'Basic realm="handle", or Handle sessionId="..", nonce=".." '
                           "(a new challenge)", "schema": _STR}}  # fmt: skip
    return out


# Statuses every authenticated endpoint may answer (http_admin.error_response).
_AUTH_ERRORS = {
    "401": _err("No credentials, or a Handle session that must answer its challenge", 402,
                challenge=True),  # fmt: skip
    "403": _err("Credentials refused (wrong secret: 403; plain HTTP from a remote client: 402), "
                "or the identity may not do this (401)", 401, 402, 403, challenge=True),
    "429": _err("Too many failed authentications from this client", 3),
}


def _auth_errors() -> dict:
    return dict(_AUTH_ERRORS)


# -- parameters -------------------------------------------------------------------------------


def _examples(out: dict, examples: dict | None) -> dict:
    """``examples``: name → value (OpenAPI Example Objects).  They document, and they are what
    the contract test sends first, so they name the demo data (registry/demo.jsonl)."""
    if examples:
        out["examples"] = {k: {"value": v} for k, v in examples.items()}
    return out


def _query(name: str, schema: dict, description: str = "", *, required: bool = False,
           array: bool = False, examples: dict | None = None) -> dict:  # fmt: skip
    p: dict = {"name": name, "in": "query", "required": required,
               "schema": {"type": "array", "items": schema} if array else schema}
    if array:
        p["style"], p["explode"] = "form", True
    if description:
        p["description"] = description
    return _examples(p, examples)


def _path(name: str, description: str, schema: dict | None = None,
          examples: dict | None = None) -> dict:  # fmt: skip
    p = {"name": name, "in": "path", "required": True, "description": description,
         "schema": schema or {"type": "string", "minLength": 1}}
    return _examples(p, examples)


_FLAG = {"type": "boolean"}
# Bounds are stated where the server checks them: the coverage phase of the contract test sends
# the first value past each bound.
_INT32 = {"type": "integer", "format": "int32", "minimum": -(1 << 31), "maximum": (1 << 31) - 1}
_INT64 = {"type": "integer", "format": "int64", "minimum": -(1 << 63), "maximum": (1 << 63) - 1}
_HANDLE = _path("handle", "The handle (identifier), e.g. 88.118.8/demo-1.  Its '/' may be "
                "sent as is or percent-encoded; the path is percent-decoded ('+' stays).",
                examples={"demo": "88.118.8/demo-1", "restricted": "88.118.8/demo-2",
                          "new": "88.118.8/new-1", "elsewhere": "99.999/not-here"})  # fmt: skip
_PREFIX_PARAM = _path("prefix", "An enterprise prefix, e.g. 88.118.8",
                      examples={"demo": "88.118.8"})  # fmt: skip
_RESOLVE_PARAMS = [
    _HANDLE,
    _query("type", _STR, "Only values of this type (repeatable; 'X.' also matches X.Y…)",
           array=True, examples={"url": ["URL"]}),  # fmt: skip
    _query("index", _INT32, "Only the value at this index (repeatable)", array=True,
           examples={"first": [1]}),  # fmt: skip
    _query("publicOnly", _FLAG, "Only public values (default true).  false: every selected "
           "value the caller may read — without credentials, a record with values that are not "
           "public answers 401"),
    _query("auth", _FLAG, "Authoritative: bypass caches"),
    _query("doNotRefer", _FLAG, "Answer for a delegated prefix instead of a referral"),
    _query("pretty", _FLAG, "Indented JSON"),
    _query("callback", _STR, "JSONP: the answer as callback(body); unsafe characters become "
           "'_'.  Ignored on an authenticated read."),
]
_URL_VALUE = {"index": 1, "type": "URL", "data": "https://example.com/sn/0001"}
_ADMIN_VALUE = {"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
    "handle": "0.NA/88.118.8", "index": 200, "permissions": "011111111111"}}}  # fmt: skip
_SECURED = [{"basic": []}, {"handleSession": []}, {"sessionCookie": []}]
_OPTIONAL = [{}, *_SECURED]


def _op(op_id: str, summary: str, responses: dict, *, tags: list[str], security=None,
        parameters=None, body=None, description: str = "") -> dict:  # fmt: skip
    out: dict = {"operationId": op_id, "summary": summary, "tags": tags, "responses": responses}
    if description:
        out["description"] = description
    if parameters:
        out["parameters"] = parameters
    if body is not None:
        out["requestBody"] = body
    if security is not None:
        out["security"] = security
    return out


def _head(get: dict) -> dict:
    """The HEAD twin of a GET: same statuses, no body."""
    out = copy.deepcopy(get)
    out["operationId"] = get["operationId"] + "Head"
    out["summary"] = "Headers of: " + get["summary"][0].lower() + get["summary"][1:]
    return out


def _json_body(schema: dict, description: str = "", required: bool = True,
               examples: dict | None = None) -> dict:  # fmt: skip
    out: dict = {"required": required,
                 "content": {JSON: _examples({"schema": schema}, examples)}}  # fmt: skip
    if description:
        out["description"] = description
    return out


# -- paths ------------------------------------------------------------------------------------


def _handles() -> dict:
    resolve = _op(
        "resolve", "Resolve a handle", {
            "200": _ok("The values (responseCode 1), or none matched the type/index "
                       "selection (responseCode 200)",
                       {"oneOf": [_ref("Resolution"), _ref("NoValues")]}, jsonp=True),
            "300": _ok("Prefix referral: the prefix is delegated to another service",
                       _ref("Referral"), jsonp=True),
            "400": _err("Invalid handle, prefix not homed here, or bad parameter", 4, 102, 301,
                        jsonp=True),  # fmt: skip
            "401": _err("publicOnly=false without credentials on a record with values that "
                        "are not public; or a Handle session that must answer its challenge",
                        402, jsonp=True, challenge=True),
            "403": _AUTH_ERRORS["403"],
            "404": _err("No such handle", 100, jsonp=True),
            "429": _AUTH_ERRORS["429"],
            "500": _err("Internal error, or a referral chain too long (upstream recursion)", 2,
                        6, jsonp=True),
            "503": _err("The upstream agent is overloaded (recursion)", 3, jsonp=True),
            "504": _err("The upstream service did not answer (recursion)", 2, jsonp=True),
        }, tags=["handles"], security=_OPTIONAL, parameters=_RESOLVE_PARAMS,
        description="Anonymous: the public values.  With credentials: the values the "
                    "identity may read (graded values by the read rule of core/grading), "
                    "filtered by type and index.",
    )  # fmt: skip
    write_errors = {
        "400": _err("Bad body, handle or parameter; template violation (with errors)", 4, 102,
                    200, 202, 301),  # fmt: skip
        **_auth_errors(),
        "404": _err("No such handle (values of a missing handle)", 100),
        "409": _err("Exists already and overwrite is false", 101, 201),
        "507": _err("The store is full", 2),
    }
    put = _op(
        "putHandle", "Create or replace a handle, or add/replace some of its values", {
            "200": _ok("Done (overwrite true, the default)", _ref("WriteResult")),
            "201": _ok("Created (overwrite=false)", _ref("WriteResult")),
            **write_errors,
        }, tags=["handles"], security=_SECURED,
        parameters=[
            {**_HANDLE, "examples": {**_HANDLE["examples"], "mint": {"value": "88.118.8/"}}},
            _query("overwrite", _FLAG, "Replace what exists (default true)"),
            _query("index", {"anyOf": [_INT32, {"const": "various"}]},
                   "Only these values: add them, replacing with overwrite; the body's indexes "
                   "must be exactly these ('various': any)", array=True),
            _query("mintNewSuffix", _FLAG, "The handle ends in '/': a new UUID suffix is "
                   "minted after it"),
        ],
        body=_json_body({"anyOf": [
            {"type": "array", "items": _ref("HandleValueInput")},
            {"type": "object", "required": ["values"], "properties": {
                "handle": {"type": "string", "description": "must name the same handle"},
                "values": {"type": "array", "items": _ref("HandleValueInput")}}},
            _ref("HandleValueInput")]}, "The values: an array, {\"values\": [...]} as pyhandle "
                                        "sends, or one value", examples={
            "record": {"values": [_URL_VALUE, _ADMIN_VALUE]}, "one": _URL_VALUE}),
    )  # fmt: skip
    delete = _op(
        "deleteHandle", "Delete a handle, or some of its values", {
            "200": _ok("Deleted", _ref("WriteResult")), **write_errors,
        }, tags=["handles"], security=_SECURED,
        parameters=[{**_HANDLE, "examples": {"new": {"value": "88.118.8/new-1"}}},
                    _query("index", _INT32, "Only the values at these indexes", array=True)],
    )
    listing = _op(
        "listHandles", "List the handles under a prefix", {
            "200": _ok("One page of handles", _ref("Listing")),
            "400": _err("Missing or bad prefix, prefix not homed here, bad page", 4, 102, 301),
            **_auth_errors(),
        }, tags=["handles"], security=_OPTIONAL,
        parameters=[
            _query("prefix", _STR, "The prefix (88.118.8 or 0.NA/88.118.8)", required=True,
                   examples={"demo": "88.118.8"}),
            _query("page", _INT32, "Page number from 0", examples={"first": 0}),
            _query("pageSize", _INT32, "Handles per page; 0: the count only; absent or "
                   "negative: all", examples={"ten": 10}),
        ],
        description="Needs LIST_HANDLES on 0.NA/<prefix> unless [http] allow_anonymous_list.",
    )  # fmt: skip
    return {
        "/api/handles/{handle}": {"get": resolve, "head": _head(resolve), "put": put,
                                  "delete": delete},
        "/api/handles": {"get": listing, "head": _head(listing)},
    }


def _sessions() -> dict:
    # The session is named by its credential, Authorization: Handle sessionId=".." (with id,
    # type, cnonce, alg and signature to authenticate it, handle.md §7.3).
    this = [{"handleSession": []}]
    state_errors = {
        "400": _err("No Authorization: Handle header", 4),
        "401": _err("No such session: a new challenge in WWW-Authenticate", 402,
                    challenge=True),  # fmt: skip
        "403": _AUTH_ERRORS["403"], "429": _AUTH_ERRORS["429"],
    }
    return {
        "/api/sessions": {"post": _op(
            "newSession", "Open a session: a session id and a nonce to sign", {
                "201": _ok("The session", _ref("SessionCreated")),
            }, tags=["sessions"], security=[{}])},
        "/api/sessions/this": {
            "get": _op("sessionState", "The session named by the Authorization header", {
                "200": _ok("Its state", _ref("SessionState")), **state_errors,
            }, tags=["sessions"], security=this),
            "put": _op("authenticateSession", "Authenticate the session: Authorization: Handle "
                       "with sessionId, id, type, cnonce, alg and signature", {
                "200": _ok("Its state", _ref("SessionState")), **state_errors,
            }, tags=["sessions"], security=this),
            "delete": _op("endSession", "End the session", {
                "204": {"description": "Ended"}, **state_errors,
            }, tags=["sessions"], security=this),
        },
    }  # fmt: skip


def _admin() -> dict:
    changes = _op(
        "changes", "The change log, for server admins", {
            "200": _ok("Changes after the txn id 'after'; 'next' continues", _ref("Changes")),
            "400": _err("Bad after or limit", 4), **_auth_errors(),
        }, tags=["replication"], security=_SECURED,
        parameters=[_query("after", _INT64, "Changes after this txn id (default 0; negative: 0)",
                           examples={"start": 0}),
                    _query("limit", _INT64, "At most this many (default 1000, at most 10000)",
                           examples={"ten": 10})],
    )  # fmt: skip
    return {
        "/api/v1/batches": {"post": _op(
            "batch", "Create, update and delete up to 2000 handles in one transaction", {
                "200": _ok("One result per item, in order", _ref("BatchResult")),
                "400": _err("Bad body or Idempotency-Key (reused with another body)", 4),
                **_auth_errors(), "507": _err("The store is full", 2),
            }, tags=["registration"], security=_SECURED,
            parameters=[{"name": "Idempotency-Key", "in": "header", "required": False,
                         "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                         "description": "A retry with the same key answers the first "
                                        "results and writes nothing"}],
            body=_json_body(_ref("BatchRequest"), examples={"sync": {"items": [
                {"op": "create", "handle": "88.118.8/batch-1", "values": [_URL_VALUE]},
                {"op": "update", "handle": "88.118.8/demo-1", "values": [_URL_VALUE]},
                {"op": "delete", "handle": "88.118.8/no-such-handle"}]}}),
        )},  # fmt: skip
        "/api/v1/changes": {"get": changes, "head": _head(changes)},
    }


def _operator() -> dict:
    guarded = _auth_errors()
    not_found = _err("No such prefix", 100)
    lst = _op("listPrefixes", "The node's prefixes", {
        "200": _ok("Every prefix, enabled or not", _ref("PrefixList")), **guarded,
    }, tags=["operator"], security=_SECURED)
    show = _op("showPrefix", "One prefix: its record, admins and identifier count", {
        "200": _ok("The prefix", _ref("PrefixDetail")),
        "400": _err("Not a prefix", 102), **guarded, "404": not_found,
    }, tags=["operator"], security=_SECURED, parameters=[_PREFIX_PARAM])

    def switch(action: str) -> dict:
        return _op(f"{action}Prefix", f"{action.capitalize()} a prefix", {
            "200": _ok("Its state ('changed' false: it already was)", _ref("PrefixSwitched")),
            "400": _err("Not a prefix", 102), **guarded, "404": not_found,
        }, tags=["operator"], security=_SECURED, parameters=[_PREFIX_PARAM])

    identity_body = _json_body({"type": "object", "required": ["handle", "index"], "properties": {
        "handle": _STR, "index": {"type": ["integer", "string"]},
        "pubkey": {"type": "string", "description": "PEM: an HS_PUBKEY instead of a secret"}}},
        examples={"demo": {"handle": "88.118.8/demo-2", "index": 300}})
    identity_errors = {
        "400": _err("Bad body, handle or key", 4, 102, 200, 202, 301), **guarded,
        "404": _err("No such handle", 100), "409": _err("A value at that index", 201),
        "507": _err("The store is full", 2),
    }  # fmt: skip
    return {
        "/api/v1/prefixes": {
            "get": lst, "head": _head(lst),
            "post": _op("createPrefix", "Create an enterprise prefix and its admin identity", {
                "201": _ok("Created; the secret is shown once", _ref("PrefixCreated"),),
                "400": _err("Bad body, prefix or key", 4, 102, 202), **guarded,
                "409": _err("The prefix exists", 101), "507": _err("The store is full", 2),
            }, tags=["operator"], security=_SECURED, body=_json_body({
                "type": "object", "required": ["prefix", "org"], "properties": {
                    "prefix": _STR, "org": _STR, "index": {"type": ["integer", "string"]},
                    "pubkey": {"type": "string", "description": "PEM public key"}}},
                examples={"derived": {"prefix": "88.118.8.77", "org": "Example Co"}})),
        },
        "/api/v1/prefixes/{prefix}": {"get": show, "head": _head(show)},
        "/api/v1/prefixes/{prefix}/disable": {"post": switch("disable")},
        "/api/v1/prefixes/{prefix}/enable": {"post": switch("enable")},
        "/api/v1/identities": {"post": _op(
            "addIdentity", "Add an HS_SECKEY (or HS_PUBKEY) identity to a handle", {
                "201": _ok("Added; the secret is shown once", _ref("IdentityCreated")),
                **identity_errors}, tags=["operator"], security=_SECURED, body=identity_body)},
        "/api/v1/identities/rotate": {"post": _op(
            "rotateIdentity", "Replace an identity's HS_SECKEY by a new secret", {
                "200": _ok("Rotated; the secret is shown once", _ref("IdentityCreated")),
                **identity_errors}, tags=["operator"], security=_SECURED, body=identity_body)},
    }  # fmt: skip


def _imports() -> dict:
    job_errors = {**_auth_errors(), "404": _err("No such job (or another identity's)", 100)}
    return {
        "/api/v1/imports": {
            "post": _op("startImport", "Import a body of identifiers (JSON Lines or CSV)", {
                "200": _ok("The job, when the body is done", _ref("ImportJob")),
                "400": _err("Bad parameter, prefix or Idempotency-Key", 4, 102, 301),
                **_auth_errors(),
                "409": _err("A job with this Idempotency-Key is running", 101),
                "507": _err("The store is full", 2),
            }, tags=["imports"], security=_SECURED, parameters=[
                _query("prefix", _STR, "Every identifier must be under it", required=True,
                       examples={"demo": "88.118.8"}),
                _query("format", {"enum": ["jsonl", "csv"]}, "Default: from the Content-Type"),
                _query("mode", {"enum": ["best-effort", "atomic"]}, "Default best-effort"),
                {"name": "Idempotency-Key", "in": "header", "required": False,
                 "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                 "description": "Retry or resume: the job of this key"},
            ], body={"required": True, "content": {
                "application/x-ndjson": _examples({"schema": _STR}, {"line": (
                    '{"handle":"88.118.8/imported-1","values":[{"index":1,"type":"URL",'
                    '"data":"https://example.com/i/1"}]}\n')}),
                "text/csv": _examples({"schema": _STR}, {"rows": (
                    "identifier,type,data\n88.118.8/imported-2,URL,https://example.com/i/2\n"
                )})},
                "description": "One identifier per line (registry/import_lines)"}),
            "get": _op("findImport", "The caller's job of an Idempotency-Key", {
                "200": _ok("The job", _ref("ImportJob")),
                "400": _err("No key parameter", 4), **job_errors,
            }, tags=["imports"], security=_SECURED,
                parameters=[_query("key", _STR, "The Idempotency-Key", required=True)]),
        },
        "/api/v1/imports/{id}": {"get": _op("getImport", "A job", {
            "200": _ok("The job", _ref("ImportJob")), **job_errors,
        }, tags=["imports"], security=_SECURED, parameters=[_path("id", "The job id")])},
        "/api/v1/imports/{id}/errors": {"get": _op("importErrors", "A page of a job's bad lines", {
            "200": _ok("Bad lines after 'after'", _ref("ImportErrors")),
            "400": _err("Bad after or limit", 4), **job_errors,
        }, tags=["imports"], security=_SECURED, parameters=[
            _path("id", "The job id"), _query("after", _INT, "Line number"),
            _query("limit", _INT, "At most this many (1 to 10000)")])},
    }  # fmt: skip


def _templates() -> dict:
    scope = _path("scope", "An enterprise prefix, or 'node'", examples={"demo": "88.118.8"})
    name = _path("name", "The template name", examples={"battery": "battery"})
    version = _path("version", "The version", {"type": "integer", "minimum": 0},
                    examples={"first": 1})
    tag, errs = ["templates"], _auth_errors()
    missing = _err("No such template, or not visible to the caller", 100)
    # a version that is not a decimal number names no endpoint at all
    missing_version = _err("No such template or version (or the version is not a number: "
                           "no such endpoint)", 4, 100)
    bad = _err("Bad scope or parameter; prefix not homed here", 4, 102, 301)
    lst = _op("listTemplates", "The templates of a scope", {
        "200": _ok("Names, versions and states (drafts only for managers)",
                   _ref("TemplateList")), "400": bad, **errs,
    }, tags=tag, security=_OPTIONAL,
        parameters=[_query("scope", _STR, "A prefix or 'node'", required=True,
                           examples={"demo": "88.118.8"})])
    latest = _op("getLatestTemplate", "The newest version the caller may see", {
        "200": _ok("The template", _ref("Template")), "400": bad, **errs, "404": missing,
    }, tags=tag, security=_OPTIONAL, parameters=[scope, name])
    one = _op("getTemplate", "One version", {
        "200": _ok("The template", _ref("Template")), "400": bad, **errs,
        "404": missing_version,
    }, tags=tag, security=_OPTIONAL, parameters=[scope, name, version])

    def transition(action: str) -> dict:
        return _op(f"{action}Template", f"{action.capitalize()} a version", {
            "200": _ok("The template in its new state", _ref("Template")),
            "400": _err("Bad scope, or not allowed in this state", 4, 102, 301), **errs,
            "404": missing_version,
        }, tags=tag, security=_SECURED, parameters=[scope, name, version])

    return {
        "/api/v1/templates": {
            "get": lst, "head": _head(lst),
            "post": _op("defineTemplate", "Define a template (a new draft version)", {
                "201": _ok("The draft", _ref("Template")),
                "400": _err("Bad scope or definition (errors: every problem)", 4, 102, 202,
                            301), **errs,
                "404": missing,
            }, tags=tag, security=_SECURED,
                parameters=[_query("scope", _STR, "A prefix or 'node'", required=True,
                                   examples={"demo": "88.118.8"})],
                body=_json_body(_ref("TemplateDefinition"), examples={"battery": {
                    "name": "battery", "description": "cells", "industry": "C/38/384/3841",
                    "fields": [{"name": "serial", "type": "char", "maxLength": 16,
                                "required": True, "unique": True},
                               {"name": "chemistry", "type": "enum",
                                "values": ["LFP", "NMC"], "grade": "important"}]}})),
        },
        "/api/v1/templates/{scope}/{name}": {"get": latest, "head": _head(latest)},
        "/api/v1/templates/{scope}/{name}/{version}": {
            "get": one, "head": _head(one),
            "delete": _op("deleteTemplate", "Delete a draft", {
                "200": _ok("Deleted", _ref("TemplateDeleted")),
                "400": _err("Bad scope, or not a draft", 4, 102, 301), **errs,
                "404": missing_version,
            }, tags=tag, security=_SECURED,
                parameters=[scope, name, {**version, "examples": {"second": {"value": 2}}}]),
        },
        "/api/v1/templates/{scope}/{name}/{version}/publish": {"post": transition("publish")},
        "/api/v1/templates/{scope}/{name}/{version}/withdraw": {"post": transition("withdraw")},
    }  # fmt: skip


def _stats() -> dict:
    time_doc = "UNIX seconds, a date (2026-11-29) or an ISO 8601 date-time (UTC if no zone)"
    get = _op("stats", "Registration and resolution counters per prefix, enterprise and hour", {
        "200": _ok("The report over whole UTC hours [from, to)", _ref("Stats")),
        "400": _err("Bad parameter or prefix", 4, 102), **_auth_errors(),
    }, tags=["statistics"], security=_SECURED, parameters=[
        _query("prefix", _STR, "This prefix and those derived from it (its owners); absent: "
               "the whole node (server admins)", examples={"demo": "88.118.8"}),
        _query("from", _STR, time_doc, examples={"date": "2026-01-01"}),
        _query("to", _STR, time_doc, examples={"time": "2099-01-01T00:00:00Z"}),
        _query("series", {"enum": ["hour"]}, "Add the figures of each hour"),
    ])  # fmt: skip
    return {"/api/v1/stats": {"get": get, "head": _head(get)}}


def _self() -> dict:
    get = _op("openapi", "This document", {
        "200": {"description": "The OpenAPI 3.1 document",
                "content": {JSON: {"schema": {"type": "object", "required": ["openapi"]}}}},
    }, tags=["meta"], security=[{}])  # fmt: skip
    return {"/api/openapi.json": {"get": get, "head": _head(get)}}


@functools.cache
def _build() -> dict:
    paths: dict = {}
    for part in (_handles, _sessions, _admin, _operator, _imports, _templates, _stats, _self):
        paths.update(part())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "idnode REST and registration API",
            "version": VERSION,
            "description": DESCRIPTION,
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in ("handles", "sessions", "registration", "replication",
                                        "operator", "imports", "templates", "statistics",
                                        "meta")],  # fmt: skip
        "security": _OPTIONAL,
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "basic": {"type": "http", "scheme": "basic",
                          "description": "user = the identity index:handle percent-encoded "
                                         "(300%3A88.118.8/ADMIN), password = its HS_SECKEY "
                                         "secret (handle.md §7.3)"},
                "handleSession": {"type": "http", "scheme": "Handle",
                                  "description": 'Authorization: Handle sessionId="..", '
                                                 "after POST /api/sessions and a signed nonce "
                                                 "(handle.md §7.3)"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "idnode_session",
                                  "description": "set by a successful authentication"},
            },  # fmt: skip
        },
    }


def document() -> dict:
    """The OpenAPI document (a deep copy: callers may change it)."""
    return copy.deepcopy(_build())


@functools.cache
def document_bytes() -> bytes:
    """The document as JSON, built once per process."""
    return orjson.dumps(_build())
