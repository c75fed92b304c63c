"""Health of the upstream top-level nodes: which to ask first, which are down, when to probe a
down one again (issue 7 §5).

Owns the up/down state machine and the failover order; sans-IO — the caller reports outcomes
with ``record`` and passes ``now`` (one monotonic clock, e.g. ``time.monotonic()``) to every
call, so the timing rules are testable exactly.

Contract
========

State per upstream (any hashable id, e.g. ``("192.0.2.1", 2641)``)
    *up* until ``fail_threshold`` (2) consecutive failures are recorded, then *down*.  One
    recorded success — from any request, a probe or a late ordinary one — puts it back up and
    resets the count.  Failures recorded while down keep it down.

Probes
    A down upstream is *due a probe* ``probe_interval`` (1 s) after it went down, and from then
    on ``probe_interval`` after the last probe handed out: at most one probe per interval, so
    a dead node gets one query a second, not the whole load, and is tried again ≤ 1 s after
    the previous probe.  A probe is handed out (*claimed*) by ``order`` or ``probes_due``;
    the claimer sends something to the upstream and ``record``s the outcome.  A claim that is
    never used simply lapses after ``probe_interval``.

``order(now) -> list``
    The upstreams to try for one request, in that order: the up ones in configured order, then
    the down ones due a probe (claimed by this call) in configured order.  Failover is walking
    the list: the next up upstream is tried at once, a down one is tried only when every up
    one failed, and an empty list means every upstream is down and none is due — answer stale
    (or UPSTREAM_UNAVAILABLE) without waiting.

``probes_due(now) -> list``
    The down upstreams due a probe, claimed: for a background prober, so that a down upstream
    comes back into rotation even while the up ones answer every request (``order`` would
    only reach it when they all fail).  ``next_probe(now)`` tells the prober how long it may
    sleep.

``status(now=None) -> dict``
    Per upstream, in configured order: ``state`` ("up"/"down"), ``consecutive_failures``,
    ``successes``, ``failures``, ``last_success``, ``last_failure``, ``down_since``,
    ``next_probe`` (times on the caller's clock, or None) and, given ``now``, ``down_for`` and
    ``probe_in`` in seconds: what ``idnode upstream status`` shows.
"""

from __future__ import annotations

from typing import Hashable, Iterable


class _State:
    __slots__ = ("failures_in_row", "up", "down_since", "probe_at", "successes", "failures",
                 "last_success", "last_failure")  # fmt: skip

    def __init__(self) -> None:
        self.failures_in_row = 0
        self.up = True
        self.down_since: float | None = None
        self.probe_at: float | None = None  # down: when the next probe may be handed out
        self.successes = 0
        self.failures = 0
        self.last_success: float | None = None
        self.last_failure: float | None = None


class UpstreamHealth:
    """Up/down state, failover order and probe timing of a fixed list of upstreams."""

    def __init__(self, upstreams: Iterable[Hashable], fail_threshold: int = 2,
                 probe_interval: float = 1.0) -> None:  # fmt: skip
        ups = list(upstreams)
        if len(set(ups)) != len(ups):
            raise ValueError("an upstream is listed twice")
        if fail_threshold < 1:
            raise ValueError(f"fail_threshold must be ≥ 1, not {fail_threshold}")
        if not probe_interval > 0:
            raise ValueError(f"probe_interval must be > 0, not {probe_interval}")
        self.upstreams = tuple(ups)
        self.fail_threshold = fail_threshold
        self.probe_interval = probe_interval
        self._state = {u: _State() for u in ups}

    def is_up(self, upstream: Hashable) -> bool:
        return self._state[upstream].up

    def record(self, upstream: Hashable, ok: bool, now: float) -> None:
        """The outcome of one request to ``upstream`` (KeyError for an unknown one)."""
        s = self._state[upstream]
        if ok:
            s.successes += 1
            s.last_success = now
            s.failures_in_row = 0
            s.up, s.down_since, s.probe_at = True, None, None
            return
        s.failures += 1
        s.last_failure = now
        s.failures_in_row += 1
        if s.up and s.failures_in_row >= self.fail_threshold:
            s.up, s.down_since, s.probe_at = False, now, now + self.probe_interval

    def _claim_due(self, now: float) -> list:
        due = []
        for u in self.upstreams:
            s = self._state[u]
            if not s.up and now >= s.probe_at:
                s.probe_at = now + self.probe_interval
                due.append(u)
        return due

    def order(self, now: float) -> list:
        """Up upstreams in configured order, then down ones due a probe (claimed)."""
        return [u for u in self.upstreams if self._state[u].up] + self._claim_due(now)

    def probes_due(self, now: float) -> list:
        """Down upstreams due a probe, claimed: the caller probes each and records it."""
        return self._claim_due(now)

    def next_probe(self, now: float) -> float | None:
        """Seconds until the next probe falls due (0: one is due now); None: nothing down."""
        times = [s.probe_at for s in self._state.values() if not s.up]
        return max(0.0, min(times) - now) if times else None

    def status(self, now: float | None = None) -> dict:
        out = {}
        for u in self.upstreams:
            s = self._state[u]
            row = {
                "state": "up" if s.up else "down",
                "consecutive_failures": s.failures_in_row,
                "successes": s.successes,
                "failures": s.failures,
                "last_success": s.last_success,
                "last_failure": s.last_failure,
                "down_since": s.down_since,
                "next_probe": s.probe_at,
            }  # fmt: skip
            if now is not None:
                row["down_for"] = None if s.up else now - s.down_since
                row["probe_in"] = None if s.up else max(0.0, s.probe_at - now)
            out[u] = row
        return out
