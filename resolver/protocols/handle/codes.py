"""Handle response codes (RFC 3652 §2.2.2.2, HNv9 ``AbstractMessage``) and the one total table
``RC_FOR`` from ``Outcome`` to the code a Handle client sees (handle.md §3.4).
"""

from __future__ import annotations

import enum

from resolver.errors import Outcome


class ResponseCode(enum.IntEnum):
    #: Success.
    SUCCESS = 1
    #: Unspecified server error.
    ERROR = 2
    #: The server sheds load.
    SERVER_TOO_BUSY = 3
    #: The request could not be parsed.
    PROTOCOL_ERROR = 4
    #: The operation is not supported.
    OPERATION_NOT_SUPPORTED = 5
    #: Too many referrals / recursion steps.
    RECURSION_COUNT_TOO_HIGH = 6
    #: Read-only backup mode.
    SERVER_BACKUP = 7
    #: The handle does not exist.
    HANDLE_NOT_FOUND = 100
    #: The handle exists already.
    HANDLE_ALREADY_EXISTS = 101
    #: The handle is not well formed.
    INVALID_HANDLE = 102
    #: No value matched the request.
    VALUES_NOT_FOUND = 200
    #: A value with that index exists already.
    VALUE_ALREADY_EXISTS = 201
    #: A value is malformed.
    INVALID_VALUE = 202
    #: The client's site information is out of date.
    OUT_OF_DATE_SITE_INFO = 300
    #: This server is not responsible for the handle ("That prefix doesn't live here").
    SERVER_NOT_RESP = 301
    #: Ask another service (referral).
    SERVICE_REFERRAL = 302
    #: Prefix referral (derived-prefix delegation).
    PREFIX_REFERRAL = 303
    #: The identity is not an administrator.
    INVALID_ADMIN = 400
    #: The identity lacks the permission.
    INSUFFICIENT_PERMISSIONS = 401
    #: Authentication is needed (body carries a challenge on the native protocol).
    AUTHENTICATION_NEEDED = 402
    #: Authentication failed.
    AUTHENTICATION_FAILED = 403
    #: The credential is invalid.
    INVALID_CREDENTIAL = 404
    #: Authentication timed out.
    AUTHEN_TIMEOUT = 405
    #: Authentication could not be performed.
    AUTHEN_ERROR = 406
    #: The session timed out.
    SESSION_TIMEOUT = 500
    #: The session failed.
    SESSION_FAILED = 501
    #: The session key is invalid.
    INVALID_SESSION_KEY = 502
    #: Session key exchange needs an RSA key.
    NEED_RSAKEY_FOR_SESSIONEXCHANGE = 503
    #: The session set-up request is invalid.
    INVALID_SESSIONSETUP_REQUEST = 504
    #: A session message was rejected (replayed counter).
    SESSION_MESSAGE_REJECTED = 505


#: Outcome → Handle response code.  Total: tests/meta checks every Outcome has an entry.
RC_FOR: dict[Outcome, ResponseCode] = {
    Outcome.OK: ResponseCode.SUCCESS,
    Outcome.NOT_FOUND: ResponseCode.HANDLE_NOT_FOUND,
    Outcome.VALUES_NOT_FOUND: ResponseCode.VALUES_NOT_FOUND,
    Outcome.INVALID_IDENTIFIER: ResponseCode.INVALID_HANDLE,
    Outcome.INVALID_VALUE: ResponseCode.INVALID_VALUE,
    Outcome.MALFORMED: ResponseCode.PROTOCOL_ERROR,
    Outcome.NOT_SUPPORTED: ResponseCode.OPERATION_NOT_SUPPORTED,
    Outcome.NOT_RESPONSIBLE: ResponseCode.SERVER_NOT_RESP,
    Outcome.PREFIX_REFERRAL: ResponseCode.PREFIX_REFERRAL,  # body: the .PREFIX values (§3.4)
    Outcome.ALREADY_EXISTS: ResponseCode.HANDLE_ALREADY_EXISTS,
    Outcome.VALUE_EXISTS: ResponseCode.VALUE_ALREADY_EXISTS,
    Outcome.NO_SUCH_VALUE: ResponseCode.VALUES_NOT_FOUND,
    Outcome.AUTH_NEEDED: ResponseCode.AUTHENTICATION_NEEDED,
    Outcome.AUTH_FAILED: ResponseCode.AUTHENTICATION_FAILED,
    Outcome.TLS_REQUIRED: ResponseCode.AUTHENTICATION_NEEDED,
    Outcome.FORBIDDEN: ResponseCode.INSUFFICIENT_PERMISSIONS,
    # Not 301: "that prefix doesn't live here" is a statement about the data, which a failed
    # upstream does not support; RC 2 (a server-side failure) is what a client retries, and what
    # the reference answers when its own recursion throws.  HTTP 504, DNS SERVFAIL alike.
    Outcome.UPSTREAM_UNAVAILABLE: ResponseCode.ERROR,
    Outcome.RECURSION_LIMIT: ResponseCode.RECURSION_COUNT_TOO_HIGH,  # §4 item 3: RC 6
    Outcome.BUSY: ResponseCode.SERVER_TOO_BUSY,
    Outcome.TOO_MANY_ATTEMPTS: ResponseCode.SERVER_TOO_BUSY,  # reliability.md: RC 3
    Outcome.STORE_FULL: ResponseCode.ERROR,
    Outcome.INTERNAL: ResponseCode.ERROR,
}
