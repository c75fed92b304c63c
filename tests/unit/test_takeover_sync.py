"""``resolver.upstream.takeover.TakeoverSync`` against a scripted secondary on 127.0.0.1.

The secondary is a tiny aiohttp server in the test's own event loop speaking the two endpoints
a pull uses — ``GET /api/v1/changes?after=&limit=`` (Basic credentials required, as a node's
server-admin check) and ``GET /api/handles/<h>`` (anonymous) — from a list of change-log entries
and a dict of records the test edits.  The copy is a real LMDB store in tmp_path; time is an
injected clock, so the "unreachable" rule is checked without sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import logging

import pytest
from aiohttp import web

from resolver.record import unpack
from resolver.upstream.takeover import TakeoverSync
from resolver.valuejson import value_to_json
from resolver.values import HandleValue

IDENTITY = "300:0.NA/88.118"
SECRET = b"sync secret"
TS = 1767225600


def run(coro, limit: float = 20.0):
    async def bounded():
        return await asyncio.wait_for(coro, limit)

    return asyncio.run(bounded())


def values(*urls: str) -> list[dict]:
    return [value_to_json(HandleValue(i, "URL", u.encode(), ttl=600, timestamp=TS))
            for i, u in enumerate(urls, 1)]  # fmt: skip


class Secondary:
    """The scripted secondary: ``log`` (change-log entries, ids from 1), ``records`` (handle
    text as the log names it → JSON values), ``asked`` (the ``after`` of every changes request),
    ``fail`` (handle → HTTP status to answer instead)."""

    def __init__(self) -> None:
        self.log: list[dict] = []
        self.records: dict[str, list[dict]] = {}
        self.asked: list[int] = []
        self.fail: dict[str, int] = {}
        self.gateway: int | None = None  # a proxy's status for every request, when set
        self.runner: web.AppRunner | None = None
        self.port = 0

    def change(self, action: str, handle: str, **extra) -> None:
        self.log.append({"txnId": len(self.log) + 1, "action": action, "handle": handle,
                         "op": 0, "identity": "", **extra})  # fmt: skip

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_get("/api/v1/changes", self.changes)
        app.router.add_get("/api/handles/{h:.+}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()

    async def changes(self, request: web.Request) -> web.Response:
        if self.gateway is not None:
            return web.Response(status=self.gateway, text="<html>Bad Gateway</html>")
        user = b"300%3A0.NA/88.118:" + SECRET
        if request.headers.get("Authorization") != "Basic " + base64.b64encode(user).decode():
            return web.json_response({"responseCode": 402, "message": "Authentication needed"},
                                     status=401)  # fmt: skip
        after, limit = int(request.query["after"]), int(request.query["limit"])
        self.asked.append(after)
        page = [c for c in self.log if c["txnId"] > after][:limit]
        return web.json_response({"responseCode": 1, "changes": page,
                                  "next": page[-1]["txnId"] if page else 0})  # fmt: skip

    async def handle(self, request: web.Request) -> web.Response:
        h = request.match_info["h"]
        if "Authorization" in request.headers:
            return web.json_response({"responseCode": 2}, status=500)  # records: anonymous
        if h in self.fail:
            return web.json_response({"responseCode": 2}, status=self.fail[h])
        if h not in self.records:
            return web.json_response({"responseCode": 100, "handle": h}, status=404)
        return web.json_response({"responseCode": 1, "handle": h, "values": self.records[h]})


@pytest.fixture
def secondary():
    return Secondary()


def sync_for(url: str, store, **kw) -> TakeoverSync:
    kw.setdefault("identity", IDENTITY)
    kw.setdefault("secret", SECRET)
    return TakeoverSync([url], store, **kw)


def copied(store, key: bytes) -> list[tuple[int, str, bytes]] | None:
    blob = store.takeover_get(key)
    return None if blob is None else [(v.index, v.type, v.data) for v in unpack(blob)]


def test_pull_pages_through_the_log_and_resumes(secondary, store):
    async def go():
        url = await secondary.start()
        secondary.records["0.NA/88.118"] = values("https://a.example/site")
        secondary.change("home", "0.NA/88.118")
        for i in range(5):
            secondary.records[f"88.118/R{i}"] = values(f"https://a.example/{i}")
            secondary.change("create", f"88.118/R{i}")
        sync = sync_for(url, store, page_size=2)
        assert await sync.pull_once() == 6
        assert secondary.asked == [0, 2, 4, 6]  # three full pages, then an empty one
        assert store.takeover_last(url) == 6
        assert store.takeover_prefixes() == {b"88.118": url}
        assert copied(store, b"88.118/R3") == [(1, "URL", b"https://a.example/3")]
        assert unpack(store.takeover_get(b"88.118/R3"))[0].ttl == 600
        st = sync.status()["sources"][url]
        assert (st["state"], st["last_applied"], st["prefixes"], st["changes"]) == (
            "up", 6, ["88.118"], 6)  # fmt: skip
        await sync.close()
        # a new sync (an agent restarted) asks from the last applied id, not from 0
        secondary.records["88.118/R1"] = values("https://a.example/1-v2")
        secondary.change("update", "88.118/R1")
        del secondary.records["88.118/R2"]
        secondary.change("delete", "88.118/R2")
        secondary.asked.clear()
        again = sync_for(url, store)
        assert await again.pull_once() == 2 and secondary.asked[0] == 6
        assert copied(store, b"88.118/R1") == [(1, "URL", b"https://a.example/1-v2")]
        assert store.takeover_get(b"88.118/R2") is None
        await again.close()
        await secondary.stop()

    run(go())


def test_the_last_action_on_a_key_wins_and_imports_name_their_identifiers(secondary, store):
    async def go():
        url = await secondary.start()
        secondary.records["88.118/A"] = values("https://a.example/a")
        secondary.change("create", "88.118/A")
        secondary.change("delete", "88.118/A")  # deleted, then created again: it exists
        secondary.change("create", "88.118/A")
        secondary.change("create", "88.118/GONE")  # created, then deleted: never fetched
        secondary.change("delete", "88.118/GONE")
        secondary.records.update({"88.118/I1": values("https://a.example/i1"),
                                  "88.118/I2": values("https://a.example/i2")})  # fmt: skip
        secondary.change("import", "import:job1:1-2", created=["88.118/I1", "88.118/I2"])
        secondary.change("home", "0.NA/88.118")  # no prefix handle to fetch any more: 404
        sync = sync_for(url, store)
        assert await sync.pull_once() == 7
        assert copied(store, b"88.118/A") == [(1, "URL", b"https://a.example/a")]
        assert store.takeover_get(b"88.118/GONE") is None
        assert copied(store, b"88.118/I2") == [(1, "URL", b"https://a.example/i2")]
        assert store.takeover_prefixes() == {}
        assert sync.status()["sources"][url]["fetched"] == 4  # A, I1, I2, the prefix handle
        secondary.records["0.NA/88.118"] = values("https://a.example/site")
        secondary.change("home", "0.NA/88.118")
        await sync.pull_once()
        assert store.takeover_prefixes() == {b"88.118": url}
        secondary.change("unhome", "0.NA/88.118")
        await sync.pull_once()
        assert store.takeover_prefixes() == {}
        await sync.close()
        await secondary.stop()

    run(go())


def test_a_page_that_fails_half_way_applies_nothing(secondary, store, caplog):
    async def go():
        url = await secondary.start()
        for h in ("88.118/OK", "88.118/BAD"):
            secondary.records[h] = values(f"https://a.example/{h}")
            secondary.change("create", h)
        secondary.fail["88.118/BAD"] = 500
        sync = sync_for(url, store)
        with caplog.at_level(logging.WARNING, logger="idnode.takeover"):
            assert await sync.pull_once() == 0
            await sync.pull_once()  # the same error again: logged once per streak
        assert store.takeover_get(b"88.118/OK") is None and store.takeover_last(url) == 0
        st = sync.status()["sources"][url]
        assert st["state"] == "up" and "88.118/BAD" in st["error"]  # it answered: reachable
        assert store.takeover_down() == {}
        assert sum("E082" in r.getMessage() for r in caplog.records) == 1
        del secondary.fail["88.118/BAD"]
        assert await sync.pull_once() == 2 and store.takeover_last(url) == 2
        assert sync.status()["sources"][url]["error"] is None
        await sync.close()
        await secondary.stop()

    run(go())


def test_wrong_credentials_are_an_error_not_an_outage(secondary, store):
    async def go():
        url = await secondary.start()
        secondary.change("create", "88.118/X")
        sync = sync_for(url, store, secret=b"wrong", down_after=0)
        assert await sync.pull_once() == 0
        st = sync.status()["sources"][url]
        assert st["state"] == "up" and st["error"] == "HTTP 401: Authentication needed"
        assert store.takeover_down() == {}
        await sync.close()
        await secondary.stop()

    run(go())


def test_unreachable_after_down_after_seconds_of_failures_and_back(secondary, store, caplog):
    now = [1000.0]

    async def go():
        url = await secondary.start()
        port = secondary.port
        secondary.records["0.NA/88.118"] = values("https://a.example/site")
        secondary.change("home", "0.NA/88.118")
        sync = sync_for(url, store, interval=10, down_after=3, clock=lambda: now[0],
                        wall=lambda: 1_767_225_600.0 + now[0] - 1000, timeout=2.0)  # fmt: skip
        await sync.pull_once()
        await secondary.stop()  # connection refused from now on
        with caplog.at_level(logging.WARNING, logger="idnode.takeover"):
            await sync.pull_once()
            st = sync.status()["sources"][url]
            assert st["state"] == "failing" and st["failures"] == 1
            assert st["unreachable_since"] == 1_767_225_600.0
            now[0] += 1
            assert [s.next_due for s in sync.sources.values()] == [now[0]]  # retried each second
            await sync.pull_once()
            now[0] += 2  # 3 s since the first failure
            assert store.takeover_down() == {}
            await sync.pull_once()
            assert sync.status()["sources"][url]["state"] == "down"
            assert store.takeover_down() == {url: 1_767_225_600_000}
            # a restarted agent keeps the published state until the source answers
            assert sync_for(url, store).status()["sources"][url]["state"] == "down"
            await secondary.start(port)
            now[0] += 1
            await sync.pull_once()
        assert sync.status()["sources"][url]["state"] == "up" and store.takeover_down() == {}
        messages = [r.getMessage() for r in caplog.records]
        assert any("E080" in m and "2026-01-01T00:00:00Z" in m and "takeover is disabled" in m
                   for m in messages)  # fmt: skip
        assert any("E081" in m for m in messages)
        await sync.close()
        await secondary.stop()

    run(go())


def test_down_after_zero_means_the_first_failure(store):
    async def go():
        sync = sync_for("http://127.0.0.1:1", store, down_after=0, enabled=True, timeout=2.0)
        await sync.pull_once()
        assert sync.status()["sources"]["http://127.0.0.1:1"]["state"] == "down"
        assert list(store.takeover_down()) == ["http://127.0.0.1:1"]
        await sync.close()

    run(go())


def test_run_pulls_every_interval_until_cancelled(secondary, store):
    async def go():
        url = await secondary.start()
        sync = sync_for(url, store, interval=0.1)
        task = asyncio.ensure_future(sync.run())
        for i in range(2):  # a change made while it runs is copied by a later pull
            secondary.records[f"88.118/T{i}"] = values(f"https://a.example/t{i}")
            secondary.change("create", f"88.118/T{i}")
            for _ in range(100):
                if store.takeover_last(url) == i + 1:
                    break
                await asyncio.sleep(0.05)
            assert store.takeover_last(url) == i + 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert sync._session is None  # closed on the way out
        assert sync.status()["sources"][url]["pulls"] >= 2
        await secondary.stop()

    run(go())


@pytest.mark.parametrize("status, state", [(502, "down"), (503, "down"), (504, "down"),
                                           (500, "up"), (404, "up")])  # fmt: skip
def test_a_gateway_error_counts_as_unreachable(secondary, store, status, state):
    async def go():
        url = await secondary.start()
        secondary.gateway = status
        sync = sync_for(url, store, down_after=0)
        await sync.pull_once()
        st = sync.status()["sources"][url]
        assert st["state"] == state and f"HTTP {status}" in st["error"]
        assert (url in store.takeover_down()) is (state == "down")
        await sync.close()
        await secondary.stop()

    run(go())
