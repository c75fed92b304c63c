"""DNS response codes for outcomes: the one total table ``RCODE_FOR`` (issue 6 §2).

The DNS face only reads, so most outcomes never reach it; the table is total anyway (tests/meta
checks it), so a new outcome cannot slip through unmapped.  RCODE values and names are RFC 1035
§4.1.1 and RFC 6895 §2.3 (``dns.rcode``); the UPDATE codes (RFC 2136 §2.2) carry the three
"exists / does not exist" outcomes of writes, the only places DNS has words for them.
"""

from __future__ import annotations

import dns.rcode

from resolver.errors import Outcome

Rcode = dns.rcode.Rcode

#: Outcome → RCODE.  Total: tests/meta checks every Outcome has an entry.
RCODE_FOR: dict[Outcome, Rcode] = {
    Outcome.OK: Rcode.NOERROR,
    Outcome.NOT_FOUND: Rcode.NXDOMAIN,  # authoritative miss under a held prefix (RFC 2308 §2.1)
    Outcome.VALUES_NOT_FOUND: Rcode.NOERROR,  # the name exists, nothing to show: NODATA (§2.2)
    Outcome.INVALID_IDENTIFIER: Rcode.NXDOMAIN,  # no identifier can have that name
    Outcome.INVALID_VALUE: Rcode.SERVFAIL,  # a stored value we cannot serve is our failure
    Outcome.MALFORMED: Rcode.FORMERR,
    Outcome.NOT_SUPPORTED: Rcode.NOTIMP,
    Outcome.NOT_RESPONSIBLE: Rcode.REFUSED,  # not authoritative, no recursion (RFC 1035 §4.1.1)
    # A Handle prefix referral names an HS_SITE, which DNS cannot express as a delegation (a
    # NOERROR referral needs NS records of name servers, and the site's servers speak the
    # Handle protocol, not DNS): for a DNS client the name is simply not ours to answer.
    Outcome.PREFIX_REFERRAL: Rcode.REFUSED,
    Outcome.ALREADY_EXISTS: Rcode.YXDOMAIN,
    Outcome.VALUE_EXISTS: Rcode.YXRRSET,
    Outcome.NO_SUCH_VALUE: Rcode.NXRRSET,
    # Policy refusals: RFC 1035 §4.1.1 "the name server refuses … for policy reasons".
    Outcome.AUTH_NEEDED: Rcode.REFUSED,
    Outcome.AUTH_FAILED: Rcode.REFUSED,
    Outcome.TLS_REQUIRED: Rcode.REFUSED,
    Outcome.FORBIDDEN: Rcode.REFUSED,
    Outcome.TOO_MANY_ATTEMPTS: Rcode.REFUSED,
    # Our failures: SERVFAIL, which resolvers retry elsewhere (RFC 1035 §4.1.1 rcode 2).
    Outcome.UPSTREAM_UNAVAILABLE: Rcode.SERVFAIL,
    Outcome.RECURSION_LIMIT: Rcode.SERVFAIL,  # a referral loop upstream: resolution failed
    Outcome.BUSY: Rcode.SERVFAIL,
    Outcome.STORE_FULL: Rcode.SERVFAIL,
    Outcome.INTERNAL: Rcode.SERVFAIL,
}
