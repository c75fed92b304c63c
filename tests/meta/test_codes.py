"""The outcome tables are total and valid: ``RC_FOR`` (Handle response codes) and
``STATUS_FOR`` (HTTP statuses) have an entry for every ``Outcome`` and nothing else, and the
HTTP status of each outcome agrees with the reference server's mapping of its Handle code
(``BaseHandleRequestProcessingServlet.statusCodeFromResponse``, handle.md §3.4).
"""

from __future__ import annotations

import http

import pytest

from resolver.errors import Outcome
from resolver.protocols.handle.codes import RC_FOR, ResponseCode
from resolver.protocols.http.codes import STATUS_FOR

#: handle.md §3.4: Handle response code → REST HTTP status of the reference server.
REFERENCE_STATUS = {
    1: 200, 2: 500, 3: 503, 4: 400, 5: 501, 6: 500, 7: 503,
    100: 404, 101: 409, 102: 400,
    200: 200,  # for a resolution (400 for other operations)
    201: 409, 202: 400,
    300: 500, 301: 400, 302: 300, 303: 300,
    400: 403, 401: 403, 402: 401, 403: 403, 404: 403, 405: 500, 406: 500,
}  # fmt: skip

#: Outcomes the reference server has no counterpart for, with the status idnode chose.
EXTENSIONS = {
    Outcome.UPSTREAM_UNAVAILABLE: 504,  # a peer did not answer: gateway timeout
    Outcome.STORE_FULL: 507,  # LMDB map full: insufficient storage
    Outcome.NO_SUCH_VALUE: 400,  # rc 200 outside a resolution: the reference's 400 (§3.4, §7.1)
    Outcome.TOO_MANY_ATTEMPTS: 429,  # failed-login rate limit: Too Many Requests, not 503
    Outcome.TLS_REQUIRED: 403,  # rc 402 whose 401 Handle.net turns into 403 over plain HTTP
}

#: Anchors straight from handle.md §3.4 / §7.
EXPECTED = {
    Outcome.OK: (1, 200),
    Outcome.NOT_FOUND: (100, 404),
    Outcome.VALUES_NOT_FOUND: (200, 200),
    Outcome.INVALID_IDENTIFIER: (102, 400),
    Outcome.MALFORMED: (4, 400),
    Outcome.NOT_RESPONSIBLE: (301, 400),
    Outcome.PREFIX_REFERRAL: (303, 300),  # handle.md §3.4: RC 303 → 300 Multiple Choices
    Outcome.ALREADY_EXISTS: (101, 409),
    Outcome.AUTH_NEEDED: (402, 401),
    Outcome.BUSY: (3, 503),
    Outcome.RECURSION_LIMIT: (6, 500),  # handle.md §3.4, §4 item 3: too many referrals
    Outcome.INTERNAL: (2, 500),
}


def test_rc_for_is_total():
    assert set(RC_FOR) == set(Outcome), f"missing {set(Outcome) - set(RC_FOR)}"


def test_status_for_is_total():
    assert set(STATUS_FOR) == set(Outcome), f"missing {set(Outcome) - set(STATUS_FOR)}"


@pytest.mark.parametrize("outcome", list(Outcome), ids=lambda o: o.name)
def test_rc_is_a_handle_response_code(outcome):
    rc = RC_FOR[outcome]
    assert isinstance(rc, ResponseCode)
    assert int(rc) in REFERENCE_STATUS, f"{outcome}: {rc!r} is not a code of handle.md §3.4"


@pytest.mark.parametrize("outcome", list(Outcome), ids=lambda o: o.name)
def test_status_is_a_real_http_status(outcome):
    status = STATUS_FOR[outcome]
    assert type(status) is int
    assert status in {s.value for s in http.HTTPStatus}
    assert 200 <= status <= 599
    # Only success (and a resolution whose values were all filtered away) is a 2xx; only a
    # referral is a 3xx (the reference answers RC 302/303 with 300 Multiple Choices).
    if outcome not in (Outcome.OK, Outcome.VALUES_NOT_FOUND):
        assert status >= 300, outcome
    assert (300 <= status < 400) == (outcome is Outcome.PREFIX_REFERRAL), outcome


@pytest.mark.parametrize("outcome", list(Outcome), ids=lambda o: o.name)
def test_status_agrees_with_the_reference_mapping(outcome):
    expected = EXTENSIONS.get(outcome, REFERENCE_STATUS[int(RC_FOR[outcome])])
    assert STATUS_FOR[outcome] == expected, (outcome, RC_FOR[outcome])


@pytest.mark.parametrize("outcome,pair", list(EXPECTED.items()), ids=lambda x: getattr(x, "name", ""))
def test_anchor_codes(outcome, pair):
    assert (int(RC_FOR[outcome]), STATUS_FOR[outcome]) == pair


def test_success_is_only_success():
    assert [o for o in Outcome if RC_FOR[o] == ResponseCode.SUCCESS] == [Outcome.OK]


# -- DNS (issue 6) ------------------------------------------------------------------------------


def test_rcode_for_is_total():
    from resolver.protocols.dns.codes import RCODE_FOR

    assert set(RCODE_FOR) == set(Outcome), f"missing {set(Outcome) - set(RCODE_FOR)}"


@pytest.mark.parametrize("outcome", list(Outcome), ids=lambda o: o.name)
def test_rcode_is_a_dns_rcode_that_fits_the_header(outcome):
    import dns.rcode

    from resolver.protocols.dns.codes import RCODE_FOR

    rcode = RCODE_FOR[outcome]
    assert isinstance(rcode, dns.rcode.Rcode)
    assert 0 <= int(rcode) <= 15, "extended RCODEs need an OPT RR, which a plain query lacks"
    # Only success and "the name exists, no data" answer NOERROR.
    if outcome not in (Outcome.OK, Outcome.VALUES_NOT_FOUND):
        assert rcode != dns.rcode.NOERROR, outcome


def test_dns_anchor_rcodes():
    import dns.rcode

    from resolver.protocols.dns.codes import RCODE_FOR

    assert RCODE_FOR[Outcome.NOT_FOUND] == dns.rcode.NXDOMAIN  # issue 6 §2
    assert RCODE_FOR[Outcome.NOT_RESPONSIBLE] == dns.rcode.REFUSED
    assert RCODE_FOR[Outcome.PREFIX_REFERRAL] == dns.rcode.REFUSED  # DNS cannot refer to a site
    assert RCODE_FOR[Outcome.MALFORMED] == dns.rcode.FORMERR  # issue 6 §4
    assert RCODE_FOR[Outcome.NOT_SUPPORTED] == dns.rcode.NOTIMP
    assert RCODE_FOR[Outcome.INTERNAL] == dns.rcode.SERVFAIL
    assert RCODE_FOR[Outcome.RECURSION_LIMIT] == dns.rcode.SERVFAIL  # issue 7: resolution failed
