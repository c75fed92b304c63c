"""``idnode create`` / ``modify`` / ``delete``: administer identifiers at a node over the native
Handle protocol (TCP), authenticated by HS_SECKEY or HS_PUBKEY (handle.md §3.3, §5).

Built on the project's own client (``resolver.upstream.client.HandleClient
.request_authenticated``): the request, the node's RC 402 challenge, the OC 200 answer and the
final reply travel over one TCP connection.  ``register(subparsers)`` adds the three commands
to an argparse parser; ``run(args)`` executes one; ``main(argv)`` runs them stand-alone
(``python -m registry.admin_cli create ...``).

    idnode create 88.118.8/SN-1 --auth 300:88.118.8/ADMIN --secret-file admin.secret \\
        --value 1:URL:https://example.com/sn/1 [--overwrite] [--no-default-admin]
    idnode modify 88.118.8/SN-1 --auth ... --key admin.pem --value 1:URL:https://... [--add]
    idnode delete 88.118.8/SN-1 --auth ... --secret-file F [--index 2 ...]

Values are ``INDEX:TYPE:DATA`` (DATA is UTF-8 text and may contain ':'); an ``HS_ADMIN``
value's DATA is ``INDEX:HANDLE`` of the admin, optionally ``#PERMS`` in hex (default ``7f3``,
every handle-level right).  ``create`` adds such an HS_ADMIN at index 100 naming ``--auth``
unless a value of type HS_ADMIN is given or ``--no-default-admin``: without one, nobody but a
server admin could change or delete the new handle.  ``modify`` sends OC_MODIFY_VALUE (every
index must exist) or, with ``--add``, OC_ADD_VALUE (``--overwrite`` replaces existing indexes).
``delete`` removes the handle, or with ``--index`` only those values (OC_REMOVE_VALUE).

The secret file holds the HS_SECKEY bytes; one trailing line break is not part of the secret.
The key file is an unencrypted PEM (or DER) RSA private key.  Exit codes: 0 the node answered
RC 1; 1 any other response code (printed with its message); 2 bad usage, unreadable
credentials, or no answer from the node.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys

from resolver.errors import IdnodeError
from resolver.protocols.handle import auth as A
from resolver.protocols.handle.constants import FLAG_OVERWRITE, OpCode
from resolver.protocols.handle.message import (
    CreateHandleResponse, HandleBody, RemoveValueRequest, ValuesBody,
)  # fmt: skip
from resolver.upstream.client import ADMIN_FLAGS, HandleClient, PublicKeyAuth, SecretKeyAuth
from resolver.values import ADMIN_TYPE, AdminRecord, HandleValue

COMMANDS = frozenset(("create", "modify", "delete"))
#: HS_ADMIN rights given to the creator by default: every handle-level right (add/delete
#: handle, modify/remove/add value, modify/remove/add admin, read value), none of the prefix ones.
DEFAULT_ADMIN_PERMS = 0x7F3
DEFAULT_ADMIN_INDEX = 100
DEFAULT_SERVER = "127.0.0.1:2641"


def register(subparsers) -> None:
    """Add ``create``, ``modify`` and ``delete`` to an argparse sub-parser collection."""
    helps = {"create": "create an identifier at a node (native protocol, authenticated)",
             "modify": "modify (or --add) values of an identifier at a node",
             "delete": "delete an identifier, or --index values of it, at a node"}  # fmt: skip
    for name in ("create", "modify", "delete"):
        p = subparsers.add_parser(name, help=helps[name])
        p.add_argument("handle", help="identifier, e.g. 88.118.8/SN-1")
        p.add_argument("--auth", required=True, metavar="INDEX:HANDLE",
                       help="identity to act as, e.g. 300:88.118.8/ADMIN")  # fmt: skip
        cred = p.add_mutually_exclusive_group(required=True)
        cred.add_argument("--secret-file", metavar="FILE", help="HS_SECKEY secret of --auth")
        cred.add_argument("--key", metavar="FILE",
                          help="PEM RSA private key of --auth's HS_PUBKEY")  # fmt: skip
        p.add_argument("--server", default=DEFAULT_SERVER, metavar="HOST:PORT",
                       help=f"the node's Handle TCP port ({DEFAULT_SERVER})")  # fmt: skip
        p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait in all (10)")
        if name in ("create", "modify"):
            p.add_argument("--value", dest="values", action="append", default=[],
                           metavar="INDEX:TYPE:DATA", help="a value (repeatable)")  # fmt: skip
            p.add_argument("--overwrite", action="store_true",
                           help="replace an existing handle (create) or index (modify --add)")
        if name == "create":
            p.add_argument("--no-default-admin", dest="default_admin", action="store_false",
                           help="do not add an HS_ADMIN naming --auth at index 100")  # fmt: skip
        if name == "modify":
            p.add_argument("--add", action="store_true",
                           help="add values (OC_ADD_VALUE) instead of modifying existing ones")
        if name == "delete":
            p.add_argument("--index", dest="indexes", action="append", type=_index, default=[],
                           help="remove only the value at this index (repeatable)")  # fmt: skip


def _index(text: str) -> int:
    n = int(text)
    if not 0 < n <= 0x7FFFFFFF:
        raise ValueError(text)
    return n


def parse_value(text: str) -> HandleValue:
    """``INDEX:TYPE:DATA`` → HandleValue (module docstring); ``ValueError`` when malformed."""
    index, sep1, rest = text.partition(":")
    vtype, sep2, data = rest.partition(":")
    if not (sep1 and sep2 and vtype):
        raise ValueError(f"--value {text!r}: expected INDEX:TYPE:DATA")
    try:
        idx = _index(index)
    except ValueError:
        raise ValueError(f"--value {text!r}: index must be 1..2147483647") from None
    if vtype.upper() == ADMIN_TYPE:
        m = re.fullmatch(r"([0-9]+):(.+?)(?:#([0-9A-Fa-f]{1,4}))?", data)
        if m is None:
            raise ValueError(f"--value {text!r}: HS_ADMIN data is INDEX:HANDLE[#PERMS]")
        perms = int(m.group(3), 16) if m.group(3) else DEFAULT_ADMIN_PERMS
        payload = AdminRecord(m.group(2), int(m.group(1)), perms).to_bytes()
        return HandleValue(idx, ADMIN_TYPE, payload)
    return HandleValue(idx, vtype, data.encode("utf-8"))


def _server(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--server {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def _credentials(args) -> SecretKeyAuth | PublicKeyAuth:
    try:
        A.parse_identity(args.auth)
    except IdnodeError as exc:
        raise ValueError(f"--auth {args.auth!r}: {exc.message}") from None
    if args.secret_file:
        with open(args.secret_file, "rb") as fh:
            secret = fh.read()
        secret = secret[:-2] if secret.endswith(b"\r\n") else secret.removesuffix(b"\n")
        if not secret:
            raise ValueError(f"--secret-file {args.secret_file}: empty secret")
        return SecretKeyAuth(args.auth, secret)
    with open(args.key, "rb") as fh:
        return PublicKeyAuth(args.auth, A.load_private_key(fh.read()))


def _request(args) -> tuple[int, object, int]:
    """(op code, body, op flags) of the command."""
    handle = args.handle.encode("utf-8")
    flags = ADMIN_FLAGS
    if args.command == "delete":
        if args.indexes:
            return OpCode.REMOVE_VALUE, RemoveValueRequest(handle, tuple(args.indexes)), flags
        return OpCode.DELETE_HANDLE, HandleBody(handle), flags
    values = [parse_value(v) for v in args.values]
    if args.overwrite:
        flags |= FLAG_OVERWRITE
    if args.command == "create":
        if args.default_admin and not any(v.has_type(ADMIN_TYPE) for v in values):
            if any(v.index == DEFAULT_ADMIN_INDEX for v in values):
                raise ValueError(f"index {DEFAULT_ADMIN_INDEX} is taken: give an HS_ADMIN "
                                 "value or --no-default-admin")  # fmt: skip
            index, who = A.parse_identity(args.auth)
            admin = AdminRecord(who, index, DEFAULT_ADMIN_PERMS).to_bytes()
            values.append(HandleValue(DEFAULT_ADMIN_INDEX, ADMIN_TYPE, admin))
        return OpCode.CREATE_HANDLE, ValuesBody(handle, tuple(values)), flags
    if not values:
        raise ValueError("modify needs at least one --value")
    op = OpCode.ADD_VALUE if args.add else OpCode.MODIFY_VALUE
    return op, ValuesBody(handle, tuple(values)), flags


def run(args: argparse.Namespace) -> int:
    """Execute one parsed ``create`` / ``modify`` / ``delete``; the exit code."""
    prog = f"idnode {args.command}"
    try:
        server = _server(args.server)
        if not 0 < args.timeout <= 3600:
            raise ValueError(f"--timeout {args.timeout:g}: expected 0 < seconds <= 3600")
        credentials = _credentials(args)
        opcode, body, flags = _request(args)
    except (ValueError, OSError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    client = HandleClient(tcp_timeout=args.timeout, total_timeout=args.timeout)
    try:
        reply = asyncio.run(client.request_authenticated(opcode, body, credentials, server=server,
                                                         opflags=flags))  # fmt: skip
    except (IdnodeError, ValueError) as exc:
        print(f"{prog}: {getattr(exc, 'message', None) or exc}", file=sys.stderr)
        return 2
    if reply.header.rc != 1:
        print(f"{prog}: {args.handle}: {reply.summary()}", file=sys.stderr)
        return 1
    handle = args.handle
    if opcode == OpCode.CREATE_HANDLE:
        try:
            created = CreateHandleResponse.from_wire(reply.body.to_wire()).handle
        except IdnodeError:
            created = None
        handle = created.decode("utf-8", "replace") if created else handle
    done = {OpCode.CREATE_HANDLE: "created", OpCode.DELETE_HANDLE: "deleted",
            OpCode.REMOVE_VALUE: "removed values of", OpCode.ADD_VALUE: "added values to",
            OpCode.MODIFY_VALUE: "modified"}[opcode]  # fmt: skip
    print(f"{done} {handle}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="idnode", description="Identifier administration")
    register(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
