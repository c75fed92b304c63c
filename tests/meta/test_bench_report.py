"""``python -m bench report`` without load: the report is rendered from canned figures into a
temporary directory — RESULTS.md (its generated section, the history kept below it) and valid
PNG plots.  The canned figures are made by the scenarios' own ``report`` functions from
hand-written run results, so a change to a scenario's JSON line that the report does not follow
fails here; the import rows are checked against the keys ``bench/imports.py`` returns."""

from __future__ import annotations

import argparse
import ast
import json
import re
from pathlib import Path

import pytest
from PIL import Image

from bench import dns as bench_dns
from bench import handle, imports, peering, report
from bench import http as bench_http
from bench.__main__ import SCENARIOS, usage

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MACHINE = {"cpu": "Test CPU 9000", "cores": 2, "usable_cores": 2, "memory_gib": 23.5,
           "kernel": "Linux 6.1.0 x86_64", "os": "Debian GNU/Linux 12 (bookworm)",
           "python": "CPython 3.11.7", "idnode": "0.1.0, cython hot path",
           "libraries": {"aiohttp": "3.14.5", "lmdb": "3.0.0"},
           "tools": {"wrk": "4.1.0", "Knot DNS": "3.2.6"}}  # fmt: skip


# -- canned figures, through the scenarios' own report functions -------------------------------
def wrk(rps, p50, p90, p99, cpu):
    return bench_http.WrkResult(rps, p50, p99, int(rps * 10), int(rps * 4000), cpu_us=cpu,
                                p90_ms=p90)  # fmt: skip


def http_figures() -> dict:
    args = argparse.Namespace(records=1_000_000, threads=1, connections=16, duration=10, rounds=3)
    runs = {"idnode": [wrk(8455, 1.77, 2.4, 3.17, 118.2), wrk(8400, 1.8, 2.5, 3.2, 119.0),
                       wrk(8500, 1.75, 2.3, 3.1, 117.5)],
            "floor": [wrk(8246, 1.79, 2.6, 3.5, 121.0), wrk(8200, 1.8, 2.7, 3.6, 122.0),
                      wrk(8300, 1.78, 2.5, 3.4, 120.0)]}  # fmt: skip
    ok, doc = bench_http.report(args, "cython", 312, runs, True)
    assert ok and doc["scenario"] == "http"
    return doc


def gen(qps, p50, p90, p99, p999, cpu, rate=0.0):
    return handle.GenResult(qps=qps, p50_us=p50, p90_us=p90, p99_us=p99, p999_us=p999,
                            max_us=p999 * 3, sent=int(qps * 10), answered=int(qps * 10), bad=0,
                            lost=0, stale=0, reconnects=0, rate=rate, gen_cpu=0.6,
                            server_core=0.98, cpu_us=cpu)  # fmt: skip


def handle_figures(scenario="udp", knot=True) -> dict:
    args = argparse.Namespace(records=1_000_000, zone_records=100_000, duration=10.0, rounds=1,
                              timeout_ms=100)  # fmt: skip
    setup = handle.Setup(scenario, "udp" if scenario == "udp" else "tcp", 32, 1024, 16, 1,
                         Path("loadgen"), 0, 1)  # fmt: skip
    full = {"idnode": [gen(179469, 170, 200, 250, 400, 5.5)]}
    half = {"idnode": [gen(89734, 60, 90, 380, 900, 6.0, rate=89734)]}
    if knot:
        full["knot"] = [gen(149125, 210, 240, 280, 500, 6.7)]
        half["knot"] = [gen(74543, 50, 80, 280, 700, 7.0, rate=74543)]
    fig = {"implementation": "cython", "fast_path": "cython", "full": full, "half": half,
           "headroom": gen(260000, 100, 120, 150, 200, 0.5),
           "knot_version": "knotd (Knot DNS), version 3.2.6" if knot else None}  # fmt: skip
    _ok, doc = handle.report(args, setup, fig)
    return doc


def perf(qps, avg, cpu, p=None, rate=0.0):
    r = bench_dns.PerfResult(qps=qps, sent=int(qps * 10), completed=int(qps * 10), lost=0,
                             rcodes={"NOERROR": int(qps * 10)}, avg_ms=avg, min_ms=0.01,
                             max_ms=3.0, stddev_ms=0.1, run_s=10.0, request_bytes=60,
                             response_bytes=240, rate=rate, cpu_us=cpu, server_core=0.97,
                             gen_cpu=0.9)  # fmt: skip
    if p:
        r.p50_ms, r.p90_ms, r.p99_ms, r.p999_ms = p
    return r


def dns_figures(knot=True) -> dict:
    args = argparse.Namespace(records=1_000_000, zone_records=100_000, apex="id.idnode.test.",
                              pool=100_000, duration=10.0, rounds=1, verbose_max=False)  # fmt: skip
    load = bench_dns.Load("dnsperf", Path("q.txt"), "udp", 1, 64, 128, True, 5.0, 0, 1)
    full = {"idnode": [perf(148702, 0.342, 6.7)]}
    half = {"idnode": [perf(74350, 0.06, 6.9, (0.056, 0.09, 0.146, 0.4), rate=74350)]}
    if knot:
        full["knot"] = [perf(122153, 0.484, 8.1)]
        half["knot"] = [perf(61075, 0.05, 8.3, (0.044, 0.08, 0.186, 0.5), rate=61075)]
    fig = {"implementation": "cython", "fast_path": "cython", "full": full, "half": half,
           "headroom": perf(140030, 0.131, 6.2),
           "mix": {"TXT": 60000, "URI": 20000, "NAPTR": 20000},
           "knot_version": "knotd (Knot DNS), version 3.2.6" if knot else None,
           "dnsperf_version": "dnsperf 2.10.0", "notes": [], "problems": []}  # fmt: skip
    _ok, doc = bench_dns.report(args, load, fig)
    return doc


def import_row(fmt: str, rate: int) -> dict:
    return {"format": fmt, "identifiers": 1_000_000, "seconds": round(1e6 / rate, 2),
            "rate": rate, "node_cpu_s": 6.3, "cli_cpu_s": 0.7, "peak_rss_process_mb": 149,
            "peak_rss_sum_mb": 273, "peak_anon_process_mb": 123, "peak_anon_sum_mb": 188,
            "max_progress_gap_s": 0.54, "resolve_rate": 2000, "resolve_answered": 16000,
            "resolve_lost": 0, "resolve_bad": 0, "resolve_p50_ms": 0.12, "resolve_p99_ms": 2.9,
            "resolve_max_ms": 8.9}  # fmt: skip


def import_figures() -> dict:
    return {"scenario": "import", "count": 1_000_000, "workers": 2, "rate": 2000, "pure": False,
            "rows": [import_row("jsonl", 123924), import_row("csv", 123138)]}  # fmt: skip


def peering_figures() -> dict:
    args = argparse.Namespace(records=10_000, count=2000, workers=1, pure=False, seed=7)

    def ph(p50, p90, p99, mx, upstream, hits):
        return {"queries": 2000, "answered": 2000, "lost": 0, "bad": 0, "problems": [],
                "seconds": 4.0, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "max_ms": mx,
                "mean_ms": p50 * 1.1, "upstream_queries": upstream, "cache_hits": hits}

    results = {"cold": ph(2.26, 2.584, 2.979, 35.4, 2000, 0),
               "warm": ph(1.132, 1.358, 1.811, 2.46, 0, 2000),
               "direct": ph(0.133, 0.16, 0.194, 2.9, 0, 0)}  # fmt: skip
    status, doc = peering.report(args, results, "cython", 0.012)
    assert status == 0
    return doc


def results_of(figures: dict[str, dict | None], date="2026-12-01T10:00:00+00:00",
               statuses: dict[str, int] | None = None) -> dict:  # fmt: skip
    statuses = statuses or {}
    return {"date": date, "argv": ["--only", ",".join(figures)], "quick": False,
            "machine": MACHINE,
            "scenarios": {n: {"status": statuses.get(n, 0 if f else 1), "argv": [],
                              "figures": f, "error": "" if f else "exit status 1, no figures"}
                          for n, f in figures.items()}}  # fmt: skip


@pytest.fixture(scope="module")
def canned() -> dict:
    # One round-trip through JSON, as the figures travel through results.json.
    return json.loads(json.dumps({
        "http": http_figures(), "handle-tcp-pipelined": handle_figures("tcp-pipelined"),
        "dns": dns_figures(), "import": import_figures(), "peering": peering_figures()}))


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width >= 300 and im.height >= 200, (path, im.size)


def generated(text: str) -> str:
    assert text.count(report.BEGIN) == 1 and text.count(report.END) == 1
    return text.split(report.BEGIN, 1)[1].split(report.END, 1)[0]


# -- the tests ---------------------------------------------------------------------------------
def test_report_writes_tables_and_plots(tmp_path, canned):
    written = report.write_report(results_of(canned), tmp_path)
    md = (tmp_path / "RESULTS.md").read_text()
    section = generated(md)
    plots = tmp_path / "plots"
    assert set(written) == {tmp_path / "RESULTS.md", plots / "results.json",
                            plots / "throughput.png",
                            *(plots / f"latency-{n}.png" for n in canned)}  # fmt: skip
    for p in written:
        if p.suffix == ".png":
            assert_png(p)
            assert f"(plots/{p.name})" in section

    assert "## 2026-12-01 — summary generated by `python -m bench report`" in section
    assert "| CPU | Test CPU 9000 |" in section and "| memory | 23.5 GiB |" in section
    assert "| libraries | aiohttp 3.14.5, lmdb 3.0.0 |" in section
    rows = {line.split(" | ")[0][2:]: line for line in section.splitlines()
            if line.startswith("| ") and "**" in line}  # fmt: skip
    # medians of the three rounds, the ratio as the scenario computed it
    assert rows["http"].startswith("| http | idnode (cython): **8,455** req/s | aiohttp floor: "
                                   "8,246 req/s | **1.025** | – | 118.2 / 121.0 | ratio ≥ 0.9: "
                                   "PASS; idnode p99 ≤ 5 ms: PASS |")  # fmt: skip
    ratio = canned["handle-tcp-pipelined"]["ratio"]  # as the scenario rounded it: 1.2035
    assert rows["handle-tcp-pipelined"].startswith(
        "| handle-tcp-pipelined | idnode (cython): **179,469** q/s | Knot DNS 3.2.6: 149,125 q/s"
        f" | **{ratio:.3f}** | 260,000 q/s | 5.5 / 6.7 |")  # fmt: skip
    assert "half-load p99 ≤ 2 ms: PASS" in rows["handle-tcp-pipelined"]
    assert "- **handle-tcp-pipelined**: 1,000,000 records, Knot zone 100,000 names; TCP 16 " \
        "connections × 1, 10 s × 1 round; hot path cython; pinned" in section  # fmt: skip
    assert rows["dns"].startswith("| dns | idnode (cython): **148,702** q/s | Knot DNS 3.2.6: "
                                  "122,153 q/s | **1.217** | 140,030 q/s | 6.7 / 8.1 | "
                                  "ratio ≥ 0.8: PASS |")  # fmt: skip
    assert rows["import (jsonl)"].startswith(
        "| import (jsonl) | idnode import (jsonl): **123,924** identifiers/s | – | – | – | "
        "6.3 / – |")  # fmt: skip
    assert "| jsonl | **123,924** | 8.07 | 149 / 273 MB |" in section  # the import table
    # latency: percentiles in ms where measured, – where not
    assert ("| http | idnode (cython) | max (16 connections) | 8,455 | 1.77 | 2.40 | 3.17 | – |"
            in section)  # fmt: skip
    assert ("| handle-tcp-pipelined | idnode (cython) | half | 89,734 | 0.060 | 0.090 | 0.380 | "
            "0.900 |" in section)  # fmt: skip
    assert "| dns | Knot DNS 3.2.6 | max | 122,153 | – | – | – | – | mean 0.484 ms |" in section
    assert "dnsperf udp -c 1 -q 64, TXT 60% URI 20% NAPTR 20%, 10 s × 1 round;" in section
    assert ("| peering | cold: A → upstream B | sequential | – | 2.26 | 2.58 | 2.98 | – | "
            "mean 2.49 ms, max 35.40 ms |") in section  # fmt: skip
    assert "Not (fully) measured" not in section
    saved = json.loads((plots / "results.json").read_text())
    assert saved["scenarios"]["dns"]["figures"]["ratio"] == canned["dns"]["ratio"]


HISTORY = """# Benchmark results

Measured figures, newest first.

## 2026-11-29 — REST resolution (issue 2)

| run | req/s |
|---|---|
| one | 8455 |
"""


def test_history_is_kept_below_and_the_section_replaced(tmp_path, canned):
    (tmp_path / "RESULTS.md").write_text(HISTORY)
    report.write_report(results_of({"http": canned["http"]}, "2026-12-01T10:00:00+00:00"),
                        tmp_path, plots=False)  # fmt: skip
    first = (tmp_path / "RESULTS.md").read_text()
    assert first.startswith("# Benchmark results\n\nMeasured figures, newest first.\n\n"
                            + report.BEGIN)  # fmt: skip
    assert first.endswith(report.END + "\n\n" + HISTORY.split("\n\n", 2)[2])

    report.write_report(results_of({"dns": canned["dns"]}, "2026-12-02T09:00:00+00:00"),
                        tmp_path, plots=False)  # fmt: skip
    second = (tmp_path / "RESULTS.md").read_text()
    section = generated(second)
    assert "2026-12-02" in section and "2026-12-01" not in second
    assert "| dns |" in section and "| http |" not in section
    assert second.replace(report.BEGIN + section + report.END, "") == \
        first.replace(report.BEGIN + generated(first) + report.END, "")  # fmt: skip
    assert second.count("## 2026-11-29 — REST resolution (issue 2)") == 1


def test_merge_into_a_new_file_or_one_without_headings(canned):
    section = report.render_section(results_of({"http": canned["http"]}), {})
    new = report.merge(None, section)
    assert new.startswith("# Benchmark results\n") and new.endswith(report.END + "\n")
    plain = report.merge("# Title\n\nJust prose.\n", section)
    assert plain == "# Title\n\nJust prose.\n\n" + section


def test_missing_and_partial_scenarios_are_listed(tmp_path, canned):
    figures = {"http": None, "handle-udp": handle_figures("udp", knot=False),
               "dns": dns_figures(knot=False), "peering": canned["peering"]}  # fmt: skip
    results = results_of(json.loads(json.dumps(figures)),
                         statuses={"http": 2, "handle-udp": 2, "dns": 2})  # fmt: skip
    written = report.write_report(results, tmp_path)
    section = generated((tmp_path / "RESULTS.md").read_text())
    assert "### Not (fully) measured" in section
    assert "- **http**: exit status 1, no figures (exit status 2;" in section
    assert "- **handle-udp**: exit status 2 (e.g. the yardstick missing;" in section
    assert "- **dns**: exit status 2" in section
    assert "| handle-udp | idnode (cython): **179,469** q/s | – | – |" in section
    assert "ratio not measured (no Knot)" in section
    assert "ratio not measured (no Knot figure)" in section
    for p in written:
        if p.suffix == ".png":
            assert_png(p)
    assert not (tmp_path / "plots" / "latency-http.png").exists()


def test_cli_renders_from_json_and_reports_failures(tmp_path, canned, capsys):
    src = tmp_path / "in.json"
    src.write_text(json.dumps(results_of({"http": canned["http"]})))
    out = tmp_path / "out"
    assert report.main(["--from-json", str(src), "--out", str(out)]) == 0
    assert "| http |" in generated((out / "RESULTS.md").read_text())
    assert_png(out / "plots" / "throughput.png")
    assert_png(out / "plots" / "latency-http.png")

    src.write_text(json.dumps(results_of({"import": canned["import"], "dns": None})))
    assert report.main(["--from-json", str(src), "--out", str(out), "--no-plots"]) == 1
    assert "no figures from dns" in capsys.readouterr().err
    section = generated((out / "RESULTS.md").read_text())
    assert "| import (csv) |" in section and "![" not in section


def test_cli_rejects_unknown_scenarios_before_running_anything(tmp_path, capsys):
    assert report.main(["--only", "http,nope", "--out", str(tmp_path)]) == 2
    assert "unknown scenario(s) nope" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_run_scenario_records_what_went_wrong(capsys):
    bad = report.run_scenario("http", ["--records", "0"])  # refused before any server starts
    assert (bad["status"], bad["figures"], bad["error"]) == (2, None, "exit status 2, no figures")
    worse = report.run_scenario("dns", ["--no-such-option"])
    assert (worse["status"], worse["figures"]) == (2, None)
    assert worse["error"].startswith("bad options")


@pytest.mark.parametrize("name", list(report.SCENARIOS))
def test_quick_options_are_valid_for_each_scenario(name):
    parsers = {"http": bench_http._parser, "dns": bench_dns._parser, "import": imports._parser,
               "peering": peering._parser}  # fmt: skip
    spec = report.SCENARIOS[name]
    parser = handle._parser(spec.lead[0]) if name.startswith("handle-") else parsers[name]()
    args = parser.parse_args(report.scenario_argv(name, quick=True, pure=True))
    assert args.pure
    if hasattr(args, "duration"):
        assert args.duration <= 1 and args.rounds == 1
    size = getattr(args, "records", None) or args.count
    assert size <= 20_000
    assert report.scenario_argv(name, quick=False, pure=False) == []


def test_scenario_modules_hand_back_figures():
    # collect(argv) -> (status, figures) is what the report calls; main keeps the exit status.
    for spec in report.SCENARIOS.values():
        module, _, function = spec.target.partition(":")
        mod = __import__(module, fromlist=[function])
        assert callable(getattr(mod, function)), spec.target


def test_canned_import_rows_have_the_keys_the_scenario_returns():
    tree = ast.parse(Path(imports.__file__).read_text())
    run_one = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run_one")
    returned = next(n.value for n in ast.walk(run_one)
                    if isinstance(n, ast.Return) and isinstance(n.value, ast.Dict))  # fmt: skip
    keys = {k.value for k in returned.keys}
    assert keys == set(import_row("jsonl", 1))


def test_report_is_a_bench_scenario():
    assert SCENARIOS["report"][0] == "bench.report"
    assert re.search(r"^  report\s", usage(), re.M)


def test_machine_description():
    m = report.describe_machine()
    assert m["cores"] >= 1 and 1 <= m["usable_cores"] <= m["cores"]
    assert m["memory_gib"] > 0 and m["kernel"].startswith("Linux ")
    assert m["python"].startswith(("CPython 3.", "PyPy 3."))
    assert "matplotlib" in m["libraries"] and "hot path" in m["idnode"]
    lines = report.machine_lines(m)
    assert lines[2] == f"| CPU | {m['cpu']} |"


def test_a_noisy_run_says_so(canned):
    quiet = report.summarize("http", canned["http"])
    noisy = report.summarize("http", {**canned["http"], "max_other_cores": 0.5})
    assert quiet.notes == ()
    assert noisy.notes == ("up to 0.50 cores were busy with other work during the runs: the "
                           "figures are unreliable (rerun on a quiet machine)",)  # fmt: skip
