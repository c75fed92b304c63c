"""What every benchmark scenario shares: server processes, CPU accounting, pinning, the machine.

``Server`` runs a server in its own session (so its workers can be found and stopped together),
waits for its start-up banner and reads its address from it; ``cpu_seconds`` adds up the CPU of
every process in that session.  ``machine_busy`` and ``children_cpu`` measure, around a run, the
CPU spent on anything but the server and the load generator (other load, hypervisor steal) so a
noisy run can say so.  ``pin`` places a child process on one core; ``MemoryLock`` keeps a store
in memory.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOISY_CORES = 0.15  # other load above this during a run makes its figures suspect
TICKS = os.sysconf("SC_CLK_TCK")
#: The REST address in idnode's banner; any ``address`` pattern gives (host, port) as groups.
HTTP_ADDRESS = r"http://([^/\s]+):(\d+)/api/handles/"


def machine_busy() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as fh:
        f = [int(x) for x in fh.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = f
    return (user + nice + system + irq + softirq) / TICKS, steal / TICKS


def core_ticks() -> dict[int, tuple[int, int]]:
    """{core: (busy, total)} clock ticks since boot, from /proc/stat; busy excludes idle, I/O
    wait and time stolen by the hypervisor."""
    out = {}
    with open("/proc/stat") as fh:
        for line in fh:
            if line.startswith("cpu") and line[3].isdigit():
                name, *f = line.split()
                user, nice, system, idle, iowait, irq, softirq, steal = map(int, f[:8])
                busy = user + nice + system + irq + softirq
                out[int(name[3:])] = (busy, busy + idle + iowait + steal)
    return out


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def pin(cpu: int | None):
    """A ``preexec_fn`` placing the child on core ``cpu`` (None: no placement)."""
    if cpu is None:
        return None
    return lambda: os.sched_setaffinity(0, {cpu})


class Server:
    """A server process in its own session; stopped with SIGTERM, then SIGKILL to its group.

    ``banner`` is a pattern of the stdout line announcing it is listening (None: do not wait);
    ``address`` a pattern of that line whose two groups are the host and port (None: the caller
    sets ``host`` and ``port``).
    """

    def __init__(self, name: str, argv: list[str], banner: str | None, *, env=None, cpu=None,
                 log_path: Path, address: str | None = HTTP_ADDRESS) -> None:  # fmt: skip
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._log, env=env,
                                     cwd=ROOT, start_new_session=True,
                                     preexec_fn=pin(cpu))  # fmt: skip
        self.host, self.port = "", 0
        self.banner_line = self._read_line(banner, timeout=60) if banner is not None else ""
        if banner is not None and address is not None:
            m = re.search(address, self.banner_line)
            if not m:
                self.stop()
                raise RuntimeError(f"{name}: no address in its banner: {self.banner_line!r}")
            self.host, self.port = m.group(1), int(m.group(2))

    def _read_line(self, pattern: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    continue
                line = self.proc.stdout.readline().decode("utf-8", "replace")
                if not line:
                    break  # exited
                if re.search(pattern, line):
                    return line.strip()
        finally:
            sel.close()
        self.stop()
        raise RuntimeError(f"{self.name} did not start; its log:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:  # also read after stop(), which closes it
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def _session_stats(self):
        """(pid, /proc/<pid>/stat fields after the command name) of every process in the
        server's session (supervisor, workers): state, ppid, pgrp, session, …"""
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    fields = fh.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == self.proc.pid:
                yield int(entry.name), fields

    def cpu_seconds(self) -> float:
        """User + system CPU of every process in the server's session (supervisor, workers)."""
        # utime, stime: the 12th and 13th fields after the command name
        return sum(int(f[11]) + int(f[12]) for _, f in self._session_stats()) / TICKS

    def major_faults(self) -> int:
        """Page faults that waited for the disk, summed over the server's processes."""
        return sum(int(f[9]) for _, f in self._session_stats())  # majflt

    def pids(self) -> list[int]:
        """Every process of the server's session (supervisor, workers)."""
        return [pid for pid, _ in self._session_stats()]

    def pin_threads(self, cpu: int | None) -> int:
        """Move every thread of the server onto core ``cpu``; → threads moved.

        Needed for servers that place their own threads: knotd binds each worker thread to
        core (worker number mod online cores), whatever affinity it was started with."""
        if cpu is None:
            return 0
        moved = 0
        for pid in self.pids():
            with contextlib.suppress(FileNotFoundError):  # exited meanwhile
                for tid in map(int, os.listdir(f"/proc/{pid}/task")):
                    with contextlib.suppress(ProcessLookupError):
                        if os.sched_getaffinity(tid) != {cpu}:
                            os.sched_setaffinity(tid, {cpu})
                            moved += 1
        return moved

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # The supervisor is gone; a worker left behind in its session would keep the port.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.stdout.close()
        self._log.close()
        return self.proc.returncode


class MemoryLock:
    """Holds the pages of a file in memory (``mlock`` of a read-only shared mapping) until
    ``close()``.  Some systems page idle page cache out even with memory to spare (proactive
    reclaim in virtual machines); a locked store cannot make a measured request wait for the
    disk.  ``error`` says why locking failed (typically RLIMIT_MEMLOCK for a non-root user)."""

    def __init__(self, path: Path) -> None:
        import ctypes

        self.error = ""
        self.size = os.path.getsize(path)
        self._addr = None
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int, ctypes.c_long]  # fmt: skip
        libc.mlock.argtypes = libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        self._libc = libc
        fd = os.open(path, os.O_RDONLY)
        try:
            addr = libc.mmap(None, self.size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        finally:
            os.close(fd)
        if addr in (None, ctypes.c_void_p(-1).value):
            self.error = os.strerror(ctypes.get_errno())
            return
        self._addr = addr
        if libc.mlock(addr, self.size) != 0:
            self.error = os.strerror(ctypes.get_errno())
            self.close()

    @property
    def locked(self) -> bool:
        return self._addr is not None

    def close(self) -> None:
        if self._addr is not None:
            self._libc.munmap(self._addr, self.size)  # also unlocks
            self._addr = None


def stop_servers(servers: list[Server]) -> None:
    """Stop every started server, newest first; say so when idnode did not exit cleanly."""
    for s in reversed(servers):
        code = s.stop()
        if code not in (0, None) and s.name == "idnode":
            print(f"warning: idnode exited with status {code}", file=sys.stderr)


def idnode_argv() -> list[str]:
    exe = shutil.which("idnode", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "resolver"]


def cpu_model() -> str:
    """The CPU's model name ("" when /proc/cpuinfo does not say)."""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return ""


def machine() -> str:
    model = cpu_model()
    return (f"{os.cpu_count()} cores {model}, Linux {platform.release()}, "
            f"Python {platform.python_version()}")  # fmt: skip


def versions(names=("aiohttp", "uvloop", "lmdb")) -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for name in names:
        try:
            out.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            out.append(f"{name} missing")
    return ", ".join(out)


def pins(enabled: bool) -> tuple[int | None, int | None]:
    """(load generator core, server core): the first two cores allowed, or no pinning."""
    cores = sorted(os.sched_getaffinity(0))
    return (cores[0], cores[1]) if enabled and len(cores) >= 2 else (None, None)


def add_yardstick_options(p, generator: str) -> None:
    """The options every idnode-vs-Knot scenario shares (handle-*, dns): run shape, store,
    pinning, tools, cache.  ``generator`` names what drives the load, for the help texts."""
    p.add_argument("--duration", "-d", type=float, default=10, help="seconds per run (10)")
    p.add_argument("--warmup", type=float, default=2, help="warm-up seconds per server (2; 0 none)")
    p.add_argument("--rounds", type=int, default=3, help="idnode/Knot alternations (3)")
    p.add_argument("--no-lock", dest="lock", action="store_false",
                   help="do not lock the store's data file in memory")  # fmt: skip
    p.add_argument("--no-half", dest="half", action="store_false",
                   help="skip the half-load latency runs")  # fmt: skip
    p.add_argument("--pure", action="store_true",
                   help="run idnode with IDNODE_NO_EXTENSIONS=1 (pure hot path)")  # fmt: skip
    p.add_argument("--record-cache", default=None,
                   help="idnode's record cache per worker, e.g. 0 (off) or 64MiB "
                        "(default: idnode's own, [store] record_cache)")  # fmt: skip
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help=f"do not pin {generator} and the servers to separate cores")  # fmt: skip
    p.add_argument("--knotd", default=None, help="knotd executable (knotd, also in /usr/sbin)")
    p.add_argument("--regenerate", action="store_true", help="rebuild the store even if cached")


def alternate(servers: list, rounds: int, measure, line, *, rates: dict | None = None) -> dict:
    """``rounds`` alternations over ``servers`` (idnode, Knot, idnode, Knot …): ``measure(server,
    rate)`` each time — ``rate`` None at maximum load, else ``rates[server.name]`` — printed
    as ``line(label, name, result)``.  A server that died stops the run (RuntimeError).
    → {server name: [results, in round order]}."""
    runs: dict[str, list] = {s.name: [] for s in servers}
    for r in range(1, rounds + 1):
        for server in servers:
            res = measure(server, None if rates is None else rates[server.name])
            runs[server.name].append(res)
            label = f"round {r}" if rates is None else f"half {r} "
            print(line(label, server.name, res), flush=True)
            if not server.alive():
                raise RuntimeError(f"{server.name} died during the run; its log:\n{server.log()}")
    return runs
