"""``idnode prefix ...`` and ``idnode identity ...``: the operator tools on the command line.

``register(subparsers)`` adds the commands to the ``idnode`` parser; ``run(args)`` executes one
and returns the exit code: 0 success, 1 operational failure (the prefix exists, is unknown, the
store is full, ...), 2 bad usage (bad prefix, index or key file, bad configuration).  The
commands open the node's store directly (``--data`` / ``--config`` as ``idnode load``) and act
as the local operator; a running node sees the change at its next request.

Output is human lines, or one JSON object with ``--json``.  A new secret is printed once, on
standard output only; nothing else keeps it.  ``python -m registry.operator_cli ...`` runs the
same commands without the ``idnode`` entry point.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from resolver import config as config_mod
from resolver.errors import (
    ConfigError, IdnodeError, InvalidIdentifier, InvalidValue, MalformedRequest,
)  # fmt: skip
from resolver.valuejson import data_to_json

COMMANDS = ("prefix", "identity")
_USAGE_ERRORS = (InvalidIdentifier, InvalidValue, MalformedRequest)


def _store_args(p: argparse.ArgumentParser) -> None:
    config_mod.add_store_arguments(p)  # the same options as ``idnode load``
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _index(text: str) -> int:
    n = int(text)
    if not 0 < n <= 0x7FFFFFFF:
        raise ValueError(text)
    return n


def register(subparsers) -> None:
    """Add ``prefix`` and ``identity`` (with their sub-commands) to ``idnode``'s parser."""
    prefix = subparsers.add_parser("prefix", help="enterprise prefixes homed here")
    psub = prefix.add_subparsers(dest="action", required=True)
    p = psub.add_parser("create", help="create a prefix and its admin identity")
    p.add_argument("prefix", help="e.g. 88.118.9")
    p.add_argument("--org", required=True, help="the organisation the prefix is allocated to")
    p.add_argument("--pubkey", help="PEM RSA public key file: the identity's key instead of a "
                                    "new secret")  # fmt: skip
    p.add_argument("--index", type=_index, default=300, help="the identity's key index (300)")
    _store_args(p)
    _store_args(psub.add_parser("list", help="every prefix, enabled or disabled"))
    for name, text in (("show", "a prefix: values, organisation, admins, identifiers"),
                       ("disable", "stop serving a prefix (its records are kept)"),
                       ("enable", "serve a disabled prefix again")):  # fmt: skip
        p = psub.add_parser(name, help=text)
        p.add_argument("prefix")
        _store_args(p)

    identity = subparsers.add_parser("identity", help="keys of admin identities")
    isub = identity.add_subparsers(dest="action", required=True)
    p = isub.add_parser("add", help="add a secret key (printed once) or a public key to a handle")
    p.add_argument("handle", help="e.g. 88.118.9/ADMIN")
    p.add_argument("--index", type=_index, required=True, help="index of the new key value")
    p.add_argument("--pubkey", help="PEM RSA public key file (default: a new secret)")
    _store_args(p)
    p = isub.add_parser("rotate", help="replace a secret key; the old one stops working")
    p.add_argument("handle")
    p.add_argument("--index", type=_index, required=True, help="index of the HS_SECKEY value")
    _store_args(p)


def _overrides(args: argparse.Namespace) -> dict:
    names = ("data", "map_size", "case_sensitive")
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _read_key(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as fh:
        return fh.read(1 << 20)


def _emit(args, obj: dict, lines: list[str]) -> None:
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
        sys.stdout.flush()
    else:
        print("\n".join(lines))


def _issued(args, what: str, identity, secret: str | None, extra: dict) -> None:
    obj = dict(extra, identity=str(identity), secret=secret)
    lines = [what, f"identity {identity}"]
    if secret is None:
        lines.append("key: the given public key (HS_PUBKEY)")
    else:
        lines.append(f"secret: {secret}")
        lines.append("(shown once and kept nowhere else: store it now)")
    _emit(args, obj, lines)


def _show_lines(info) -> list[str]:
    lines = [f"prefix {info.prefix} ({'enabled' if info.enabled else 'DISABLED'})",
             f"organisation: {info.org if info.org is not None else '-'}",
             f"identifiers: {info.identifiers}"]  # fmt: skip
    for a in info.admins:
        lines.append(f"admin (HS_ADMIN {a.index}): {a.admin_index}:{a.handle} "
                     f"permissions {a.permissions:012b} members {', '.join(a.members) or '-'}")
    lines.append("values:")
    for v in info.values:
        data = data_to_json(v)["value"]
        shown = data if isinstance(data, str) else orjson.dumps(data).decode("utf-8")
        lines.append(f"  {v.index:>5}  {v.type:<10}  {shown}")
    return lines


def _execute(args, op) -> None:
    cmd, action = args.command, args.action
    if cmd == "prefix" and action == "create":
        identity, secret = op.create_prefix(args.prefix, args.org, admin_index=args.index,
                                            pubkey_pem=_read_key(args.pubkey))  # fmt: skip
        name = op.prefix_key(args.prefix).decode("utf-8")
        _issued(args, f"prefix {name} created for {args.org.strip()}", identity, secret,
                {"prefix": name, "org": args.org.strip()})  # fmt: skip
    elif cmd == "prefix" and action == "list":
        infos = op.list_prefixes()
        rows = [f"{i.prefix}\t{'enabled' if i.enabled else 'disabled'}\t{i.org or '-'}"
                for i in infos]  # fmt: skip
        _emit(args, {"prefixes": [i.to_json() for i in infos]}, rows or ["no prefixes"])
    elif cmd == "prefix" and action == "show":
        info = op.show_prefix(args.prefix)
        _emit(args, info.to_json(), _show_lines(info))
    elif cmd == "prefix" and action in ("disable", "enable"):
        fn = op.disable_prefix if action == "disable" else op.enable_prefix
        txn = fn(args.prefix)
        name = op.prefix_key(args.prefix).decode("utf-8")
        state = f"{action}d"
        text = (f"prefix {name} {state} (transaction {txn})" if txn
                else f"prefix {name} was already {state}")  # fmt: skip
        _emit(args, {"prefix": name, "enabled": action == "enable", "changed": bool(txn),
                     "txnId": txn}, [text])  # fmt: skip
    elif cmd == "identity" and action == "add":
        identity, secret = op.identity_add(args.handle, args.index,
                                           pubkey_pem=_read_key(args.pubkey))  # fmt: skip
        _issued(args, f"key added to {args.handle} at index {args.index}", identity, secret, {})
    elif cmd == "identity" and action == "rotate":
        identity, secret = op.identity_rotate(args.handle, args.index)
        _issued(args, f"secret of {identity} rotated; the old one no longer works", identity,
                secret, {})  # fmt: skip
    else:  # argparse only produces the combinations above
        raise MalformedRequest(f"unknown command {cmd} {action}")


def run(args: argparse.Namespace) -> int:
    """Run ``idnode prefix|identity ...`` parsed by a parser that ``register`` extended."""
    from registry.authz import Identity
    from registry.operator import Operator
    from registry.service import Registry
    from resolver.store.lmdb_store import LmdbStore

    name = f"idnode {args.command} {args.action}"
    try:
        cfg = config_mod.load(args.config, _overrides(args))
    except ConfigError as exc:
        print(f"{name}: configuration: {exc.key}: {exc.reason}", file=sys.stderr)
        return 2
    readonly = args.action in ("list", "show")
    try:
        store = LmdbStore(cfg.data, map_size=cfg.map_size, readonly=readonly)
    except IdnodeError as exc:
        print(f"{name}: {exc.message}", file=sys.stderr)
        return 1
    try:
        registry = Registry(store, server_admins=[Identity.parse(a) for a in cfg.server_admins],
                            case_sensitive=cfg.case_sensitive)  # fmt: skip
        _execute(args, Operator(registry))
        return 0
    except _USAGE_ERRORS as exc:
        print(f"{name}: {exc.message}", file=sys.stderr)
        return 2
    except IdnodeError as exc:
        print(f"{name}: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:  # the --pubkey file
        print(f"{name}: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="idnode", description="idnode operator tools")
    register(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
