"""Authenticated sessions of the REST API: signed, self-contained session cookies.

After a successful authentication the REST front-end sets a session cookie, so later requests
on the same client session (pyhandle keeps one ``requests.Session``; its reads send no
credentials, handle.md §8) act as that identity — as Handle.net's servlet sessions do.

Token layout (URL-safe base64 without padding, joined by ``.``)::

    payload   = "<expiry seconds since 1970>:<identity index:handle>"   (UTF-8)
    signature = HMAC-SHA256(node session key, payload)[:24]

The key is random, made once per store (``meta`` entry ``session_key``), so every worker of a
node — and nothing else — can check a token without shared memory.  A token cannot be altered
or extended without the key; it dies at its expiry.  Rotating the key (deleting the entry)
ends every session.
"""

from __future__ import annotations

import base64
import hmac
import secrets
import time
from hashlib import sha256
from typing import Callable

from registry.authz import Identity
from resolver.errors import InvalidIdentifier
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
                 clock: Callable[[], float] = time.time) -> None:  # fmt: skip
        self.key = store.meta_value(KEY_NAME, lambda: secrets.token_bytes(32))
        self.lifetime = lifetime
        self.clock = clock

    def issue(self, identity: Identity) -> str:
        payload = f"{int(self.clock()) + self.lifetime}:{identity}".encode("utf-8")
        sig = hmac.new(self.key, payload, sha256).digest()[:_SIG]
        return f"{_b64(payload)}.{_b64(sig)}"

    def check(self, token: str) -> Identity | None:
        """The identity of a valid, unexpired token; None for anything else."""
        try:
            p, s = token.split(".")
            payload, sig = _unb64(p), _unb64(s)
            if not hmac.compare_digest(hmac.new(self.key, payload, sha256).digest()[:_SIG], sig):
                return None
            expiry, _, ident = payload.decode("utf-8").partition(":")
            if int(expiry) < self.clock():
                return None
            return Identity.parse(ident)
        except (ValueError, UnicodeDecodeError, InvalidIdentifier):
            return None
