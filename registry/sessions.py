"""Authenticated sessions of the REST API: signed session cookies, and the sessions of the
``Authorization: Handle`` challenge scheme (``HandleSessions``, handle.md §7.3).

After a successful authentication the REST front-end sets a session cookie, so later requests
on the same client session (pyhandle keeps one ``requests.Session``; its reads send no
credentials, handle.md §8) act as that identity — as Handle.net's servlet sessions do.

Token layout (URL-safe base64 without padding, joined by ``.``)::

    payload   = "<expiry seconds since 1970>:<key tag>:<identity index:handle>"   (UTF-8)
    signature = HMAC-SHA256(node session key, payload)[:24]

The key is random, made once per store (``meta`` entry ``session_key``), so every worker of a
node — and nothing else — can check a token without shared memory.  A token cannot be altered
or extended without the key; it dies at its expiry.  Rotating the node key (deleting the entry)
ends every session.  The key tag is a digest of the identity's key values when the session
began (``keytag(identity)``): rotating or removing an identity's secret or public key ends its
sessions at once, in every worker, as it ends its password.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from hashlib import sha256
from typing import Callable

from registry.authz import Identity
from resolver.errors import AuthenticationFailed, InvalidIdentifier
from resolver.protocols.handle import auth
from resolver.store.lmdb_store import LmdbStore

COOKIE = "idnode_session"
KEY_NAME = b"session_key"
DEFAULT_LIFETIME = 24 * 3600  # handle.md §5: max_session_time 24 h
_SIG = 24


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionTokens:
    COOKIE = COOKIE

    def __init__(self, store: LmdbStore, lifetime: int = DEFAULT_LIFETIME,
                 clock: Callable[[], float] = time.time,
                 keytag: Callable[[Identity], str] | None = None) -> None:  # fmt: skip
        self.key = store.meta_value(KEY_NAME, lambda: secrets.token_bytes(32))
        self.lifetime = lifetime
        self.clock = clock
        self.keytag = keytag or (lambda identity: "")

    def issue(self, identity: Identity) -> str:
        tag = self.keytag(identity)
        payload = f"{int(self.clock()) + self.lifetime}:{tag}:{identity}".encode("utf-8")
        sig = hmac.new(self.key, payload, sha256).digest()[:_SIG]
        return f"{_b64(payload)}.{_b64(sig)}"

    def check(self, token: str) -> Identity | None:
        """The identity of a valid, unexpired token whose identity still has the keys it had;
        None for anything else."""
        try:
            p, s = token.split(".")
            payload, sig = _unb64(p), _unb64(s)
            if not hmac.compare_digest(hmac.new(self.key, payload, sha256).digest()[:_SIG], sig):
                return None
            expiry, tag, ident = payload.decode("utf-8").split(":", 2)
            if int(expiry) < self.clock():
                return None
            identity = Identity.parse(ident)
        except (ValueError, UnicodeDecodeError, InvalidIdentifier):
            return None
        return identity if hmac.compare_digest(self.keytag(identity), tag) else None


def key_tag(authenticator) -> Callable[[Identity], str]:
    """``keytag`` for the session classes: a digest of the identity's key values."""

    def tag(identity: Identity) -> str:
        h = sha256()
        for vtype in ("HS_SECKEY", "HS_PUBKEY"):
            for data in authenticator.key_values(identity, vtype):
                h.update(len(data).to_bytes(4, "big") + bytes(data))
        return h.hexdigest()[:16]

    return tag


class HandleSessions:
    """Sessions of the REST ``Authorization: Handle`` scheme (handle.md §7.3).

    ``new()`` → (sessionId, nonce).  The sessionId carries its nonce and creation time, signed
    with the node's session key — ``H`` + nonce (16 B) + u64 creation time, URL-safe base64,
    ``.``, HMAC-SHA256 truncated to 24 B — so any worker can check an answer without shared
    memory, and an unauthenticated session costs the server nothing.  ``authenticate(sid,
    params, client)`` checks the client's signature over nonce‖cnonce (HS_SECKEY: the
    ``verify_rest_signature`` algorithms; HS_PUBKEY: RSA) within ``AUTH_WINDOW`` seconds of the
    session's creation, then records ``expiry:key tag:identity`` in the store's ``meta`` (one
    write per successful authentication), where every worker finds it; a key rotation ends
    the session as for cookies.  Failures count in the authenticator's per-client limit.
    ``delete(sid)`` ends the session.
    """

    AUTH_WINDOW = 60  # handle.md §5: max_auth_time 60 s
    META_PREFIX = b"handle_session:"

    def __init__(self, store: LmdbStore, authenticator, tokens: SessionTokens,
                 lifetime: int = DEFAULT_LIFETIME, clock: Callable[[], float] = time.time
                 ) -> None:  # fmt: skip
        self.store = store
        self.authenticator = authenticator
        self.key = tokens.key
        self.keytag = tokens.keytag
        self.lifetime = lifetime
        self.clock = clock

    def new(self) -> tuple[str, bytes]:
        nonce = secrets.token_bytes(16)
        payload = b"H" + nonce + int(self.clock()).to_bytes(8, "big")
        sig = hmac.new(self.key, payload, sha256).digest()[:_SIG]
        return f"{_b64(payload)}.{_b64(sig)}", nonce

    def open(self, sid: str) -> tuple[bytes, int] | None:
        """(nonce, creation time) of a sessionId this node issued; None otherwise."""
        try:
            p, s = sid.split(".")
            payload, sig = _unb64(p), _unb64(s)
        except (ValueError, AttributeError):
            return None
        if len(payload) != 25 or payload[:1] != b"H":
            return None
        if not hmac.compare_digest(hmac.new(self.key, payload, sha256).digest()[:_SIG], sig):
            return None
        return payload[1:17], int.from_bytes(payload[17:], "big")

    def _meta_key(self, sid: str) -> bytes:
        return self.META_PREFIX + sha256(sid.encode("ascii", "replace")).digest()[:16]

    def authenticate(self, sid: str, params: dict, client: str) -> Identity:
        self.authenticator.limiter.check(client)
        opened = self.open(sid)
        identity = None
        ok = False
        if opened is not None and self.clock() - opened[1] <= self.AUTH_WINDOW:
            nonce = opened[0]
            try:
                identity = Identity.parse(params.get("id", ""))
                cnonce = base64.b64decode(params.get("cnonce", ""), validate=True)
                signature = base64.b64decode(params.get("signature", ""), validate=True)
                salt = (base64.b64decode(params["salt"], validate=True) if "salt" in params
                        else None)  # fmt: skip
                iterations = int(params["iterations"]) if "iterations" in params else None
                length = int(params["length"]) if "length" in params else None
            except (InvalidIdentifier, ValueError):
                identity = None
            if identity is not None:
                kind = params.get("type", "HS_SECKEY").upper()
                alg = params.get("alg", "SHA1")
                if kind == "HS_SECKEY":
                    for secret in self.authenticator.key_values(identity, "HS_SECKEY"):
                        ok |= auth.verify_rest_signature(secret, nonce, cnonce, alg, signature,
                                                         salt=salt, iterations=iterations,
                                                         length=length)  # fmt: skip
                elif kind == "HS_PUBKEY":
                    for key in self.authenticator.key_values(identity, "HS_PUBKEY"):
                        ok |= auth.verify_rest_public_key_signature(key, nonce, cnonce, alg,
                                                                    signature)  # fmt: skip
        if not ok:
            self.authenticator.limiter.failed(client)
            raise AuthenticationFailed("Authentication failed")
        expiry = int(self.clock()) + self.lifetime
        tag = self.keytag(identity)
        self.store.meta_put(self._meta_key(sid), f"{expiry}:{tag}:{identity}".encode("utf-8"))
        return identity

    def identity_of(self, sid: str) -> Identity | None:
        if self.open(sid) is None:
            return None
        found = self.store.meta_value(self._meta_key(sid))
        if found is None:
            return None
        expiry, tag, ident = found.decode("utf-8").split(":", 2)
        if int(expiry) < self.clock():
            return None
        identity = Identity.parse(ident)
        return identity if hmac.compare_digest(self.keytag(identity), tag) else None

    def delete(self, sid: str) -> None:
        if self.open(sid) is not None:
            self.store.meta_put(self._meta_key(sid), None)
