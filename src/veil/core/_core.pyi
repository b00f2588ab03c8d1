"""The Python face of veil's native core (``veil.core._core``, Cython): what callers may use, typed.

The implementation is ``_core.pyx`` and the ``.pxi`` files it includes; ``_core.pxd`` declares its C level.
Every function that reads a file takes any C-contiguous buffer (bytes, bytearray, memoryview, mmap) without
copying it, and raises :class:`veil.errors.MalformedDicom` (path, offset, reason) for a file it cannot read.
"""

from collections.abc import Callable
from typing import Any, Final

from _typeshed import ReadableBuffer

from veil.core.plan import Plan

# veil's Implementation Class UID (PS3.7 D.3.3.2) and Version Name, written in every output's File Meta.
IMPLEMENTATION_CLASS_UID: Final = "2.25.167433902655210327398716356372095512893"
IMPLEMENTATION_VERSION_NAME: Final[str]

TS_IMPLICIT_LE: Final = "1.2.840.10008.1.2"
TS_EXPLICIT_LE: Final = "1.2.840.10008.1.2.1"
TS_EXPLICIT_BE: Final = "1.2.840.10008.1.2.2"
TS_DEFLATED_LE: Final = "1.2.840.10008.1.2.1.99"

ACTION_NAMES: Final[tuple[str, ...]]  # veil.core.plan.Action names, in value order: the order of counts_row
HEAD_BYTES: int  # what a large file's head is read as (a module global, read at each call)
DEFLATE_LEVEL: Final = 1  # the ISA-L level of a deflated output

# scan_directory's kinds.
SCAN_FILE: Final = 0  # a regular file; the value is its size
SCAN_DIRECTORY: Final = 1  # a directory (not a symbolic link)
SCAN_SYMLINK: Final = 2  # a symbolic link, not followed
SCAN_OTHER: Final = 3  # anything else (device, FIFO, socket)
SCAN_ERROR: Final = 4  # lstat failed; the value is its errno

class _NeedWholeFile(Exception):
    """A file rewritten from its head and tail needs its whole bytes after all (never leaves the module)."""

class RewriteResult:
    """One file's output: header bytes, the pixel slice of the input, the trailer, and what was done."""

    @property
    def header(self) -> bytes:
        """Preamble, File Meta and the data set up to the top-level Pixel Data value (or all of it)."""
    @property
    def pixels(self) -> memoryview | None:
        """The Pixel Data value as a slice of the input (None: no plain pixels, or a mapped input, now gone)."""
    @property
    def pixel_range(self) -> tuple[int, int] | None:
        """Where the Pixel Data value lies in the input: (start, stop), or None."""
    @property
    def trailer(self) -> bytes:
        """The data set after the Pixel Data value (b"" when none)."""
    @property
    def transfer_syntax(self) -> str: ...
    @property
    def sop_instance_uid(self) -> str:
        """The output's SOP Instance UID (the File Meta names it)."""
    @property
    def sop_class_uid(self) -> str: ...
    @property
    def modality(self) -> str:
        """The output's top-level value, "" when absent (as are the study and series UIDs)."""
    @property
    def study_instance_uid(self) -> str: ...
    @property
    def series_instance_uid(self) -> str: ...
    @property
    def counts(self) -> dict[str, int]:
        """Elements per action (KEEP included; RECURSE counts the sequences walked)."""
    @property
    def counts_row(self) -> tuple[int, ...]:
        """The counts as a tuple in ``ACTION_NAMES`` order (one audit row's)."""
    def parts(self) -> list[bytes | memoryview]:
        """The output as a list of buffers to write in order (one ``writev``)."""
    def tobytes(self) -> bytes:
        """The whole output file as bytes (copies the pixel slice)."""
    def __len__(self) -> int: ...
    def touched(self) -> list[tuple[str, str]]:
        """Every element the Plan changed: (path like ``(0008,1140)[0](0008,1155)``, action name)."""

class TagReader:
    """A walk over the element headers of one buffer: the Rewriter's base and peek's reader (C methods only)."""

class Rewriter(TagReader):
    """Applies one compiled Plan to whole files; reuse one per worker (not thread-safe: it keeps buffers).

    ``uid_fn(uid: bytes) -> bytes`` remaps one UID and ``id_fn(value: bytes) -> bytes`` makes one pseudonym;
    both are keyed functions (``veil.keys``) and are cached here per original value. ``shift_fn(patient_id)``
    gives the days to shift a file's dates by when :meth:`rewrite` is not told. A Plan the core cannot run
    raises :class:`veil.errors.PlanError`.
    """

    cache_limit: int  # bytes each cache of keyed values may hold (32 MiB); full, it is emptied
    @property
    def cache_bytes(self) -> dict[str, int]:
        """What the UID, pseudonym and date-shift caches hold, in bytes as counted against ``cache_limit``."""

    def __init__(
        self,
        plan: Plan,
        uid_fn: Callable[[bytes], bytes | str] | None = None,
        id_fn: Callable[[bytes], bytes | str] | None = None,
        shift_fn: Callable[[bytes], int] | None = None,
    ) -> None: ...
    @property
    def plan(self) -> Plan: ...
    def rewrite(self, data: ReadableBuffer, shift_days: int | None = None, path: str = "") -> RewriteResult:
        """Rewrites one whole file (bytes, memoryview or mmap); returns a :class:`RewriteResult`.

        ``shift_days`` moves every DA/DT the Plan shifts; when None, the Rewriter's ``shift_fn(patient_id)``
        decides from the file's PatientID (found by a header-only scan, since dates come before it), else 0.
        """
    def rewrite_file(
        self, src: str, dst: str, limit: int, shift_days: int | None = None, direct: bool = False
    ) -> tuple[RewriteResult, int, int]:
        """One file end to end, its system calls made in the core; the output appears whole or not at all.

        Returns ``(result, input_bytes, output_bytes)``. A file over ``limit`` bytes is mapped (or read around
        its Pixel Data value), its result has no ``pixels``. Raises OSError (errno and path set) or
        MalformedDicom.
        """
    def rewrite_files(
        self, srcs: list[str], dsts: list[str], limit: int, direct: bool = False, sizes: list[int] | None = None
    ) -> tuple[list[int], list[int], list[str], list[str], list[str], list[str], list[str], bytearray, list[int],
               list[int], list[tuple[int, Exception]]]:
        """Many files end to end in one call, each as :meth:`rewrite_file`, their outcomes as columns:
        ``(input_bytes, output_bytes, sop_class_uid, sop_instance_uid, study_instance_uid, series_instance_uid,
        modality, counts, microseconds, times, failures)``; ``counts`` holds ``len(srcs) * N_ACTIONS`` native
        int32, ``failures`` ``(index, OSError or VeilError)`` of each refused file. ENOSPC and EDQUOT raise."""

class Meta:
    """What the File Meta (or its absence) says about the data set that follows."""

    @property
    def dataset_offset(self) -> int: ...
    @property
    def transfer_syntax(self) -> str: ...
    @property
    def explicit(self) -> bool: ...
    @property
    def little(self) -> bool: ...
    @property
    def deflated(self) -> bool: ...
    @property
    def had_meta(self) -> bool: ...
    @property
    def sop_class_uid(self) -> str: ...
    @property
    def sop_instance_uid(self) -> str: ...

def pixel_module(data: ReadableBuffer, path: str = "") -> dict[str, int | str | None]:
    """The Image Pixel module attributes at a file's top level (SamplesPerPixel, PhotometricInterpretation,
    PlanarConfiguration, NumberOfFrames, Rows, Columns, BitsAllocated, BitsStored, PixelRepresentation)."""

def read_meta(data: ReadableBuffer, path: str = "") -> Meta:
    """Parses the preamble and File Meta group (PS3.10 7.1) and decides how the data set is encoded."""

def inflate(data: ReadableBuffer, path: str = "", offset: int = 0) -> bytes:
    """Inflates a Deflated Explicit VR Little Endian data set (raw deflate, RFC 1951), bounded in size."""

def build_meta(sop_class: str, sop_instance: str, transfer_syntax: str) -> bytes:
    """Preamble, ``DICM`` and a File Meta group written anew (PS3.10 7.1), group length right."""

def scan_directory(path: str) -> list[tuple[str, int, int]]:
    """The entries of one directory, unsorted, as ``(name, kind, value)`` (kinds: the ``SCAN_*`` constants).

    A directory that cannot be opened raises OSError."""

def peek(data: ReadableBuffer, path: str = "") -> dict[str, Any]:
    """The values later stages need, from a walk of the top level that stops after (0028,0301).

    Keys: transfer_syntax (str); rows, columns and samples_per_pixel (int or None); the others str or None:
    patient_id, patient_name, patient_birth_date, patient_address, patient_telephone_numbers, other_patient_ids,
    accession_number, institution_name, referring_physician_name, performing_physician_name, operators_name,
    station_name, study_id, study/series/sop instance UIDs, sop_class_uid, frame_of_reference_uid, modality,
    manufacturer, manufacturer_model_name, software_versions, image_type, body_part_examined,
    burned_in_annotation, specific_character_set, study_date.
    """

def identity_values(data: ReadableBuffer, path: str = "") -> list[tuple[int, str, bytes]]:
    """(tag, VR, value without trailing space or NUL) of every identity element at any depth: every PN (private
    ones in explicit VR), every attribute of ``veil.core.identity.IDENTITY_TAGS``, Manufacturer,
    ManufacturerModelName and SoftwareVersions; the File Meta's MediaStorageSOPInstanceUID first. Stops at the
    top-level Pixel Data and, quietly, at a top-level element that runs past the end of the buffer (a head).
    Raises MalformedDicom like :func:`peek`. ``veil.core.identity.identity_from_values`` makes it a FileIdentity.
    """
