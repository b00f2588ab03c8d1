"""``veil review``: serve the review UI over a run's DST on 127.0.0.1, and print the one sign-in address."""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from pathlib import Path

from veil.cli.exits import EXIT_OK, EXIT_USAGE
from veil.system import login_name

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rv = subparsers.add_parser(
        "review", help="a local web UI to check a run's redactions, headers and quarantine, record decisions "
                       "and turn corrections into recipe rules (needs veil[review])")
    rv.add_argument("dst", type=Path, help="the run's output folder")
    rv.add_argument("--src", type=Path, help="the run's inputs: with --key, before-images and header before/after")
    keys = rv.add_mutually_exclusive_group()
    keys.add_argument("--key", type=Path, metavar="KEYFILE",
                      help="the run key (finds each input in SRC; opens the originals of a single-user run)")
    rv.add_argument("--custodian-key", type=Path, metavar="NAME.key",
                    help="the custodian's private key: opens the originals of a run sealed to it")
    rv.add_argument("--operator", help="who reviews (recorded with each decision; default: the login name)")
    rv.add_argument("--users", type=Path, metavar="FILE",
                    help="a users file (veil users): the operator's roles come from it, and API clients sign in "
                         "with 'Authorization: Bearer NAME:SECRET'")
    rv.add_argument("--recipe", help="the run's recipe (name or file), for the header diff and proposed rules "
                                     "(default: the run's shipped recipe when its hash matches)")
    rv.add_argument("--layer", type=Path, metavar="FILE",
                    help="the site layer proposals are saved to, outside DST (default: beside --recipe's file)")
    rv.add_argument("--verify-report", type=Path, metavar="FILE.json", help="a veil verify JSON report to show")
    rv.add_argument("--reject-reason", action="append", metavar="TEXT",
                    help="a reason a reviewer may reject with (repeat; default: a built-in list)")
    rv.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free one)")
    rv.add_argument("--no-browser", action="store_true", help="print the address, do not open a browser")


def command(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from veil.review.app import (
            DEFAULT_REJECT_REASONS,
            ReviewConfig,
            create_app,
            environment_default_layer,
        )
        from veil.review.model import ReviewData
        from veil.review.security import Guard
    except ImportError as exc:
        print(f"veil review: error: the review UI needs its extra: pip install 'veil[review]' ({exc.name} is "
              "missing)", file=sys.stderr)
        return EXIT_USAGE
    from veil.access import Role, load_users
    operator = args.operator or login_name()
    key = None
    custodian = None
    if args.key is not None:
        from veil.keys import load_key

        key = load_key(args.key)
    if args.custodian_key is not None:
        from veil.keys.custodian import load_custodian_private

        custodian = load_custodian_private(args.custodian_key)
    if args.src is not None and key is None:
        print("veil review: error: --src needs --key (inputs are found by their keyed path digest)", file=sys.stderr)
        return EXIT_USAGE
    data = ReviewData(args.dst, src=args.src, key=key, custodian=custodian, recipe=args.recipe,
                      verify_report=args.verify_report)
    users = load_users(args.users) if args.users is not None else None
    if users is not None:
        user = users.get(operator)
        if user is None:
            print(f"veil review: error: {operator} is not in the users file", file=sys.stderr)
            return EXIT_USAGE
        roles = set(user.roles)
    else:
        # One local operator: reviewer and auditor; custodian too when the key that opens the originals is given.
        roles = {Role.REVIEWER, Role.AUDITOR}
        if data.can_open_originals:
            roles.add(Role.CUSTODIAN)
    layer = args.layer or environment_default_layer(args.recipe)
    if layer is not None and layer.resolve().is_relative_to(Path(args.dst).resolve()):
        print("veil review: error: --layer must be outside DST", file=sys.stderr)
        return EXIT_USAGE
    config = ReviewConfig(layer=layer, key_path=str(args.key) if args.key else None,
                          src_text=str(args.src) if args.src else None, dst_text=str(args.dst),
                          reject_reasons=tuple(args.reject_reason or DEFAULT_REJECT_REASONS))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", args.port))
    except OSError as exc:
        print(f"veil review: error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    port = sock.getsockname()[1]
    guard = Guard(operator, roles, users, hosts=(f"127.0.0.1:{port}", f"localhost:{port}"))
    app = create_app(data, guard, config)
    url = f"http://127.0.0.1:{port}/login?token={guard.token}"
    logging.getLogger("veil").setLevel(logging.INFO)
    print(f"veil review: {data.dst.name} on 127.0.0.1:{port} as {operator} "
          f"({', '.join(sorted(r.value for r in roles))}); Ctrl-C stops", file=sys.stderr)
    print(url, flush=True)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(url)
    # access_log off: the default access log of ASGI servers prints the query string, i.e. the token.
    server = uvicorn.Server(uvicorn.Config(app, access_log=False, log_level="warning", log_config=None,
                                           server_header=False, date_header=False))
    server.run(sockets=[sock])
    return EXIT_OK

