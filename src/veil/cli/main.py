"""The ``veil`` command: argument parsing and printing only; the work lives in the modules it calls."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from veil._version import __version__
from veil.cli.proof import add_parsers as add_proof_parsers
from veil.errors import KeyError_, RecipeError, VeilError

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2
EXIT_QUARANTINED = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="veil", description="High-throughput DICOM de-identification.")
    p.add_argument("--version", action="version", version=f"veil {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="write a deterministic synthetic archive with realistic identifiers")
    s.add_argument("out", type=Path)
    s.add_argument("--patients", type=int, required=True)
    s.add_argument("--studies-per-patient", type=int, default=1)
    s.add_argument("--series-per-study", type=int, default=1)
    s.add_argument("--instances-per-series", type=int, default=1)
    s.add_argument("--modality", default="CT", type=str.upper)
    s.add_argument("--rows", type=int, default=64)
    s.add_argument("--cols", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)

    k = sub.add_parser("keygen", help="write a new 32-byte project key (mode 0600)")
    k.add_argument("keyfile", type=Path)

    d = sub.add_parser("deidentify", help="de-identify files or a directory tree in this process")
    d.add_argument("src", type=Path)
    d.add_argument("dst", type=Path)
    d.add_argument("--recipe", default="research", help="recipe name or YAML path (default: research)")
    d.add_argument("--key", type=Path, help="key file (or set VEIL_KEY)")
    d.add_argument("--json", action="store_true", help="print the summary as JSON")

    run = sub.add_parser("run", help="de-identify an archive: worker processes on this machine by default, "
                                     "Ray with --ray (this machine) or --address (a cluster)")
    run.add_argument("src", type=Path)
    run.add_argument("dst", type=Path)
    run.add_argument("--recipe", default="research", help="recipe name or YAML path (default: research)")
    run.add_argument("--key", type=Path, help="key file (or set VEIL_KEY)")
    run.add_argument("--address", help="Ray cluster address (default: this machine)")
    run.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                     help="worker processes on this machine (default: one per CPU; 1 runs in this process)")
    run.add_argument("--resume", action="store_true", help="skip the shards a previous run finished")
    run.add_argument("--reid-table", type=Path, help="write the encrypted re-identification table here")
    run.add_argument("--files-from", type=Path, help="a listing file, one path a line (relative to SRC)")
    run.add_argument("--layout", choices=("mirror", "study"), default="mirror")
    run.add_argument("--quarantine", choices=("copy", "list"), default="copy",
                     help="copy refused inputs under DST/.veil/quarantine, or only list them in the audit")
    run.add_argument("--shard-files", type=int,
                     help="files per shard: the unit of work, of audit parts and of resume (default 1024; a small "
                          "job on several workers gets about 8 shards per worker, of 64 files at least)")
    run.add_argument("--ray", action="store_true",
                     help="run the workers on a local Ray instead of a process pool (Ray starts in seconds)")
    run.add_argument("--dry-run", action="store_true",
                     help="rewrite a sample in memory and report which rules fired; write nothing")
    run.add_argument("--sample", type=int, default=100, help="files the dry run looks at (default 100)")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")

    au = sub.add_parser("audit", help="summary and quarantine list of a run's audit")
    au.add_argument("dst", type=Path)
    au.add_argument("--review", type=Path, metavar="OUTDIR",
                    help="write a PNG per redacted instance (boxes outlined) into OUTDIR, outside DST")
    au.add_argument("--key", type=Path, metavar="KEYFILE",
                    help="with --review: the project key, to show each image before redaction beside after "
                         "(the review images then hold PHI)")

    ri = sub.add_parser("reidentify", help="read an encrypted re-identification table (needs the key)")
    ri.add_argument("table", type=Path)
    ri.add_argument("--key", type=Path, help="key file (or set VEIL_KEY)")
    ri.add_argument("--value", help="show only the rows whose new value is this")

    r = sub.add_parser("recipe", help="list, show, check and compare recipes")
    rs = r.add_subparsers(dest="recipe_command", required=True)
    rs.add_parser("list", help="the shipped recipes")
    show = rs.add_parser("show", help="the resolved rules of a recipe")
    show.add_argument("name")
    check = rs.add_parser("check", help="validate a recipe file")
    check.add_argument("file")
    diff = rs.add_parser("diff", help="rules that differ between two recipes")
    diff.add_argument("a")
    diff.add_argument("b")

    pk = sub.add_parser("peek", help="the identity and signature values of one file (JSON)")
    pk.add_argument("file", type=Path)
    _COMMANDS.update(add_proof_parsers(sub))  # verify, inspect, profile
    return p


def main(argv: Sequence[str] | None = None) -> int:
    # veil calls no BLAS routine that needs threads; numpy's OpenBLAS would start one per core at import, and
    # they spin for a while, taking a core from the workers on a small machine. (Before numpy is imported.)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    args = _parser().parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (RecipeError, KeyError_) as exc:
        print(f"veil: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except VeilError as exc:
        print(f"veil: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    except KeyboardInterrupt:
        print("veil: interrupted", file=sys.stderr)
        return 130


def _synth(args: argparse.Namespace) -> int:
    from veil.synth import archive as synth

    total = args.patients * args.studies_per_patient * args.series_per_study * args.instances_per_series
    started = time.perf_counter()
    progress = _Progress(total, "synth") if sys.stderr.isatty() else None
    try:
        summary = synth.write_archive(
            args.out,
            patients=args.patients,
            studies_per_patient=args.studies_per_patient,
            series_per_study=args.series_per_study,
            instances_per_series=args.instances_per_series,
            modality=args.modality,
            rows=args.rows,
            cols=args.cols,
            seed=args.seed,
            progress=progress.update if progress else None,
        )
    except ValueError as exc:
        print(f"veil synth: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if progress:
        progress.close()
    seconds = time.perf_counter() - started
    print(
        f"synth: wrote {summary.files} files ({summary.bytes / 1e6:.1f} MB) for {summary.patients} patients, "
        f"{summary.studies} studies, {summary.series} series to {summary.out} in {seconds:.2f} s"
    )
    for ts, count in summary.transfer_syntaxes:
        print(f"  {count:8d}  {ts}")
    return EXIT_OK


def _keygen(args: argparse.Namespace) -> int:
    from veil.keys import generate_key_file

    key = generate_key_file(args.keyfile)
    print(f"keygen: wrote {args.keyfile} (mode 0600), key id {key.key_id}")
    return EXIT_OK


def _deidentify(args: argparse.Namespace) -> int:
    from veil.keys import KeyedFunctions, load_key
    from veil.pipeline import Deidentifier
    from veil.recipes.recipe import compile_recipe, load_recipe

    recipe = load_recipe(args.recipe)
    compiled = compile_recipe(recipe)
    if compiled.counter is not None:
        print(f"veil deidentify: error: pseudonym pattern {compiled.counter.pattern!r} numbers values through "
              "the key service of a run: use `veil run --reid-table TABLE`, which keeps the numbers",
              file=sys.stderr)
        return EXIT_FATAL
    key = load_key(args.key) if (args.key or os.environ.get("VEIL_KEY") or recipe.requires_key) else None
    functions = KeyedFunctions(key, **compiled.key_parameters) if key is not None else None
    if not args.src.exists():
        print(f"veil deidentify: error: {args.src}: no such file or directory", file=sys.stderr)
        return EXIT_FATAL
    src_root = args.src.resolve()
    dst_root = args.dst.resolve()
    if dst_root == src_root or src_root in dst_root.parents:
        print("veil deidentify: error: DST must not be inside SRC", file=sys.stderr)
        return EXIT_FATAL
    worker = Deidentifier(compiled.plan, functions, recipe.pixels)
    started = time.perf_counter()
    files = written = quarantined = bytes_in = bytes_out = 0
    actions: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    from veil.engine.driver import list_inputs
    from veil.pipeline import FileOutcome

    for entry in list_inputs(str(args.src)):
        files += 1
        path = entry.path
        if entry.error:
            outcome = FileOutcome(path, None, "quarantined", reason=entry.error)
        else:
            outcome = worker.deidentify_file(path, args.dst / entry.rel)
        if outcome.status == "written":
            written += 1
            bytes_in += outcome.input_bytes
            bytes_out += outcome.output_bytes
            actions.update({k: v for k, v in outcome.counts.items() if v})
        else:
            quarantined += 1
            reasons[outcome.reason] += 1
            print(f"quarantined: {path}: {outcome.reason}", file=sys.stderr)
    seconds = time.perf_counter() - started
    summary = {
        "recipe": f"{recipe.name} {recipe.version}",
        "key_id": key.key_id if key else None,
        "files": files,
        "written": written,
        "quarantined": quarantined,
        "quarantine_reasons": dict(reasons),
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "seconds": round(seconds, 3),
        "files_per_second": round(files / seconds, 1) if seconds else None,
        "actions": dict(sorted(actions.items())),
        "destination": str(args.dst),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"deidentify: {files} files with recipe {summary['recipe']} (key id {summary['key_id']}): "
            f"{written} written, {quarantined} quarantined, {bytes_in / 1e6:.1f} MB in, "
            f"{bytes_out / 1e6:.1f} MB out, {seconds:.2f} s ({summary['files_per_second']} files/s)"
        )
        print("  elements by action: " + ", ".join(f"{k.lower()} {v}" for k, v in summary["actions"].items()))
        for reason, count in reasons.most_common():
            print(f"  quarantined {count}: {reason}")
        print(f"  output: {args.dst}")
    return EXIT_QUARANTINED if quarantined else EXIT_OK


def _run(args: argparse.Namespace) -> int:
    from veil.engine import driver as engine
    from veil.keys import load_key
    from veil.recipes.recipe import compile_recipe, load_recipe

    recipe = load_recipe(args.recipe)
    compiled = compile_recipe(recipe)
    key = load_key(args.key) if (args.key or os.environ.get("VEIL_KEY") or recipe.requires_key) else None
    if args.reid_table and key is None:
        print("veil run: error: --reid-table needs a key", file=sys.stderr)
        return EXIT_FATAL
    if args.dry_run:
        from veil.keys import KeyedFunctions
        from veil.preview.inspect import dry_run

        entries = (e.path for e in engine.list_inputs(str(args.src), str(args.files_from) if args.files_from
                                                      else None) if not e.error)
        functions = KeyedFunctions(key, **compiled.key_parameters) if key is not None else None
        summary = dry_run(entries, compiled, sample=max(1, args.sample), functions=functions)
        print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.format())
        return EXIT_OK
    options = engine.RunOptions(
        src=str(args.src),
        dst=str(args.dst),
        layout=args.layout,
        workers=max(1, args.workers),
        address=args.address,
        resume=args.resume,
        files_from=str(args.files_from) if args.files_from else None,
        reid_table=str(args.reid_table) if args.reid_table else None,
        quarantine_copy=args.quarantine == "copy",
        shard_files=max(1, args.shard_files) if args.shard_files is not None else None,
        force_ray=args.ray,
    )
    progress = _RunProgress() if sys.stderr.isatty() and not args.json else None
    try:
        # Ray prints task retries on stdout whatever log_to_driver says: keep --json's stdout pure JSON.
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            summary = engine.run(options, compiled, key, progress.update if progress else None)
    except engine.FatalRunError as exc:
        if progress:
            progress.close()
        print(f"veil run: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    if progress:
        progress.close()

    totals = summary.totals or engine.RunTotals.of_audit(args.dst)
    result = {
        "run_id": summary.run_id,
        "recipe": f"{recipe.name} {recipe.version}",
        "key_id": key.key_id if key else None,
        "mode": summary.mode,
        "this_run": {"files": summary.files, "written": summary.written, "quarantined": summary.quarantined,
                     "shards": summary.shards, "shards_resumed": summary.shards_resumed,
                     "input_bytes": summary.input_bytes, "output_bytes": summary.output_bytes,
                     "seconds": round(summary.seconds, 3),
                     "files_per_second": round(summary.files / summary.seconds, 1) if summary.seconds else None,
                     "mb_per_second": round(summary.input_bytes / 1e6 / summary.seconds, 1)
                     if summary.seconds else None},
        "all_runs": {"files": totals.files, "written": totals.written, "quarantined": totals.quarantined},
        "quarantine_reasons": dict(totals.reasons),
        "audit": summary.audit_dir,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        t = result["this_run"]
        print(
            f"run {summary.run_id} ({summary.mode}), recipe {result['recipe']}, key id {result['key_id']}: "
            f"{t['files']} files in {t['shards']} shards ({t['shards_resumed']} resumed), {t['written']} written, "
            f"{t['quarantined']} quarantined, {summary.input_bytes / 1e6:.1f} MB in {t['seconds']} s "
            f"({t['files_per_second']} files/s, {t['mb_per_second']} MB/s)"
        )
        print(f"  all runs into {args.dst}: {totals.files} files, {totals.written} written, "
              f"{totals.quarantined} quarantined")
        for reason, count in totals.reasons.items():
            print(f"  quarantined {count}: {reason}")
        print(f"  audit: {summary.audit_dir}  (veil audit {args.dst})")
    if summary.mode in ("in-process", "local-pool"):
        _QUICK_EXIT.append(True)
    return EXIT_QUARANTINED if totals.quarantined else EXIT_OK


def _audit(args: argparse.Namespace) -> int:
    from veil.audit import store as audit

    if not audit.audit_dir(args.dst).exists():
        print(f"veil audit: error: {args.dst}: no veil audit here", file=sys.stderr)
        return EXIT_FATAL
    if args.key is not None and args.review is None:
        print("veil audit: error: --key is only for --review OUTDIR", file=sys.stderr)
        return EXIT_USAGE
    if args.review is not None:
        return _audit_review(args.dst, args.review, args.key)
    print(audit.format_summary(audit.summarize(args.dst)))
    return EXIT_OK


def _audit_review(dst: Path, outdir: Path, key_file: Path | None) -> int:
    """PNG review images, one per pixel record of a complete shard, named by shard and row only; a folder of
    mode 0700 and files of mode 0600, since with the key they show the burned-in text."""
    import numpy as np
    from PIL import Image

    from veil.audit import store as audit
    from veil.keys import load_key

    out = Path(os.path.realpath(outdir))
    root = Path(os.path.realpath(dst))
    if out == root or root in out.parents:
        print(f"veil audit: error: {outdir}: the review folder must be outside DST (it would be shared with it)",
              file=sys.stderr)
        return EXIT_USAGE
    key = load_key(key_file) if key_file is not None else None  # never $VEIL_KEY: before-images only on request
    records = {shard: audit.read_pixel_records(dst, shard, key).get(shard, [])
               for shard in sorted(audit.completed_shards(dst))}  # read (and checked) before anything is written
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    written = sealed_left = 0
    for shard, shard_records in records.items():
        for record in shard_records:
            name = f"shard-{shard:08d}-row-{record.row:08d}.png"
            tmp = out / f".{name}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "wb") as fh:
                Image.fromarray(np.asarray(audit.review_image(record))).save(fh, format="PNG")
            os.replace(tmp, out / name)
            os.chmod(out / name, 0o600)
            written += 1
            if key is None and record.before_sealed:
                sealed_left += 1
    what = "before | after" if key is not None else "after redaction"
    print(f"{written:,} review images ({what}, boxes in red, kept regions in green) in {out}")
    if sealed_left:
        print(f"  {sealed_left:,} have a sealed before-image: give --key KEYFILE to see it")
    if key is not None and written and not any(r.before_sealed for rs in records.values() for r in rs):
        print("  no before-images: the run had no project key, so none were stored")
    return EXIT_OK


def _reidentify(args: argparse.Namespace) -> int:
    from veil.keys import load_key
    from veil.keys.service import read_reid_table

    key = load_key(args.key)
    rows = read_reid_table(str(args.table), key.material)
    for kind, new, original in rows:
        if args.value is None or new == args.value:
            print(f"{kind}\t{new}\t{original}")
    return EXIT_OK


class _RunProgress:
    """One status line on a terminal: files, rate, MB/s, quarantined so far, tasks in flight."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.last = 0.0

    def update(self, summary, in_flight: int | None) -> None:  # type: ignore[no-untyped-def]
        now = time.perf_counter()
        if now - self.last < 0.2:
            return
        self.last = now
        seconds = max(now - self.started, 1e-9)
        flight = f", {in_flight} shards in flight" if in_flight is not None else ""
        rate = summary.files / seconds
        if summary.listed is not None and rate:
            eta = f", ETA {max(summary.listed - summary.files - summary.shards_resumed, 0) / rate:,.0f} s"
        else:
            eta = ", listing"
        sys.stderr.write(
            f"\rrun: {summary.files:,} files, {rate:,.0f} files/s, "
            f"{summary.input_bytes / 1e6 / seconds:,.1f} MB/s, {summary.quarantined} quarantined{flight}{eta}   "
        )
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


def _recipe(args: argparse.Namespace) -> int:
    from veil.recipes import recipe as recipes

    if args.recipe_command == "list":
        for info in recipes.list_recipes():
            print(f"{info.name:36s} {info.version:10s} {info.description}")
    elif args.recipe_command == "show":
        print(recipes.load_recipe(args.name).show())
    elif args.recipe_command == "check":
        r = recipes.check_recipe(args.file)
        print(f"{args.file}: ok ({r.name} {r.version}, sha256 {r.content_hash[:16]})")
    elif args.recipe_command == "diff":
        print(recipes.diff_recipes(args.a, args.b))
    return EXIT_OK


def _peek(args: argparse.Namespace) -> int:
    from veil.core._core import peek

    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"veil peek: error: {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_FATAL
    print(json.dumps(peek(data, str(args.file)), indent=2))
    return EXIT_OK


class _Progress:
    """A one-line progress display on a terminal: count, rate, ETA."""

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self.started = time.perf_counter()
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last < 0.2 and done < self.total:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        eta = (self.total - done) / rate if rate else 0
        sys.stderr.write(f"\r{self.label}: {done}/{self.total} files, {rate:,.0f} files/s, ETA {eta:,.0f} s ")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")


_COMMANDS = {
    "synth": _synth,
    "keygen": _keygen,
    "deidentify": _deidentify,
    "run": _run,
    "audit": _audit,
    "reidentify": _reidentify,
    "recipe": _recipe,
    "peek": _peek,
}


# Set by `veil run` when the run used no Ray (in this process or a process pool, both finished): the program
# then ends without the interpreter's teardown of numpy, pyarrow and the rest (30 ms of a one-second job).
_QUICK_EXIT: list[bool] = []


def entry() -> None:
    """The ``veil`` program: :func:`main`, then its exit status. After a local `veil run` everything it wrote
    is closed and renamed (outputs, audit parts fsynced, the manifest), so only stdout, stderr and logging
    are flushed before ``os._exit``; any other command, or a run that started Ray, exits normally."""
    code = main()
    if _QUICK_EXIT and "ray" not in sys.modules and threading.active_count() == 1:
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
