"""Process inspection for tests that watch a node's workers (from /proc; Linux only), and
``wait_for``, the bounded poll such tests wait with."""

from __future__ import annotations

import os
import time


def children(pid: int) -> set[int]:
    """Live (non-zombie) children of ``pid``, from /proc/*/stat."""
    out = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[1]) == pid and fields[0] != b"Z":
            out.add(int(entry))
    return out


def wait_for(predicate, timeout: float, what: str):
    """Poll ``predicate`` every 50 ms until it returns something true (returned), at most
    ``timeout`` seconds (then AssertionError naming ``what``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)
