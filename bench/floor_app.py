"""The floor of the HTTP benchmark: the least an aiohttp server can do per request.

One process, uvloop, no access log, one route ``GET /api/handles/{handle:.+}`` answering a fixed
JSON body (the bytes of one real idnode answer, so both servers send bodies of the same size).
Whatever idnode does beyond this is its own cost; the benchmark reports idnode / floor.

Run from the repository root: ``python -m bench.floor_app --body-file FILE [--port 0]``.  Prints
``floor: http://HOST:PORT/api/handles/`` once listening; SIGTERM or SIGINT stops it.
Imports aiohttp and uvloop only, nothing of idnode.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket

from aiohttp import web


def make_app(body: bytes) -> web.Application:
    async def fixed(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/api/handles/{handle:.+}", fixed)
    return app


async def serve(body: bytes, host: str, port: int) -> None:
    runner = web.AppRunner(make_app(body), access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)  # the backlog idnode uses
    sock.setblocking(False)
    site = web.SockSite(runner, sock)
    await site.start()
    print(f"floor: http://{host}:{sock.getsockname()[1]}/api/handles/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--body-file", required=True, help="file holding the fixed response body")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    with open(args.body_file, "rb") as fh:
        body = fh.read()
    import uvloop

    uvloop.run(serve(body, args.host, args.port))


if __name__ == "__main__":
    main()
