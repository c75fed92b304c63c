"""The ``idnode`` command line and the composition root: the one place that wires config,
store, engine, registry and servers together.

Commands: ``serve`` (supervisor + workers), ``load FILE.jsonl``, ``check-config FILE``,
``stat``.  Exit codes: 0 success, 1 operational failure (bad records, store full), 2 bad usage
or configuration.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys

import native
from resolver import __version__, config as config_mod
from resolver.errors import ConfigError, IdnodeError, StoreError

log = logging.getLogger("idnode")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML configuration file")
    p.add_argument("--data", help="data directory (default ./var/idnode)")
    p.add_argument("--map-size", dest="map_size", help="LMDB map size, e.g. 16GiB")
    p.add_argument("--case-sensitive", dest="case_sensitive", action="store_true", default=None,
                   help="fold only prefixes to upper case, not suffixes")  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="idnode", description="Identifier resolution node")
    parser.add_argument("--version", action="version", version=f"idnode {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the node")
    _config_args(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--http-port", dest="http_port", type=int, help="REST API port (8000)")
    serve.add_argument("--handle-port", dest="handle_port", type=int,
                       help="Handle protocol port, UDP and TCP (2641; 0 = any free port)")  # fmt: skip
    serve.add_argument("--workers", type=int, help="worker processes (default: one per core)")
    serve.add_argument("--home", dest="homed_prefixes", action="append",
                       help="home this prefix at start-up if missing (repeatable)")  # fmt: skip

    load = sub.add_parser("load", help="load records from a JSON Lines file")
    _config_args(load)
    load.add_argument("file", help="JSON Lines file, '-' for standard input")
    load.add_argument("--batch", type=int, default=10_000, help="records per write transaction")

    check = sub.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file")

    stat = sub.add_parser("stat", help="print store statistics")
    _config_args(stat)
    return parser


def _overrides(args: argparse.Namespace) -> dict:
    names = ("data", "map_size", "case_sensitive", "host", "http_port", "handle_port", "workers",
             "homed_prefixes")  # fmt: skip
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _open_store(cfg):
    from resolver.store.lmdb_store import LmdbStore

    return LmdbStore(cfg.data, map_size=cfg.map_size)


def cmd_serve(cfg) -> int:
    from resolver.servers import lifecycle, sockets

    store = _open_store(cfg)  # create/verify the store once before forking
    _home_prefixes(store, cfg)
    store.close()
    reserved = [sockets.reserve_port(cfg.host, cfg.http_port)]
    reserved += sockets.reserve_tcp_udp(cfg.host, cfg.handle_port)
    http_port = reserved[0].getsockname()[1]
    handle_port = reserved[1].getsockname()[1]
    cfg = dataclasses.replace(cfg, http_port=http_port, handle_port=handle_port)
    loop_kind = "uvloop" if _has_uvloop() else "asyncio"
    banner = (f"idnode {__version__}: http://{cfg.host}:{http_port}/api/handles/ "
              f"handle://{cfg.host}:{handle_port} (udp+tcp) — "
              f"{cfg.worker_count} worker(s), {native.IMPLEMENTATION} hot path, {loop_kind}, "
              f"data {cfg.data}")  # fmt: skip

    def worker(_i: int) -> None:
        for sock in reserved:
            sock.close()
        _run_worker(cfg)

    def started() -> None:
        # A bound UDP socket in a SO_REUSEPORT group receives its share of datagrams even when
        # nobody reads it (unlike a TCP socket that does not listen): release it now.
        reserved[2].close()

    try:
        return lifecycle.supervise(cfg.worker_count, worker, banner, started)
    finally:
        for sock in reserved:
            sock.close()


def _run_worker(cfg) -> None:
    import asyncio

    from resolver.core.authority import AuthorityHandler
    from resolver.core.engine import Resolver
    from resolver.servers import lifecycle

    lifecycle.install_event_loop_policy()
    store = _open_store(cfg)
    resolver = Resolver([AuthorityHandler(store)])
    try:
        asyncio.run(lifecycle.run_worker(store, resolver, cfg, cfg.http_port, cfg.handle_port))
    finally:
        store.close()


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _home_prefixes(store, cfg) -> None:
    """Home each configured prefix that is not homed yet, with an HS_ADMIN-only prefix handle."""
    from registry.prefixes import default_prefix_handle
    from resolver.identifier import Identifier
    from resolver.store import Change

    changes = []
    for p in cfg.homed_prefixes:
        key = Identifier.parse(p).suffix_key  # "p" means 0.NA/p: one normalisation rule
        if store.get_prefix(key) is None:
            changes.append(Change(key, default_prefix_handle(p), prefix=True))
    if changes:
        store.write(changes)


def cmd_load(cfg, path: str, batch: int) -> int:
    from registry import bulk

    store = _open_store(cfg)
    try:
        if path == "-":
            report = bulk.load(store, sys.stdin, case_sensitive=cfg.case_sensitive, batch_size=batch)
        else:
            with open(path, encoding="utf-8") as fh:
                report = bulk.load(store, fh, case_sensitive=cfg.case_sensitive, batch_size=batch)
    finally:
        store.close()
    for number, reason in report.errors[:50]:
        print(f"{path}:{number}: {reason}", file=sys.stderr)
    if len(report.errors) > 50:
        print(f"... and {len(report.errors) - 50} more bad lines", file=sys.stderr)
    print(f"idnode load: {report.lines} lines, {report.prefixes} prefix handles, "
          f"{report.loaded} records, {len(report.errors)} rejected; "
          f"last transaction {report.last_txn_id}")  # fmt: skip
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.command == "check-config":
        try:
            cfg = config_mod.load(args.file)
        except ConfigError as exc:
            print(f"idnode: {args.file}: {exc.key}: {exc.reason}", file=sys.stderr)
            return 2
        print(f"idnode: {args.file}: OK")
        return 0
    try:
        cfg = config_mod.load(args.config, _overrides(args))
    except ConfigError as exc:
        print(f"idnode: configuration: {exc.key}: {exc.reason}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(cfg.log_level.upper())
    try:
        if args.command == "serve":
            return cmd_serve(cfg)
        if args.command == "load":
            return cmd_load(cfg, args.file, args.batch)
        if args.command == "stat":
            store = _open_store(cfg)
            print(store.stat(), f"last transaction {store.last_txn_id()}")
            store.close()
            return 0
    except StoreError as exc:
        print(f"idnode: {exc.message}", file=sys.stderr)
        return 1
    except IdnodeError as exc:
        print(f"idnode: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"idnode: {exc}", file=sys.stderr)
        return 1
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
