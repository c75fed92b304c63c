"""Response rate limiting over a real socket, in Knot's test shape (issue 6 §5; reference
reliability.md §A11 T3, after Knot's ``tests-extra`` RRL test): one client on 127.0.0.1 asks
the same name back to back for a fixed time, each query waiting at most 0.15 s, and counts
what came back — a full answer (replied), a TC=1 answer (slipped) or nothing (dropped).

One node per mode, ``[dns.rrl]`` in its configuration: RRL off; slip 0 (drop all limited);
slip 1 (truncate all); slip 2 (alternate); a whitelisted client; dry-run.  Rate 5 responses
per second with a burst (instant-limit) of 5.
"""

from __future__ import annotations

import time

import dns.exception
import dns.flags
import dns.message
import dns.query
import pytest

from resolver.protocols.dns.mapping import to_dns_name

NAME = to_dns_name("88.118.8/demo-1", "id.idnode.test.")
QUERY_TIMEOUT = 0.15  # Knot's test


def run(node, seconds: float) -> tuple[int, int, int]:
    """(replied, slipped, dropped) for back-to-back queries during ``seconds``."""
    replied = slipped = dropped = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        q = dns.message.make_query(NAME, "TXT")
        try:
            r = dns.query.udp(q, "127.0.0.1", port=node.dns_port, timeout=QUERY_TIMEOUT)
        except dns.exception.Timeout:
            dropped += 1
            continue
        if r.flags & dns.flags.TC:
            assert r.answer == [] and r.question[0].name.to_text() == NAME
            slipped += 1
        else:
            assert len(r.answer) == 1
            replied += 1
    return replied, slipped, dropped


def rrl_node(start_node, **options) -> object:
    lines = ["[dns.rrl]", "rate-limit = 5", "instant-limit = 5"]
    for key, value in options.items():
        text = "true" if value is True else repr(value).replace("'", '"')
        lines.append(f"{key.replace('_', '-')} = {text}")
    return start_node(config_text="\n".join(lines) + "\n")


def test_rrl_off_answers_everything(node):
    replied, slipped, dropped = run(node, 2.0)
    assert replied >= 100 and slipped == 0 and dropped <= 3


def test_slip_0_drops_every_limited_answer(start_node):
    replied, slipped, dropped = run(rrl_node(start_node, slip=0), 2.0)
    assert 0 < replied < 100 and slipped == 0 and dropped >= 5


def test_slip_1_truncates_every_limited_answer(start_node):
    replied, slipped, dropped = run(rrl_node(start_node, slip=1), 2.0)
    assert 0 < replied < 100 and slipped >= 100 and dropped <= 3


def test_slip_2_alternates(start_node):
    replied, slipped, dropped = run(rrl_node(start_node, slip=2), 5.0)
    assert 0 < replied < 100 and slipped >= 5 and dropped >= 5


@pytest.mark.parametrize("options", [{"whitelist": ["127.0.0.0/8"]}, {"dry_run": True}],
                         ids=["whitelist", "dry-run"])  # fmt: skip
def test_whitelisted_or_dry_run_is_never_limited(start_node, options):
    replied, slipped, dropped = run(rrl_node(start_node, slip=1, **options), 2.0)
    assert replied >= 100 and slipped == 0 and dropped <= 3
