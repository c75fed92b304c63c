"""Benchmark data: a deterministic store of N identifiers under prefix ``88.118.8``.

``ensure_store(n)`` returns the directory of an idnode LMDB store holding the prefix handle
``0.NA/88.118.8`` and the records ``88.118.8/SN-2026-0000001`` … ``SN-2026-<n>``, generating it
on first use and reusing it afterwards (a marker file written after the last commit says the
store is complete and which generator, layout and schema versions made it).

Every record has the shape of a factory's product identifier: a URL (index 1) that varies per
identifier, a contact EMAIL (index 2) and an HS_ADMIN (index 100), all with one fixed timestamp.
Records are produced by splicing the variable part of the URL into one packed template: the
variable part has a fixed width and needs no JSON escaping, so every record has the layout of
the template.  ``generate`` checks a sample of spliced records against ``resolver.record.pack``
before writing, so a change of the stored layout cannot silently produce wrong records.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

from registry.prefixes import default_prefix_handle
from resolver.record import LAYOUT_VERSION, Record, pack
from resolver.store import Change
from resolver.store import schema
from resolver.store.lmdb_store import LmdbStore
from resolver.values import AdminRecord, HandleValue

#: Bump when the generated records change, so cached stores are regenerated.
GENERATOR_VERSION = 1
PREFIX = "88.118.8"
SUFFIX_FORMAT = "SN-2026-{:07d}"
MAX_RECORDS = 9_999_999  # seven digits
DEFAULT_SEED = 20260101
TIMESTAMP = 1767225600  # 2026-01-01T00:00:00Z: fixed, so runs are byte-identical
BATCH = 50_000
MARKER = "bench-complete.json"
BUILD_DIR = Path(__file__).resolve().parent / ".build"

_URL_BASE = "https://trace.example-factory.cn/p/"
_LOT_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_M64 = (1 << 64) - 1
#: Width of the variable part of the URL: the suffix, then "?lot=" and a 6-character lot code.
_VAR_WIDTH = len(SUFFIX_FORMAT.format(0)) + len("?lot=") + 6
_PLACEHOLDER = "~" * _VAR_WIDTH  # never produced by a real variable part


def handle(i: int) -> str:
    """The identifier number ``i`` (1-based) as a client writes it."""
    return f"{PREFIX}/{SUFFIX_FORMAT.format(i)}"


def _variable(i: int, seed: int) -> str:
    # splitmix64 of (seed, i): a seeded, per-identifier lot code in a few µs (random.Random
    # per identifier costs ~18 µs, too slow for a million records).
    x = (i + seed * 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    x ^= x >> 31
    a = _LOT_ALPHABET
    lot = (a[x & 31] + a[x >> 5 & 31] + a[x >> 10 & 31]
           + a[x >> 15 & 31] + a[x >> 20 & 31] + a[x >> 25 & 31])  # fmt: skip
    return f"{SUFFIX_FORMAT.format(i)}?lot={lot}"


def url_for(i: int, seed: int = DEFAULT_SEED) -> str:
    """The URL stored for identifier ``i`` (recomputed independently, for answer checks)."""
    return _URL_BASE + _variable(i, seed)


def record(url: str) -> Record:
    """The record of one identifier with the given URL."""
    admin = AdminRecord(f"0.NA/{PREFIX}", 200, 0x0FF2)
    return Record([
        HandleValue(1, "URL", url.encode(), timestamp=TIMESTAMP),
        HandleValue(2, "EMAIL", b"quality@example-factory.cn", timestamp=TIMESTAMP),
        HandleValue(100, "HS_ADMIN", admin.to_bytes(), timestamp=TIMESTAMP),
    ])  # fmt: skip


class _Template:
    """One packed record with the URL's variable part located (once in each section)."""

    def __init__(self) -> None:
        self.blob = pack(record(_URL_BASE + _PLACEHOLDER))
        ph = _PLACEHOLDER.encode()
        first = self.blob.find(ph)
        second = self.blob.find(ph, first + 1)
        if first < 0 or second < 0 or self.blob.find(ph, second + 1) >= 0:
            raise RuntimeError("benchmark template: the URL is not stored exactly twice")
        self.first, self.second = first, second

    def splice(self, variable: bytes) -> bytes:
        b, a, c, w = self.blob, self.first, self.second, _VAR_WIDTH
        return b"".join((b[:a], variable, b[a + w : c], variable, b[c + w :]))


def store_dir(n: int, seed: int = DEFAULT_SEED, build_dir: Path = BUILD_DIR) -> Path:
    name = f"store-{n}" if seed == DEFAULT_SEED else f"store-{n}-seed{seed}"
    return Path(build_dir) / name


def _marker_content(n: int, seed: int) -> dict:
    return {"records": n, "seed": seed, "generator": GENERATOR_VERSION,
            "layout": LAYOUT_VERSION, "format": schema.FORMAT_VERSION}  # fmt: skip


def is_complete(path: Path, n: int, seed: int = DEFAULT_SEED) -> bool:
    try:
        found = json.loads((Path(path) / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return {k: found.get(k) for k in _marker_content(n, seed)} == _marker_content(n, seed)


def generate(path: Path, n: int, seed: int = DEFAULT_SEED, *, batch: int = BATCH,
             log=print) -> float:  # fmt: skip
    """Write a fresh store of ``n`` records at ``path`` (replaced if present); → seconds taken."""
    if not 1 <= n <= MAX_RECORDS:
        raise ValueError(f"records must be between 1 and {MAX_RECORDS}")
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    template = _Template()
    # Splicing must give exactly what pack() gives; check a spread of identifiers.
    spread = random.Random(seed).sample(range(1, n + 1), min(n, 20))
    for i in sorted({1, 2, n // 2 or 1, n, *spread}):
        url = url_for(i, seed)
        if template.splice(url[len(_URL_BASE) :].encode()) != pack(record(url)):
            raise RuntimeError(f"benchmark template: spliced record {i} differs from pack()")
    # The store's own map size default (16 GiB) is address space only; the file grows as needed.
    store = LmdbStore(tmp)
    try:
        store.write([Change(PREFIX.upper().encode(), default_prefix_handle(PREFIX, now=TIMESTAMP),
                            prefix=True)])  # fmt: skip
        done = 0
        for start in range(1, n + 1, batch):
            stop = min(start + batch, n + 1)
            changes = []
            for i in range(start, stop):
                var = _variable(i, seed).encode()
                changes.append(Change(handle(i).upper().encode(), template.splice(var)))
            store.write(changes)
            done = stop - 1
            if done % 200_000 < batch or done == n:
                log(f"  generated {done:,}/{n:,} records ({time.perf_counter() - t0:.1f} s)")
        count = store.stat()["records"]
    finally:
        store.close()
    if count != n:
        raise RuntimeError(f"generated store holds {count} records, expected {n}")
    (tmp / MARKER).write_text(json.dumps(_marker_content(n, seed)) + "\n")
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)
    return time.perf_counter() - t0


def ensure_store(n: int, seed: int = DEFAULT_SEED, *, build_dir: Path = BUILD_DIR,
                 regenerate: bool = False, log=print) -> Path:  # fmt: skip
    """The directory of a complete store of ``n`` records, generated when missing."""
    path = store_dir(n, seed, build_dir)
    if not regenerate and is_complete(path, n, seed):
        log(f"store: reusing {path} ({n:,} records)")
        return path
    log(f"store: generating {n:,} records into {path} (cached for later runs)")
    took = generate(path, n, seed, log=log)
    log(f"store: {n:,} records in {took:.1f} s")
    return path


def prefault(path: Path) -> None:
    """Read the data file once so the first measured requests do not wait for the disk."""
    with open(Path(path) / "data.mdb", "rb", buffering=0) as fh:
        buf = bytearray(8 << 20)
        while fh.readinto(buf):
            pass


def locked_store(args, locks: list) -> Path:
    """The store of ``args.records`` identifiers (cached), pre-faulted and — unless
    ``args.lock`` is false — locked in memory, the lock appended to ``locks``.

    Knot keeps its zone in process memory, which nothing pages out without swap; the store is
    page cache, which some systems reclaim when idle (``bench.common.MemoryLock``)."""
    from bench.common import MemoryLock

    store = ensure_store(args.records, args.seed, build_dir=args.build_dir,
                         regenerate=args.regenerate)  # fmt: skip
    prefault(store)
    if args.lock:
        lock = MemoryLock(store / "data.mdb")
        if lock.locked:
            locks.append(lock)
            print(f"store: {lock.size / 2**30:.2f} GiB locked in memory")
        else:
            print(f"warning: could not lock the store in memory ({lock.error}); runs may wait "
                  f"for the disk if the system pages it out (see major faults)")  # fmt: skip
    return store
