"""The statistics report pushed upstream (resolver.upstream.report): a real HTTP receiver on
127.0.0.1, a real directory and a real store."""

from __future__ import annotations

import asyncio
import json
import time

from aiohttp import web

from resolver.upstream.report import STATE_KEY, StatsReporter

H = 493_000  # an hour in 2026


def iso(hour: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(hour * 3600))


class Receiver:
    """An HTTP server taking reports; answers ``status`` (settable)."""

    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.status = 204

    async def post(self, request: web.Request) -> web.Response:
        self.bodies.append(json.loads(await request.read()))
        self.headers.append(dict(request.headers))
        return web.Response(status=self.status)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/stats", self.post)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/stats"


def test_reports_each_hour_since_the_last_delivered_one_and_retries_failures(store, tmp_path):
    clock = [H * 3600 + 600.0]
    store.add_stats({(b"88.118.8", H, b"res.http.ok"): 5, (b"88.118.8", H - 1, b"reg.create"): 9,
                     (b"88.119", H, b"up.query"): 2})  # fmt: skip
    outdir = tmp_path / "reports"
    outdir.mkdir()

    async def main():
        rx = Receiver()
        url = await rx.start()
        rep = StatsReporter(store, interval=3600, url=url, directory=str(outdir), token="s3cret",
                            node={"role": "secondary", "prefixes": ["88.118"]},
                            clock=lambda: clock[0])  # fmt: skip
        try:
            # first report: the current hour only (nothing was reported before)
            assert await rep.report_once()
            first = rx.bodies[-1]
            assert rx.headers[-1]["Authorization"] == "Bearer s3cret"
            assert first["node"] == {"role": "secondary", "prefixes": ["88.118"]}
            assert first["from"] == iso(H) and first["to"] == iso(H + 1)
            assert first["counters"] == {
                "88.118.8": {first["from"]: {"res.http.ok": 5}},
                "88.119": {first["from"]: {"up.query": 2}},
            }
            files = sorted(outdir.iterdir())
            assert len(files) == 1 and json.loads(files[0].read_bytes()) == first
            # more counted in this hour; two hours later the receiver fails
            store.add_stats({(b"88.118.8", H, b"res.http.ok"): 1,
                             (b"88.118.8", H + 2, b"res.dns.ok"): 4})  # fmt: skip
            clock[0] += 2 * 3600
            rx.status = 503
            assert not await rep.report_once()
            assert rep.status()["failures"] == 1 and "503" in rep.status()["last_error"]
            # recovered: the failed report's hours come again, with the grown figure
            rx.status = 200
            assert await rep.report_once()
            again = rx.bodies[-1]
            hours = sorted(again["counters"]["88.118.8"])
            assert len(hours) == 2 and again["counters"]["88.118.8"][hours[0]] == {
                "res.http.ok": 6}  # fmt: skip
            assert again["counters"]["88.118.8"][hours[1]] == {"res.dns.ok": 4}
            assert rep.status()["delivered"] == 2
            # caught up: the next starts at the hour before the current one
            assert store.meta_value(STATE_KEY) == (H + 1).to_bytes(4, "big")
        finally:
            await rx.runner.cleanup()

    asyncio.run(main())


def test_unreachable_receiver_is_a_failure_not_a_crash(store):
    async def main():
        rep = StatsReporter(store, interval=60, url="http://127.0.0.1:9/stats",
                            clock=lambda: H * 3600.0)  # fmt: skip
        assert not await rep.report_once()
        assert rep.status()["failures"] == 1 and store.meta_value(STATE_KEY) is None

    asyncio.run(main())
