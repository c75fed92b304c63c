"""REST endpoint of the node's statistics (issue 7 §6).

``StatsHttp(admin, statistics)``: ``statistics`` is the composition root's
``registry.stats.Statistics`` (duck-typed: ``resolver`` never imports ``registry``), which
decides who may see what and shapes the report; ``admin`` the ``http_admin.AdminHttp`` whose
``identity(request)`` authenticates, as for every other ``/api/v1/`` endpoint.

``GET /api/v1/stats?prefix=P&from=T&to=T&series=hour`` → ``{"responseCode":1, "prefix",
"from", "to", "totals", "prefixes", "enterprises"[, "hours"]}`` (``registry.stats``).

* ``prefix``: a prefix (``88.118`` or ``0.NA/88.118``): it and its derived prefixes, for its
  owners and server admins; absent: the whole node, for server admins.
* ``from`` / ``to``: the half-open range ``[from, to)``, each a UNIX time in seconds, a date
  (``2026-11-29``, UTC midnight) or an ISO 8601 date-time (``2026-11-29T08:00:00Z``; no zone
  means UTC).  Counters are kept per UTC hour, so the range widens to whole hours (``from``
  down, ``to`` up); the answer says which.  Defaults: everything counted until now.
* ``series=hour`` adds the figures of each hour that has any.

Counts reach the store every ``[stats] flush_interval`` seconds (registrations at once, in
their own transaction).  Errors: 401 rc 402 without credentials, 403 rc 401 refused, 400 for a
bad parameter.
"""

from __future__ import annotations

import asyncio
import datetime
import math
import time

import orjson
from aiohttp import web

from resolver.errors import AuthenticationNeeded, IdnodeError, MalformedRequest
from resolver.protocols.http import codec
from resolver.servers.http_admin import error_response, not_allowed

STATS = "/api/v1/stats"
#: Paths this module answers; ``dispatch`` returns None for others.
PATHS = (STATS,)

_HEADERS = {"Content-Type": codec.CONTENT_TYPE, "Cache-Control": "no-store"}


def parse_time(name: str, text: str) -> float:
    """A ``from`` / ``to`` parameter → UNIX seconds; ``MalformedRequest`` naming it."""
    text = text.strip()
    try:
        if text.isascii() and text.lstrip("-").isdigit() and len(text) <= 12:
            return float(int(text))
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise MalformedRequest(f"{name}: expected UNIX seconds, a date (2026-11-29) or an "
                               f"ISO 8601 date-time, not {text[:40]!r}") from None  # fmt: skip
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


class StatsHttp:
    def __init__(self, admin, statistics) -> None:
        self.admin = admin
        self.statistics = statistics

    async def dispatch(self, request: web.BaseRequest) -> web.Response | None:
        """The answer to the statistics endpoint; None when the path is not it."""
        path = request.raw_path.split("?", 1)[0]
        if path.rstrip("/") != STATS:
            return None
        if request.method not in ("GET", "HEAD"):
            return not_allowed(request, "GET, HEAD")
        try:
            query = request.query
            prefix = query.get("prefix") or None
            start = parse_time("from", query["from"]) if "from" in query else 0.0
            end = parse_time("to", query["to"]) if "to" in query else time.time()
            if start < 0 or end < start:
                raise MalformedRequest("'from' must be ≥ 0 and not after 'to'")
            first, last = int(start // 3600), math.ceil(end / 3600) - 1
            series = query.get("series") or None
            identity, token = await self.admin.identity(request)
            if identity is None:
                raise AuthenticationNeeded("Authentication needed to read statistics")
            loop = asyncio.get_running_loop()
            report = await loop.run_in_executor(None, lambda: self.statistics.report(
                identity, prefix, first, max(last, first - 1), series=series))
            body = orjson.dumps({"responseCode": 1, **report})
            resp = web.Response(body=body, headers=_HEADERS)
            return self.admin._with_session(resp, request, token)
        except IdnodeError as exc:
            return error_response(exc, None)
        except OverflowError:
            return error_response(MalformedRequest("'from' or 'to' is out of range"), None)
