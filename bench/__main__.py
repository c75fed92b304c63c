"""``python -m bench SCENARIO [options]``: run one benchmark scenario.

Scenarios are registered in ``SCENARIOS`` (name → ``module`` or ``module:function``, whose
``main(argv) -> int`` or that function runs it, and a one-line description); modules are
imported only when their scenario runs.
"""

from __future__ import annotations

import importlib
import sys

SCENARIOS = {
    "http": ("bench.http", "idnode REST resolution vs an aiohttp fixed-JSON floor, driven by wrk"),
    "handle-udp": ("bench.handle:main_udp",
                   "idnode Handle resolution over UDP vs Knot DNS, C load generator"),
    "handle-tcp": ("bench.handle:main_tcp",
                   "same over TCP, one request outstanding per connection"),
    "handle-tcp-pipelined": ("bench.handle:main_tcp_pipelined",
                             "same over TCP, 16 requests outstanding per connection"),
    "dns": ("bench.dns", "idnode DNS (TXT, URI, NAPTR) vs Knot DNS serving the same zone, "
            "driven by dnsperf"),
    "import": ("bench.imports", "idnode import of 1M identifiers (JSONL, CSV) into a running "
               "node: rate, node RSS, resolution p99 during it"),
    "peering": ("bench.peering", "recursive resolution through a secondary node (top-level T, "
                "secondary B): cold (upstream) and warm (cache) latency over Handle UDP"),
    "report": ("bench.report", "run the scenarios above side by side with their yardsticks; "
               "write bench/RESULTS.md and PNG plots (--quick, --only, --out)"),
}


def usage() -> str:
    lines = ["usage: python -m bench SCENARIO [options]   (python -m bench SCENARIO --help)", "",
             "scenarios:"]  # fmt: skip
    lines += [f"  {name:21s} {text}" for name, (_mod, text) in SCENARIOS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SCENARIOS:
        print(f"unknown scenario {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module, _, function = SCENARIOS[name][0].partition(":")
    return getattr(importlib.import_module(module), function or "main")(rest)


if __name__ == "__main__":
    raise SystemExit(main())
