"""What the review UI shows, read from a run's DST (and, given them, SRC and the keys): never written back.

:class:`ReviewData` joins the audit rows of the written instances with their pixel records (boxes, sources),
the change records and the output files; with SRC and the run key it finds each instance's input by its keyed
path digest, so before-images and the header before/after come from the original in memory only. Originals are
opened only with the key they were sealed to (the run key in a single-user run, the custodian's private key in a
custodian run); without it the views show the de-identified side alone.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veil.audit import read_manifest
from veil.audit.changes import read_changes
from veil.audit.layout import deface_dir, quarantine_dir
from veil.audit.pixelstore import PixelRecord, read_pixel_records
from veil.audit.read import complete_parts, iter_instances
from veil.audit.schema import input_digest
from veil.audit.tally import AuditSummary, summarize
from veil.errors import AuditError, VeilError
from veil.review import frames
from veil.review.decisions import shown_digest

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

    from veil.keys import Key
    from veil.keys.custodian import CustodianPrivateKey
    from veil.recipes.model import CompiledRecipe

__all__ = ["FREE_TEXT_VRS", "HeaderRow", "HeaderView", "Instance", "ReviewData", "SIGNATURE_KEYS", "input_signature",
           "source_kind"]

# The header keywords a proposed pixel rule matches on: the device signature of the issue (PS3.3 C.7.5.1 and
# C.7.6.3); a rule matches the INPUT's header (veil.pixels.policy), so only values known to be the input's go in.
SIGNATURE_KEYS = ("Modality", "Manufacturer", "ManufacturerModelName", "Rows", "Columns")
FREE_TEXT_VRS = frozenset({"LT", "ST", "UT", "UC", "LO", "SH"})
_KEPT_ACTIONS = frozenset({"KEEP", "CLEAN", "CALL"})


def source_kind(source: str) -> str:
    """The colour class of a redaction source: deface, rule, ocr (text detection), ultrasound, series, all,
    reviewer."""
    text = source.lower()
    if "deface" in text:
        return "deface"
    if "ultrasound" in text:
        return "ultrasound"
    if "detector" in text:
        return "ocr"
    if "pixel rule" in text:
        return "rule"
    if "redact-all" in text:
        return "all"
    if "series" in text:
        return "series"
    return "other"


@dataclass(frozen=True)
class Instance:
    """One written instance: its audit row, and its pixel record when its pixels were redacted."""

    shard: int
    row: int
    output_path: str
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    modality: str
    input_digest: str
    run_id: str
    recipe: str  # "name version"
    recipe_hash: str
    pixel_redaction: bool
    record: PixelRecord | None = field(default=None, compare=False, repr=False)

    @property
    def source(self) -> str:
        return self.record.source if self.record is not None else ""

    @property
    def boxes(self) -> list[dict[str, Any]]:
        """The blanked boxes in image pixels, with the colour class of what found them."""
        if self.record is None:
            return []
        kind = source_kind(self.record.source)
        return [{"frame": f, "x": x, "y": y, "width": w, "height": h, "source": kind}
                for f, x, y, w, h in self.record.boxes]

    @property
    def defaced(self) -> bool:
        """Whether this instance carries its series' defacing record: the frontal renderings after and before."""
        return self.record is not None and "deface" in self.record.source.lower()


@dataclass(frozen=True)
class HeaderRow:
    path: str
    tag: str
    keyword: str
    vr: str
    before: str | None  # None: the original is not shown (sealed, purged, or no SRC)
    after: str
    action: str
    rule: str
    present_after: bool

    @property
    def changed(self) -> bool:
        return self.action not in _KEPT_ACTIONS or (self.before is not None and self.before != self.after)

    @property
    def kept_free_text(self) -> bool:
        return self.vr in FREE_TEXT_VRS and self.present_after and bool(self.after) and self.action in _KEPT_ACTIONS

    @property
    def unnamed(self) -> bool:
        """No rule of the recipe named this element: a default decided it."""
        return self.rule.startswith(("default", "VR default"))

    def to_dict(self, originals: bool) -> dict[str, Any]:
        out = {"path": self.path, "tag": self.tag, "keyword": self.keyword, "vr": self.vr, "after": self.after,
               "action": self.action, "rule": self.rule, "present_after": self.present_after,
               "kept_free_text": self.kept_free_text, "unnamed": self.unnamed}
        if originals:
            out["before"] = self.before
        return out


@dataclass(frozen=True)
class HeaderView:
    rows: tuple[HeaderRow, ...]
    origin: str  # "inspect" (SRC, recipe and key), "change-records", or "output" (the written file alone)
    originals: str  # "opened", "sealed", "purged" or "none"


class ReviewData:
    """A run's DST as the reviewer sees it (see the module docstring). Thread-safe for the server's readers."""

    def __init__(self, dst: str | os.PathLike[str], *, src: str | os.PathLike[str] | None = None,
                 key: Key | None = None, custodian: CustodianPrivateKey | None = None,
                 recipe: str | os.PathLike[str] | None = None,
                 verify_report: str | os.PathLike[str] | None = None) -> None:
        self.dst = Path(dst).resolve()
        if not (self.dst / ".veil").is_dir():
            raise AuditError(f"{dst}: no veil audit here (run veil run first)")
        self.manifest = read_manifest(self.dst)
        self.src = Path(src).resolve() if src is not None else None
        if self.src is not None and not self.src.is_dir():
            raise VeilError(f"{src}: no such folder")
        self.key = key
        self.custodian = custodian
        self.recipe_spec = os.fspath(recipe) if recipe is not None else None
        self.verify_report = Path(verify_report) if verify_report is not None else None
        self._lock = threading.RLock()
        self._stamp: tuple[Any, ...] | None = None
        self._instances: dict[str, Instance] = {}
        self._summary: AuditSummary | None = None
        self._sources: dict[str, Path] | None = None
        self._compiled: CompiledRecipe | None = None
        self._shown: dict[str, tuple[tuple[int, int], str]] = {}

    # --- what the run holds -------------------------------------------------------------------------------

    @property
    def sealing(self) -> str:
        return str(self.manifest.get("sealing") or "none")

    @property
    def can_open_originals(self) -> bool:
        """Whether the key given opens this run's sealed originals (custodian runs: the custodian key only)."""
        if self.sealing == "custodian":
            return self.custodian is not None
        return self.key is not None

    @property
    def can_show_before(self) -> bool:
        return self.can_open_originals

    def _refresh(self) -> None:
        """Rereads the audit when a part changed (a rerun into DST while the server runs)."""
        parts = complete_parts(self.dst)
        stamp = tuple(sorted((s, p.stat().st_mtime_ns) for s, p in parts.items()))
        if stamp == self._stamp:
            return
        self.manifest = read_manifest(self.dst)
        records: dict[tuple[int, int], PixelRecord] = {}
        for shard, recs in read_pixel_records(self.dst).items():
            for rec in recs:
                records[(shard, rec.row)] = rec
        instances: dict[str, Instance] = {}
        rows_in_shard: dict[int, int] = defaultdict(int)
        for row in iter_instances(self.dst):
            shard = int(row["shard"])
            index = rows_in_shard[shard]
            rows_in_shard[shard] += 1
            if row["status"] != "written" or not row["sop_instance_uid"]:
                continue
            uid = str(row["sop_instance_uid"])
            instances[uid] = Instance(
                shard=shard, row=index, output_path=str(row["output_path"]), sop_instance_uid=uid,
                series_instance_uid=str(row["series_instance_uid"]), study_instance_uid=str(row["study_instance_uid"]),
                modality=str(row["modality"]), input_digest=str(row["input_digest"]), run_id=str(row["run_id"]),
                recipe=f"{row['recipe_name']} {row['recipe_version']}", recipe_hash=str(row["recipe_hash"]),
                pixel_redaction=bool(row["pixel_redaction"]), record=records.get((shard, index)),
            )
        self._instances = instances
        self._summary = summarize(self.dst)
        self._shown = {}
        self._stamp = stamp

    def summary(self) -> AuditSummary:
        with self._lock:
            self._refresh()
            assert self._summary is not None
            return self._summary

    def instances(self) -> list[Instance]:
        with self._lock:
            self._refresh()
            return list(self._instances.values())

    def instance(self, uid: str) -> Instance:
        with self._lock:
            self._refresh()
            try:
                return self._instances[uid]
            except KeyError:
                raise KeyError(f"no written instance {uid!r} in this run") from None

    def overview(self) -> dict[str, Any]:
        """The run at a glance: what ``veil audit DST`` prints, without any path."""
        s = self.summary()
        recipe = self.manifest.get("recipe") or {}
        runs = self.manifest.get("runs") or [{"run_id": self.manifest.get("run_id")}]
        return {
            "run_ids": [r.get("run_id") for r in runs if isinstance(r, dict)],
            "recipe": {"name": recipe.get("name"), "version": recipe.get("version"), "hash": recipe.get("hash")},
            "veil_version": self.manifest.get("veil_version"),
            "key_id": self.manifest.get("key_id"),
            "sealing": self.sealing,
            "files": s.files, "written": s.written, "quarantined": s.quarantined, "skipped": s.skipped,
            "pixel_redacted": s.pixel_redacted,
            "reasons": dict(s.reasons),
            "verify": self.verify_summary(),
        }

    def verify_summary(self) -> dict[str, Any] | None:
        """The verdict and counts of a ``veil verify`` JSON report given to the server (never its paths)."""
        if self.verify_report is None:
            return None
        try:
            data = json.loads(self.verify_report.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return {"error": f"cannot read the verify report ({type(exc).__name__})"}
        counts = data.get("counts") or {}
        return {"verdict": data.get("verdict"), "recipe": data.get("recipe"), "key_id": data.get("key_id"),
                "findings": counts.get("findings"), "by_category": counts.get("findings_by_category") or {},
                "outputs": counts.get("outputs"), "inputs": counts.get("inputs")}

    def quarantined(self) -> list[dict[str, Any]]:
        """Every quarantined row (digest and reason, as ``veil audit`` lists them) and whether a copy is kept."""
        folder = quarantine_dir(self.dst)
        out = []
        for digest, reason in self.summary().quarantine:
            sealed = (folder / f"{digest}.dcm.sealed").is_file()
            out.append({"input_digest": digest, "reason": reason, "sealed": sealed,
                        "copy": sealed or (folder / f"{digest}.dcm").is_file()})
        return out

    def quarantined_original(self, digest: str) -> bytes:
        """The refused original: the clear copy, or the sealed one opened with the custodian key."""
        from veil.audit.quarantine import read_quarantined

        if digest not in {d for d, _ in self.summary().quarantine}:
            raise KeyError(f"no quarantined input {digest[:12]}…")
        folder = quarantine_dir(self.dst)
        if (folder / f"{digest}.dcm.sealed").is_file():
            if self.custodian is None:
                raise PermissionError("this original is sealed to the custodian: start review with --custodian-key")
            return read_quarantined(self.dst, digest, self.custodian)
        clear = folder / f"{digest}.dcm"
        if not clear.is_file():
            raise KeyError("no copy of this original was kept (quarantine list, or purged)")
        return clear.read_bytes()

    # --- files --------------------------------------------------------------------------------------------

    def output_file(self, inst: Instance) -> Path:
        path = (self.dst / inst.output_path).resolve()
        if self.dst not in path.parents:
            raise AuditError("an audit row names an output outside DST")
        return path

    def output_dataset(self, inst: Instance) -> Dataset:
        return frames.read_dataset(self.output_file(inst))

    def source_file(self, inst: Instance) -> Path | None:
        """The instance's input in SRC, found by its keyed path digest (needs SRC and the run key)."""
        if self.src is None or self.key is None:
            return None
        with self._lock:
            if self._sources is None:
                self._sources = dict(self._digests())
            return self._sources.get(inst.input_digest)

    def _digests(self) -> Iterator[tuple[str, Path]]:
        assert self.src is not None and self.key is not None
        audit = self.key.subkey("audit")
        for folder, dirs, files in os.walk(self.src):
            dirs[:] = [d for d in dirs if d != ".veil"]
            for name in files:
                path = Path(folder) / name
                yield input_digest(audit, os.path.relpath(path, self.src)), path

    def shown(self, inst: Instance) -> str:
        """The digest of what the reviewer is shown for ``inst``: its output bytes and its boxes. A rerun that
        changes either makes an earlier decision on it stale (pending again)."""
        path = self.output_file(inst)
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._shown.get(inst.sop_instance_uid)
            if cached is not None and cached[0] == stamp:
                return cached[1]
        content = hashlib.sha256(path.read_bytes()).hexdigest()
        digest = shown_digest(content, json.dumps(inst.boxes, sort_keys=True), inst.recipe_hash)
        with self._lock:
            self._shown[inst.sop_instance_uid] = (stamp, digest)
        return digest

    # --- images -------------------------------------------------------------------------------------------

    def after_png(self, inst: Instance, frame: int = 0, window: str | None = None) -> bytes:
        return frames.render_png(self.output_dataset(inst), frame, window)

    def before_png(self, inst: Instance, frame: int = 0, window: str | None = None) -> bytes | None:
        """The frame before redaction, in memory only: from SRC with the key (full size), else the sealed
        before-thumbnail opened with the key it was sealed to; None when neither can be had."""
        source = self.source_file(inst)
        if source is not None and self.can_open_originals:
            return frames.render_png(frames.read_dataset(source), frame, window)
        thumb = self.before_thumbnail(inst)
        return frames.png_bytes(thumb) if thumb is not None else None

    def before_thumbnail(self, inst: Instance) -> Any:
        if inst.record is None or not self.can_open_originals:
            return None
        opener: Any = self.custodian if self.sealing == "custodian" else self.key
        records = read_pixel_records(self.dst, inst.shard, key=opener).get(inst.shard, [])
        for rec in records:
            if rec.row == inst.row:
                return rec.before
        return None

    def frame_info(self, inst: Instance) -> dict[str, Any]:
        ds = self.output_dataset(inst)
        presets = frames.windows(ds)
        return {"frames": frames.frame_count(ds), "rows": int(ds.get("Rows", 0) or 0),
                "columns": int(ds.get("Columns", 0) or 0), "windows": [w.name for w in presets]}

    def series(self, series_uid: str) -> list[Instance]:
        return sorted((i for i in self.instances() if i.series_instance_uid == series_uid),
                      key=lambda i: (i.shard, i.row))

    def projection_png(self, series_uid: str, kind: str = "max") -> bytes:
        members = self.series(series_uid)
        if not members:
            raise KeyError(f"no series {series_uid!r} in this run")
        return frames.projection_png([self.output_dataset(i) for i in members], kind)

    def defaced_instance(self, series_uid: str) -> Instance | None:
        """The instance of a defaced series that carries its renderings (the series' first), or None."""
        return next((i for i in self.series(series_uid) if i.defaced), None)

    def deface_record(self, series_uid: str) -> dict[str, Any] | None:
        """The series record of a defaced series (``deface/series-NNNNNN.json``: plane, fraction removed,
        method and version; no value from the files), or None when the series was not defaced."""
        inst = self.defaced_instance(series_uid)
        if inst is None:
            return None
        path = deface_dir(self.dst) / f"series-{inst.shard:06d}.json"
        try:
            with open(path, encoding="utf-8") as fh:
                record = json.load(fh)
        except (OSError, ValueError) as exc:
            raise AuditError(f"{path}: the defacing record cannot be read ({type(exc).__name__})") from exc
        return dict(record) if isinstance(record, dict) else None

    def rendering_png(self, series_uid: str, which: str = "after") -> bytes | None:
        """The frontal surface rendering of a defaced series from the audit: ``after`` (kept in clear, the face
        removed) or ``before`` (sealed: only with the key it was sealed to); None when there is none to show."""
        inst = self.defaced_instance(series_uid)
        if inst is None or inst.record is None:
            return None
        if which == "after":
            image = inst.record.thumbnail
        elif which == "before":
            image = self.before_thumbnail(inst)
        else:
            raise VeilError(f"rendering {which!r}: 'after' or 'before'")
        return frames.png_bytes(image) if image is not None else None

    # --- header -------------------------------------------------------------------------------------------

    def compiled_recipe(self) -> CompiledRecipe | None:
        """The recipe the header diff and proposals use: ``--recipe``, else the run's recipe by name when it is a
        shipped one with the same content hash; None when neither can be had."""
        with self._lock:
            if self._compiled is None:
                from veil.recipes import compile_recipe

                spec = self.recipe_spec or str((self.manifest.get("recipe") or {}).get("name") or "")
                if not spec:
                    return None
                try:
                    compiled = compile_recipe(spec)
                except VeilError:
                    if self.recipe_spec is not None:
                        raise
                    return None
                if self.recipe_spec is None and compiled.recipe.content_hash != (self.manifest.get("recipe")
                                                                                 or {}).get("hash"):
                    return None
                self._compiled = compiled
            return self._compiled

    def header(self, inst: Instance) -> HeaderView:
        """Every element before / after / action / rule: ``veil inspect`` of the input (SRC, recipe and key), else
        the run's change records (originals only with the key they were sealed to), else the output alone."""
        source = self.source_file(inst)
        compiled = self.compiled_recipe() if source is not None else None
        if source is not None and compiled is not None and self.key is not None:
            from veil.keys import KeyedFunctions
            from veil.preview.inspect import inspect_file

            functions = KeyedFunctions(self.key, **compiled.key_parameters)
            shown = inspect_file(source, compiled, functions)
            rows = tuple(HeaderRow(r.path, r.tag, r.keyword, r.vr, r.before if self.can_open_originals else None,
                                   r.after, r.action, r.rule, r.present_after) for r in shown.rows)
            return HeaderView(rows, "inspect", "opened" if self.can_open_originals else "sealed")
        opener: Any = None
        if self.can_open_originals:
            from veil.audit.changes import audit_seal

            opener = self.custodian if self.sealing == "custodian" else audit_seal(self.key)  # type: ignore[arg-type]
        try:
            changes = read_changes(self.dst, inst.shard, opener).get(inst.shard, [])
        except AuditError:
            changes = []
        for change in changes:
            if change.row == inst.row and change.run_id == inst.run_id:
                rows = tuple(HeaderRow(c.path, c.tag, c.keyword, c.vr, c.before, c.after, c.action, c.rule,
                                       c.present_after) for c in change.elements)
                return HeaderView(rows, "change-records", change.originals)
        return HeaderView(self._output_rows(inst), "output", "none")

    def _output_rows(self, inst: Instance) -> tuple[HeaderRow, ...]:
        from veil.audit.changes import display_value

        ds = self.output_dataset(inst)
        rows = []
        for element in ds.iterall():
            keyword = element.keyword or ""
            rows.append(HeaderRow(f"({element.tag.group:04X},{element.tag.element:04X})",
                                  f"({element.tag.group:04X},{element.tag.element:04X})", keyword, element.VR or "",
                                  None, display_value(ds, element.tag) if element.tag in ds else "", "?",
                                  "unknown: the run kept no change records", True))
        return tuple(rows)

    def signature(self, inst: Instance) -> dict[str, Any]:
        """The device signature a proposed pixel rule matches: Modality, Rows, Columns always (a recipe keeps
        them), Manufacturer and model only where the input's value is known (from SRC, or a change record that
        kept it); a value left out widens the match, which blanks more, never less."""
        ds = self.output_dataset(inst)
        out: dict[str, Any] = {"Modality": str(ds.get("Modality", "") or inst.modality),
                               "Rows": int(ds.get("Rows", 0) or 0), "Columns": int(ds.get("Columns", 0) or 0)}
        source = self.source_file(inst)
        if source is not None:
            return input_signature(frames.read_dataset(source))
        try:
            changes = read_changes(self.dst, inst.shard, None).get(inst.shard, [])
        except AuditError:
            changes = []
        kept = {c.keyword: c.after for change in changes if change.row == inst.row
                for c in change.elements if c.action == "KEEP" and c.present_after and "[" not in c.path}
        for keyword in ("Manufacturer", "ManufacturerModelName"):
            if kept.get(keyword, "").strip():
                out[keyword] = kept[keyword].strip()
        return out

    # --- sampling -----------------------------------------------------------------------------------------

    def sample(self, mode: str, n: int = 1, seed: int = 0) -> list[str]:
        """A review sample of instance UIDs: ``signature`` (N per Modality/Rows/Columns and source),
        ``series`` (one per series), ``random`` (N of all), ``redacted`` (every redacted one)."""
        items = sorted(self.instances(), key=lambda i: (i.shard, i.row))
        rng = random.Random(seed)
        if mode == "random":
            return [i.sop_instance_uid for i in rng.sample(items, min(n, len(items)))]
        if mode == "redacted":
            return [i.sop_instance_uid for i in items if i.pixel_redaction]
        groups: dict[tuple[str, ...], list[Instance]] = defaultdict(list)
        for i in items:
            if mode == "series":
                groups[(i.series_instance_uid,)].append(i)
            elif mode == "signature":
                size = (i.record.rows, i.record.columns) if i.record is not None else (0, 0)
                groups[(i.modality, str(size), source_kind(i.source) if i.record else "")].append(i)
            else:
                raise ValueError(f"unknown sample {mode!r}: signature, series, random or redacted")
        per = 1 if mode == "series" else max(1, n)
        return [i.sop_instance_uid for group in groups.values() for i in rng.sample(group, min(per, len(group)))]


def input_signature(ds: Any) -> dict[str, Any]:
    """The device signature of an input's header (every value known: it is the input)."""
    out: dict[str, Any] = {"Modality": str(ds.get("Modality", "") or "").strip(),
                           "Rows": int(ds.get("Rows", 0) or 0), "Columns": int(ds.get("Columns", 0) or 0)}
    for keyword in ("Manufacturer", "ManufacturerModelName"):
        value = str(ds.get(keyword, "") or "").strip()
        if value:
            out[keyword] = value
    return out
