"""The one total table ``STATUS_FOR`` from ``Outcome`` to HTTP status, after the reference
``BaseHandleRequestProcessingServlet.statusCodeFromResponse`` (handle.md §3.4).
"""

from __future__ import annotations

from resolver.errors import Outcome

#: Outcome → HTTP status.  Total: tests/meta checks every Outcome has an entry.
STATUS_FOR: dict[Outcome, int] = {
    Outcome.OK: 200,
    Outcome.NOT_FOUND: 404,
    # A resolution whose values were all filtered away is a 200 with responseCode 200;
    # for other operations the reference answers 400 (the handler passes the operation).
    Outcome.VALUES_NOT_FOUND: 200,
    Outcome.INVALID_IDENTIFIER: 400,
    Outcome.INVALID_VALUE: 400,
    Outcome.MALFORMED: 400,
    Outcome.NOT_SUPPORTED: 501,
    Outcome.NOT_RESPONSIBLE: 400,  # reference: 400 "That prefix doesn't live here"
    # Reference statusCodeFromResponse: RC 302/303 → 300 Multiple Choices; the body carries
    # responseCode 303 and the referral values.
    Outcome.PREFIX_REFERRAL: 300,
    Outcome.ALREADY_EXISTS: 409,
    Outcome.VALUE_EXISTS: 409,  # handle.md §7.1: PUT ?index= of an existing value, no overwrite
    Outcome.NO_SUCH_VALUE: 400,  # handle.md §7.1: DELETE ?index= of a missing value → 400 rc 200
    Outcome.AUTH_NEEDED: 401,
    Outcome.AUTH_FAILED: 403,
    # handle.md §7.3: over plain HTTP Handle.net ignores credentials and 401 becomes 403
    Outcome.TLS_REQUIRED: 403,
    Outcome.FORBIDDEN: 403,
    Outcome.UPSTREAM_UNAVAILABLE: 504,
    Outcome.RECURSION_LIMIT: 500,  # reference: RC 6 → 500 (handle.md §3.4)
    Outcome.BUSY: 503,
    Outcome.TOO_MANY_ATTEMPTS: 429,
    Outcome.STORE_FULL: 507,
    Outcome.INTERNAL: 500,
}
