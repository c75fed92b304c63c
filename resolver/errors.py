"""The one error taxonomy: ``Outcome`` and the exceptions that carry one.

Every exception that can reach a client is an ``IdnodeError`` subclass with a class-level
``outcome``; each protocol maps outcomes to its own wire codes in one total table
(``resolver.protocols.*.codes``).  A miss is ``None``, never an exception.  Imports nothing of ours.
"""

from __future__ import annotations

import dataclasses
import enum


class Outcome(enum.Enum):
    """What happened to a request, independent of the protocol that carried it."""

    #: The request succeeded.
    OK = "ok"
    #: The identifier does not exist under a prefix this node holds (authoritative).
    NOT_FOUND = "not_found"
    #: The identifier exists but no value survived the type/index/permission filters.
    VALUES_NOT_FOUND = "values_not_found"
    #: The identifier is not valid UTF-8, too long, or badly formed.
    INVALID_IDENTIFIER = "invalid_identifier"
    #: A value is malformed (bad index, bad data for its type, duplicate index).
    INVALID_VALUE = "invalid_value"
    #: The request itself is malformed (bad wire bytes, bad JSON, bad parameter).
    MALFORMED = "malformed"
    #: The operation, method or endpoint is not supported.
    NOT_SUPPORTED = "not_supported"
    #: The identifier's prefix is not held here and no referral or forwarding applies.
    NOT_RESPONSIBLE = "not_responsible"
    #: The prefix is delegated: a held ancestor prefix handle names, in its public
    #: ``HS_SITE.PREFIX`` / ``HS_SERV.PREFIX`` values (the result's values), the service that
    #: answers for it (handle.md §4 item 3).
    PREFIX_REFERRAL = "prefix_referral"
    #: The identifier already exists and overwriting was not asked for.
    ALREADY_EXISTS = "already_exists"
    #: A value with that index already exists and overwriting was not asked for.
    VALUE_EXISTS = "value_exists"
    #: A write names a value index the identifier does not have.
    NO_SUCH_VALUE = "no_such_value"
    #: The operation needs an authenticated identity.
    AUTH_NEEDED = "auth_needed"
    #: Authentication was attempted and failed.
    AUTH_FAILED = "auth_failed"
    #: Credentials were sent over plain HTTP from a remote client: refused unread (§7.3).
    TLS_REQUIRED = "tls_required"
    #: The identity is authenticated but lacks the permission.
    FORBIDDEN = "forbidden"
    #: An upstream node did not answer in time.
    UPSTREAM_UNAVAILABLE = "upstream_unavailable"
    #: Resolving a foreign identifier took more referral steps (RC 302/303, HS_SERV) than the
    #: recursion limit allows — a referral loop ends here (handle.md §4 item 3: RC 6).
    RECURSION_LIMIT = "recursion_limit"
    #: The node sheds load.
    BUSY = "busy"
    #: Too many failed authentications from this client; it must wait.
    TOO_MANY_ATTEMPTS = "too_many_attempts"
    #: The store's memory map is full; the write was rolled back, reads still work.
    STORE_FULL = "store_full"
    #: Anything else: a bug or a corrupt store.  Logged at the boundary.
    INTERNAL = "internal"


class IdnodeError(Exception):
    """Base of every error that can reach a client; ``outcome`` says how it is answered."""

    outcome: Outcome = Outcome.INTERNAL

    def __init__(self, message: str = "", *, outcome: Outcome | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        if outcome is not None:
            self.outcome = outcome

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidIdentifier(IdnodeError):
    """Invalid handle"""

    outcome = Outcome.INVALID_IDENTIFIER


class InvalidValue(IdnodeError):
    """Invalid handle value"""

    outcome = Outcome.INVALID_VALUE


@dataclasses.dataclass(frozen=True, slots=True)
class FieldError:
    """One violation of a metadata template (registry.templates).

    ``path``: where in the request body, e.g. ``values[3].data.value``, ``values`` (a missing
    required field), ``fields[2].type`` (a template definition).  ``index``: the value or field
    index concerned, if any.  ``field``: the template field's name (or the value type).
    """

    path: str
    index: int | None
    field: str
    message: str

    def to_json(self) -> dict:
        return {"path": self.path, "field": self.field, "index": self.index,
                "message": self.message}  # fmt: skip


class TemplateViolation(InvalidValue):
    """The values do not fit their metadata template"""

    outcome = Outcome.INVALID_VALUE
    #: Violations named in the message (Handle RC 202 carries only the message).
    SHOWN = 3

    def __init__(self, errors) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        shown = "; ".join(f"{e.path}: {e.message}" for e in self.errors[: self.SHOWN])
        more = len(self.errors) - self.SHOWN
        if more > 0:
            shown += f" (and {more} more)"
        super().__init__(shown or "The values do not fit their metadata template")

    def __reduce__(self):  # pickles (a process pool) with its errors, not its message
        return (type(self), (self.errors,))


class MalformedRequest(IdnodeError):
    """Malformed request"""

    outcome = Outcome.MALFORMED


class NotSupported(IdnodeError):
    """Operation not supported"""

    outcome = Outcome.NOT_SUPPORTED


class AlreadyExists(IdnodeError):
    """Handle already exists"""

    outcome = Outcome.ALREADY_EXISTS


class HandleNotFound(IdnodeError):
    """Handle not found"""

    outcome = Outcome.NOT_FOUND


class ValueExists(IdnodeError):
    """Value already exists"""

    outcome = Outcome.VALUE_EXISTS


class NoSuchValue(IdnodeError):
    """Value not found"""

    outcome = Outcome.NO_SUCH_VALUE


class NotResponsible(IdnodeError):
    """That prefix doesn't live here"""

    outcome = Outcome.NOT_RESPONSIBLE


class TooManyAttempts(IdnodeError):
    """Too many failed authentication attempts; try again later"""

    outcome = Outcome.TOO_MANY_ATTEMPTS


class AuthenticationNeeded(IdnodeError):
    """Authentication needed"""

    outcome = Outcome.AUTH_NEEDED


class AuthenticationFailed(IdnodeError):
    """Authentication failed"""

    outcome = Outcome.AUTH_FAILED


class TlsRequired(IdnodeError):
    """Authentication requires HTTPS"""

    outcome = Outcome.TLS_REQUIRED


class Forbidden(IdnodeError):
    """Insufficient permissions"""

    outcome = Outcome.FORBIDDEN


class StoreError(IdnodeError):
    """Store error"""

    outcome = Outcome.INTERNAL


class StoreFull(StoreError):
    """The store is full: the write was rolled back; raise map_size"""

    outcome = Outcome.STORE_FULL


class StoreFormatError(StoreError):
    """The store was written in a format this version cannot read"""


class CorruptRecord(StoreError):
    """A stored record failed validation"""


class ConfigError(IdnodeError):
    """Invalid configuration"""

    outcome = Outcome.MALFORMED

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason
