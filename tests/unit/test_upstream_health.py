"""Upstream health (resolver/upstream/health.py) on an injected clock: down after two
consecutive failures, failover to the next up upstream at once, one probe of a down upstream per
second, back in rotation after one success — and the same rules as properties over random
histories of outcomes and calls.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resolver.upstream.health import UpstreamHealth

A, B, C = ("192.0.2.1", 2641), ("192.0.2.2", 2641), ("198.51.100.7", 2641)
T0 = 500.0


def down(h: UpstreamHealth, upstream, now: float) -> None:
    for _ in range(h.fail_threshold):
        h.record(upstream, False, now)


def test_all_up_in_configured_order():
    h = UpstreamHealth([B, A, C])
    assert h.order(T0) == [B, A, C]
    assert all(h.is_up(u) for u in (A, B, C))
    assert h.next_probe(T0) is None and h.probes_due(T0) == []


def test_down_after_two_consecutive_failures_and_failover_is_immediate():
    h = UpstreamHealth([A, B, C])
    h.record(A, False, T0)
    assert h.is_up(A) and h.order(T0) == [A, B, C]  # one failure is not enough
    h.record(A, False, T0 + 0.1)
    assert not h.is_up(A)
    assert h.order(T0 + 0.1) == [B, C]  # the next up one first, no wait for A


def test_a_success_between_failures_resets_the_count():
    h = UpstreamHealth([A, B])
    for ok in (False, True, False, True, False):
        h.record(A, ok, T0)
    assert h.is_up(A) and h.status()[A]["consecutive_failures"] == 1


@pytest.mark.parametrize("threshold", [1, 2, 3])
def test_threshold_is_configurable(threshold):
    h = UpstreamHealth([A], fail_threshold=threshold)
    for _ in range(threshold - 1):
        h.record(A, False, T0)
    assert h.is_up(A)
    h.record(A, False, T0)
    assert not h.is_up(A)


def test_probe_of_a_down_upstream_once_per_interval():
    h = UpstreamHealth([A, B, C])
    down(h, A, T0)
    assert h.next_probe(T0) == 1.0
    assert h.order(T0 + 0.999) == [B, C]  # not yet due
    assert h.order(T0 + 1.0) == [B, C, A]  # due: last, after every up one
    assert h.order(T0 + 1.0) == [B, C]  # the probe of this second is handed out
    assert h.probes_due(T0 + 1.5) == []
    assert h.next_probe(T0 + 1.5) == 0.5
    h.record(A, False, T0 + 1.9)  # the probe failed (it took 0.9 s)
    assert not h.is_up(A)
    assert h.order(T0 + 2.0) == [B, C, A]  # ≤ 1 s after the previous probe, however long it took
    assert h.next_probe(T0 + 2.0) == 1.0


def test_probes_due_and_order_share_the_probe():
    h = UpstreamHealth([A, B])
    down(h, A, T0)
    assert h.probes_due(T0 + 1) == [A]  # the background prober got it
    assert h.order(T0 + 1.5) == [B]  # so a request does not probe it again this second
    assert h.order(T0 + 2) == [B, A]  # a request got it
    assert h.probes_due(T0 + 2.5) == []


def test_an_unused_probe_lapses_after_the_interval():
    h = UpstreamHealth([A, B])
    down(h, A, T0)
    assert h.order(T0 + 1) == [B, A]  # B answered; A's probe was never sent or recorded
    assert h.probes_due(T0 + 1.5) == []
    assert h.probes_due(T0 + 2) == [A]


def test_recovery_puts_it_back_in_configured_order():
    h = UpstreamHealth([A, B, C])
    down(h, A, T0)
    down(h, B, T0)
    assert h.order(T0 + 0.5) == [C]
    assert h.probes_due(T0 + 1) == [A, B]
    h.record(A, True, T0 + 1.01)
    assert h.is_up(A) and h.order(T0 + 1.02) == [A, C]
    assert h.next_probe(T0 + 1.02) == pytest.approx(0.98)  # B is still down
    h.record(B, True, T0 + 1.5)  # a late reply to an ordinary request counts as well
    assert h.order(T0 + 1.5) == [A, B, C] and h.next_probe(T0 + 1.5) is None
    h.record(A, False, T0 + 2)  # back up means a fresh count: one failure is not down
    assert h.is_up(A)


def test_all_down_none_due_is_an_empty_order():
    h = UpstreamHealth([A, B])
    down(h, A, T0)
    down(h, B, T0 + 0.5)
    assert h.order(T0 + 0.9) == []  # answer stale at once instead of waiting on dead nodes
    assert h.order(T0 + 1.0) == [A]
    assert h.order(T0 + 1.5) == [B]
    assert h.order(T0 + 1.6) == []


def test_status():
    h = UpstreamHealth([A, B])
    h.record(A, True, T0)
    down(h, B, T0 + 1)
    h.probes_due(T0 + 2)
    st_ = h.status(T0 + 2.25)
    assert list(st_) == [A, B]
    assert st_[A] == {
        "state": "up", "consecutive_failures": 0, "successes": 1, "failures": 0,
        "last_success": T0, "last_failure": None, "down_since": None, "next_probe": None,
        "down_for": None, "probe_in": None,
    }  # fmt: skip
    assert st_[B] == {
        "state": "down", "consecutive_failures": 2, "successes": 0, "failures": 2,
        "last_success": None, "last_failure": T0 + 1, "down_since": T0 + 1, "next_probe": T0 + 3,
        "down_for": 1.25, "probe_in": 0.75,
    }  # fmt: skip
    assert "down_for" not in h.status()[B]


def test_bad_arguments():
    with pytest.raises(ValueError):
        UpstreamHealth([A, A])
    with pytest.raises(ValueError):
        UpstreamHealth([A], fail_threshold=0)
    with pytest.raises(ValueError):
        UpstreamHealth([A], probe_interval=0)
    with pytest.raises(KeyError):
        UpstreamHealth([A]).record(B, True, T0)
    assert UpstreamHealth([]).order(T0) == []


# -- the rules over random histories ------------------------------------------------------------
UPS = ("a", "b", "c")
step = st.tuples(
    st.integers(0, 8).map(lambda n: n / 8),  # exact binary fractions: no rounding at the edges
    st.one_of(st.just(("order",)), st.just(("probes",)),
              st.tuples(st.just("record"), st.sampled_from(UPS), st.booleans())),
)  # fmt: skip


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(step, max_size=80), threshold=st.integers(1, 3),
       interval=st.sampled_from([0.25, 1.0]))  # fmt: skip
def test_rules_hold_over_random_histories(steps, threshold, interval):
    h = UpstreamHealth(UPS, fail_threshold=threshold, probe_interval=interval)
    in_row = dict.fromkeys(UPS, 0)  # consecutive failures since the last success
    went_down: dict[str, float] = {}  # down upstream -> when it went down
    claims: dict[str, list[float]] = {u: [] for u in UPS}  # probes handed out this down spell
    now = T0
    for dt, action in steps:
        now += dt
        if action[0] == "record":
            _, u, ok = action
            h.record(u, ok, now)
            if ok:
                in_row[u] = 0
                went_down.pop(u, None)
                claims[u] = []
            else:
                in_row[u] += 1
                if in_row[u] == threshold:
                    went_down[u] = now
            continue
        up = [u for u in UPS if in_row[u] < threshold]
        got = h.order(now) if action[0] == "order" else h.probes_due(now)
        assert [h.is_up(u) for u in UPS] == [u in up for u in UPS]
        if action[0] == "order":
            assert got[: len(up)] == up  # up ones first, in configured order
            got = got[len(up):]
        assert got == [u for u in UPS if u in got] and set(got) <= set(went_down)
        for u in went_down:
            last = claims[u][-1] if claims[u] else went_down[u]
            if u in got:  # at most one probe per interval, the first an interval after down
                assert now - last >= interval
                claims[u].append(now)
            else:  # ... and it is handed out as soon as it is due
                assert now - last < interval
