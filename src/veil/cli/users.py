"""``veil users``: the users file of the review UI and the DICOM node (names, roles, hashed secrets).

``add`` shows a new random token once (or takes a password from stdin), ``list`` shows names and roles only,
``remove`` drops a user, ``check`` says whether a user may do an action (exit 0 allowed, 1 denied), ``roles``
prints the role x action table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from veil.cli.common import error
from veil.cli.exits import EXIT_FATAL, EXIT_OK
from veil.errors import VeilError

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from veil.access import Action, Role

    roles = [r.value for r in Role]
    u = subparsers.add_parser("users", help="the users and roles of the review UI and the DICOM node")
    verbs = u.add_subparsers(dest="users_command", required=True)
    a = verbs.add_parser("add", help="add a user; shows a new token once (or reads a password from stdin)")
    a.add_argument("file", type=Path, help="users file (created mode 0600 when missing)")
    a.add_argument("name")
    a.add_argument("--role", action="append", required=True, choices=roles,
                   help="a role (repeat for several): " + ", ".join(roles))
    a.add_argument("--password-stdin", action="store_true",
                   help="read the secret (one line, 12 characters at least) from stdin instead of making a token")
    ls = verbs.add_parser("list", help="names and roles (never secrets)")
    ls.add_argument("file", type=Path)
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    r = verbs.add_parser("remove", help="remove a user")
    r.add_argument("file", type=Path)
    r.add_argument("name")
    c = verbs.add_parser("check", help="whether a user may do an action (exit 0 allowed, 1 denied)")
    c.add_argument("file", type=Path)
    c.add_argument("name")
    c.add_argument("action", choices=[a.value for a in Action], metavar="ACTION",
                   help="one of: " + ", ".join(a.value for a in Action))
    verbs.add_parser("roles", help="the role x action table")


def command(args: argparse.Namespace) -> int:
    handlers = {"add": _add, "list": _list, "remove": _remove, "check": _check, "roles": _roles}
    try:
        return handlers[args.users_command](args)
    except VeilError as exc:
        return error(f"users {args.users_command}", exc)


def _read_password() -> str:
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("password: ")
        if getpass.getpass("password again: ") != first:
            from veil.access import UsersFileError

            raise UsersFileError("the two passwords differ")
        return first
    line = sys.stdin.readline()
    return line.rstrip("\r\n")


def _add(args: argparse.Namespace) -> int:
    from veil.access import (
        Role,
        Users,
        UsersFileError,
        add_user,
        bearer_token,
        load_users,
        new_token,
        save_users,
    )

    users = load_users(args.file) if args.file.exists() else Users()
    if args.name in users:  # said before a password is asked for
        raise UsersFileError(f"{args.file}: user {args.name} already exists (remove it first to give it a new "
                             f"secret or roles)")
    secret = _read_password() if args.password_stdin else new_token()
    users = add_user(users, args.name, args.role, secret)
    save_users(args.file, users)
    roles = ", ".join(r.value for r in Role if r.value in args.role)
    print(f"users: added {args.name} ({roles}) to {args.file}")
    if not args.password_stdin:
        print(f"bearer token for {args.name}, shown this once and stored only as a hash; keep it secret:")
        print(f"  {bearer_token(args.name, secret)}")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from veil.access import Role, load_users

    users = load_users(args.file)
    rows = [(u.name, [r.value for r in Role if r in u.roles]) for u in users]
    if args.json:
        print(json.dumps([{"name": name, "roles": roles} for name, roles in rows], indent=2))
        return EXIT_OK
    width = max([len("name"), *(len(name) for name, _ in rows)])
    print(f"{'name':<{width}}  roles")
    for name, roles in rows:
        print(f"{name:<{width}}  {', '.join(roles)}")
    return EXIT_OK


def _remove(args: argparse.Namespace) -> int:
    from veil.access import load_users, remove_user, save_users

    save_users(args.file, remove_user(load_users(args.file), args.name))
    print(f"users: removed {args.name} from {args.file}")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from veil.access import PERMISSIONS, Action, Role, UsersFileError, load_users

    user = load_users(args.file).get(args.name)
    if user is None:
        raise UsersFileError(f"{args.file}: no user {args.name}")
    action = Action(args.action)
    granting = [r.value for r in Role if r in user.roles and action in PERMISSIONS[r]]
    if granting:
        print(f"allowed: {user.name} may {action.value} (role {', '.join(granting)})")
        return EXIT_OK
    print(f"denied: {user.name} may not {action.value} (roles {', '.join(r.value for r in Role if r in user.roles)})")
    return EXIT_FATAL


def _roles(args: argparse.Namespace) -> int:
    from veil.access import PERMISSIONS, Action, Role

    width = max(len(a.value) for a in Action)
    print(f"{'action':<{width}}  " + "  ".join(r.value for r in Role))
    for action in Action:
        cells = ("x" if action in PERMISSIONS[r] else "-" for r in Role)
        line = f"{action.value:<{width}}  " + "  ".join(f"{c:^{len(r.value)}}" for c, r in zip(cells, Role, strict=True))
        print(line.rstrip())
    return EXIT_OK
