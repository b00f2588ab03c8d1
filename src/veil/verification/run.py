"""``verify(src, dst)``: pairs inputs and outputs (by relative path or the audit), gathers the inputs'
identifiers, runs the integrity, leak and conformance checks and returns the :class:`VerifyReport`."""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from veil.core.dataset import read_dataset, walk_dataset
from veil.core.plan import DUMMY_VALUES, Action
from veil.errors import KeyError_
from veil.keys import Key, KeyedFunctions
from veil.keys.custodian import CustodianPrivateKey
from veil.recipes import CompiledRecipe, Recipe, compile_recipe
from veil.verification.conformance import check_conformance
from veil.verification.defacing import DefacingCheck
from veil.verification.identifiers import (
    MEDIA_STORAGE_SOP_INSTANCE_UID,
    PATIENT_ID,
    PLACEHOLDERS,
    IdentifierSet,
)
from veil.verification.integrity import (
    Pair,
    check_integrity,
    identity_uids,
    kept_findings,
    pseudonym_findings,
    uid_text,
    uid_values,
)
from veil.verification.leaks import FILE_NAME, LeakScanner, locate, vocabulary_check
from veil.verification.report import Finding, VerifyReport, hipaa_checklist

__all__ = ["verify"]


def verify(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    recipe: CompiledRecipe | Recipe | str | os.PathLike[str] = "research",
    key: Key | None = None,
    dciodvfy_sample: int = 10,
    progress: Callable[[str, int, int], None] | None = None,
    reid_table: str | os.PathLike[str] | None = None,
    custodian: CustodianPrivateKey | None = None,
) -> VerifyReport:
    """Checks DST (veil's output of SRC under ``recipe`` and ``key``); see :mod:`veil.verification`. With the
    run's re-identification table, counter pseudonyms are checked against it too: it is opened with the run key,
    or with the ``custodian``'s private key when the run sealed it to a custodian."""
    src_root, dst_root = Path(src), Path(dst)
    compiled = recipe if isinstance(recipe, CompiledRecipe) else compile_recipe(recipe)
    plan = compiled.plan
    functions = KeyedFunctions(key, **compiled.key_parameters) if key is not None else None
    reid_rows: dict[tuple[str, str], str] | None = None
    if reid_table is not None:
        opener = custodian if custodian is not None else key
        if opener is None:
            raise KeyError_("the re-identification table is read with the project key (or the custodian's): give --key")
        from veil.keys.reid import read_reid_table

        reid_rows = {(kind, new): original for kind, new, original in read_reid_table(reid_table, opener)}
    report = VerifyReport(
        source=str(src_root),
        destination=str(dst_root),
        recipe=f"{compiled.recipe.name} {compiled.recipe.version}",
        recipe_hash=compiled.recipe.content_hash,
        key_id=key.key_id if key is not None else None,
        checklist=hipaa_checklist(plan),
    )
    findings = report.findings
    audit = _read_audit(dst_root) if dst_root.is_dir() else _Audit()
    identifiers = IdentifierSet(
        frozenset(PLACEHOLDERS | {str(v).upper() for v in DUMMY_VALUES.values()} | _recipe_dummies(compiled))
    )
    if dst_root.is_file():
        outputs = {dst_root.name if src_root.is_file() else dst_root.name: dst_root}
    else:
        outputs = {rel: path for path, rel in _iter_files(dst_root, skip_veil=True)}

    # 1. Inputs: identifiers, identities, references; each paired output: identity, references, kept values.
    pairs: list[Pair] = []
    unreadable = missing = accounted = kept_compared = 0
    inputs_seen: set[str] = set()
    paired_by_audit: set[str] = set()
    input_files = list(_iter_files(src_root))
    defacing = DefacingCheck()
    for n, (path, rel) in enumerate(input_files, 1):
        if progress:
            progress("index", n, len(input_files))
        inputs_seen.add(rel)
        data: bytes | mmap.mmap = path.read_bytes()
        try:
            before = read_dataset(data)
            if not len(before):
                raise ValueError("no elements")
        except Exception:
            before = None
            unreadable += 1
        out_path = outputs.get(rel)
        recorded = audit.lookup(rel, key)
        if out_path is None and recorded is not None and recorded[1]:
            out_path = outputs.get(Path(recorded[1]).as_posix())  # another layout than the mirror
            if out_path is not None:
                paired_by_audit.add(Path(recorded[1]).as_posix())
        if before is None:
            if out_path is not None:
                report.notes.append(f"{rel}: the input cannot be read with pydicom, yet it has an output")
            elif recorded is not None:
                accounted += 1
            else:
                missing += 1
                findings.append(Finding("integrity", rel, detail="input has no output and no audit record"))
            continue
        nodes = list(walk_dataset(before))
        pair = Pair(
            rel,
            identity_uids(before),
            patient=identifiers.add_dataset(before, plan, nodes),
            patient_id=uid_text(before, PATIENT_ID) if PATIENT_ID in before else "",
        )
        input_refs = uid_values(nodes)
        if out_path is None:
            if recorded is None:
                missing += 1
                findings.append(Finding("integrity", rel, detail="input has no output and no audit record"))
            else:
                accounted += 1
            pairs.append(pair)
            continue
        pair.rel_out = rel if rel in outputs else Path(recorded[1]).as_posix() if recorded else rel
        try:
            after = read_dataset(_read_bytes(out_path))
        except Exception as exc:
            findings.append(
                Finding("integrity", pair.rel_out, detail=f"output cannot be read: {type(exc).__name__}")
            )
            pairs.append(pair)
            continue
        pair.output = identity_uids(after)
        pair.patient_id_out = uid_text(after, PATIENT_ID) if PATIENT_ID in after else ""
        meta = getattr(after, "file_meta", None)
        pair.media_storage = uid_text(meta, MEDIA_STORAGE_SOP_INSTANCE_UID) if meta is not None else ""
        output_refs = uid_values(list(walk_dataset(after)))
        for ref_path, values in input_refs.items():
            out_values = output_refs.get(ref_path)
            for i, value in enumerate(values):
                if value:
                    out_value = out_values[i] if out_values is not None and i < len(out_values) else None
                    pair.references.append((ref_path, value, out_value))
        findings.extend(defacing.add(pair.rel_out, before, after, path, out_path))
        compared, kept = kept_findings(nodes, after, plan, pair.rel_out)
        kept_compared += compared
        findings.extend(kept)
        pairs.append(pair)
    extra = sorted(set(outputs) - inputs_seen - paired_by_audit)
    if extra:
        report.notes.append(
            f"{len(extra)} output files have no input at the same relative path (scanned all the same)"
        )
    if unreadable:
        report.notes.append(
            f"{unreadable} inputs cannot be read with pydicom: their identifying values are unknown"
        )

    findings.extend(defacing.findings())
    references_checked = check_integrity(pairs, plan, functions, findings, report)
    pseudonym_findings(pairs, compiled, functions, reid_rows, findings, report)

    # 2. The leak scan of every output.
    scanner = LeakScanner(identifiers, vocabulary_check(getattr(compiled.recipe, "vocabulary", ()) or ()))
    scanned = scanned_bytes = 0
    started = time.perf_counter()
    output_items = sorted(outputs.items())
    patient_of = {pair.rel_out: pair.patient for pair in pairs if pair.rel_out}
    for n, (rel, path) in enumerate(output_items, 1):
        if progress:
            progress("scan", n, len(output_items))
        data = _read_bytes(path)
        try:
            scanned += 1
            scanned_bytes += len(data)
            matches, problem = scanner.scan(data)
            if problem:
                report.notes.append(f"{scanner.redact(rel)}: searched whole ({problem})")
            if matches:
                findings.extend(
                    locate(data, matches, scanner, plan, scanner.redact(rel), patient_of.get(rel))
                )
        finally:
            if isinstance(data, mmap.mmap):
                data.close()
        verdict = scanner.judge_text(rel.lower(), patient_of.get(rel), vr=FILE_NAME)
        if verdict is not None:
            error, kinds, reason = verdict
            findings.append(
                Finding(
                    "leak",
                    scanner.redact(rel),
                    "(file name)",
                    "",
                    kinds,
                    f"in the output's file name: {reason}",
                    "error" if error else "note",
                )
            )
    scan_seconds = time.perf_counter() - started
    report.files_per_second = scanned / scan_seconds if scan_seconds > 0 else 0.0

    # 3. Conformance on a sample of pairs.
    report.dciodvfy = scanner.redact(
        check_conformance(pairs, outputs, input_files, dciodvfy_sample, compiled.plan, findings)
    )

    report.retained = dict(sorted(identifiers.retained.items()))
    report.counts = {
        "inputs": len(input_files),
        "outputs": len(outputs),
        "patients": len(identifiers.patients),
        "identifiers": sum(identifiers.values_by_kind.values()),
        "identifiers_by_kind": dict(sorted(identifiers.values_by_kind.items())),
        "patterns": len(identifiers),
        "inputs_without_output_accounted_by_audit": accounted,
        "inputs_without_output_unaccounted": missing,
        "unreadable_inputs": unreadable,
        "scanned_files": scanned,
        "scanned_bytes": scanned_bytes,
        "scan_seconds": round(scan_seconds, 3),
        "references_checked": references_checked,
        "kept_compared": kept_compared,
        "defaced_series_checked": defacing.checked,
    }
    # File names may themselves identify (the mirror layout keeps them): mask what the scan knows of.
    findings[:] = [f if f.file.startswith("(") else replace(f, file=scanner.redact(f.file)) for f in findings]
    report.notes[:] = [scanner.redact(n) for n in report.notes]
    order = {"leak": 0, "integrity": 1, "kept attribute": 2, "conformance": 3}
    findings.sort(key=lambda f: (f.severity != "error", order.get(f.category, 9), f.file, f.path))
    return report


def _recipe_dummies(compiled: CompiledRecipe) -> set[str]:
    dummies = compiled.recipe.parameters.get("dummy", {}) or {}
    values = {str(v).upper() for v in dummies.values()}
    for rule in compiled.plan.tags.values():
        if rule.action == Action.REPLACE and isinstance(rule.value, str):
            values.add(rule.value.upper())
    return values


def _iter_files(root: Path, skip_veil: bool = False) -> Iterator[tuple[Path, str]]:
    """(file, relative path in posix form), sorted; a single file gives its own name."""
    if root.is_file():
        yield root, root.name
        return
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        if skip_veil and Path(dirpath) == root and ".veil" in dirs:
            dirs.remove(".veil")
        for name in sorted(files):
            path = Path(dirpath) / name
            yield path, path.relative_to(root).as_posix()


def _read_bytes(path: Path) -> bytes | mmap.mmap:
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < (1 << 20):
            return fh.read()
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


@dataclass
class _Audit:
    """The audit rows of ``DST/.veil/audit/*.parquet`` (``veil.audit``): input digest -> (status, output path).

    An input is named by the keyed BLAKE3 digest of its path relative to SRC under the key's ``audit``
    sub-key; a row may hold the whole digest or a prefix of it (``veil run`` writes the first 32 digits).
    """

    rows: dict[str, tuple[str, str]] = field(default_factory=dict)
    lengths: set[int] = field(default_factory=set)
    present: bool = False

    def lookup(self, rel: str, key: Key | None) -> tuple[str, str] | None:
        if not self.rows or key is None:
            return None
        import blake3

        digest = blake3.blake3(rel.encode("utf-8", "surrogateescape"), key=key.subkey("audit")).hexdigest()
        for length in sorted(self.lengths, reverse=True):
            row = self.rows.get(digest[:length])
            if row is not None:
                return row
        return None


def _read_audit(dst: Path) -> _Audit:
    audit = _Audit()
    directory = dst / ".veil" / "audit"
    parts = sorted(directory.glob("*.parquet")) if directory.is_dir() else []
    if not parts:
        return audit
    import pyarrow.parquet as pq

    audit.present = True
    for part in parts:
        table = pq.read_table(part)
        columns = [c for c in ("input_digest", "status", "output_path") if c in table.column_names]
        if "input_digest" not in columns:
            continue
        for row in table.select(columns).to_pylist():
            digest = str(row.get("input_digest") or "").lower()
            if digest:
                audit.rows[digest] = (str(row.get("status") or ""), str(row.get("output_path") or ""))
                audit.lengths.add(len(digest))
    return audit
