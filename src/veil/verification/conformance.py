"""Conformance: where ``dciodvfy`` (dicom3tools) is on PATH, a sample of pairs is checked and the errors an
output has that its input had not are findings; a deflated file is checked through an inflated copy
(:func:`inflated_copy`).
"""

from __future__ import annotations

import logging
import mmap
import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pydicom

from veil.core.part10 import (
    DEFLATED_TRANSFER_SYNTAXES,
    EXPLICIT_VR_LITTLE_ENDIAN,
    LONG_VRS,
    ParseError,
    meta_elements,
    read_part10,
)
from veil.core.plan import Action, Plan, explain_rule
from veil.verification.integrity import Pair
from veil.verification.report import Finding

__all__ = ["check_conformance", "inflated_copy"]

log = logging.getLogger(__name__)


def inflated_copy(data: bytes | memoryview | mmap.mmap) -> bytes:
    """An Explicit VR Little Endian copy of a Deflated Explicit VR Little Endian file: the same preamble and
    File Meta but for the Transfer Syntax UID (and the group length), then the inflated data set, byte for byte.

    dciodvfy reads it in place of the deflated file: dicom3tools 1.00~20220618 as Debian ships it (built without
    zlib) does not inflate, and reads the deflated bytes themselves as the data set, so its findings on a
    deflated file are noise that changes with every byte of the compressed stream. The copy keeps every element
    of the data set as it is, so the IOD checks see what a reader that inflates sees.
    """
    part = read_part10(data)
    if not part.deflated:
        raise ParseError(f"transfer syntax {part.transfer_syntax or '(none)'} is not deflated")
    new_syntax = EXPLICIT_VR_LITTLE_ENDIAN.encode("ascii") + b"\x00"  # UI pads with NULL (PS3.5 6.2)
    elements: list[tuple[int, bytes]] = []
    for element, vr, start, header, length in meta_elements(data):
        if element == 0x0010:
            if vr in LONG_VRS:
                head = struct.pack("<HH2sHI", 0x0002, 0x0010, vr, 0, len(new_syntax))
            elif vr:
                head = struct.pack("<HH2sH", 0x0002, 0x0010, vr, len(new_syntax))
            else:
                head = struct.pack("<HHI", 0x0002, 0x0010, len(new_syntax))
            elements.append((element, head + new_syntax))
        else:
            elements.append((element, bytes(data[start : start + header + length])))
    group_length = sum(len(raw) for element, raw in elements if element != 0x0000)
    meta = b"".join(
        raw[:-4] + struct.pack("<I", group_length) if element == 0x0000 and len(raw) in (12, 16) else raw
        for element, raw in elements
    )
    preamble = bytes(data[:132]) if len(data) >= 132 and data[128:132] == b"DICM" else b""
    return preamble + meta + bytes(part.dataset)


def _dciodvfy_errors(path: Path, timeout: float = 60.0) -> set[str] | None:
    """The Error lines dciodvfy prints for one file, with values removed (they may identify)."""
    try:
        done = subprocess.run(
            ["dciodvfy", str(path)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = set()
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        line = line.strip()
        if not line.startswith("Error"):
            continue
        # Attribute and module keywords (Element=<PatientName>) are names from the dictionary and stay, so that
        # the same complaint about another element is another error; anything else in <> may be a value.
        line = _BRACKETED.sub(
            lambda m: m[0] if m[1] and _KEYWORD.fullmatch(m[2]) else f"{m[1] or ''}<…>", line
        )
        line = re.sub(r"\s*=\s*\S.*$", "", line) if " = " in line else line
        out.add(line)
    return out


_BRACKETED = re.compile(r"(Element=|Module=)?<([^>]*)>")
_KEYWORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")

#: dciodvfy's complaints about a sequence present with no items. PS3.5 7.4.5 and 7.4.6 (Note 3) allow any Type 2
#: or Type 3 sequence to be sent with zero length, which is what an ``empty`` rule makes of an X/Z or X/Z/D
#: sequence; dciodvfy 1.00~20220618 reads "one or more Items" of a Type 3 description as required.
_EMPTY_SEQUENCE_COMPLAINT = re.compile(
    r"^Error - (?:Bad Sequence number of Items 0 \([^)]*\)|Bad attribute Value Multiplicity Type 3 Optional)"
    r" Element=<([A-Za-z][A-Za-z0-9]*)>"
)


def _emptied_sequence(message: str, plan: Plan) -> str:
    """The keyword of the sequence a complaint is about, where the plan empties that sequence; else ""."""
    match = _EMPTY_SEQUENCE_COMPLAINT.match(message)
    if match is None:
        return ""
    tag = pydicom.datadict.tag_for_keyword(match[1])
    if tag is None or pydicom.datadict.dictionary_VR(tag) != "SQ":
        return ""
    return match[1] if explain_rule(plan, tag, "SQ").rule.action == Action.EMPTY else ""


def check_conformance(
    pairs: list[Pair],
    outputs: dict[str, Path],
    input_files: list[tuple[Path, str]],
    sample: int,
    plan: Plan,
    findings: list[Finding],
) -> str:
    """Runs dciodvfy on a sample of pairs; adds a finding per error an output has that its input had not, and
    returns the status line of the report."""
    if shutil.which("dciodvfy") is None:
        return "dciodvfy not available (install dicom3tools to check conformance)"
    by_rel = {rel: path for path, rel in input_files}
    candidates = [
        (p.rel, p.rel_out) for p in pairs if p.output is not None and p.rel in by_rel and p.rel_out in outputs
    ]
    if not candidates or sample <= 0:
        return "dciodvfy available; no pairs to check"
    step = max(1, len(candidates) // sample)
    chosen = candidates[::step][:sample]
    new_errors = emptied = 0
    through_copy: list[str] = []
    # Deflated files go to dciodvfy as inflated copies (see inflated_copy), input and output alike; the copies
    # hold the inputs' identifying values, so they live in a private directory (mode 0700) removed at the end.
    with tempfile.TemporaryDirectory(prefix="veil-dciodvfy-") as scratch:
        for rel, rel_out in chosen:
            try:
                before_path = _readable_by_dciodvfy(by_rel[rel], Path(scratch) / "input.dcm")
            except (OSError, ParseError) as exc:
                log.warning("dciodvfy: skipped a pair whose input cannot be inflated (%s)", exc)
                continue
            try:
                after_path = _readable_by_dciodvfy(outputs[rel_out], Path(scratch) / "output.dcm")
            except (OSError, ParseError) as exc:
                new_errors += 1
                findings.append(
                    Finding("conformance", rel_out, detail=f"deflated data set cannot be read: {exc}")
                )
                continue
            if after_path != outputs[rel_out]:
                through_copy.append(rel_out)
            before = _dciodvfy_errors(before_path)
            after = _dciodvfy_errors(after_path)
            if before is None or after is None:
                continue
            for message in sorted(after - before):
                keyword = _emptied_sequence(message, plan)
                if keyword:
                    emptied += 1
                    detail = (
                        f"dciodvfy: {message} (the recipe empties {keyword}; PS3.5 7.4.5 and 7.4.6 allow a Type 2 or "
                        "Type 3 sequence with zero items)"
                    )
                    findings.append(
                        Finding("conformance", rel_out, keyword=keyword, detail=detail, severity="note")
                    )
                    continue
                new_errors += 1
                findings.append(Finding("conformance", rel_out, detail=f"dciodvfy: {message}"))
    status = f"checked {len(chosen)} of {len(candidates)} pairs: {new_errors} errors the inputs did not have"
    if emptied:
        status += (
            f"; {emptied} complaints about sequences the recipe empties (notes: PS3.5 7.4.6 allows them)"
        )
    if through_copy:
        status += (
            f"; {len(through_copy)} deflated pairs checked through inflated Explicit VR Little Endian copies: "
            + ", ".join(through_copy)
        )
    return status


def _readable_by_dciodvfy(path: Path, scratch: Path) -> Path:
    """The file itself, or for a deflated file its inflated copy written at ``scratch``."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)  # the File Meta, with room to spare
        if not _is_deflated(head):
            return path
        data = head + f.read()
    scratch.write_bytes(inflated_copy(data))
    return scratch


def _is_deflated(head: bytes) -> bool:
    """Whether the File Meta at the start of a file names a deflated transfer syntax (never inflates)."""
    try:
        for element, _, start, header, length in meta_elements(head):
            if element == 0x0010:
                value = head[start + header : start + header + length].strip(b" \x00")
                return value.decode("ascii", "replace") in DEFLATED_TRANSFER_SYNTAXES
    except ParseError:
        return False
    return False
