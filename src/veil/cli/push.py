"""``veil push``: send a de-identified folder (a run's DST) to a DICOM AE or a DICOMweb server; resumable."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from veil.cli.exits import EXIT_FATAL, EXIT_OK, EXIT_USAGE

__all__ = ["add_parser", "add_tls_arguments", "command", "destination", "tls_config"]

_AE_TARGET = re.compile(r"(?P<ae>[^@]{1,16})@(?P<host>[^:]+):(?P<port>\d{1,5})")


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    tls = parser.add_argument_group("DICOM TLS / https")
    tls.add_argument("--tls", action="store_true", help="DICOM TLS to the AE (the CA below, or the system's)")
    tls.add_argument("--tls-ca", type=Path, metavar="PEM", help="the CA that signs the peer's certificate "
                                                                 "(implies --tls)")
    tls.add_argument("--tls-cert", type=Path, metavar="PEM", help="this end's certificate, where the peer asks")
    tls.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key")


def tls_config(args: argparse.Namespace) -> Any:
    from veil.net.tls import TlsConfig

    if not (args.tls or args.tls_ca or args.tls_cert):
        return None
    for path in (args.tls_ca, args.tls_cert, args.tls_key):
        if path is not None and not path.is_file():
            raise ValueError(f"{path}: not a file")
    return TlsConfig(cert=args.tls_cert, key=args.tls_key, ca=args.tls_ca)


def parse_ae_target(text: str) -> tuple[str, str, int] | None:
    match = _AE_TARGET.fullmatch(text)
    if match is None or not 0 < int(match["port"]) < 65536:
        return None
    return match["ae"], match["host"], int(match["port"])


def destination(to: str | None, stow: str | None, bearer_env: str | None, tls: Any) -> tuple[Any, str]:
    """The Destination named by ``--to AE@HOST:PORT`` or ``--stow URL`` (with its TLS settings), and its label."""
    from veil.net.config import Destination

    if to:
        target = parse_ae_target(to)
        if target is None:
            raise ValueError("--to is AE@HOST:PORT")
        return Destination("push", "dimse", ae_title=target[0], host=target[1], port=target[2], tls=tls), to
    assert stow is not None
    return Destination("push", "stow", url=stow.rstrip("/"), bearer_env=bearer_env or "", tls=tls), stow


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pp = subparsers.add_parser("push", help="send a de-identified folder (a veil run's DST) by C-STORE or STOW-RS; "
                                            "a second push sends only what is not there yet")
    pp.add_argument("dst", type=Path, help="the run's output folder (its audit lists what to send)")
    target = pp.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="AE@HOST:PORT", help="a DICOM AE (C-STORE)")
    target.add_argument("--stow", metavar="URL", help="a DICOMweb server's base URL (STOW-RS to URL/studies)")
    pp.add_argument("--calling-ae", default="VEIL", help="this end's AE title (default VEIL)")
    pp.add_argument("--bearer-env", metavar="VAR", help="STOW-RS: the bearer token is in this variable")
    add_tls_arguments(pp)


def report(result: Any, prog: str = "veil push") -> int:
    if result.error:
        print(f"{prog}: {result.error}; {result.sent:,} of {result.total - result.already:,} sent this time; "
              "rerun to go on", file=sys.stderr)
        return EXIT_FATAL
    print(f"{prog}: {result.sent:,} sent, {result.already:,} already there, {result.total:,} in all", file=sys.stderr)
    return EXIT_OK


def command(args: argparse.Namespace) -> int:
    from veil.net.push import push_folder

    try:
        dest, label = destination(args.to, args.stow, args.bearer_env, tls_config(args))
    except ValueError as exc:
        print(f"veil push: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return report(push_folder(args.dst, dest, label, args.calling_ae))
