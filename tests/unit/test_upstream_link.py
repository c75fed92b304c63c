"""The upstream agent and the workers' link over a real Unix socket (resolver/upstream/agent.py,
link.py), and the forwarder handler behind them (resolver/core/forwarder.py).

The agent runs in the test's event loop (``agent.serve``) — or, once, as a forked process
through ``run_agent`` — around a small real resolver: a table of answers whose lookups can be
held open by an ``asyncio.Event`` to make requests overlap, finish out of order, or hang.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid

import cbor2
import pytest

from resolver.config import Config
from resolver.core.authority import AuthorityHandler
from resolver.core.engine import NOT_HERE, Resolver
from resolver.core.forwarder import ForwarderHandler
from resolver.core.request import ResolveRequest, ResolveResult
from resolver.errors import IdnodeError, Outcome
from resolver.identifier import Identifier
from resolver.record import Record, pack
from resolver.store import Change
from resolver.upstream import agent as agent_mod
from resolver.upstream.link import (MAX_FRAME, UpstreamLink, agent_socket_name, encode_frame,
                                    result_message, result_of)  # fmt: skip
from resolver.values import HandleValue

T0 = 1767225600
URL = HandleValue(1, "URL", b"https://b.example/x", ttl=600, timestamp=T0)
EMAIL = HandleValue(2, "EMAIL", b"ops@b.example", ttl=600, timestamp=T0)
DESC = HandleValue(3, "DESC", b"from secondary B", ttl=3600, timestamp=T0)


def run(coro, limit: float = 8.0):
    async def bounded():
        return await asyncio.wait_for(coro, limit)

    return asyncio.run(bounded())


def name() -> str:
    return f"\0idnode-test-{uuid.uuid4().hex}"


class Table:
    """A small real resolver: answers from a dict; ``hold[key]`` (an Event) delays a key."""

    def __init__(self, answers: dict | None = None) -> None:
        self.answers = answers if answers is not None else {
            "88.119.5/X": ResolveResult(Outcome.OK, (URL, EMAIL, DESC)),
            "88.119.5/GONE": ResolveResult(Outcome.NOT_FOUND, message="Handle not found"),
        }  # fmt: skip
        self.hold: dict[str, asyncio.Event] = {}
        self.asked: list[str] = []
        self.probes = 0
        self.closed = False

    async def resolve(self, key: str) -> ResolveResult:
        self.asked.append(key)
        if key in self.hold:
            await self.hold[key].wait()
        answer = self.answers.get(key, ResolveResult(Outcome.NOT_RESPONSIBLE))
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def status(self) -> dict:
        return {"upstreams": {("192.0.2.1", 2641): {"state": "up"},
                              ("2001:db8::1", 2641): {"state": "down"}},
                "counters": {"asked": len(self.asked)}}  # fmt: skip

    async def probe_due(self) -> None:
        self.probes += 1

    def close(self) -> None:
        self.closed = True


class Running:
    """``async with Running(table, tmp_path) as r``: an agent serving ``r.name``."""

    def __init__(self, table: Table, data_dir, sock: str | None = None,
                 interval: float = 0.05) -> None:  # fmt: skip
        self.table, self.data_dir, self.interval = table, str(data_dir), interval
        self.name = sock or name()
        self.stop = asyncio.Event()

    async def __aenter__(self) -> "Running":
        self.task = asyncio.get_running_loop().create_task(agent_mod.serve(
            self.data_dir, self.name, lambda: self.table, stop=self.stop,
            interval=self.interval))  # fmt: skip
        for _ in range(100):  # until it listens
            await asyncio.sleep(0.01)
            if _listening(self.name):
                return self
        raise AssertionError("the agent did not start listening")

    async def __aexit__(self, *exc) -> None:
        self.stop.set()
        await self.task


def _listening(sock_name: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sock_name)
        return True
    except OSError:
        return False
    finally:
        s.close()


# -- the messages ---------------------------------------------------------------------------------
@pytest.mark.parametrize("outcome", list(Outcome))
def test_every_outcome_crosses_the_boundary(outcome):
    values = (URL, DESC) if outcome in (Outcome.OK, Outcome.PREFIX_REFERRAL) else ()
    sent = ResolveResult(outcome, values, f"message of {outcome.value}")
    message = cbor2.loads(encode_frame(result_message(7, sent))[4:])
    assert message["id"] == 7 and message["outcome"] == outcome.value
    assert (message["record"] is None) == (not values)
    assert result_of(message) == sent


def test_unreadable_replies_are_upstream_failures():
    assert result_of({"id": 1, "outcome": "no-such-outcome"}).outcome \
        is Outcome.UPSTREAM_UNAVAILABLE  # fmt: skip
    bad = result_of({"id": 1, "outcome": "ok", "record": b"\x01\x00\x00\x05junk"})
    assert bad.outcome is Outcome.UPSTREAM_UNAVAILABLE and "unreadable record" in bad.message
    assert result_of({"id": 1, "outcome": "ok", "record": "text"}).outcome \
        is Outcome.UPSTREAM_UNAVAILABLE  # fmt: skip
    ok = result_of({"id": 1, "outcome": "ok", "record": pack(Record((URL,))), "message": 5})
    assert ok == ResolveResult(Outcome.OK, (URL,), "")


def test_socket_names():
    if sys.platform.startswith("linux"):  # abstract namespace: no file left behind by a crash
        assert agent_socket_name(4242, "/srv/data") == "\0idnode-upstream-4242"
    else:
        assert agent_socket_name(4242, "/srv/data") == os.path.join("/srv/data",
                                                                    "upstream-4242.sock")


# -- resolution over the socket -------------------------------------------------------------------
def test_resolve_round_trip(tmp_path):
    table = Table()

    async def main():
        async with Running(table, tmp_path) as agent:
            link = UpstreamLink(agent.name)
            found = await link.resolve("88.119.5/X")
            gone = await link.resolve("88.119.5/GONE")
            foreign = await link.resolve("77.1/Y")
            await link.close()
            return found, gone, foreign, link.counters

    found, gone, foreign, counters = run(main())
    assert found == ResolveResult(Outcome.OK, (URL, EMAIL, DESC))
    assert gone == ResolveResult(Outcome.NOT_FOUND, message="Handle not found")
    assert foreign.outcome is Outcome.NOT_RESPONSIBLE
    assert table.asked == ["88.119.5/X", "88.119.5/GONE", "77.1/Y"]
    assert counters["connects"] == 1 and counters["requests"] == 3
    assert counters["unavailable"] == 0 and table.closed


def test_requests_are_pipelined_and_answered_out_of_order(tmp_path):
    table = Table()
    table.hold["88.119.5/X"] = asyncio.Event()

    async def main():
        async with Running(table, tmp_path) as agent:
            link = UpstreamLink(agent.name)
            slow = asyncio.ensure_future(link.resolve("88.119.5/X"))
            while table.asked != ["88.119.5/X"]:
                await asyncio.sleep(0.01)
            # the first request is still out; the second overtakes it on the same connection
            fast = await link.resolve("88.119.5/GONE")
            assert not slow.done()
            table.hold["88.119.5/X"].set()
            first = await slow
            await link.close()
            return fast, first, link.counters

    fast, first, counters = run(main())
    assert fast.outcome is Outcome.NOT_FOUND and first.outcome is Outcome.OK
    assert first.values == (URL, EMAIL, DESC)
    assert counters["connects"] == 1


def test_many_concurrent_requests_share_one_connection(tmp_path):
    keys = [f"88.119.5/K{i}" for i in range(200)]
    table = Table({k: ResolveResult(Outcome.OK, (HandleValue(1, "URL", k.encode()),))
                   for k in keys})  # fmt: skip

    async def main():
        async with Running(table, tmp_path) as agent:
            link = UpstreamLink(agent.name)
            results = await asyncio.gather(*(link.resolve(k) for k in keys))
            await link.close()
            return results, link.counters

    results, counters = run(main())
    assert [r.values[0].data.decode() for r in results] == keys  # each reply to its request
    assert counters["connects"] == 1


def test_recursor_errors_become_outcomes(tmp_path):
    table = Table({"88.119.5/LOOP": IdnodeError("too many referrals",
                                                outcome=Outcome.RECURSION_LIMIT),
                   "88.119.5/BUG": RuntimeError("boom"),
                   # duplicate indexes: no record can hold them, so the agent refuses them
                   "88.119.5/DUP": ResolveResult(Outcome.OK, (URL, URL))})  # fmt: skip

    async def main():
        async with Running(table, tmp_path) as agent:
            link = UpstreamLink(agent.name)
            out = [await link.resolve(k) for k in ("88.119.5/LOOP", "88.119.5/BUG",
                                                   "88.119.5/DUP")]  # fmt: skip
            await link.close()
            return out

    loop_, bug, dup = run(main())
    assert loop_ == ResolveResult(Outcome.RECURSION_LIMIT, message="too many referrals")
    assert bug == ResolveResult(Outcome.INTERNAL, message="Internal error")
    assert dup.outcome is Outcome.UPSTREAM_UNAVAILABLE and "duplicate" in dup.message


def test_status_over_the_socket_has_string_keys(tmp_path):
    async def main():
        async with Running(Table(), tmp_path) as agent:
            link = UpstreamLink(agent.name)
            status = await link.status()
            await link.close()
            return status

    status = run(main())
    assert status["upstreams"] == {"192.0.2.1:2641": {"state": "up"},
                                   "[2001:db8::1]:2641": {"state": "down"}}  # fmt: skip


# -- failures -------------------------------------------------------------------------------------
def test_no_agent_is_upstream_unavailable_then_reconnects(tmp_path):
    table = Table()
    sock = name()

    async def main():
        link = UpstreamLink(sock, retry_after=0.05)
        started = time.monotonic()
        absent = await link.resolve("88.119.5/X")
        soon = await link.resolve("88.119.5/X")  # within retry_after: not even a connect
        elapsed = time.monotonic() - started
        async with Running(table, tmp_path, sock=sock):
            await asyncio.sleep(0.06)
            back = await link.resolve("88.119.5/X")
        await link.close()
        return absent, soon, elapsed, back, link.counters

    absent, soon, elapsed, back, counters = run(main())
    assert absent.outcome is Outcome.UPSTREAM_UNAVAILABLE and "unreachable" in absent.message
    assert soon.outcome is Outcome.UPSTREAM_UNAVAILABLE and elapsed < 1.0  # no waiting
    assert back.outcome is Outcome.OK
    assert counters["connects"] == 1 and counters["unavailable"] == 2


def test_disconnect_fails_pending_requests_at_once_and_the_link_reconnects(tmp_path):
    table = Table()
    table.hold["88.119.5/X"] = asyncio.Event()  # never set: the agent goes away first
    sock = name()

    async def main():
        link = UpstreamLink(sock, timeout=5.0, retry_after=0.0)
        async with Running(table, tmp_path, sock=sock):
            pending = [asyncio.ensure_future(link.resolve("88.119.5/X")) for _ in range(3)]
            while len(table.asked) < 3:
                await asyncio.sleep(0.01)
            started = time.monotonic()
        failed = await asyncio.gather(*pending)  # the agent stopped: the connection dropped
        waited = time.monotonic() - started
        del table.hold["88.119.5/X"]
        async with Running(table, tmp_path, sock=sock):  # a restarted agent, same name
            again = await link.resolve("88.119.5/X")
        await link.close()
        return failed, waited, again, link.counters

    failed, waited, again, counters = run(main())
    assert all(r.outcome is Outcome.UPSTREAM_UNAVAILABLE for r in failed), failed
    assert waited < 2.0  # not the 5 s timeout
    assert again.outcome is Outcome.OK and again.values == (URL, EMAIL, DESC)
    assert counters["connects"] == 2 and counters["disconnects"] == 1


def test_timeout_is_upstream_unavailable_and_a_late_reply_is_dropped(tmp_path):
    table = Table()
    table.hold["88.119.5/X"] = asyncio.Event()

    async def main():
        async with Running(table, tmp_path) as agent:
            link = UpstreamLink(agent.name, timeout=0.2)
            started = time.monotonic()
            late = await link.resolve("88.119.5/X")
            waited = time.monotonic() - started
            table.hold["88.119.5/X"].set()  # its reply now arrives for nobody
            await asyncio.sleep(0.05)
            after = await link.resolve("88.119.5/GONE")  # the same connection still works
            await link.close()
            return late, waited, after, link.counters

    late, waited, after, counters = run(main())
    assert late.outcome is Outcome.UPSTREAM_UNAVAILABLE and "0.2 s" in late.message
    assert 0.2 <= waited < 1.5
    assert after.outcome is Outcome.NOT_FOUND
    assert counters["timeouts"] == 1 and counters["connects"] == 1


def _raw_exchange(sock_name: str, payload: bytes, then: bytes = b"") -> tuple[list, bool]:
    """Send raw bytes to the agent, read the replies to the requests in ``payload`` (all
    well-formed ones), then send ``then``; → (replies, whether the agent closed afterwards)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3.0)
    s.connect(sock_name)
    s.sendall(payload)
    buf, replies = b"", []
    expected = 0
    while payload:
        (n,) = struct.unpack(">I", payload[:4])
        payload, expected = payload[4 + n :], expected + 1
    while len(replies) < expected:
        buf += s.recv(65536)
        while len(buf) >= 4 and len(buf) >= 4 + (n := struct.unpack(">I", buf[:4])[0]):
            replies.append(cbor2.loads(buf[4 : 4 + n]))
            buf = buf[4 + n :]
    s.sendall(then)
    closed = s.recv(1) == b""
    s.close()
    return replies, closed


def test_malformed_requests(tmp_path):
    async def main():
        async with Running(Table(), tmp_path) as agent:
            loop = asyncio.get_running_loop()
            exchanges = [
                (encode_frame({"id": 9, "op": "purge"}) + encode_frame({"id": 10, "op": "resolve"})
                 + encode_frame({"id": 11, "op": "resolve", "key": "88.119.5/X"}),
                 struct.pack(">I", 3) + b"\xff\xff\xff"),  # undecodable CBOR
                (b"", struct.pack(">I", MAX_FRAME + 1)),  # too long
                (b"", struct.pack(">I", 0)),  # empty
                (b"", struct.pack(">I", 2) + cbor2.dumps([1])),  # not a map
            ]  # fmt: skip
            return [await loop.run_in_executor(None, _raw_exchange, agent.name, *x)
                    for x in exchanges]  # fmt: skip

    (replies, closed), *others = run(main())
    by_id = {r["id"]: r for r in replies}
    assert sorted(by_id) == [9, 10, 11]
    assert by_id[9]["outcome"] == by_id[10]["outcome"] == "malformed"
    assert by_id[11]["outcome"] == "ok" and by_id[11]["record"] is not None
    assert closed and all(closed for _, closed in others)  # a broken frame ends the connection


# -- status file and probes -----------------------------------------------------------------------
def test_status_file_is_rewritten_every_tick_and_removed_at_stop(tmp_path):
    table = Table()
    path = tmp_path / agent_mod.STATUS_FILE

    async def main():
        async with Running(table, tmp_path, interval=0.05):
            await asyncio.sleep(0.02)
            first = json.loads(path.read_text())
            await asyncio.sleep(0.2)
            second = json.loads(path.read_text())
            leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        return first, second, leftovers

    before = time.time()
    first, second, leftovers = run(main())
    assert first["upstreams"]["192.0.2.1:2641"] == {"state": "up"}
    assert first["pid"] == os.getpid() and before <= first["time"] < second["time"]
    assert table.probes >= 3  # probe_due ran on the ticks
    assert leftovers == []
    assert not path.exists()  # a stopped agent leaves no status behind


def _status_cli(data) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "resolver", "upstream", "status", "--data",
                           str(data)], capture_output=True, text=True, timeout=60)  # fmt: skip


def test_upstream_status_cli_prints_the_file_and_says_when_no_agent_runs(tmp_path):
    none = _status_cli(tmp_path)
    assert none.returncode == 1 and none.stdout == ""
    assert "no upstream agent is running" in none.stderr
    agent_mod.Agent(Table(), str(tmp_path)).write_status()
    path = tmp_path / agent_mod.STATUS_FILE
    fresh = _status_cli(tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout) == json.loads(path.read_text())
    assert fresh.stdout.startswith('{\n  "upstreams"')  # pretty-printed
    old = json.loads(path.read_text())
    old["time"] -= 3600  # an agent that died without removing it
    path.write_text(json.dumps(old))
    stale = _status_cli(tmp_path)
    assert stale.returncode == 1 and json.loads(stale.stdout) == old
    assert re.search(r"is 360[0-9] s old: the upstream agent is not running", stale.stderr)


def _agent_process(sock_name: str, data: str) -> None:
    agent_mod.run_agent(Config(data=data), sock_name, Table)


def test_run_agent_process_stops_on_sigterm_and_ignores_sigint(tmp_path):
    sock = name()
    proc = multiprocessing.get_context("fork").Process(target=_agent_process,
                                                        args=(sock, str(tmp_path)))  # fmt: skip
    proc.start()
    try:
        deadline = time.monotonic() + 5
        while not (tmp_path / agent_mod.STATUS_FILE).exists():
            assert time.monotonic() < deadline and proc.is_alive(), "no status file"
            time.sleep(0.02)
        status = json.loads((tmp_path / agent_mod.STATUS_FILE).read_text())
        assert status["pid"] == proc.pid

        async def ask():
            link = UpstreamLink(sock)
            try:
                return await link.resolve("88.119.5/X")
            finally:
                await link.close()

        assert run(ask()).values == (URL, EMAIL, DESC)
        os.kill(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole group; the agent stays
        time.sleep(0.2)
        assert proc.is_alive()
        os.kill(proc.pid, signal.SIGTERM)
        proc.join(5)
        assert proc.exitcode == 0
        assert not (tmp_path / agent_mod.STATUS_FILE).exists()
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join(5)


# -- the forwarder in the engine's chain ----------------------------------------------------------
def _held(store) -> None:
    from registry.prefixes import default_prefix_handle

    store.write([Change(b"88.118.8", default_prefix_handle("88.118.8"), prefix=True),
                 Change(b"88.118.8/LOCAL", pack(Record((DESC,))))])  # fmt: skip


def test_forwarder_only_for_recursive_requests_of_prefixes_not_held(tmp_path, store):
    _held(store)
    secret = HandleValue(4, "SECRET", b"x", permissions=0x0C, timestamp=T0)  # no public read
    table = Table({"88.119.5/X": ResolveResult(Outcome.OK, (URL, EMAIL, DESC, secret)),
                   "88.119.5/GONE": ResolveResult(Outcome.NOT_FOUND)})  # fmt: skip

    def request(handle: str, **kw) -> ResolveRequest:
        return ResolveRequest(Identifier.parse(handle), **kw)

    async def main():
        async with Running(table, tmp_path / "agent") as agent:
            link = UpstreamLink(agent.name)
            engine = Resolver([AuthorityHandler(store), ForwarderHandler(link)])
            out = {
                "plain": await engine.resolve(request("88.119.5/x")),
                "all": await engine.resolve(request("88.119.5/x", recursive=True)),
                "typed": await engine.resolve(request("88.119.5/x", types=("EMAIL",),
                                                      indexes=(3,), recursive=True)),
                "none": await engine.resolve(request("88.119.5/x", types=("HS_ADMIN",),
                                                     recursive=True)),
                "private": await engine.resolve(request("88.119.5/x", public_only=False,
                                                        recursive=True)),
                "gone": await engine.resolve(request("88.119.5/gone", recursive=True)),
                "nobody": await engine.resolve(request("77.1/y", recursive=True)),
                "held": await engine.resolve(request("88.118.8/local", recursive=True)),
                "held-miss": await engine.resolve(request("88.118.8/nope", recursive=True)),
            }  # fmt: skip
            await link.close()
            return out

    (tmp_path / "agent").mkdir()
    out = run(main())
    assert out["plain"] == ResolveResult(Outcome.NOT_RESPONSIBLE, message=NOT_HERE)
    # forwarded answers are not ours: not authoritative; local ones are
    assert out["all"] == ResolveResult(Outcome.OK, (URL, EMAIL, DESC),  # public only
                                       authoritative=False)  # fmt: skip
    assert out["typed"] == ResolveResult(Outcome.OK, (EMAIL, DESC),  # type or index
                                         authoritative=False)  # fmt: skip
    assert out["none"].outcome is Outcome.VALUES_NOT_FOUND
    assert out["private"].outcome is Outcome.AUTH_NEEDED  # as a local value without public read
    assert out["gone"].outcome is Outcome.NOT_FOUND and not out["gone"].authoritative
    assert out["nobody"] == ResolveResult(Outcome.NOT_RESPONSIBLE, message=NOT_HERE,
                                          authoritative=False)  # fmt: skip
    assert out["held"] == ResolveResult(Outcome.OK, (DESC,))
    assert out["held"].authoritative
    assert out["held-miss"].outcome is Outcome.NOT_FOUND
    # the canonical key went upstream (the suffix case-folded), and nothing for held prefixes
    assert table.asked == ["88.119.5/X"] * 4 + ["88.119.5/GONE", "77.1/Y"]


def test_forwarder_with_no_agent_answers_upstream_unavailable(store):
    async def main():
        engine = Resolver([AuthorityHandler(store), ForwarderHandler(UpstreamLink(name()))])
        return await engine.resolve(ResolveRequest(Identifier.parse("88.119.5/x"),
                                                   recursive=True))  # fmt: skip

    result = run(main())
    assert result.outcome is Outcome.UPSTREAM_UNAVAILABLE
