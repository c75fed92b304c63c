"""Shared fixtures: real ``idnode`` processes on 127.0.0.1 for the wire tests.

``start_node(...)`` loads ``registry/demo.jsonl`` into a fresh LMDB directory (or uses the one
given), runs ``python -m resolver serve`` with ``--http-port 0``, reads the port from the
supervisor's banner and waits until an HTTP GET is answered.  Every wait is bounded; every node
is stopped (SIGTERM, then SIGKILL of its process group) when its fixture scope ends.  The
environment is copied from the test run, so ``IDNODE_NO_EXTENSIONS`` reaches the servers and
the suite's second run exercises the pure-Python twin end to end.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import queue
import re
import ssl
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "registry" / "demo.jsonl"

BANNER_TIMEOUT = 20.0  # seconds to wait for the supervisor's banner
READY_TIMEOUT = 20.0  # seconds to wait for the first HTTP answer after the banner
STOP_TIMEOUT = 15.0  # drain bound (10 s) plus a margin
_BANNER_RE = re.compile(r"(https?)://127\.0\.0\.1:(\d+)/api/handles/")


@dataclasses.dataclass
class HttpAnswer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


def http_request(port: int, path: str, method: str = "GET", headers: dict | None = None,
                 body: bytes | None = None, timeout: float = 10.0,
                 tls: bool = False) -> HttpAnswer:  # fmt: skip
    """One request on a fresh connection; ``path`` is sent exactly as given (already encoded).
    ``tls``: HTTPS without certificate checks (the node's own test certificate)."""
    if tls:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout,
                                           context=ssl._create_unverified_context())  # fmt: skip
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return HttpAnswer(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


@dataclasses.dataclass
class Node:
    """A running ``idnode serve``: supervisor process, port, data directory, banner."""

    proc: subprocess.Popen
    port: int
    data: Path
    banner: str
    stderr_path: Path
    _stdout_lines: list[str] = dataclasses.field(default_factory=list)
    tls: bool = False

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/handles/"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def handle_port(self) -> int:
        """The Handle port (UDP and TCP) from the banner."""
        m = re.search(r"handle://127\.0\.0\.1:(\d+)", self.banner)
        assert m, f"no Handle listener in the banner: {self.banner!r}"
        return int(m.group(1))

    @property
    def dns_port(self) -> int:
        """The DNS port (UDP and TCP) from the banner; AssertionError when DNS is off."""
        m = re.search(r"dns://127\.0\.0\.1:(\d+) ", self.banner)
        assert m, f"no DNS listener in the banner: {self.banner!r}"
        return int(m.group(1))

    def get(self, path: str, **kw) -> HttpAnswer:
        kw.setdefault("tls", self.tls)
        return http_request(self.port, path, **kw)

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM the supervisor and wait; returns its exit code (None if it had to be killed)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        try:
            self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None

    def kill(self) -> None:
        # The node runs in its own session: its process group holds only what we started.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:  # pragma: no cover - the kernel always reaps SIGKILL
            pass


def node_env(base: dict | None = None, **overrides: str | None) -> dict:
    """A copy of the environment (IDNODE_NO_EXTENSIONS included) with ``overrides`` applied;
    an override of ``None`` removes the variable."""
    env = dict(os.environ if base is None else base)
    env.setdefault("PYTHONUNBUFFERED", "1")
    for k, v in overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def load_demo(data: Path, env: dict | None = None, source: Path = DEMO) -> None:
    """``python -m resolver load --data DATA registry/demo.jsonl``; fails the test on error."""
    r = subprocess.run(
        [sys.executable, "-m", "resolver", "load", "--data", str(data), str(source)],
        cwd=REPO, env=env or node_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, f"idnode load failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"


def _load_lines(data: Path, lines: list[dict], env: dict | None = None) -> Path:
    """Write ``lines`` (JSON objects) as a JSON Lines file beside ``data`` and ``idnode load``
    it into the store at ``data``; returns ``data``."""
    src = data.with_name(data.name + ".jsonl")
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_text("".join(json.dumps(x) + "\n" for x in lines))
    load_demo(data, env, source=src)
    return data


def _pump(stream, sink: "queue.Queue[str | None]", lines: list[str]) -> None:
    # Reads the supervisor's stdout for the node's whole life so the pipe never fills up.
    for line in iter(stream.readline, ""):
        lines.append(line)
        sink.put(line)
    sink.put(None)


def launch_node(workdir: Path, *, data: Path | None = None, workers: int = 1,
                args: tuple[str, ...] = (), config_text: str | None = None,
                env: dict | None = None) -> Node:  # fmt: skip
    """Start ``idnode serve`` and return once it answers HTTP; the caller must stop it."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = env or node_env()
    if data is None:
        data = workdir / "data"
        load_demo(data, env)
    # A free Handle port too: nodes of one session must not share 2641 through SO_REUSEPORT
    # (the kernel would spread datagrams over them); nor DNS's 5353.  Later flags in args win.
    cmd = [sys.executable, "-m", "resolver", "serve", "--data", str(data), "--host", "127.0.0.1",
           "--http-port", "0", "--handle-port", "0", "--dns-port", "0",
           "--workers", str(workers)]  # fmt: skip
    if config_text is not None:
        cfg = workdir / "idnode.toml"
        cfg.write_text(config_text)
        cmd += ["--config", str(cfg)]
    cmd += list(args)
    stderr_path = workdir / f"serve-{time.monotonic_ns()}.stderr"
    err = open(stderr_path, "wb")
    try:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err,
                                encoding="utf-8", errors="replace", start_new_session=True)  # fmt: skip
    finally:
        err.close()
    lines: list[str] = []
    sink: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, sink, lines), daemon=True).start()
    node = Node(proc, 0, data, "", stderr_path, lines)
    try:
        deadline = time.monotonic() + BANNER_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no banner within {BANNER_TIMEOUT}s; stdout={lines!r}")
            try:
                line = sink.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"idnode serve exited ({proc.wait(5)}) before its banner; "
                                     f"stdout={lines!r}")  # fmt: skip
            m = _BANNER_RE.search(line)
            if m:
                node.port, node.banner = int(m.group(2)), line.strip()
                node.tls = m.group(1) == "https"
                break
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                http_request(node.port, "/api/handles/0.NA/0.NA", timeout=2.0, tls=node.tls)
                break
            except OSError:
                if proc.poll() is not None:
                    raise AssertionError(f"idnode serve exited ({proc.returncode}) before serving")
                if time.monotonic() > deadline:
                    raise AssertionError(f"node on port {node.port} did not answer within "
                                         f"{READY_TIMEOUT}s")  # fmt: skip
                time.sleep(0.05)
    except BaseException as exc:
        node.kill()
        if isinstance(exc, AssertionError):
            raise AssertionError(f"{exc}\n--- stderr ---\n{node.stderr()}") from None
        raise
    return node


class NodeFactory:
    """Starts nodes on demand and stops every one of them at teardown."""

    def __init__(self, tmp_factory: pytest.TempPathFactory, env: dict) -> None:
        self.tmp_factory = tmp_factory
        self.env = env
        self.nodes: list[Node] = []

    def __call__(self, *, data: Path | None = None, workers: int = 1, args: tuple[str, ...] = (),
                 config_text: str | None = None, env: dict | None = None) -> Node:  # fmt: skip
        workdir = self.tmp_factory.mktemp("node")
        node = launch_node(workdir, data=data, workers=workers, args=args,
                           config_text=config_text, env=env or self.env)  # fmt: skip
        self.nodes.append(node)
        return node

    def stop_all(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


@pytest.fixture(scope="session")
def idnode_env() -> dict:
    """The environment the servers run in: this run's, so IDNODE_NO_EXTENSIONS propagates."""
    return node_env()


@pytest.fixture(scope="session")
def start_node(tmp_path_factory, idnode_env) -> Iterator[Callable[..., Node]]:
    """Factory: ``start_node(workers=2, config_text="[http]\\n...", args=(...), env=...)``.
    Nodes live until the end of the session unless a test stops them itself."""
    factory = NodeFactory(tmp_path_factory, idnode_env)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="session")
def node(start_node) -> Node:
    """The shared demo node: two workers, default configuration, demo data loaded."""
    return start_node(workers=2)


@pytest.fixture(scope="session")
def load_lines(idnode_env) -> Callable[[Path, list], Path]:
    """``load_lines(data, [json objects])``: ``idnode load`` them into a new store at ``data``."""
    return lambda data, lines: _load_lines(data, lines, idnode_env)


@pytest.fixture(scope="session")
def demo_loader(idnode_env) -> Callable[[Path], None]:
    """``demo_loader(path)`` loads registry/demo.jsonl into a new store at ``path``."""
    return lambda data: load_demo(data, idnode_env)
