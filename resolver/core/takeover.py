"""The takeover handler: a top-level node answers for a secondary that is down, from its copy
of the secondary's data (issue 7 §7; idis.md §1.4 "应急接管", emergency takeover).

The copy lives in the store's ``takeover`` database (``resolver.store.schema.TAKEOVER``); the
node's upstream agent pulls it from each configured source's change log and publishes there
whether the source is unreachable (``resolver.upstream.takeover``).  This handler only reads.

Contract (it sits in the chain after ``AuthorityHandler`` and before the forwarder, and is
only built when ``[takeover] enabled`` is on):

* an identifier whose prefix is homed by a configured source in the copy — or that prefix's
  handle ``0.NA/<prefix>``, when authority neither holds nor refers it — is answered from the
  copy **only while that source is published as unreachable**; otherwise it passes on
  (``None``), so a reachable secondary is referred to or reported "not here" exactly as before;
* answered: the copied values through ``core.select`` (the request's filters; the copy holds
  only what the source shows the public), or ``NOT_FOUND`` when the copy has no such
  identifier — both non-authoritative: the result's ``message`` says so (front-ends show no
  message with values), and a log line (``E083``, at most one per source per
  ``log_every`` seconds, counting the answers in between) names the source and since when it
  is down;
* sources no longer configured are ignored, whatever the copy still holds of them.

The store is duck-typed: ``takeover_lookup(prefix_key, key_or_None)`` → an object with
``source``, ``down_since_ms`` and ``blob`` (``resolver.store.lmdb_store.TakeoverHit``) or None.
One read transaction per request; the request reaches this handler only when authority passed
it on (a prefix not held here), so the hot paths never pay for it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Iterable

from resolver.core.request import ResolveRequest, ResolveResult
from resolver.core.select import select
from resolver.errors import Outcome
from resolver.record import unpack

log = logging.getLogger("idnode.takeover")

#: ``message`` of an answer from the copy.
NON_AUTHORITATIVE = "non-authoritative: answered from the takeover copy"
#: Seconds between two log lines about one source's answers.
LOG_EVERY = 10.0


class TakeoverHandler:
    name = "takeover"

    def __init__(self, store, sources: Iterable[str], *, log_every: float = LOG_EVERY,
                 clock=time.monotonic) -> None:  # fmt: skip
        self.store = store
        self.sources = frozenset(sources)
        self.log_every = log_every
        self.clock = clock
        self.answered = 0  # answers from the copy, since start (status, tests)
        self._logged: dict[str, float] = {}  # source → clock of its last log line
        self._quiet: dict[str, int] = {}  # source → answers since that line

    async def resolve(self, request: ResolveRequest) -> ResolveResult | None:
        ident = request.identifier
        if ident.is_prefix_handle:
            hit = self.store.takeover_lookup(ident.suffix_key, None)
        else:
            hit = self.store.takeover_lookup(ident.prefix_key, ident.key)
        if hit is None or hit.down_since_ms is None or hit.source not in self.sources:
            return None
        self.answered += 1
        self._note(ident.text, hit.source, hit.down_since_ms)
        if hit.blob is None:
            return ResolveResult(Outcome.NOT_FOUND, authoritative=False)
        result = select(unpack(hit.blob), request)
        if result.outcome is Outcome.OK:
            result = dataclasses.replace(result, message=NON_AUTHORITATIVE)
        return dataclasses.replace(result, authoritative=False)

    def _note(self, text: str, source: str, down_since_ms: int) -> None:
        """The rate-limited log line: the first answer for a source at once, then at most one
        line per ``log_every`` seconds with the count of answers it stands for."""
        now = self.clock()
        last = self._logged.get(source)
        if last is not None and now - last < self.log_every:
            self._quiet[source] = self._quiet.get(source, 0) + 1
            return
        more = self._quiet.pop(source, 0)
        self._logged[source] = now
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(down_since_ms / 1000))
        log.warning("E083 takeover: answered %s from the copy of %s, non-authoritative (the "
                    "source is unreachable since %s)%s", text, source, since,
                    f"; {more} more answer(s) from it since the last line" if more else "")
