"""The leak scan: every byte of every output searched at once for every identifying value (Aho-Corasick over
case-folded bytes), each match named by its element path (:func:`locate`) or byte offset, and judged.

**Judging a match** (issue 13: a verifier that cries wolf on clean output will be switched off). A match in
an output whose input belongs to patient P:

* a value of P's own (or of an output whose patient is unknown): an **error** when it stands as a token of
  its own (:func:`~veil.verification.identifiers.token_bounded`; ``_`` separates tokens, as the cleaner
  splits them), vocabulary words included (a patient named BROWN); inside a longer token, a note;
* a value of other patients only: an **error** only when it is 5 characters or more, a whole word with ``_``
  a word character (:func:`~veil.verification.identifiers.word_bounded`: ``RIS`` is no word of
  ``SIEMENS_RIS``), not a word of veil's vocabulary (:mod:`veil.recipes.vocabulary`, with the recipe's
  extension), not a word of the input set's device names (Manufacturer, ManufacturerModelName,
  SoftwareVersions of any input), not inside a URL, and not a number inside a date, time or number value
  or a file name (a shifted date that falls on another patient's birthday, a file numbered as another's
  station); everything else a note;
* either way a note, in a public attribute the recipe keeps (the cleaner never touches it): one of its
  values whole (a family name that is also an Ethnic Group), a match inside its binary data (an ICC profile's
  ``XYZ`` tag), a vocabulary word (an institution's ``Imaging`` in a code meaning), and a word of the device
  names inside a device attribute; and any match inside a value veil writes itself (the recipe's name in
  DeidentificationMethod: ``hipaa-safe-harbor`` is no one's address).

Each element (or file name) with matches gives one finding: its path, the kinds of identity value matched,
and why it is an error or a note; never the value, not even masked.
"""

from __future__ import annotations

import functools
import mmap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import ahocorasick

from veil.core.dataset import Node, read_dataset, walk_dataset
from veil.core.identity import DEVICE_TAGS, split_words
from veil.core.part10 import PIXEL_DATA_TAGS, ParseError, read_part10, walk_elements
from veil.core.plan import Action, Plan, explain_rule
from veil.verification.identifiers import (
    IdentifierSet,
    fold,
    left_ok,
    mask_value,
    right_ok,
    token_bounded,
    word_bounded,
)
from veil.verification.report import Finding

__all__ = ["FILE_NAME", "LeakScanner", "Match", "Region", "Verdict", "locate", "scan_regions"]

_OTHER_MIN = 5  # another patient's value: shorter matches are notes
_NUMERIC_VRS = frozenset({"DA", "DT", "TM", "IS", "DS", "AS"})
FILE_NAME = "file name"  # judge_text's ``vr`` for an output's file name (files are numbered: 000001.dcm)
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})


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
    """A pattern found in a file's bytes, before its element is named, with its boundaries in the stream."""

    pattern: str  # the folded text
    where: str
    offset: int
    token: bool = True  # token_bounded in the stream
    word: bool = True  # word_bounded in the stream
    url: bool = False  # inside a URL in the stream


@dataclass(frozen=True)
class Verdict:
    """How one match is judged: an error or a note, and why (never the value)."""

    error: bool
    kinds: frozenset[str]
    reason: str


@functools.cache
def _default_known() -> Callable[[str], bool]:
    try:
        from veil.recipes.vocabulary import known
    except ImportError:  # pragma: no cover - the vocabulary ships with veil
        return lambda word: False
    return known


def vocabulary_check(extra: Iterable[str] = ()) -> Callable[[str], bool]:
    """``known(word)`` of veil's vocabulary extended by a recipe's ``vocabulary:`` words."""
    extra = tuple(extra)
    if not extra:
        return _default_known()
    try:
        from veil.recipes.vocabulary import Vocabulary
    except ImportError:  # pragma: no cover
        words = {w.lower() for w in extra}
        return lambda word: word.lower() in words
    return Vocabulary(extra).known


def _in_url(s: str, i: int, j: int) -> bool:
    """Whether s[i:j] lies inside a URL (``scheme://...`` or ``www....``, up to white space or a control
    byte): a public resource's address, not a person's value."""
    start = i
    while start > 0 and "!" <= s[start - 1] <= "~" and s[start - 1] != "\\":
        start -= 1
    stop = j
    while stop < len(s) and "!" <= s[stop] <= "~" and s[stop] != "\\":
        stop += 1
    token = s[start:stop]
    return "://" in token or token.startswith("www.")


class LeakScanner:
    """Searches bytes for every identifying value at once (Aho-Corasick over case-folded bytes) and judges
    each match (see the module docstring)."""

    def __init__(self, identifiers: IdentifierSet, known: Callable[[str], bool] | None = None) -> None:
        self.patterns = identifiers.patterns
        self.device_words = frozenset(identifiers.device_words)
        self.known = known if known is not None else _default_known()
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
                j = i + len(key)
                matches.append(
                    Match(
                        key,
                        region.where,
                        region.start + i,
                        token_bounded(text, i, j, stream=True),
                        word_bounded(text, i, j, stream=True),
                        _in_url(text, i, j),
                    )
                )
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

    # -- judging --

    def device_word(self, key: str) -> bool:
        """Whether every word of a match is a word of the input set's device names."""
        words = split_words(key.encode("latin-1"))
        return bool(words) and all(w in self.device_words for w in words)

    def judge(
        self,
        key: str,
        patient: int | None,
        *,
        token: bool,
        word: bool,
        url: bool = False,
        vr: str = "",
        kept: bool = False,
        kept_whole: bool = False,
        device_attribute: bool = False,
    ) -> Verdict:
        """The verdict on one match of ``key`` in an output of ``patient`` (None: unknown, judged as the
        patient's own). ``token``/``word``: whether the match is token- or word-bounded where it was found."""
        pattern = self.patterns[key]
        kinds = frozenset(pattern.kinds)
        if kept_whole:
            return Verdict(False, kinds, "a whole value or binary data of an attribute the recipe keeps")
        if device_attribute and self.device_word(key):
            return Verdict(False, kinds, "a word of the device's name, in an attribute the recipe keeps")
        if patient is None or patient in pattern.patients:
            if not token:
                return Verdict(False, kinds, "a value of this output's own patient inside a longer token")
            if kept and self.known(key):
                return Verdict(False, kinds, "a vocabulary word of this output's own patient's value, in an "
                               "attribute the recipe keeps")  # fmt: skip
            return Verdict(True, kinds, "a value of this output's own patient")
        who = _who(pattern.patients)
        if (vr in _NUMERIC_VRS or vr == FILE_NAME) and _numeric(key):
            reason = "a date or number equal to a value of another patient"
        elif len(key) < _OTHER_MIN:
            reason = "shorter than 5 characters"
        elif not word:
            reason = "inside a longer word"
        elif self.device_word(key):
            reason = "a word of the input set's device names"
        elif self.known(key):
            reason = "a vocabulary word"
        elif url:
            reason = "inside a URL"
        else:
            return Verdict(True, kinds, f"a whole word of a value of {who}")
        return Verdict(False, kinds, f"{reason}, of {who} (a coincidence?)")

    def judge_text(
        self,
        text: str,
        patient: int | None,
        *,
        wanted: set[str] | None = None,
        vr: str = "",
        kept: bool = False,
        device_attribute: bool = False,
    ) -> tuple[bool, str, str] | None:
        """The one finding a value (or a file name) gives: (error, kinds, reason), or None without a match.
        ``kept``: the value is a public attribute's the recipe keeps: a match that is one of its values whole,
        inside its binary data (an ICC profile's ``XYZ`` tag) or a vocabulary word is a note."""
        verdicts: list[Verdict] = []
        values = {v.strip(" \x00") for v in text.split("\\")} if kept else set()
        for key, i in self.search_text(text):
            if wanted is not None and key not in wanted:
                continue
            j = i + len(key)
            verdicts.append(
                self.judge(
                    key,
                    patient,
                    token=token_bounded(text, i, j),
                    word=word_bounded(text, i, j),
                    url=vr == "UR" or _in_url(text, i, j),
                    vr=vr,
                    kept=kept,
                    kept_whole=key in values or (kept and vr in _BINARY_VRS),
                    device_attribute=device_attribute,
                )
            )
        return _merge(verdicts)


def _merge(verdicts: list[Verdict]) -> tuple[bool, str, str] | None:
    """One finding from the verdicts on one element's matches: an error if any is one."""
    if not verdicts:
        return None
    errors = [v for v in verdicts if v.error]
    chosen = errors or verdicts
    kinds = ", ".join(sorted({k for v in chosen for k in v.kinds}))
    reasons = "; ".join(dict.fromkeys(v.reason for v in chosen))
    return bool(errors), kinds, reasons


def _written_by_veil(inserted: Iterable[Any]) -> set[tuple[int, str]]:
    """(tag, folded value) of every text element the Plan inserts, at any depth (PS3.15 E.1.1 marking)."""
    out: set[tuple[int, str]] = set()
    for tag, vr, value in inserted:
        if vr == "SQ":
            for item in value:
                out |= _written_by_veil(item)
        elif isinstance(value, (str, bytes)):
            raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
            out.add((tag, fold(raw).strip(" \x00")))
    return out


def _who(patients: set[int]) -> str:
    ordered = sorted(patients)
    if len(ordered) == 1:
        return f"patient {ordered[0]}"
    return f"patients {', '.join(map(str, ordered[:5]))}" + (" ..." if len(ordered) > 5 else "")


def _numeric(text: str) -> bool:
    """Digits, and date separators only (a birth date in any spelling, a number)."""
    return any(c.isdigit() for c in text) and all(c.isdigit() or c in "-/." for c in text)


def locate(
    data: bytes | mmap.mmap,
    matches: list[Match],
    scanner: LeakScanner,
    plan: Plan,
    rel: str,
    patient: int | None,
) -> list[Finding]:
    """Names the element of each match by walking the output with pydicom (only files that matched), and
    gives one judged finding per element.

    Within one value the boundary rules are exact, so a stream match that only a neighbouring byte of another
    element made (or that the exact rules reject) is dropped; a match in no element value at all (preamble,
    bytes pydicom does not show) is reported with its byte offset, judged by its place in the stream.
    """
    wanted = {m.pattern for m in matches}
    written = _written_by_veil(plan.insert)
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
            here = {key for key in wanted if key in text}
            if not here:
                continue
            contained.update(here)
            if (node.tag, text.strip(" \x00")) in written:
                kinds = ", ".join(sorted({k for key in here for k in scanner.patterns[key].kinds}))
                reason = "in a value veil writes itself (the recipe's name in DeidentificationMethod)"
                findings.append(Finding("leak", rel, node.path, node.keyword, kinds, reason, "note"))
                continue
            kept = explain_rule(plan, node.tag, node.vr, node.creator).rule.action == Action.KEEP
            public = node.tag >> 16 & 1 == 0 and node.tag >> 16 != 0x0002
            verdict = scanner.judge_text(
                text,
                patient,
                wanted=here,
                vr=node.vr,
                kept=kept and public,
                device_attribute=kept and node.tag in DEVICE_TAGS,
            )
            if verdict is not None:
                error, kinds, reason = verdict
                findings.append(
                    Finding("leak", rel, node.path, node.keyword, kinds, reason, "error" if error else "note")
                )
    reported: set[str] = set()
    for match in matches:
        if match.pattern in contained or match.pattern in reported:
            continue
        reported.add(match.pattern)
        where = (
            "preamble"
            if match.where == "file" and match.offset < 128 and bytes(data[128:132]) == b"DICM"
            else (f"byte {match.offset} of the {match.where}")
        )
        judged = scanner.judge(match.pattern, patient, token=match.token, word=match.word, url=match.url)
        merged = _merge([judged])
        assert merged is not None
        error, kinds, reason = merged
        findings.append(Finding("leak", rel, f"({where})", "", kinds, reason, "error" if error else "note"))
    return findings
