"""Security cases at the service level: the registration service, authentication, sessions and
the REST front-end's credential rule, over real LMDB stores (issue 4 §6).

What any front-end (REST today, the native protocol next) must inherit from ``registry``: every
refusal is an ``IdnodeError`` with its ``Outcome``, and the store is byte-for-byte what it was
(``State``).  The one mocked object of the suite is the aiohttp request of the TLS rule: tests
bind to 127.0.0.1 only, so a non-loopback client exists only as a mocked request.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import textwrap
from unittest import mock

import orjson
import pytest
from aiohttp import streams
from aiohttp.test_utils import make_mocked_request

from registry import identities
from registry.authz import Identity
from registry.identities import Authenticator, FailureLimiter
from registry.service import OPERATOR
from registry.sessions import SessionTokens
from resolver.protocols.handle.codes import RC_FOR
from resolver.protocols.http.codes import STATUS_FOR
from resolver.errors import (
    AuthenticationFailed, AuthenticationNeeded, Forbidden, IdnodeError, InvalidIdentifier,
    InvalidValue, NotResponsible, Outcome, TooManyAttempts,
)  # fmt: skip
from resolver.protocols.handle import auth
from resolver.servers.http_admin import AdminHttp
from resolver.valuejson import value_from_json
from resolver.values import HandleValue

from .conftest import (
    A8, A9, ALL, ENTERPRISE, ROOT, SECRET_8, SECRET_9, SECRET_U, SECRETS, U8, VALUE_RIGHTS, admin,
    basic, seckey, snapshot, url, vlist,
)  # fmt: skip

ID8, ID9, IDU, IDROOT = (Identity.parse(x) for x in (A8, A9, U8, ROOT))


def values(*objs: dict):
    return [value_from_json(o) for o in objs]


def refused(store, exc_type, outcome: Outcome, call):
    """``call()`` raises ``exc_type`` carrying ``outcome``; the store does not change."""
    before = snapshot(store)
    with pytest.raises(exc_type) as info:
        call()
    assert info.value.outcome is outcome
    assert snapshot(store) == before
    return info.value


# -- 1. cross-prefix, at the service every front-end calls ---------------------------------------

OPS = {
    "create": lambda r, p: r.create_handle(ID8, f"{p}/svc-new", values(url("https://evil"))),
    "overwrite": lambda r, p: r.create_handle(ID8, f"{p}/OWNED", values(
        url("https://evil"), admin("0.NA/88.118.8", 200, ALL)), overwrite=True),
    "put-values": lambda r, p: r.put_values(ID8, f"{p}/OWNED", values(url("https://evil"))),
    "remove-values": lambda r, p: r.remove_values(ID8, f"{p}/OWNED", [1]),
    "delete": lambda r, p: r.delete_handle(ID8, f"{p}/OWNED"),
}  # fmt: skip
HOMED = ["88.118.9", "88.118.88", "88.118"]


@pytest.mark.parametrize("prefix", HOMED + ["88.1188"])
@pytest.mark.parametrize("op", list(OPS))
def test_cross_prefix_operation_is_refused(registry, sec_store, op, prefix):
    if prefix in HOMED:
        exc = refused(sec_store, Forbidden, Outcome.FORBIDDEN, lambda: OPS[op](registry, prefix))
        assert "300:88.118.8/ADMIN may not" in exc.message
    else:
        refused(sec_store, NotResponsible, Outcome.NOT_RESPONSIBLE,
                lambda: OPS[op](registry, prefix))  # fmt: skip


PREFIX_HANDLE_OPS = [
    ("derived prefix of another", lambda r: r.create_handle(
        ID8, "0.NA/88.118.9.1", values(admin("88.118.8/ADMIN", 300, ALL)))),
    ("sibling prefix", lambda r: r.create_handle(
        ID8, "0.NA/88.118.80", values(admin("88.118.8/ADMIN", 300, ALL)))),
    ("other's group", lambda r: r.put_values(
        ID8, "0.NA/88.118.9", values(vlist([("88.118.8/ADMIN", 300)])))),
    ("other's prefix handle", lambda r: r.delete_handle(ID8, "0.NA/88.118.9")),
    ("own prefix handle", lambda r: r.delete_handle(ID8, "0.NA/88.118.8")),
    ("own HS_ADMIN added", lambda r: r.put_values(
        ID8, "0.NA/88.118.8", values(admin("88.118.8/ADMIN", 300, ALL, at=102)))),
    ("own HS_ADMIN widened", lambda r: r.put_values(
        ID8, "0.NA/88.118.8", values(admin("0.NA/88.118.8", 200, ALL)))),
    ("server admin's HS_ADMIN removed", lambda r: r.remove_values(ID8, "0.NA/88.118.8", [101])),
]  # fmt: skip


@pytest.mark.parametrize("call", [c for _, c in PREFIX_HANDLE_OPS],
                         ids=[n for n, _ in PREFIX_HANDLE_OPS])  # fmt: skip
def test_prefix_handle_operation_beyond_its_rights_is_refused(registry, sec_store, call):
    refused(sec_store, Forbidden, Outcome.FORBIDDEN, lambda: call(registry))


def test_a_top_level_prefix_is_not_made_here(registry, sec_store):
    """Homing a new top-level prefix is no create (HOME_NA): refused even to a server admin."""
    for who in (ID8, IDROOT):
        refused(sec_store, NotResponsible, Outcome.NOT_RESPONSIBLE, lambda: registry.create_handle(
            who, "0.NA/89", values(admin("88.118.8/ADMIN", 300, ALL))))


@pytest.mark.parametrize("handle", [b"88.118.8/\xff", b"88.118\xc0\xae9/x", "88.118.9\x00/x",
                                    "../88.118.9/x", "88.118.9/", "x" * 2049])  # fmt: skip
def test_invalid_names_are_invalid_at_the_service(registry, sec_store, handle):
    """The service refuses invalid names itself (the REST layer's U+FFFD bug is its own)."""
    refused(sec_store, InvalidIdentifier, Outcome.INVALID_IDENTIFIER,
            lambda: registry.create_handle(ID8, handle, values(url("https://x"))))  # fmt: skip


# -- 3. privilege escalation ---------------------------------------------------------------------


def test_an_index_zero_identity_is_not_the_server_admin(registry, sec_store):
    """``0:0.NA/88.118`` proves the same key as the server admin ``300:0.NA/88.118``, but the
    zero means "any index" only on a reference's side (handle.md §5)."""
    who = Authenticator(sec_store).secret("0:0.NA/88.118", b"root-Pq3vX9-secret", "10.0.0.1")
    assert who.index == 0
    refused(sec_store, Forbidden, Outcome.FORBIDDEN,
            lambda: registry.create_handle(who, "88.118.9/by-index-0", values(url("https://x"))))
    refused(sec_store, Forbidden, Outcome.FORBIDDEN, lambda: registry.changes(who))


def test_a_group_cycle_grants_nothing_and_ends(registry, sec_store):
    registry.put_values(OPERATOR, "88.118.8/GROUPS", values(
        vlist([("88.118.8/GROUPS", 201)]), vlist([("88.118.8/GROUPS", 200)], at=201)))
    refused(sec_store, Forbidden, Outcome.FORBIDDEN,
            lambda: registry.put_values(IDU, "88.118.8/GUARDED", values(url("https://mine"))))


def test_no_rights_through_an_hs_admin_of_the_wrong_type_or_index(registry, sec_store):
    """A value that looks like a grant but is not an HS_ADMIN, or an HS_ADMIN naming another
    index of the identity's handle, grants nothing."""
    registry.create_handle(OPERATOR, "88.118.8/DECOY", values(
        url("https://decoy"),
        {"index": 100, "type": "HS_ADMIN.X",
         "data": {"format": "admin", "value": {"handle": "88.118.8/USER", "index": 300,
                                               "permissions": ALL}}},
        admin("88.118.8/USER", 301, ALL, at=101)))  # fmt: skip
    refused(sec_store, Forbidden, Outcome.FORBIDDEN,
            lambda: registry.put_values(IDU, "88.118.8/DECOY", values(url("https://mine"))))
    refused(sec_store, Forbidden, Outcome.FORBIDDEN,
            lambda: registry.delete_handle(IDU, "88.118.8/DECOY"))


def test_overwrite_cannot_rewrite_the_own_prefix_handles_admins(registry, sec_store):
    refused(sec_store, Forbidden, Outcome.FORBIDDEN, lambda: registry.create_handle(
        ID8, "0.NA/88.118.8", values(admin("88.118.8/ADMIN", 300, ALL)), overwrite=True))


def test_overwrite_with_delete_right_only_cannot_grant_admin(registry, sec_store):
    registry.create_handle(OPERATOR, "88.118.8/DELONLY", values(
        url("https://d"), admin("88.118.8/USER", 300, VALUE_RIGHTS | 0x2),
        admin("0.NA/88.118.8", 200, ALL, at=101)))  # fmt: skip
    refused(sec_store, Forbidden, Outcome.FORBIDDEN, lambda: registry.create_handle(
        IDU, "88.118.8/DELONLY", values(url("https://d"), admin("88.118.8/USER", 300, ALL)),
        overwrite=True))  # fmt: skip


def test_joining_a_group_needs_admin_rights(registry, sec_store):
    members = [("88.118.8/ADMIN", 300), ("88.118.8/USER", 300)]
    refused(sec_store, Forbidden, Outcome.FORBIDDEN,
            lambda: registry.put_values(IDU, "88.118.8/GROUPS", values(vlist(members))))


# -- 4. secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("who,handle", [(None, "88.118.8/ADMIN"), (ID9, "88.118.8/ADMIN"),
                                        (IDU, "88.118.8/ADMIN"), (ID8, "88.118.9/ADMIN"),
                                        (ID8, "0.NA/88.118"), (IDU, "88.118.8/USER")])  # fmt: skip
def test_read_withholds_secret_keys_from_others(registry, sec_store, who, handle):
    before = snapshot(sec_store)
    record = registry.read(who, handle)
    assert record is not None and "HS_SECKEY" not in [v.type for v in record]
    assert all(s.encode() not in v.data for v in record for s in SECRETS)
    assert snapshot(sec_store) == before


def test_the_change_log_holds_digests_not_secrets(registry, sec_store):
    res = registry.create_handle(ID8, "88.118.8/NEWKEY", values(
        admin("0.NA/88.118.8", 200, ALL), seckey("new-key-Lp0q")))  # fmt: skip
    (entry,) = [c for c in registry.changes(IDROOT, res.txn_id - 1) if c.txn_id == res.txn_id]
    assert entry.key == b"88.118.8/NEWKEY" and entry.identity == A8
    assert entry.before is None and len(entry.after) == 32  # a SHA-256 digest, not the record
    refused(sec_store, Forbidden, Outcome.FORBIDDEN, lambda: registry.changes(ID8))
    refused(sec_store, AuthenticationNeeded, Outcome.AUTH_NEEDED, lambda: registry.changes(None))
    refused(sec_store, Forbidden, Outcome.FORBIDDEN, lambda: registry.list_handles(ID9, "88.118.8"))


@pytest.mark.parametrize("user,password", [
    (A8, b"wrong"), (A8, SECRET_9.encode()), ("300:88.118.8/NOBODY", SECRET_8.encode()),
    ("301:88.118.8/ADMIN", SECRET_8.encode()), (A8, b""), ("garbage:with:colons", b"x"),
])  # fmt: skip
def test_failed_authentication_says_nothing_about_why(sec_store, user, password):
    exc = refused(sec_store, AuthenticationFailed, Outcome.AUTH_FAILED,
                  lambda: Authenticator(sec_store).secret(user, password, "10.0.0.9"))  # fmt: skip
    assert exc.message == "Authentication failed"


def test_secrets_are_compared_in_constant_time():
    """Structural (kept to one test): the Basic check goes through ``auth.verify_password``,
    against every candidate without stopping early, and that is ``hmac.compare_digest``."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(identities.Authenticator.secret)))
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call)
             and isinstance(n.func, ast.Name)}  # fmt: skip
    assert "verify_password" in calls and identities.verify_password is auth.verify_password
    loops = [n for n in ast.walk(tree) if isinstance(n, ast.For)]
    assert loops and not any(isinstance(n, (ast.Break, ast.Return)) for loop in loops
                             for n in ast.walk(loop))  # fmt: skip
    src = inspect.getsource(auth.verify_password)
    assert "hmac.compare_digest(" in src and "==" not in src.partition('"""')[2].partition('"""')[2]
    assert auth.verify_password(b"", b"") is False


# -- 5. authentication ---------------------------------------------------------------------------


def test_failures_are_limited_then_forgiven_after_the_window(sec_store):
    clock = [1000.0]
    authn = Authenticator(sec_store, limiter=FailureLimiter(limit=3, window=60,
                                                            clock=lambda: clock[0]))  # fmt: skip
    for _ in range(3):
        refused(sec_store, AuthenticationFailed, Outcome.AUTH_FAILED,
                lambda: authn.secret(A8, b"guess", "10.0.0.1"))  # fmt: skip
    for pw in (b"guess", SECRET_8.encode()):  # over the limit, the right secret too
        refused(sec_store, TooManyAttempts, Outcome.TOO_MANY_ATTEMPTS,
                lambda: authn.secret(A8, pw, "10.0.0.1"))  # fmt: skip
    clock[0] += 59.0
    refused(sec_store, TooManyAttempts, Outcome.TOO_MANY_ATTEMPTS,
            lambda: authn.secret(A8, SECRET_8.encode(), "10.0.0.1"))  # fmt: skip
    clock[0] += 1.5  # the window has passed
    assert authn.secret(A8, SECRET_8.encode(), "10.0.0.1") == ID8


def test_own_login_does_not_reset_the_limit_on_guessing_another(sec_store):
    authn = Authenticator(sec_store, limiter=FailureLimiter(limit=3, window=60))
    for _ in range(2):
        refused(sec_store, AuthenticationFailed, Outcome.AUTH_FAILED,
                lambda: authn.secret(A8, b"guess", "10.0.0.2"))  # fmt: skip
    assert authn.secret(A9, SECRET_9.encode(), "10.0.0.2") == ID9  # the attacker's own account
    refused(sec_store, AuthenticationFailed, Outcome.AUTH_FAILED,
            lambda: authn.secret(A8, b"guess", "10.0.0.2"))  # the third guess at A8
    refused(sec_store, TooManyAttempts, Outcome.TOO_MANY_ATTEMPTS,
            lambda: authn.secret(A8, b"guess", "10.0.0.2"))  # fmt: skip


def _admin_http(store, registry, **kw) -> AdminHttp:
    return AdminHttp(registry, Authenticator(store), SessionTokens(store), **kw)


def _request(remote: str, *, scheme: str = "http", headers: dict | None = None,
             body: bytes = b"[]", method: str = "PUT", path: str = "/api/handles/88.118.8/tls"):
    """A mocked aiohttp request from ``remote`` (the suite's only mock: see module doc)."""
    payload = streams.StreamReader(mock.Mock(), 2**16, loop=asyncio.get_running_loop())
    payload.feed_data(body)
    payload.feed_eof()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    req = make_mocked_request(method, path, headers=hdrs, payload=payload)
    return req.clone(remote=remote, scheme=scheme)


NON_LOOPBACK = [
    ("203.0.113.7", {}),
    ("2001:db8::7", {}),
    ("10.0.0.7", {"X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1"}),
    ("10.0.0.7", {"X-Forwarded-Proto": "https", "X-Forwarded-Ssl": "on"}),
    ("::ffff:203.0.113.7", {}),
]  # fmt: skip


@pytest.mark.parametrize("remote,extra", NON_LOOPBACK, ids=[f"{r} {sorted(e)}" for r, e in
                                                            NON_LOOPBACK])  # fmt: skip
def test_credentials_over_plain_http_from_afar_are_refused(sec_store, registry, remote, extra):
    admin_http = _admin_http(sec_store, registry, auth_requires_tls=True)
    hdrs = {"Authorization": basic(A8, SECRET_8), **extra}
    body = orjson.dumps([url("https://x")])

    async def run():
        with pytest.raises(IdnodeError) as info:
            await admin_http.identity(_request(remote, headers=hdrs))
        # its own outcome, answered as Handle.net does: rc 402 (needed), HTTP 403
        assert info.value.outcome is Outcome.TLS_REQUIRED
        assert (RC_FOR[Outcome.TLS_REQUIRED], STATUS_FOR[Outcome.TLS_REQUIRED]) == (402, 403)
        assert info.value.message == "Authentication requires HTTPS"
        return await admin_http.write(_request(remote, headers=hdrs, body=body),
                                      "88.118.8/tls", "overwrite=false")  # fmt: skip

    before = snapshot(sec_store)
    resp = asyncio.run(run())
    assert (resp.status, orjson.loads(resp.body)["responseCode"]) == (403, 402)
    assert snapshot(sec_store) == before
    assert admin_http.authenticator.limiter._failures == {}  # the secret was never checked


@pytest.mark.parametrize("remote,scheme", [("127.0.0.1", "http"), ("::1", "http"),
                                           ("203.0.113.7", "https")])  # fmt: skip
def test_credentials_over_tls_or_loopback_are_checked(sec_store, registry, remote, scheme):
    """Control for the refusals above: the same credentials, from loopback or over TLS."""
    admin_http = _admin_http(sec_store, registry, auth_requires_tls=True)

    async def run():
        return await admin_http.identity(_request(remote, scheme=scheme,
                                                  headers={"Authorization": basic(A8, SECRET_8)}))

    identity, token = asyncio.run(run())
    assert identity == ID8 and token


def test_a_session_cookie_over_plain_http_from_afar_is_refused(sec_store, registry):
    admin_http = _admin_http(sec_store, registry, auth_requires_tls=True)
    token = admin_http.sessions.issue(ID8)
    body = orjson.dumps([url("https://x")])

    async def run():
        req = _request("203.0.113.7", headers={"Cookie": f"idnode_session={token}"}, body=body)
        return await admin_http.write(req, "88.118.8/tls-cookie", "overwrite=false")

    before = snapshot(sec_store)
    resp = asyncio.run(run())
    assert (resp.status, orjson.loads(resp.body)["responseCode"]) == (403, 402)
    assert snapshot(sec_store) == before


@pytest.mark.parametrize("mangle", [
    lambda t: t.replace(".", ".x", 1),
    lambda t: t.split(".")[0] + "." + t.split(".")[0],
    lambda t: t + ".extra",
    lambda t: "",
])  # fmt: skip
def test_sessions_of_another_store_or_mangled_are_no_identity(sec_store, tmp_path, mangle):
    from resolver.store.lmdb_store import LmdbStore

    other = LmdbStore(tmp_path / "other", map_size=8 << 20)
    try:
        foreign = SessionTokens(other).issue(IDROOT)  # a valid token of another node
    finally:
        other.close()
    tokens = SessionTokens(sec_store)
    assert tokens.check(foreign) is None
    assert tokens.check(mangle(tokens.issue(IDROOT))) is None
    assert tokens.check(tokens.issue(IDROOT)) == IDROOT  # control


# -- 6. bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    lambda r: r.put_values(ID8, "88.118.8/OWNED", values(url("a"), url("b"))),
    lambda r: r.create_handle(ID8, "88.118.8/many", [value_from_json(
        {"index": i, "type": "T", "data": ""}) for i in range(1, 2050)]),
    lambda r: r.put_values(ID8, "88.118.8/OWNED", [HandleValue(3, "T", b"x" * 262145)]),
    lambda r: r.put_values(ID8, "88.118.8/OWNED", [HandleValue(0, "T", b"x")]),
    lambda r: r.create_handle(ID8, "88.118.8/perm", [HandleValue(1, "T", b"x", permissions=16)]),
], ids=["duplicate index", "2049 values", "data over 256 KiB", "index 0", "bad permissions"])
def test_invalid_records_are_refused(registry, sec_store, call):
    refused(sec_store, InvalidValue, Outcome.INVALID_VALUE, lambda: call(registry))


def test_value_rights_and_secrets_of_the_fixture_are_what_the_suite_assumes(registry, sec_store):
    """Control of the data set: the enterprise mask lacks exactly the admin bits; USER's
    value rights work; every identity logs in with its own secret."""
    assert ENTERPRISE == 0xFFF & ~0x380
    registry.put_values(IDU, "88.118.8/SHARED", values(url("https://shared.example/2")))
    authn = Authenticator(sec_store)
    for who, secret in ((A8, SECRET_8), (A9, SECRET_9), (U8, SECRET_U)):
        assert authn.secret(who, secret.encode(), "10.0.0.3") == Identity.parse(who)
