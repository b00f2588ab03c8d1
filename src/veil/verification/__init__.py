"""Proof that a de-identified output set is clean and consistent with its inputs: ``veil verify SRC DST``.

Independent of the rewriter (it never imports the native core ``veil.core._core``), four checks:

1. **Leak scan.** Every identifying value of every input is gathered, per patient, in memory only
   (:class:`IdentifierSet`), from the one identity model the cleaner uses too (:mod:`veil.core.identity`:
   which attributes are identity values and how they split into words): each component of every person name at any depth, patient and other IDs,
   accession, study, order and procedure numbers, the birth date in several spellings, addresses, telephone
   numbers, institution, station and device serial, and the original instance, series, study and frame of
   reference UIDs. Values the recipe keeps on purpose (their element's rule is KEEP) are not searched and
   are listed in the report. Every byte of every output is then searched at once for all of them with an
   Aho-Corasick automaton (pyahocorasick), case-insensitively for text: File Meta, header, private and
   nested elements, ``UN`` values, the inflated data set of a deflated file; only the value of the top-level
   Pixel Data is skipped, found by the pure-Python tag walker of :mod:`veil.core.part10`. A file that walker
   cannot parse is searched whole. Only when a file matches is it read with pydicom to name each match's
   element path.
2. **Referential integrity.** Inputs and outputs pair by relative path (veil's mirror layout); inputs with
   no output must have an audit record (``DST/.veil/audit/*.parquet``). Every reference to an instance,
   series, study or frame of reference of the input set resolves to the output that instance became; each
   original maps to one output UID and no two originals to the same one; no original UID survives where
   the recipe remaps UIDs, and with the key, each is the keyed UID of its original;
   MediaStorageSOPInstanceUID equals SOPInstanceUID. Where the recipe pseudonymises PatientID, each patient
   has one pseudonym and each pseudonym one patient, no original is left, and each is the keyed pseudonym of
   its original (with the key), or for counter pseudonyms the number the run's re-identification table
   gives its original (with ``--reid-table``).
3. **Kept attributes.** Top-level public attributes whose rule is KEEP hold the same bytes in the output.
4. **Conformance.** Where ``dciodvfy`` (dicom3tools) is on PATH, a sample of pairs is checked and errors
   the output has that its input had not are reported. A deflated file (input or output) is checked through
   an inflated Explicit VR Little Endian copy in a private temporary directory (:func:`inflated_copy`):
   dciodvfy checks the IOD, and the Debian build does not inflate. Its complaints that a sequence the recipe
   empties has no items are notes, not failures (PS3.5 7.4.5, 7.4.6: any Type 2 or 3 sequence may be sent
   with zero items).

The matching rules that keep the leak scan free of noise are in :mod:`veil.verification.identifiers`, and the
judging of coincidences (another patient's short name part inside a vendor word is a note, the patient's own
name anywhere an error) in :mod:`veil.verification.leaks`.

Nothing here writes an identifying value anywhere: a finding names the attribute path and the kind of value it
matches, never the value (not even masked), names files by relative path (masked where a path holds an identifying value) and never shows
an original UID.

Modules: :mod:`~veil.verification.identifiers` (the inputs' identifying values and the matching rules),
:mod:`~veil.verification.leaks` (the scan), :mod:`~veil.verification.integrity` (UIDs, references, pseudonyms, kept
values), :mod:`~veil.verification.conformance` (dciodvfy), :mod:`~veil.verification.report` (findings, the report, the
HIPAA checklist) and :mod:`~veil.verification.run` (:func:`verify`, which ties them together).
"""

from __future__ import annotations

from veil.verification.conformance import inflated_copy
from veil.verification.identifiers import PLACEHOLDERS, IdentifierSet, mask_value
from veil.verification.leaks import LeakScanner, scan_regions
from veil.verification.report import (
    EXIT_FINDINGS,
    HIPAA_IDENTIFIERS,
    Finding,
    VerifyReport,
    hipaa_checklist,
    write_report,
)
from veil.verification.run import verify

__all__ = [
    "EXIT_FINDINGS",
    "HIPAA_IDENTIFIERS",
    "PLACEHOLDERS",
    "Finding",
    "IdentifierSet",
    "LeakScanner",
    "VerifyReport",
    "hipaa_checklist",
    "inflated_copy",
    "mask_value",
    "scan_regions",
    "verify",
    "write_report",
]
