"""Process inspection for tests that watch a node's workers (from /proc; Linux only)."""

from __future__ import annotations

import os


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
