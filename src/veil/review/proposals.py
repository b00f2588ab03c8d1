"""Proposed rules: what a reviewer wants changed becomes a recipe rule in a site layer, never an edited output.

A drawn box becomes a pixel rule matched on the device signature (:data:`veil.review.model.SIGNATURE_KEYS`),
its region rounded outward to whole image pixels (never shrinking what was drawn). A header row becomes a recipe
rule (remove, empty, clean). Pending proposals live in ``DST/.veil/review/proposals.json`` (mode 0600; they hold
regions and keywords, no values). Saving them writes a **site layer**: a recipe that ``extends`` the run's
recipe, version bumped, with a comment naming the operator and date; it is written outside DST, and only after it
compiles, so a layer that cannot run is never left behind. The user then reruns with it.

Pixel rules are first-match (:mod:`veil.recipes.pixelrules`) and a rule's fixed regions replace text detection
for the images it matches (:mod:`veil.pixels.screen`). So a new rule must not blank less than the run did: it
carries the regions of every rule of the recipe that could match the same signature, and the boxes that were
blanked on the instance it was drawn on, besides the new box.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from veil.audit.layout import atomic_file, veil_dir
from veil.audit.schema import iso_time
from veil.errors import VeilError

__all__ = ["HEADER_ACTIONS", "Proposal", "ProposalError", "Proposals", "bump_version", "layer_text",
           "pixel_regions", "rerun_command", "round_box", "save_layer"]

HEADER_ACTIONS = ("remove", "empty", "clean")
_KEYWORD = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")
_TAG = re.compile(r"\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)")
_MARK = "# veil review site layer"


class ProposalError(VeilError):
    """A proposal that cannot be made or a layer that cannot be written; the message says why."""


def round_box(x0: float, y0: float, x1: float, y1: float, rows: int, columns: int) -> tuple[int, int, int, int]:
    """(x, y, width, height) in whole image pixels covering the drawn box: floor of the start, ceiling of the
    end (outward, so every pixel the box touches is inside), clipped to the image."""
    values = (x0, y0, x1, y1)
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
        raise ProposalError("a box is four finite numbers in image pixels")
    left, right = sorted((float(x0), float(x1)))
    top, bottom = sorted((float(y0), float(y1)))
    x, y = max(0, math.floor(left)), max(0, math.floor(top))
    x_end, y_end = min(columns, math.ceil(right)), min(rows, math.ceil(bottom))
    if x_end <= x or y_end <= y:
        raise ProposalError("the box is empty or outside the image")
    return x, y, x_end - x, y_end - y


def _could_match(rule: Any, signature: Mapping[str, Any]) -> bool:
    """Whether ``rule`` may match an image of ``signature``: every keyword it names that the signature holds
    matches; one the signature does not hold (not known from the output) may match."""
    import fnmatch

    for keyword, patterns in rule.match:
        if keyword not in signature:
            continue
        value = str(signature[keyword]).strip().upper()
        if not any(fnmatch.fnmatchcase(value, p.upper()) for p in patterns):
            return False
    return True


def pixel_regions(policy: Any, signature: Mapping[str, Any], drawn: tuple[int, int, int, int],
                  blanked: Sequence[tuple[int, int, int, int, int]], frame: int | None
                  ) -> tuple[list[tuple[int, int, int, int]], tuple[int, ...] | None]:
    """The regions and frames of a rule that blanks ``drawn`` (on ``frame``, or every frame for None) and never
    less than today: the regions of every rule of ``policy`` that could match ``signature``, and the boxes
    ``blanked`` on this instance (frame, x, y, width, height), since the new rule, matched first, replaces them
    and any text detection for the signature. Ultrasound data-region rules cannot be carried into a box rule:
    such a proposal is refused."""
    regions: list[tuple[int, int, int, int]] = []
    for rule in policy.rules:
        if not _could_match(rule, signature):
            continue
        if rule.ultrasound_regions:
            raise ProposalError("images of this signature are redacted by their ultrasound data regions; a box "
                                "rule would replace that: edit the recipe's pixels section by hand instead")
        regions.extend(rule.regions)
    if policy.ultrasound_regions and str(signature.get("Modality", "")).upper() == "US":
        raise ProposalError("ultrasound images are redacted by their data regions (pixels.ultrasound_regions); "
                            "a box rule would replace that: edit the recipe's pixels section by hand instead")
    regions.extend((x, y, w, h) for _, x, y, w, h in blanked)
    frames: tuple[int, ...] | None = None if regions or frame is None else (frame,)
    regions.append(drawn)
    unique = list(dict.fromkeys(regions))
    return unique, frames


@dataclass(frozen=True)
class Proposal:
    """One pending rule. ``kind`` "pixel": ``match``, ``regions`` and ``frames`` (None: every frame); "header":
    ``element`` (keyword or ``(gggg,eeee)``) and ``action``."""

    id: str
    kind: str
    time: str
    operator: str
    instance: str
    note: str = ""
    match: dict[str, Any] | None = None
    regions: tuple[tuple[int, int, int, int], ...] = ()
    frames: tuple[int, ...] | None = None
    element: str = ""
    action: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["regions"] = [list(r) for r in self.regions]
        out["frames"] = None if self.frames is None else list(self.frames)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Proposal:
        frames = data.get("frames")
        return cls(id=str(data["id"]), kind=str(data["kind"]), time=str(data["time"]),
                   operator=str(data["operator"]), instance=str(data["instance"]), note=str(data.get("note", "")),
                   match=dict(data["match"]) if data.get("match") else None,
                   regions=tuple(tuple(int(v) for v in r) for r in data.get("regions") or ()),  # type: ignore[misc]
                   frames=None if frames is None else tuple(int(f) for f in frames),
                   element=str(data.get("element", "")), action=str(data.get("action", "")))

    def describe(self) -> str:
        if self.kind == "pixel":
            where = "every frame" if self.frames is None else f"frames {list(self.frames)}"
            return f"blank {[list(r) for r in self.regions]} on {where} of {self.match}"
        return f"{self.action} {self.element}"


class Proposals:
    """The pending proposals of a DST, kept in ``.veil/review/proposals.json`` (locked, atomic rewrites)."""

    def __init__(self, dst: str | os.PathLike[str]) -> None:
        self.path = veil_dir(os.fspath(dst)) / "review" / "proposals.json"

    @contextmanager
    def _locked(self) -> Iterator[list[dict[str, Any]]]:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = os.open(self.path.with_name(".proposals.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            items = self._read()
            before = json.dumps(items, sort_keys=True)
            yield items
            if json.dumps(items, sort_keys=True) != before:
                with atomic_file(self.path) as fh:
                    fh.write((json.dumps({"version": 1, "pending": items}, indent=1, sort_keys=True) + "\n").encode())
                os.chmod(self.path, 0o600)
        finally:
            os.close(lock)

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise ProposalError(f"{self.path.name}: damaged ({exc.__class__.__name__})") from None
        pending = data.get("pending") if isinstance(data, dict) else None
        if not isinstance(pending, list):
            raise ProposalError(f"{self.path.name}: not a proposals file")
        return pending

    def pending(self) -> list[Proposal]:
        return [Proposal.from_dict(p) for p in self._read()]

    def add_pixel(self, *, operator: str, instance: str, match: Mapping[str, Any],
                  regions: Sequence[tuple[int, int, int, int]], frames: Sequence[int] | None, note: str = "",
                  now: float | None = None) -> Proposal:
        if not regions:
            raise ProposalError("a pixel rule needs at least one region")
        proposal = Proposal(id=os.urandom(4).hex(), kind="pixel", time=_now(now), operator=operator,
                            instance=instance, note=note[:300], match=dict(match),
                            regions=tuple(tuple(int(v) for v in r) for r in regions),  # type: ignore[misc]
                            frames=None if frames is None else tuple(sorted({int(f) for f in frames})))
        with self._locked() as items:
            items.append(proposal.to_dict())
        return proposal

    def add_header(self, *, operator: str, instance: str, element: str, action: str, note: str = "",
                   now: float | None = None) -> Proposal:
        if action not in HEADER_ACTIONS:
            raise ProposalError(f"action {action!r}: one of {', '.join(HEADER_ACTIONS)}")
        if not (_KEYWORD.fullmatch(element) or _TAG.fullmatch(element)):
            raise ProposalError("the element is a keyword or a tag (gggg,eeee)")
        proposal = Proposal(id=os.urandom(4).hex(), kind="header", time=_now(now), operator=operator,
                            instance=instance, note=note[:300], element=element, action=action)
        with self._locked() as items:
            items.append(proposal.to_dict())
        return proposal

    def remove(self, ids: Sequence[str]) -> int:
        with self._locked() as items:
            kept = [p for p in items if p.get("id") not in set(ids)]
            removed = len(items) - len(kept)
            items[:] = kept
        return removed


def _now(now: float | None) -> str:
    import time

    return iso_time(int((time.time() if now is None else now) * 1_000_000))


def bump_version(version: str) -> str:
    """The next version: the last number raised by one ("1" -> "2", "1.2" -> "1.3"), else ".1" appended."""
    match = re.fullmatch(r"(.*?)(\d+)", version.strip())
    if match is None:
        return f"{version.strip() or '0'}.1"
    return f"{match.group(1)}{int(match.group(2)) + 1}"


def _rule_for(proposal: Proposal) -> dict[str, Any]:
    if _TAG.fullmatch(proposal.element):
        return {"tag": proposal.element.upper(), "action": proposal.action}
    return {"keyword": proposal.element, "action": proposal.action}


def _pixel_rule(proposal: Proposal) -> dict[str, Any]:
    assert proposal.match is not None
    rule: dict[str, Any] = {"name": f"review {proposal.id}", "match": dict(proposal.match),
                            "regions": [list(r) for r in proposal.regions]}
    if proposal.frames is not None:
        rule["frames"] = list(proposal.frames)
    return rule


def layer_text(*, base: str, base_version: str, existing: str | None, proposals: Sequence[Proposal],
               operator: str, when: str, name: str) -> tuple[str, str]:
    """The site layer's YAML (and its version): ``existing`` (a layer veil review wrote before) with the
    proposals added and its version bumped, else a new layer ``name`` extending ``base``. Pixel rules go first
    (first match wins), header rules replace one for the same element."""
    comments: list[str] = [_MARK]
    if existing is not None:
        data = yaml.safe_load(existing) or {}
        if not isinstance(data, dict):
            raise ProposalError("the existing site layer is not a recipe")
        comments = [line for line in existing.splitlines() if line.startswith("#")] or comments
        version = bump_version(str(data.get("version", "0")))
    else:
        data = {"name": name, "version": "1", "extends": base,
                "description": f"site rules from veil review over {base} {base_version}"}
        version = "1"
    data["version"] = version
    data.setdefault("rules", [])
    pixel_rules = [_pixel_rule(p) for p in proposals if p.kind == "pixel"]
    if pixel_rules:
        pixels = data.setdefault("pixels", {})
        pixels["rules"] = pixel_rules + list(pixels.get("rules") or [])
    header = [p for p in proposals if p.kind == "header"]
    if header:
        rules = list(data.get("rules") or [])
        for p in header:
            new = _rule_for(p)
            key = ("tag", new["tag"]) if "tag" in new else ("keyword", new["keyword"])
            rules = [r for r in rules if (r.get(key[0]) != key[1])] + [new]
        data["rules"] = rules
    comments.append(f"# version {version}, {when}, {operator}: " + "; ".join(
        f"{p.describe()} (from instance {p.instance})" for p in proposals))
    ordered = {k: data[k] for k in ("name", "version", "extends", "description") if k in data}
    ordered.update({k: v for k, v in data.items() if k not in ordered})
    body = yaml.safe_dump(ordered, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)
    return "\n".join(comments) + "\n" + body, version


def save_layer(path: str | os.PathLike[str], text: str, dst: str | os.PathLike[str]) -> Any:
    """Writes the layer at ``path`` (outside DST) only after it compiles; returns the compiled recipe. A layer
    that does not compile raises ProposalError with the recipe's own message and writes nothing."""
    from veil.recipes import compile_recipe

    target = Path(path).resolve()
    dst_real = Path(dst).resolve()
    if target == dst_real or dst_real in target.parents:
        raise ProposalError("the site layer must be written outside DST (DST is what gets shared)")
    if not target.parent.is_dir():
        raise ProposalError(f"{target.parent}: no such folder for the site layer")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".yml", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            compiled = compile_recipe(tmp)
        except VeilError as exc:
            raise ProposalError(f"the site layer does not compile, nothing written: {exc}") from None
        os.replace(tmp, target)
        os.chmod(target, 0o644)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return compiled


def is_site_layer(path: str | os.PathLike[str]) -> bool:
    try:
        return Path(path).read_text(encoding="utf-8").startswith(_MARK)
    except OSError:
        return False


def rerun_command(*, src: str | None, dst: str, layer: str, key: str | None, manifest: Mapping[str, Any]) -> str:
    """The command that reruns the job with the site layer (the same DST; sealing and records as before)."""
    import shlex

    words = ["veil", "run", src or "SRC", dst, "--recipe", layer, "--key", key or "KEYFILE"]
    custodian = manifest.get("custodian")
    if isinstance(custodian, dict):
        words += ["--custodian-public", f"{custodian.get('name', 'CUSTODIAN')}.pub"]
    if manifest.get("change_records"):
        words.append("--change-records")
    if manifest.get("reid_table"):
        words += ["--reid-table", "REID_TABLE"]
    return " ".join(shlex.quote(w) for w in words)
