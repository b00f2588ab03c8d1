"""The report of ``veil verify``: :class:`Finding`, :class:`VerifyReport` as JSON, Markdown and HTML, and the
HIPAA Safe Harbor checklist (how the Plan handles each of the 18 identifiers of 45 CFR 164.514(b)(2))."""

from __future__ import annotations

import html
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom

from veil._version import __version__
from veil.core.dictionary import dictionary_entry
from veil.core.plan import Action, Plan, explain_rule

__all__ = ["EXIT_FINDINGS", "HIPAA_IDENTIFIERS", "Finding", "VerifyReport", "hipaa_checklist", "write_report"]

#: The exit code of ``veil verify`` when the report has findings.
EXIT_FINDINGS = 4


@dataclass(frozen=True)
class Finding:
    """One problem in the outputs: where (file, element path, keyword) and of what kind; never the value,
    not even masked. ``severity`` "error" fails verification; a "note" is listed only."""

    category: str  # "leak" | "integrity" | "kept attribute" | "conformance"
    file: str
    path: str = ""
    keyword: str = ""
    kind: str = ""
    detail: str = ""
    severity: str = "error"  # "error" | "note"

    def to_dict(self) -> dict[str, str]:
        return {
            "category": self.category,
            "severity": self.severity,
            "file": self.file,
            "path": self.path,
            "keyword": self.keyword,
            "kind": self.kind,
            "detail": self.detail,
        }


@dataclass
class VerifyReport:
    """Everything ``veil verify`` found; :meth:`to_dict` is the JSON report, :meth:`to_markdown` the other."""

    source: str
    destination: str
    recipe: str
    recipe_hash: str
    key_id: str | None
    counts: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    retained: dict[str, int] = field(default_factory=dict)
    checklist: list[dict[str, Any]] = field(default_factory=list)
    dciodvfy: str = ""
    files_per_second: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def passed(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else EXIT_FINDINGS

    def to_dict(self) -> dict[str, Any]:
        by_category = Counter(f.category for f in self.errors)
        return {
            "veil": __version__,
            "verdict": "pass" if self.passed else "fail",
            "source": self.source,
            "destination": self.destination,
            "recipe": self.recipe,
            "recipe_sha256": self.recipe_hash,
            "key_id": self.key_id,
            "counts": {
                **self.counts,
                "findings": len(self.errors),
                "findings_by_category": dict(by_category),
            },
            "files_per_second": round(self.files_per_second, 1),
            "findings": [f.to_dict() for f in self.findings if f.severity == "error"],
            "notes_findings": [f.to_dict() for f in self.findings if f.severity != "error"],
            "notes": self.notes,
            "not_searched_kept_by_recipe": self.retained,
            "dciodvfy": self.dciodvfy,
            "hipaa_safe_harbor": self.checklist,
        }

    def summary_lines(self) -> list[str]:
        c = self.counts
        verdict = "PASS" if self.passed else f"FAIL: {len(self.errors)} findings"
        lines = [
            f"verify: {verdict}",
            f"  recipe {self.recipe} (key id {self.key_id or '-'})",
            f"  inputs {c.get('inputs', 0)} ({c.get('patients', 0)} patients), outputs {c.get('outputs', 0)}, "
            f"{c.get('identifiers', 0)} identifying values in {c.get('patterns', 0)} spellings",
            f"  scanned {c.get('scanned_files', 0)} files ({c.get('scanned_bytes', 0) / 1e6:.1f} MB) in "
            f"{c.get('scan_seconds', 0):.2f} s ({self.files_per_second:,.0f} files/s)",
            f"  references checked {c.get('references_checked', 0)}, kept attributes compared "
            f"{c.get('kept_compared', 0)}; dciodvfy: {self.dciodvfy}",
        ]
        for category, count in sorted(Counter(f.category for f in self.errors).items()):
            lines.append(f"  {category}: {count}")
        return lines

    def to_markdown(self) -> str:
        d = self.to_dict()
        out = [
            "# veil verify report",
            "",
            f"**Verdict: {'PASS' if self.passed else 'FAIL'}** — {len(self.errors)} findings.",
            "",
            f"- Source: `{self.source}`",
            f"- Destination: `{self.destination}`",
            f"- Recipe: {self.recipe} (sha256 `{self.recipe_hash[:16]}`)",
            f"- Key id: {self.key_id or '-'}",
            f"- veil {__version__}",
            "",
            "## Counts",
            "",
            "| count | value |",
            "|---|---|",
        ]
        for k, v in d["counts"].items():
            if isinstance(v, dict):
                v = ", ".join(f"{a}: {b}" for a, b in v.items()) or "-"
            out.append(f"| {k.replace('_', ' ')} | {v} |")
        out.append(f"| files per second (scan) | {d['files_per_second']} |")
        out += ["", "## Findings", ""]
        out += _markdown_findings(self.errors) if self.errors else ["None."]
        notes = [f for f in self.findings if f.severity != "error"]
        if notes:
            out += ["", "## Notes on matches (not failures)", ""]
            out += _markdown_findings(notes)
        if self.notes:
            out += ["", "## Notes", ""] + [f"- {_md(n)}" for n in self.notes]
        out += ["", "## Not searched: kept by the recipe", ""]
        out += [f"- {k}: {v} values" for k, v in sorted(self.retained.items())] or ["Nothing."]
        out += ["", "## Conformance (dciodvfy)", "", self.dciodvfy or "-"]
        out += ["", "## HIPAA Safe Harbor checklist (45 CFR 164.514(b)(2))", ""]
        out += ["| | identifier | attributes and actions | handling |", "|---|---|---|---|"]
        for item in self.checklist:
            attributes = "; ".join(f"{a['attribute']}: {a['action']}" for a in item["attributes"]) or "-"
            out.append(
                f"| ({item['letter']}) | {_md(item['identifier'])} | {_md(attributes)} | {_md(item['handling'])} |"
            )
        return "\n".join(out) + "\n"

    def to_html(self) -> str:
        d = self.to_dict()
        e = html.escape
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'><title>veil verify report</title>",
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
            ".fail{color:#b00}.pass{color:#070}code{font-size:90%}</style></head><body>",
            "<h1>veil verify report</h1>",
            f"<p class='{'pass' if self.passed else 'fail'}'><b>Verdict: {'PASS' if self.passed else 'FAIL'}</b>"
            f" — {len(self.errors)} findings.</p>",
            "<ul>",
            f"<li>Source: <code>{e(self.source)}</code></li>",
            f"<li>Destination: <code>{e(self.destination)}</code></li>",
            f"<li>Recipe: {e(self.recipe)} (sha256 <code>{e(self.recipe_hash[:16])}</code>)</li>",
            f"<li>Key id: {e(self.key_id or '-')}</li><li>veil {e(__version__)}</li></ul>",
            "<h2>Counts</h2><table>",
        ]
        for k, v in d["counts"].items():
            if isinstance(v, dict):
                v = ", ".join(f"{a}: {b}" for a, b in v.items()) or "-"
            parts.append(f"<tr><th>{e(k.replace('_', ' '))}</th><td>{e(str(v))}</td></tr>")
        parts.append(f"<tr><th>files per second (scan)</th><td>{d['files_per_second']}</td></tr></table>")

        def table(findings: list[Finding]) -> str:
            rows = [
                "<table><tr><th>#</th><th>category</th><th>file</th><th>element</th><th>keyword</th>"
                "<th>identifier</th><th>detail</th></tr>"
            ]
            for i, f in enumerate(findings, 1):
                rows.append(
                    f"<tr><td>{i}</td><td>{e(f.category)}</td><td><code>{e(f.file)}</code></td>"
                    f"<td><code>{e(f.path)}</code></td><td>{e(f.keyword)}</td><td>{e(f.kind)}</td>"
                    f"<td>{e(f.detail)}</td></tr>"
                )
            return "".join(rows) + "</table>"

        parts.append("<h2>Findings</h2>" + (table(self.errors) if self.errors else "<p>None.</p>"))
        notes = [f for f in self.findings if f.severity != "error"]
        if notes:
            parts.append("<h2>Notes on matches (not failures)</h2>" + table(notes))
        if self.notes:
            parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in self.notes) + "</ul>")
        parts.append("<h2>Not searched: kept by the recipe</h2><ul>")
        parts += [f"<li>{e(k)}: {v} values</li>" for k, v in sorted(self.retained.items())] or [
            "<li>Nothing.</li>"
        ]
        parts.append(f"</ul><h2>Conformance (dciodvfy)</h2><p>{e(self.dciodvfy or '-')}</p>")
        parts.append(
            "<h2>HIPAA Safe Harbor checklist (45 CFR 164.514(b)(2))</h2><table>"
            "<tr><th></th><th>identifier</th><th>attributes and actions</th><th>handling</th></tr>"
        )
        for item in self.checklist:
            attributes = "; ".join(f"{a['attribute']}: {a['action']}" for a in item["attributes"]) or "-"
            parts.append(
                f"<tr><td>({e(item['letter'])})</td><td>{e(item['identifier'])}</td><td>{e(attributes)}</td>"
                f"<td>{e(item['handling'])}</td></tr>"
            )
        parts.append("</table></body></html>")
        return "\n".join(parts) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_findings(findings: list[Finding]) -> list[str]:
    rows = [
        "| # | category | file | element | keyword | identifier | detail |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, f in enumerate(findings, 1):
        rows.append(
            f"| {i} | {f.category} | `{_md(f.file)}` | `{_md(f.path)}` | {_md(f.keyword)} | {_md(f.kind)} | "
            f"{_md(f.detail)} |"
        )
    return rows


def write_report(report: VerifyReport, path: str | os.PathLike[str]) -> list[Path]:
    """Writes the report: HTML when ``path`` ends with ``.html``, JSON only for ``.json``, else Markdown;
    the JSON report is written beside it (same name, ``.json``). Returns the files written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
    json_path = target.with_suffix(".json")
    written = []
    if target.suffix.lower() == ".json":
        target.write_text(data, encoding="utf-8")
        return [target]
    text = report.to_html() if target.suffix.lower() in (".html", ".htm") else report.to_markdown()
    target.write_text(text, encoding="utf-8")
    written.append(target)
    json_path.write_text(data, encoding="utf-8")
    written.append(json_path)
    return written


# --- HIPAA Safe Harbor -------------------------------------------------------------------------------------

#: The 18 identifiers of 45 CFR 164.514(b)(2)(i), with the DICOM attributes (and VR defaults) that carry them.
HIPAA_IDENTIFIERS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("A", "Names", (
        "PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName", "ResponsiblePerson",
        "ReferringPhysicianName", "PhysiciansOfRecord", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy",
        "OperatorsName", "RequestingPhysician", "PersonName", "vr:PN"), ""),
    ("B", "Geographic subdivisions smaller than a state", (
        "PatientAddress", "RegionOfResidence", "InstitutionAddress", "ReferringPhysicianAddress", "PersonAddress",
        "CurrentPatientLocation", "InstitutionName"), ""),
    ("C", "Dates (except year) related to the individual; ages over 89", (
        "PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "AcquisitionDateTime",
        "InstanceCreationDate", "PatientAge", "vr:DA", "vr:DT"), ""),
    ("D", "Telephone numbers", (
        "PatientTelephoneNumbers", "ReferringPhysicianTelephoneNumbers", "PersonTelephoneNumbers"), ""),
    ("E", "Fax numbers", ("PatientTelecomInformation", "PersonTelecomInformation"), ""),
    ("F", "Electronic mail addresses", ("PatientTelecomInformation", "PersonTelecomInformation"), ""),
    ("G", "Social security numbers", ("OtherPatientIDs", "OtherPatientIDsSequence"), ""),
    ("H", "Medical record numbers", ("PatientID", "IssuerOfPatientID", "MedicalRecordLocator"), ""),
    ("I", "Health plan beneficiary numbers", ("PatientInsurancePlanCodeSequence",), ""),
    ("J", "Account numbers", ("AdmissionID", "ServiceEpisodeID", "AccessionNumber"), ""),
    ("K", "Certificate/license numbers", (
        "ReferringPhysicianIdentificationSequence", "PhysiciansOfRecordIdentificationSequence",
        "PerformingPhysicianIdentificationSequence", "OperatorIdentificationSequence"), ""),
    ("L", "Vehicle identifiers and serial numbers", (),
     "not carried by DICOM attributes; free text is handled as shown under (R)"),
    ("M", "Device identifiers and serial numbers", (
        "DeviceSerialNumber", "DeviceUID", "DeviceID", "DetectorID", "SourceSerialNumber", "GantryID",
        "StationName"), ""),
    ("N", "Web URLs", ("RetrieveURL", "RetrieveURI", "vr:UR"), ""),
    ("O", "IP addresses", ("RetrieveAETitle", "ScheduledStationAETitle", "PerformedStationAETitle"), ""),
    ("P", "Biometric identifiers", (), "not carried in DICOM headers"),
    ("Q", "Full-face photographs and comparable images", (),
     "pixel data: out of scope of a header recipe; see `veil profile` for images at risk of burned-in text"),
    ("R", "Any other unique identifying number, characteristic or code", (
        "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "StudyID",
        "RequestedProcedureID", "PlacerOrderNumberImagingServiceRequest",
        "FillerOrderNumberImagingServiceRequest", "ScheduledProcedureStepID", "PerformedProcedureStepID",
        "StudyDescription", "SeriesDescription", "ImageComments", "AdditionalPatientHistory", "PatientComments",
        "vr:UI", "private"), ""),
)  # fmt: skip

_ACTION_WORDS = {
    Action.KEEP: "KEPT",
    Action.REMOVE: "removed",
    Action.EMPTY: "emptied",
    Action.DUMMY: "dummy",
    Action.REPLACE: "replaced",
    Action.UID: "keyed UID",
    Action.SHIFT: "date shifted",
    Action.PSEUDO: "keyed pseudonym",
    Action.AGE: "age capped",
    Action.RECURSE: "items cleaned",
    Action.CALL: "free text cleaned",
}


def hipaa_checklist(plan: Plan) -> list[dict[str, Any]]:
    """How the Plan handles each of the 18 Safe Harbor identifiers: the action on each attribute carrying it."""
    out = []
    for letter, title, attributes, note in HIPAA_IDENTIFIERS:
        rows = []
        actions: set[Action] = set()
        for attribute in attributes:
            if attribute == "private":
                action = plan.default_private
                rows.append({"attribute": "private elements (default)", "action": _ACTION_WORDS[action]})
                actions.add(action)
                continue
            if attribute.startswith("vr:"):
                vr = attribute[3:]
                vr_action = plan.vr_defaults.get(vr)
                if vr_action is None:
                    continue
                rows.append({"attribute": f"any other {vr}", "action": _ACTION_WORDS[vr_action]})
                actions.add(vr_action)
                continue
            tag = pydicom.datadict.tag_for_keyword(attribute)
            if tag is None:
                continue
            entry = dictionary_entry(tag)
            vr = entry[0].split(" or ")[0] if entry else "UN"
            action = explain_rule(plan, tag, vr).rule.action
            rows.append({"attribute": attribute, "action": _ACTION_WORDS[action]})
            actions.add(action)
        if note:
            handling = note
        elif Action.KEEP in actions:
            kept = [r["attribute"] for r in rows if r["action"] == "KEPT"]
            handling = "RETAINED by the recipe: " + ", ".join(kept)
        elif Action.SHIFT in actions:
            handling = (
                "shifted by a keyed per-patient offset (intervals kept), not removed; ages capped"
                if (Action.AGE in actions)
                else "shifted by a keyed per-patient offset, not removed"
            )
        elif actions & {Action.UID, Action.PSEUDO}:
            handling = "replaced by keyed values (linkable only with the key)"
        else:
            handling = "removed or replaced"
        out.append({"letter": letter, "identifier": title, "attributes": rows, "handling": handling})
    return out
