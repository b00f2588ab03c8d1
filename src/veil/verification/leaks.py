"""The leak scan: every byte of every output searched at once for every identifying value (Aho-Corasick over
case-folded bytes), and each match named by its element path (:func:`locate`) or byte offset."""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ahocorasick

from veil.core.dataset import Node, read_dataset, walk_dataset
from veil.core.part10 import PIXEL_DATA_TAGS, ParseError, read_part10, walk_elements
from veil.core.plan import Action, Plan, explain_rule
from veil.verification.identifiers import IdentifierSet, Pattern, fold, left_ok, mask_value, right_ok
from veil.verification.report import Finding

__all__ = ["LeakScanner", "Match", "Region", "locate", "scan_regions"]


@dataclass(frozen=True)
class Region:
    """A stretch of bytes the scan searches: in the file, or in the inflated data set of a deflated file."""

    buffer: Any
    start: int
    stop: int
    where: str  # "file" | "inflated data set"


def scan_regions(data: bytes | memoryview | mmap.mmap) -> tuple[list[Region], str | None]:
    """What to search in one file: every byte but the value of the top-level Pixel Data (Float and Double
    Float Pixel Data too). Returns the regions and, when the file cannot be walked, why (then all of it)."""
    try:
        part = read_part10(data)
    except ParseError as exc:
        return [Region(data, 0, len(data), "file")], str(exc)
    regions: list[Region] = []
    where = "file"
    if part.deflated:
        regions.append(Region(data, 0, part.meta_end, "file"))
        where = "inflated data set"
    buffer = part.dataset
    try:
        top = walk_elements(part, nested=False)
    except ParseError as exc:
        regions.append(Region(buffer, 0 if not part.deflated else part.start, len(buffer), where))
        return regions, str(exc)
    pos = 0 if not part.deflated else part.start
    for element in top:
        if element.tag in PIXEL_DATA_TAGS:
            regions.append(Region(buffer, pos, element.value, where))
            pos = element.end
    regions.append(Region(buffer, pos, len(buffer), where))
    return [r for r in regions if r.stop > r.start], None


@dataclass(frozen=True)
class Match:
    """A pattern found in a file's bytes, before its element is named."""

    pattern: str  # the folded text
    where: str
    offset: int


class LeakScanner:
    """Searches bytes for every identifying value at once (Aho-Corasick over case-folded bytes)."""

    def __init__(self, identifiers: IdentifierSet) -> None:
        self.patterns = identifiers.patterns
        self.automaton: Any = None
        if self.patterns:
            automaton = ahocorasick.Automaton()
            for text in self.patterns:
                automaton.add_word(text, text)
            automaton.make_automaton()
            self.automaton = automaton

    def search_text(self, text: str, *, stream: bool = False) -> Iterator[tuple[str, int]]:
        """(pattern, start offset) of every match in a folded text that keeps its boundary rules.

        ``stream``: the text is a stretch of a file, where a neighbour may be a tag or length byte; it counts
        as a boundary-breaking character only when text follows it. Otherwise the text is one value.
        """
        if self.automaton is None or not text:
            return
        for end, key in self.automaton.iter(text):
            pattern = self.patterns[key]
            i = end - len(key) + 1
            if left_ok(text, i, pattern.left, stream) and right_ok(text, end + 1, pattern.right, stream):
                yield key, i

    def scan(self, data: bytes | memoryview | mmap.mmap) -> tuple[list[Match], str | None]:
        """Every match in one file's scanned regions, and a note when the file could not be walked."""
        regions, problem = scan_regions(data)
        matches: list[Match] = []
        if self.automaton is None:
            return matches, problem
        for region in regions:
            text = fold(bytes(region.buffer[region.start : region.stop]))
            for key, i in self.search_text(text, stream=True):
                matches.append(Match(key, region.where, region.start + i))
        return matches, problem

    def redact(self, text: str) -> str:
        """``text`` with every identifying value in it masked (for file names shown in the report)."""
        if self.automaton is None:
            return text
        folded = text.lower()
        if len(folded) != len(text):
            return text
        out = list(text)
        for key, i in self.search_text(folded):
            masked = mask_value(text[i : i + len(key)])
            out[i : i + len(key)] = list(masked)
        return "".join(out)


def locate(
    data: bytes | mmap.mmap,
    matches: list[Match],
    scanner: LeakScanner,
    plan: Plan,
    rel: str,
    patient: int | None,
) -> list[Finding]:
    """Names the element of each match by walking the output with pydicom (only files that matched).

    Within one value the boundary rules are exact, so a stream match that only a neighbouring byte of another
    element made (or that the exact rules reject) is dropped; a match in no element value at all (preamble,
    bytes pydicom does not show) is reported with its byte offset.

    Two kinds of match are notes, not findings: the whole value of a public attribute the recipe keeps (a
    vocabulary word such as an Ethnic Group that is also a name), and a number found inside a date, time or
    number value (DA DT TM IS DS AS) of an output of another patient: a shifted date that falls on another
    patient's birthday, an instance count equal to another patient's study ID. The same number in the
    patient's own output, or anywhere else, is a finding.
    """
    wanted = {m.pattern for m in matches}
    try:
        ds = read_dataset(data, pixels=True)
    except Exception:
        ds = None
    contained: set[str] = set()
    findings: list[Finding] = []
    if ds is not None:
        nodes: list[Node] = []
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            nodes += list(walk_dataset(meta))
        nodes += list(walk_dataset(ds))
        for node in nodes:
            if node.sequence or (node.depth == 0 and node.tag in PIXEL_DATA_TAGS):
                continue
            text = fold(node.value_bytes())
            contained.update(key for key in wanted if key in text)
            hits = sorted({key for key, _ in scanner.search_text(text) if key in wanted})
            for key in hits:
                pattern = scanner.patterns[key]
                whole = text.strip(" \x00") == key
                kept = explain_rule(plan, node.tag, node.vr, node.creator).rule.action == Action.KEEP
                coincidence = whole and kept and node.tag >> 16 & 1 == 0 and node.tag >> 16 != 0x0002
                other = (
                    node.vr in _NUMERIC_VRS
                    and _numeric(key)
                    and patient is not None
                    and patient not in pattern.patients
                )
                findings.append(
                    Finding(
                        "leak",
                        rel,
                        node.path,
                        node.keyword,
                        ", ".join(sorted(pattern.kinds)),
                        mask_value(pattern.display),
                        _leak_detail(pattern, coincidence, other),
                        "note" if coincidence or other else "error",
                    )
                )
    reported: set[str] = set()
    for match in matches:
        if match.pattern in contained or match.pattern in reported:
            continue
        reported.add(match.pattern)
        pattern = scanner.patterns[match.pattern]
        where = (
            "preamble"
            if match.where == "file" and match.offset < 128 and bytes(data[128:132]) == b"DICM"
            else (f"byte {match.offset} of the {match.where}")
        )
        findings.append(
            Finding(
                "leak",
                rel,
                f"({where})",
                "",
                ", ".join(sorted(pattern.kinds)),
                mask_value(pattern.display),
                _leak_detail(pattern, False),
            )
        )
    return findings


_NUMERIC_VRS = frozenset({"DA", "DT", "TM", "IS", "DS", "AS"})


def _numeric(text: str) -> bool:
    """Digits, and date separators only (a birth date in any spelling, a number)."""
    return any(c.isdigit() for c in text) and all(c.isdigit() or c in "-/." for c in text)


def _leak_detail(pattern: Pattern, coincidence: bool, other_patient: bool = False) -> str:
    patients = sorted(pattern.patients)
    who = f"patient {patients[0]}" if len(patients) == 1 else f"patients {', '.join(map(str, patients[:5]))}"
    if other_patient:
        return f"a date or number of another patient's output equals a value of {who} (a coincidence?)"
    if coincidence:
        return f"the whole value of an attribute the recipe keeps equals a value of {who} (a coincidence?)"
    return f"identifying value of {who}"
