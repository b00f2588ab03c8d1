"""``veil pull``: studies from a PACS (C-FIND + C-MOVE or C-GET, or QIDO-RS + WADO-RS), de-identified into a
folder through the same engine as ``veil run``; resumable; optionally sent on (``--send-to`` / ``--send-stow``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from veil.cli.common import add_key_option, add_recipe_option, error
from veil.cli.exits import EXIT_FATAL, EXIT_OK, EXIT_USAGE
from veil.cli.push import add_tls_arguments, parse_ae_target, report, tls_config

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pp = subparsers.add_parser(
        "pull", help="retrieve studies from a PACS (C-MOVE, C-GET or WADO-RS) and de-identify them into DST; "
                     "a second pull goes on where the first stopped")
    pp.add_argument("dst", type=Path, help="the de-identified output (as veil run's DST, study layout)")
    source = pp.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="source", metavar="AE@HOST:PORT", help="a PACS by DIMSE (C-FIND, then "
                                                                               "C-MOVE or --get)")
    source.add_argument("--qido", metavar="URL", help="a DICOMweb server's base URL (QIDO-RS, then WADO-RS)")
    dimse = pp.add_argument_group("DIMSE")
    dimse.add_argument("--calling-ae", default="VEIL", help="this end's AE title (default VEIL)")
    dimse.add_argument("--get", action="store_true", help="C-GET: the instances come back on the same association")
    dimse.add_argument("--move-ae", help="C-MOVE: the AE title the PACS sends to (default: --calling-ae); the "
                                         "PACS must know it at this host and --move-port")
    dimse.add_argument("--move-port", type=int, default=11113, help="C-MOVE: the port veil's Storage SCP listens "
                                                                     "on (default 11113)")
    dimse.add_argument("--listen", default="127.0.0.1", help="C-MOVE: the address it listens on (default "
                                                              "127.0.0.1; 0.0.0.0 for a PACS on another host)")
    query = pp.add_argument_group("which studies (each list: one value a line)")
    query.add_argument("--patients", type=Path, metavar="FILE", help="patient IDs")
    query.add_argument("--accessions", type=Path, metavar="FILE", help="accession numbers")
    query.add_argument("--studies", type=Path, metavar="FILE", help="study instance UIDs")
    query.add_argument("--dates", metavar="RANGE", help="study dates: YYYYMMDD, YYYYMMDD-YYYYMMDD, open ends allowed")
    query.add_argument("--modalities", metavar="LIST", help="modalities in study, comma-separated (CT,MR)")
    add_recipe_option(pp)
    add_key_option(pp)
    pp.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="de-identification processes")
    pp.add_argument("--parallel", type=int, default=2, help="studies retrieved at once (associations; default 2)")
    pp.add_argument("--work", type=Path, help="where retrieved originals wait (default: .DST.pull-work beside "
                                              "DST; removed once DST is complete)")
    pp.add_argument("--bearer-env", metavar="VAR", help="DICOMweb: the bearer token is in this variable")
    send = pp.add_mutually_exclusive_group()
    send.add_argument("--send-to", metavar="AE@HOST:PORT", help="then send DST to this AE (as veil push --to)")
    send.add_argument("--send-stow", metavar="URL", help="then send DST by STOW-RS (as veil push --stow)")
    add_tls_arguments(pp)


def _values(path: Path | None) -> tuple[str, ...]:
    if path is None:
        return ()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read ({type(exc).__name__})") from None
    values = tuple(dict.fromkeys(v.strip() for v in lines if v.strip() and not v.lstrip().startswith("#")))
    if not values:
        raise ValueError(f"{path}: no values")
    return values


def command(args: argparse.Namespace) -> int:
    try:
        import pynetdicom  # noqa: F401
    except ImportError:
        return error("pull", "pulling needs its extra: pip install 'veil[net]'")
    from veil.keys import run_key
    from veil.net.pull import default_work, pull, stderr_progress
    from veil.net.retrieve import DimseSource, Query, RetrieveError, WebSource
    from veil.recipes import compile_recipe, load_recipe

    try:
        query = Query(patient_ids=_values(args.patients), accessions=_values(args.accessions),
                      study_uids=_values(args.studies), dates=args.dates or "",
                      modalities=tuple(m.strip().upper() for m in (args.modalities or "").split(",") if m.strip()))
        tls = tls_config(args)
    except (ValueError, RetrieveError) as exc:
        print(f"veil pull: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.workers < 1 or args.parallel < 1:
        print("veil pull: error: --workers and --parallel are at least 1", file=sys.stderr)
        return EXIT_USAGE
    recipe = load_recipe(args.recipe)
    compiled = compile_recipe(recipe)
    key = run_key(args.key, required=recipe.requires_key)
    source: DimseSource | WebSource
    if args.source:
        target = parse_ae_target(args.source)
        if target is None:
            print("veil pull: error: --from is AE@HOST:PORT", file=sys.stderr)
            return EXIT_USAGE
        from veil.net.tls import TlsConfig, client_context, server_context

        server_tls = None
        if tls is not None and not args.get:  # the PACS connects back for C-MOVE: the same certificate serves
            server_tls = server_context(TlsConfig(tls.cert, tls.key, tls.ca, require_client_cert=tls.ca is not None))
        source = DimseSource(*target, args.calling_ae, get=args.get, move_ae=args.move_ae or args.calling_ae,
                             listen=(args.listen, args.move_port), tls=client_context(tls) if tls else None,
                             server_tls=server_tls)
    else:
        from veil.net.tls import client_context

        source = WebSource(args.qido, bearer_env=args.bearer_env or "",
                           verify=client_context(tls) if tls is not None else True)
    dst = args.dst.resolve()
    work = (args.work or default_work(dst)).resolve()
    try:
        result = pull(source, query, dst, work, recipe=compiled, key=key, workers=args.workers,
                      parallel=args.parallel, progress=stderr_progress)
    except RetrieveError as exc:
        print(f"\nveil pull: error: {exc}; rerun to go on", file=sys.stderr)
        return EXIT_FATAL
    finally:
        source.close()
    if result.failed:
        for message in sorted(set(result.failed)):
            print(f"veil pull: {message}", file=sys.stderr)
        print(f"veil pull: {len(result.failed):,} of {result.studies:,} studies not retrieved; nothing "
              "de-identified yet; rerun to go on (retrieved studies are not asked for again)", file=sys.stderr)
        return EXIT_FATAL
    totals = result.summary.totals if result.summary is not None else None
    if totals is not None:
        print(f"veil pull: {result.studies:,} studies, {totals.files:,} instances: {totals.written:,} written, "
              f"{totals.quarantined:,} quarantined -> {dst}", file=sys.stderr)
    else:
        print(f"veil pull: {result.studies:,} studies, already complete in {dst}", file=sys.stderr)
    if args.send_to or args.send_stow:
        from veil.cli.push import destination
        from veil.net.push import push_folder

        dest, label = destination(args.send_to, args.send_stow, args.bearer_env, tls)
        return report(push_folder(dst, dest, label, args.calling_ae), "veil pull")
    return EXIT_OK
