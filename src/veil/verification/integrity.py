"""Referential integrity and kept attributes: each input paired with its output (:class:`Pair`), UIDs mapped
one to one (keyed with the key), references resolved, Patient ID pseudonyms checked, kept values unchanged."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from pydicom.dataset import Dataset

from veil.core.dataset import Node, element_bytes
from veil.core.dictionary import dictionary_entry
from veil.core.part10 import PIXEL_DATA_TAGS
from veil.core.plan import STANDARD_UID_PREFIX, Action, Plan, explain_rule
from veil.keys import KeyedFunctions
from veil.recipes import CompiledRecipe
from veil.verification.identifiers import PATIENT_ID, SOP_INSTANCE_UID
from veil.verification.report import Finding, VerifyReport

__all__ = [
    "Pair",
    "check_integrity",
    "identity_uids",
    "kept_findings",
    "pseudonym_findings",
    "uid_text",
    "uid_values",
]

_SERIES_INSTANCE_UID = 0x0020000E
_STUDY_INSTANCE_UID = 0x0020000D
_FRAME_OF_REFERENCE_UID = 0x00200052
_IDENTITY_TAGS = {
    SOP_INSTANCE_UID: "instance",
    _SERIES_INSTANCE_UID: "series",
    _STUDY_INSTANCE_UID: "study",
    _FRAME_OF_REFERENCE_UID: "frame of reference",
}
_UID_KINDS = ("instance", "series", "study", "frame of reference")


@dataclass
class Pair:
    """One input and what verify learnt of it and of its output (``output`` None: no output was read)."""

    rel: str
    identity: dict[str, str]  # kind -> original UID
    patient: int = 0  # ordinal of the input's patient
    rel_out: str = ""  # the output's path relative to DST (the input's own under the mirror layout)
    output: dict[str, str] | None = None  # kind -> output UID
    media_storage: str = ""
    patient_id: str = ""  # the input's top-level PatientID
    patient_id_out: str = ""  # the output's
    references: list[tuple[str, str, str | None]] = field(
        default_factory=list
    )  # (path, original, output value)


def uid_text(ds: Dataset, tag: int) -> str:
    """An element's value as stored, without padding, decoded as Latin-1 (byte for byte)."""
    return element_bytes(ds, tag).strip(b" \x00").decode("latin-1")


def identity_uids(ds: Dataset) -> dict[str, str]:
    """The data set's own instance, series, study and frame of reference UIDs, by kind."""
    return {kind: uid_text(ds, tag) for tag, kind in _IDENTITY_TAGS.items() if tag in ds}


def uid_values(nodes: list[Node]) -> dict[str, list[str]]:
    """Every UI value at any depth by path, except the data set's own identity at the top level."""
    out: dict[str, list[str]] = {}
    for node in nodes:
        if node.vr != "UI" or node.sequence or (node.depth == 0 and node.tag in _IDENTITY_TAGS):
            continue
        values = [v.strip(" \x00") for v in node.value_bytes().decode("latin-1").split("\\")]
        out[node.path] = values
    return out


def kept_findings(nodes: list[Node], after: Dataset, plan: Plan, rel: str) -> tuple[int, list[Finding]]:
    """Top-level public attributes the recipe keeps must hold the same bytes (a kept odd value may gain its
    padding byte, PS3.5 7.1.1)."""
    inserted = {tag for tag, _, _ in plan.insert}
    compared = 0
    findings = []
    for node in nodes:
        if node.depth:
            continue
        tag = node.tag
        if tag >> 16 & 1 or tag & 0xFFFF == 0 or tag in inserted or tag in PIXEL_DATA_TAGS or node.sequence:
            continue
        if explain_rule(plan, tag, node.vr).rule.action != Action.KEEP:
            continue
        compared += 1
        if tag not in after:
            findings.append(
                Finding("kept attribute", rel, node.path, node.keyword, detail="missing in the output")
            )
            continue
        if not _same_value(node.dataset, after, tag) and not _reencoded(node.dataset, after, tag):
            findings.append(Finding("kept attribute", rel, node.path, node.keyword, detail="value changed"))
    return compared, findings


# Attributes that describe how the pixels are encoded, with the values a decoder may hand them on: a redacted
# image is decoded and written again (say a JPEG Baseline YBR_FULL_422 ultrasound as RLE Lossless), and the
# colour space and plane order change with the encoding (PS3.5 8.2.1, PS3.3 C.7.6.3.1.2). Nothing else may.
_COLOUR_SPACES = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_ICT", "YBR_RCT"})
_PHOTOMETRIC_INTERPRETATION = 0x00280004
_PLANAR_CONFIGURATION = 0x00280006


def _reencoded(before: Dataset, after: Dataset, tag: int) -> bool:
    """Whether a changed value is the encoding of pixels written again in another transfer syntax: the
    colour space of a colour image (from one YBR or RGB form to another) or its plane order."""
    if tag not in (_PHOTOMETRIC_INTERPRETATION, _PLANAR_CONFIGURATION):
        return False
    syntax = [str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "") for ds in (before, after)]
    if not all(syntax) or syntax[0] == syntax[1]:
        return False
    if tag == _PLANAR_CONFIGURATION:
        return True
    values = [str(ds.get(tag).value if ds.get(tag) is not None else "").strip().upper() for ds in (before, after)]
    return all(v in _COLOUR_SPACES for v in values)


def _same_value(before: Dataset, after: Dataset, tag: int) -> bool:
    """Raw bytes equal (a kept odd value may gain its padding byte, PS3.5 7.1.1); where pydicom converted
    either side already (it does for a few attributes while reading), the converted values equal."""
    a, b = before.get_item(tag), after.get_item(tag)
    if isinstance(a.value, (bytes, bytearray)) and isinstance(b.value, (bytes, bytearray)):
        x, y = bytes(a.value), bytes(b.value)
        return x == y or x.rstrip(b" \x00") == y.rstrip(b" \x00")
    try:
        return bool(before[tag].value == after[tag].value)
    except Exception:
        return False


def pseudonym_findings(
    pairs: list[Pair],
    compiled: CompiledRecipe,
    functions: KeyedFunctions | None,
    reid_rows: dict[tuple[str, str], str] | None,
    findings: list[Finding],
    report: VerifyReport,
) -> None:
    """Where the recipe pseudonymises PatientID: one pseudonym per patient and one patient per pseudonym
    across the output set, no original left, and each pseudonym the right one: the keyed pseudonym of its
    original under the key, or for counter patterns (``SUBJ-{counter:6}``, numbers from the run's key
    service) the original the re-identification table gives for it. No value is written to the report."""
    if explain_rule(compiled.plan, PATIENT_ID, "LO").rule.action != Action.PSEUDO:
        return
    counter = compiled.counter is not None
    given: dict[str, set[str]] = defaultdict(set)
    owners: dict[str, set[str]] = defaultdict(set)
    checked = wrong = 0
    for pair in pairs:
        original, new = pair.patient_id, pair.patient_id_out
        if pair.output is None or not original or not new:
            continue
        where = pair.rel_out or pair.rel
        given[original].add(new)
        owners[new].add(original)
        if new == original:
            findings.append(
                Finding(
                    "integrity",
                    where,
                    "(0010,0020)",
                    "PatientID",
                    detail="original Patient ID survives though the recipe pseudonymises it",
                )
            )
            continue
        if counter and reid_rows is not None:
            expected_original = reid_rows.get(("pseudonym", new), reid_rows.get(("PatientID", new)))
            checked += 1
            if expected_original != original:
                wrong += 1
                findings.append(
                    Finding(
                        "integrity",
                        where,
                        "(0010,0020)",
                        "PatientID",
                        detail="Patient ID pseudonym is not the re-identification table's for this patient"
                        if expected_original is not None
                        else "Patient ID pseudonym is not in the re-identification table",
                    )
                )
        elif not counter and functions is not None:
            checked += 1
            # uid_text decoded the stored bytes as latin-1: encoding back gives them exactly (non-ASCII IDs too).
            if new.encode("latin-1") != functions.pseudonym(original.encode("latin-1")):
                wrong += 1
                findings.append(
                    Finding(
                        "integrity",
                        where,
                        "(0010,0020)",
                        "PatientID",
                        detail=f"Patient ID is not the keyed pseudonym of its original under key "
                        f"id {report.key_id}",
                    )
                )
    split = sum(1 for news in given.values() if len(news) > 1)
    shared = sum(1 for olds in owners.values() if len(olds) > 1)
    if split:
        findings.append(
            Finding(
                "integrity",
                f"{split} patients",
                "(0010,0020)",
                "PatientID",
                detail="a patient's files carry more than one pseudonym",
            )
        )
    if shared:
        findings.append(
            Finding(
                "integrity",
                f"{shared} pseudonyms",
                "(0010,0020)",
                "PatientID",
                detail="one pseudonym is carried by files of different patients",
            )
        )
    if given:
        how = (
            "against the re-identification table"
            if counter and reid_rows is not None
            else "against the key"
            if not counter and functions is not None
            else ""
        )
        report.notes.append(
            f"Patient ID pseudonyms: {len(given)} patients, one pseudonym each and no pseudonym shared: "
            f"{'yes' if not split and not shared else 'no'}"
            + (
                f"; {checked} checked {how}, {wrong} wrong"
                if how
                else "; counter pseudonyms: give --reid-table (with --key) to check each against the table"
                if counter
                else "; give --key to check each against the key"
            )
        )


def check_integrity(
    pairs: list[Pair],
    plan: Plan,
    functions: KeyedFunctions | None,
    findings: list[Finding],
    report: VerifyReport,
) -> int:
    """Identity, keyed UIDs, one-to-one mappings and references across the output set."""
    uid_action = {kind: explain_rule(plan, tag, "UI").rule.action for tag, kind in _IDENTITY_TAGS.items()}
    originals: dict[str, set[str]] = {kind: set() for kind in _UID_KINDS}
    mapped: dict[str, dict[str, set[str]]] = {kind: defaultdict(set) for kind in _UID_KINDS}
    inverse: dict[str, dict[str, set[str]]] = {kind: defaultdict(set) for kind in _UID_KINDS}
    key_mismatch = 0
    for pair in pairs:
        for kind, uid in pair.identity.items():
            if uid:
                originals[kind].add(uid)
        if pair.output is None:
            continue
        out_instance = pair.output.get("instance", "")
        if not out_instance and pair.identity.get("instance"):
            findings.append(
                Finding(
                    "integrity",
                    pair.rel_out or pair.rel,
                    "(0008,0018)",
                    "SOPInstanceUID",
                    detail="output has no SOPInstanceUID",
                )
            )
        elif out_instance and pair.media_storage != out_instance:
            findings.append(
                Finding(
                    "integrity",
                    pair.rel_out or pair.rel,
                    "(0002,0003)",
                    "MediaStorageSOPInstanceUID",
                    detail="MediaStorageSOPInstanceUID differs from SOPInstanceUID",
                )
            )
        for kind, original in pair.identity.items():
            if not original:
                continue
            new = pair.output.get(kind, "")
            if not new:
                continue
            mapped[kind][original].add(new)
            inverse[kind][new].add(original)
            action = uid_action[kind]
            if original.startswith(STANDARD_UID_PREFIX):
                continue
            if action == Action.UID:
                if new == original:
                    findings.append(
                        Finding(
                            "integrity",
                            pair.rel_out or pair.rel,
                            _tag_path(kind),
                            _IDENTITY_KEYWORDS[kind],
                            detail=f"original {kind} UID survives though the recipe remaps UIDs",
                        )
                    )
                elif (
                    functions is not None
                    and new != functions.uid(original.encode("ascii", "replace")).decode()
                ):
                    key_mismatch += 1
            elif action == Action.KEEP and new != original:
                findings.append(
                    Finding(
                        "integrity",
                        pair.rel_out or pair.rel,
                        _tag_path(kind),
                        _IDENTITY_KEYWORDS[kind],
                        detail=f"the recipe keeps the {kind} UID, yet it changed",
                    )
                )
    if key_mismatch:
        findings.append(
            Finding(
                "integrity",
                "(all outputs)",
                detail=(
                    f"{key_mismatch} UIDs are not the keyed UIDs of their originals under key id {report.key_id}: "
                    "the outputs were made with another key (references across runs and sites will not match)"
                ),
            )
        )
    for kind in _UID_KINDS:
        for news in mapped[kind].values():
            if len(news) > 1:
                findings.append(
                    Finding(
                        "integrity",
                        "(output set)",
                        detail=(f"one original {kind} UID became {len(news)} different UIDs"),
                    )
                )
        for new, olds in inverse[kind].items():
            if len(olds) > 1:
                findings.append(
                    Finding(
                        "integrity",
                        "(output set)",
                        detail=(f"{len(olds)} different original {kind} UIDs became the same UID {new}"),
                    )
                )
    checked = 0
    for pair in pairs:
        if pair.output is None:
            continue
        for path, original, out_value in pair.references:
            target_kind = next((k for k in _UID_KINDS if original in originals[k]), None)
            if target_kind is None:
                continue
            checked += 1
            if out_value is None:
                continue  # the recipe removed the reference
            targets = mapped[target_kind].get(original)
            if not targets:
                if functions is not None and uid_action[target_kind] == Action.UID:
                    expected = functions.uid(original.encode("ascii", "replace")).decode()
                    if out_value != expected:
                        findings.append(
                            Finding(
                                "integrity",
                                pair.rel_out or pair.rel,
                                path,
                                _keyword_at(path),
                                detail=(
                                    f"reference to a {target_kind} of the input set that has no output is not its keyed UID"
                                ),
                            )
                        )
                report.notes.append(
                    f"{pair.rel_out or pair.rel}: {path} refers to a {target_kind} whose input has no output"
                )
                continue
            if out_value == original and uid_action[target_kind] != Action.KEEP:
                findings.append(
                    Finding(
                        "integrity",
                        pair.rel_out or pair.rel,
                        path,
                        _keyword_at(path),
                        detail=f"reference still holds the original {target_kind} UID",
                    )
                )
            elif out_value not in targets:
                findings.append(
                    Finding(
                        "integrity",
                        pair.rel_out or pair.rel,
                        path,
                        _keyword_at(path),
                        detail=f"dangling reference: resolves to no output {target_kind}",
                    )
                )
    return checked


_IDENTITY_KEYWORDS = {
    "instance": "SOPInstanceUID",
    "series": "SeriesInstanceUID",
    "study": "StudyInstanceUID",
    "frame of reference": "FrameOfReferenceUID",
}


def _tag_path(kind: str) -> str:
    tag = next(t for t, k in _IDENTITY_TAGS.items() if k == kind)
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _keyword_at(path: str) -> str:
    tag = int(path[-10:-6] + path[-5:-1], 16)
    entry = dictionary_entry(tag)
    return entry[1] if entry else ""
