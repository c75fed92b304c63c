"""Authentication: proving a caller is the identity ``index:handle`` it names.

An identity is a key value in a handle record (handle.md §5): ``HS_SECKEY`` holds a shared
secret (its value data, compared byte for byte), ``HS_PUBKEY`` an RSA public key.  Index 0
means "any key value of that handle" (the reference's rule for an identity without index).

Secrets are compared in constant time (``auth.verify_password``, against every candidate so
the time does not tell which index matched; an empty secret matches nothing) and appear in no message or log line.  Failed attempts
are counted per client address by ``FailureLimiter``; past the limit the client gets
``TooManyAttempts`` (HTTP 429, Handle RC 3) until its window passes, whatever it sends.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable

from registry.authz import Identity
from resolver.errors import AuthenticationFailed, InvalidIdentifier, TooManyAttempts
from resolver.identifier import Identifier
from resolver.protocols.handle.auth import verify_password
from resolver.record import unpack
from resolver.store.lmdb_store import LmdbStore

SECRET_KEY = "HS_SECKEY"
PUBLIC_KEY = "HS_PUBKEY"


class FailureLimiter:
    """At most ``limit`` failed authentications per client within ``window`` seconds.

    Bounded memory: at most ``max_clients`` addresses are tracked, the least recently failing
    forgotten first (an attacker rotating addresses gains nothing it would not have anyway).
    """

    def __init__(self, limit: int = 10, window: float = 60.0, max_clients: int = 65536,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.limit, self.window, self.max_clients, self.clock = limit, window, max_clients, clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def check(self, client: str) -> None:
        """Raise ``TooManyAttempts`` while ``client`` is over the limit."""
        times = self._recent(client)
        if len(times) >= self.limit:
            raise TooManyAttempts("Too many failed authentication attempts; try again later")

    def failed(self, client: str) -> None:
        times = self._recent(client)
        times.append(self.clock())
        self._failures[client] = times
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    def _recent(self, client: str) -> list[float]:
        now = self.clock()
        return [t for t in self._failures.get(client, ()) if now - t < self.window]


class Authenticator:
    """Checks credentials against the key values stored for identities."""

    def __init__(self, store: LmdbStore, *, case_sensitive: bool = False,
                 limiter: FailureLimiter | None = None) -> None:  # fmt: skip
        self.store = store
        self.case_sensitive = case_sensitive
        self.limiter = limiter or FailureLimiter()

    def key_values(self, identity: Identity, vtype: str) -> list[bytes]:
        """The data of the identity's ``vtype`` values (all of them for index 0)."""
        try:
            ident = Identifier.parse(identity.handle, case_sensitive=self.case_sensitive)
        except InvalidIdentifier:
            return []
        with self.store.view() as view:
            blob = (view.get_prefix(ident.suffix_key) if ident.is_prefix_handle
                    else view.get_record(ident.key))  # fmt: skip
            if blob is None:
                return []
            record = unpack(bytes(blob))
        return [v.data for v in record
                if v.type == vtype and (identity.index == 0 or v.index == identity.index)]

    def secret(self, user: str, password: bytes, client: str) -> Identity:
        """``Authorization: Basic`` (handle.md §7.3): ``user`` is ``index:handle``, the password
        the HS_SECKEY bytes.  Returns the identity, or raises ``AuthenticationFailed`` (the
        same message whatever was wrong) or ``TooManyAttempts``."""
        self.limiter.check(client)
        try:
            identity = Identity.parse(user)
        except InvalidIdentifier:
            identity = None
        ok = False
        if identity is not None:
            for secret in self.key_values(identity, SECRET_KEY):
                ok |= verify_password(secret, password)  # constant time; empty never matches
        if not ok:
            self.limiter.failed(client)
            raise AuthenticationFailed("Authentication failed")
        # A success does not clear the client's failures: with one valid account of its own a
        # client could otherwise reset the limit between guesses at another identity's secret.
        return identity
