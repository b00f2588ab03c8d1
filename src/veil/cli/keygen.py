"""``veil keygen``: write a new project key (the run key), or a custodian key pair (``--custodian NAME``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from veil.cli.exits import EXIT_OK, EXIT_USAGE

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = subparsers.add_parser(
        "keygen",
        help="write a new 32-byte project key (mode 0600), or a custodian key pair (--custodian NAME)",
        description="KEYFILE: a new run key (32 random bytes, mode 0600). --custodian NAME: a custodian key "
                    "pair, NAME.pub for operators (veil run --custodian-public) and NAME.key (mode 0600, under a "
                    "passphrase asked twice, or $VEIL_CUSTODIAN_PASSPHRASE) for the custodian alone.",
    )
    k.add_argument("keyfile", type=Path, nargs="?", help="the run key file to write")
    k.add_argument("--custodian", metavar="NAME",
                   help="write the custodian key pair NAME.pub and NAME.key instead of a run key")
    k.add_argument("--dir", type=Path, default=Path("."), help="where the custodian key pair goes (default: .)")


def _new_passphrase() -> str:
    """From ``$VEIL_CUSTODIAN_PASSPHRASE``, else asked twice at the terminal (never echoed)."""
    from veil.errors import KeyError_
    from veil.keys.custodian import PASSPHRASE_ENV, read_passphrase

    if os.environ.get(PASSPHRASE_ENV):
        return read_passphrase()
    first = read_passphrase("new custodian passphrase: ")
    if read_passphrase("the same passphrase again: ") != first:
        raise KeyError_("the two passphrases differ; no key written")
    return first


def _custodian(args: argparse.Namespace) -> int:
    from veil.keys.custodian import generate_custodian

    public, private, key_id = generate_custodian(args.custodian, args.dir, _new_passphrase())
    print(f"keygen: custodian key {args.custodian}, key id {key_id}")
    print(f"  {public}  public (mode 0644): give it to operators, `veil run --custodian-public {public.name}`")
    print(f"  {private}  private (mode 0600, under the passphrase): the custodian's alone, never on a run machine;"
          f" it opens re-identification (`veil reidentify --custodian-key {private.name}`)")
    return EXIT_OK


def command(args: argparse.Namespace) -> int:
    if args.custodian is not None:
        if args.keyfile is not None:
            print("veil keygen: error: give KEYFILE (a run key) or --custodian NAME, not both", file=sys.stderr)
            return EXIT_USAGE
        return _custodian(args)
    if args.keyfile is None:
        print("veil keygen: error: give KEYFILE (a run key) or --custodian NAME (a custodian key pair)",
              file=sys.stderr)
        return EXIT_USAGE
    from veil.keys import generate_key_file

    key = generate_key_file(args.keyfile)
    print(f"keygen: wrote {args.keyfile} (mode 0600), key id {key.key_id}")
    return EXIT_OK
