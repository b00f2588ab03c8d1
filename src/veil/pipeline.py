"""One file, start to end: read (mmap) -> peek -> rewrite header -> write output atomically, with one outcome
(:class:`FileOutcome`) whichever path ran.

Pure and Ray-free, so the same code runs in a test, in-process and in a Ray task. The pixel tail never enters
Python objects: the header comes from the native core, the pixel bytes go from the input file descriptor to the
output by ``os.copy_file_range`` (falling back to ``os.sendfile``), and the output appears under its final name
only when complete (temporary name, then ``os.replace``).
"""

from __future__ import annotations

import dataclasses
import errno
import mmap
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from veil.core._core import Rewriter, RewriteResult, identity_values, peek
from veil.core.identity import identity_from_values
from veil.core.plan import Action, Inserted, Plan
from veil.errors import MalformedDicom, VeilError
from veil.keys import CounterFormat, CounterPseudonymError, KeyedFunctions

ACTION_NAMES: tuple[str, ...] = tuple(a.name for a in Action)

if TYPE_CHECKING:  # pixels imports pydicom: loaded only when a recipe has a pixels section
    import veil.pixels as pixels
    from veil.recipes import PixelPolicy

__all__ = [
    "Deidentifier", "FileOutcome", "CounterLookup", "PreviewCounter", "Rewritten", "refused", "refusal_reason",
    "reid_pairs", "write_output",
]


class FileOutcome(NamedTuple):
    """What happened to one input: written (with its new identity and counts) or refused with a reason.

    The one outcome of :meth:`Deidentifier.process`, whichever path ran (the core end to end, or the Python
    path); the audit row is made from it (:func:`veil.audit.row_from_outcome`). A named tuple: one is made per
    file, at a fifth of a frozen dataclass's cost."""

    source: str
    destination: str | None
    status: str  # "written" | "quarantined"
    reason: str = ""
    input_bytes: int = 0
    output_bytes: int = 0
    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    modality: str = ""
    transfer_syntax: str = ""
    counts_row: tuple[int, ...] = ()  # elements per action, in veil.core.plan.Action order (empty when not written)
    microseconds: int = 0
    pixel_redaction: bool = False
    # What the pixel redaction did (boxes, kept regions, after and before thumbnails) for the audit.
    pixel_record: pixels.Redaction | None = None
    # (kind, new value, original value) for re-identification; filled only when asked for, never logged.
    reid_pairs: tuple[tuple[str, bytes, bytes], ...] = ()

    def __repr__(self) -> str:  # as the dataclass it was: no pixel record, no re-identification pair
        shown = ", ".join(f"{name}={value!r}" for name, value in zip(self._fields[:-2], self[:-2], strict=True))
        return f"FileOutcome({shown})"

    @property
    def counts(self) -> dict[str, int]:
        """Elements per action name (KEEP included), as ``RewriteResult.counts``."""
        return dict(zip(ACTION_NAMES, self.counts_row, strict=False))


_new_outcome = tuple.__new__
_clock = time.perf_counter_ns
_fspath = os.fspath

# The identifiers a re-identification table maps back (peek key, kind recorded in the table).
_REID_VALUES = (
    ("patient_id", "PatientID"),
    ("accession_number", "AccessionNumber"),
    ("study_instance_uid", "StudyInstanceUID"),
    ("series_instance_uid", "SeriesInstanceUID"),
    ("sop_instance_uid", "SOPInstanceUID"),
)


class Rewritten(NamedTuple):
    """One file de-identified in memory (:meth:`Deidentifier.rewritten`): the output, its elements per action,
    the burned-in text redaction's record (None when none was done), and ``(start, stop)`` of the output's
    Pixel Data value where it holds the input's stored pixels (None when redacted, encapsulated or absent)."""

    data: bytes
    counts_row: tuple[int, ...]
    redaction: pixels.Redaction | None
    pixels_at: tuple[int, int] | None


class CounterLookup:
    """The pseudonym function of a run with counter pseudonyms: the numbers the key service handed this worker
    (original value, padding stripped -> pseudonym). A value it was not given is an error that quarantines the
    file, never a keyed hash in its place."""

    def __init__(self) -> None:
        self.numbers: dict[bytes, bytes] = {}

    def __call__(self, original: bytes) -> bytes:
        new = self.numbers.get(original)
        if new is None:
            # Never the value itself in the message: it identifies someone.
            raise CounterPseudonymError("a value to pseudonymise was not numbered by the key service")
        return new

    def unknown(self, values: Iterable[bytes]) -> list[bytes]:
        """``values`` not numbered yet, in their order, each once: what a shard asks the key service for.
        When their numbers would not fit beside those held (``_COUNTER_CACHE_LIMIT``), everything held is
        forgotten first and all of ``values`` are asked for."""
        ordered = list(dict.fromkeys(values))
        numbers = self.numbers
        unknown = [v for v in ordered if v not in numbers]
        if unknown and len(numbers) + len(unknown) > _COUNTER_CACHE_LIMIT:
            numbers.clear()
            return ordered
        return unknown

    def add(self, values: list[bytes], pseudonyms: list[bytes]) -> None:
        if len(values) != len(pseudonyms):
            raise CounterPseudonymError(f"the key service numbered {len(pseudonyms)} of {len(values)} values")
        self.numbers.update(zip(values, pseudonyms, strict=True))


class PreviewCounter:
    """Counter pseudonyms for previews that write nothing (``veil inspect``, ``veil run --dry-run``): numbered
    from 1 in the order the values appear, in memory only. Never for outputs: a run's numbers come from its key
    service and its re-identification table."""

    def __init__(self, fmt: CounterFormat) -> None:
        self.fmt = fmt
        self.numbers: dict[bytes, bytes] = {}

    def __call__(self, original: bytes) -> bytes:
        new = self.numbers.get(original)
        if new is None:
            new = self.numbers[original] = self.fmt.format(len(self.numbers) + 1)
        return new


_COUNTER_CACHE_LIMIT = 1 << 20  # numbers one worker keeps between shards (asked again once forgotten)
_PLACEHOLDER_UID = b"2.25.0"


def _unchanged(tag: int, vr: str, value: bytes) -> bytes:
    return value


class Deidentifier:
    """Applies one Plan with one set of keyed functions; reuse one per worker (it keeps native buffers).

    ``pseudonyms`` replaces the keyed pseudonym function (a :class:`CounterLookup` in runs with counter
    pseudonyms); :meth:`pseudonym_values` lists what it will be asked for.
    """

    def __init__(self, plan: Plan, functions: KeyedFunctions | None = None, pixel_policy: PixelPolicy | None = None,
                 pseudonyms: Callable[[bytes], bytes] | None = None, direct: bool = False) -> None:
        self.plan = plan
        # Outputs written under their final names (the run's shard is the atomic unit; see veil.engine), or
        # under a temporary name then renamed (each file appears whole or not at all).
        self.direct = direct
        self.functions = functions
        self.pixel_policy = pixel_policy  # burned-in text rules, or None
        self.pseudonyms = pseudonyms
        self._variants: dict[tuple[Inserted, ...], Deidentifier] = {}  # marked(): other marking elements
        self._rewriter = Rewriter(
            plan,
            functions.uid if functions is not None else None,
            pseudonyms if pseudonyms is not None else functions.pseudonym if functions is not None else None,
            functions.date_shift if functions is not None else None,
        )
        # Whether the core can do a file end to end (:meth:`native_file`): plans that need no peek at the file
        # first (free-text cleaning does), and no pixel work. :meth:`process` decides per call.
        self.native = plan.callback is None and pixel_policy is None
        self._rewrite_file = self._rewriter.rewrite_file
        # A plan that cleans free text sets each file's identity for its callback (imported only for one).
        self._freetext: Any = None
        if plan.callback is not None:
            from veil.recipes import freetext

            self._freetext = freetext

    def native_file(self, src: str, dst: str) -> tuple[RewriteResult, int, int]:
        """One file end to end in the core (read or map, rewrite, write beside ``dst`` under a temporary name,
        making missing folders, copy the pixel tail in the kernel, rename): the result and the input and output
        sizes. Only for a Deidentifier whose ``native`` is true; raises what :meth:`process` turns into a
        quarantine outcome."""
        return self._rewriter.rewrite_file(src, dst, SMALL_FILE)

    def native_files(self, srcs: list[str], dsts: list[str], sizes: list[int] | None = None) -> tuple[Any, ...]:
        """Many files end to end in one call into the core (:meth:`native_file` each, small ones read, rewritten
        and written in phases), their outcomes as columns: ``Rewriter.rewrite_files``'s. ``sizes``, the inputs'
        sizes as listed, spares the core an ``fstat`` per small file. Only for a Deidentifier whose ``native``
        is true; a full disk raises, any other refusal is in the last column."""
        return self._rewriter.rewrite_files(srcs, dsts, SMALL_FILE, self.direct, sizes)

    def pseudonym_values(self, paths: Iterable[str]) -> list[bytes]:
        """Every value the pseudonym function will be asked for when ``paths`` are rewritten (padding stripped,
        each once, in order of first appearance), nested sequences included.

        The files go through a second Rewriter with the same Plan whose pseudonym function records its
        argument: the same walk as the real rewrite, so exactly the same elements. It needs no real keyed
        values: UIDs get a placeholder, dates no shift, free-text cleaning is replaced by keeping the text (it
        changes values, never which elements there are). A file that fails here adds nothing (the real
        rewrite quarantines it).
        """
        found: dict[bytes, None] = {}
        seen: list[bytes] = []

        def record(original: bytes) -> bytes:
            seen.append(original)
            return original

        plan = self.plan if self.plan.callback is None else dataclasses.replace(self.plan, callback=_unchanged)

        def new_collector() -> Rewriter:
            return Rewriter(plan, lambda uid: _PLACEHOLDER_UID, record, None)

        # A new Rewriter per call (and after a failed file): its cache would hide values it has seen before.
        collector = new_collector()
        for path in paths:
            seen.clear()
            try:
                fd = os.open(path, _READ_FLAGS)
            except OSError:
                continue
            try:
                size = os.fstat(fd).st_size
                if size == 0:
                    continue
                if size <= SMALL_FILE:
                    collector.rewrite(_read_all(fd, size), 0, path)
                else:
                    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
                        result = collector.rewrite(mm, 0, path)
                        if result.pixels is not None:
                            result.pixels.release()
            except (VeilError, OSError, ValueError):
                collector = new_collector()
                continue
            finally:
                os.close(fd)
            found.update(dict.fromkeys(seen))
        return list(found)

    def rewrite(self, data: bytes | memoryview | mmap.mmap, path: str = "") -> RewriteResult:
        """The de-identified file in memory: ``result.tobytes()``, or ``result.parts()`` to write.

        Plans without free-text cleaning take the fast path: the core finds PatientID itself for the date
        shift. Plans that clean free text first read the file's identity (``veil.core.identity``: every person
        name, ID, birth date, address, ... at any depth; they come after the descriptions in the stream) so the
        cleaner removes its words wherever they are echoed; the values stay in memory for this file only.
        """
        if self._freetext is None:
            return self._rewriter.rewrite(data, None, path)
        identity = identity_from_values(identity_values(data, path))
        with self._freetext.file_identity(identity):
            return self._rewriter.rewrite(data, None, path)  # the core finds PatientID for the date shift

    def _pixels(self, data: mmap.mmap | bytes, result: RewriteResult, path: str) -> pixels.Redaction | None:
        """Burned-in text (recipe ``pixels:``): None to keep the pixels as the rewrite wrote them, or the
        redacted output and its record (:func:`veil.pixels.screen.check_image`: header triage, the pre-filter
        on every other image, the text detector and recognizer, the redaction). Rules match the input's header
        signature (the output may no longer name the manufacturer). Detection that cannot run, or pixels that
        cannot be decoded, raise MalformedDicom: the file is quarantined, never passed unexamined."""
        from veil.pixels import screen

        assert self.pixel_policy is not None  # only called for a Deidentifier with a pixel policy
        series = getattr(self, "_series_regions", None)
        if series is None:  # regions found on a series, for its later slices (this worker, this run)
            series = self._series_regions = screen.SeriesRegions()
        return screen.check_image(self.pixel_policy, peek(data, path), result, data, path, series=series)

    def deidentify_bytes(self, data: bytes, path: str = "") -> bytes:
        """One file in memory, as :meth:`process` writes it: the header rewritten and, under a recipe with a
        ``pixels:`` section, the burned-in text redacted (or :class:`~veil.errors.MalformedDicom` raised where
        the file would be quarantined)."""
        return self.rewritten(data, path)[0]

    def rewritten(self, data: bytes, path: str = "") -> Rewritten:
        """:meth:`deidentify_bytes` with what the audit row needs: the output's bytes, its elements per action,
        the record of the burned-in text redaction (None when none was done) and where the output's Pixel Data
        value lies when it holds the input's pixels as they were stored. For steps that change the output
        further before it is written (a defaced series)."""
        result = self.rewrite(data, path)
        try:
            redacted = self._pixels(data, result, path) if self.pixel_policy is not None else None
            at: tuple[int, int] | None = None
            if redacted is None:
                out = result.tobytes()
                if result.pixels is not None:
                    start = len(result.header)
                    at = (start, start + len(result.pixels))
            else:
                out = bytes(redacted.data)
                redacted = dataclasses.replace(redacted, data=b"")
            return Rewritten(out, tuple(result.counts_row), redacted, at)
        finally:
            if result.pixels is not None:
                result.pixels.release()

    def marked(self, insert: tuple[Inserted, ...]) -> Deidentifier:
        """This Deidentifier with other marking elements (its Plan's ``insert``; a defaced series adds
        RecognizableVisualFeatures and a method code): the same keyed functions, pseudonyms, pixel policy and
        way of writing. Made once per ``insert`` and kept."""
        if insert == self.plan.insert:
            return self
        variant = self._variants.get(insert)
        if variant is None:
            variant = self._variants[insert] = Deidentifier(dataclasses.replace(self.plan, insert=insert), self.functions,
                                                      self.pixel_policy, self.pseudonyms, self.direct)
        return variant

    def process(
        self,
        source: str | os.PathLike[str],
        destination: str | os.PathLike[str] | Callable[[dict[str, object]], str],
        *,
        reid: bool = False,
    ) -> FileOutcome:
        """De-identifies one file to ``destination``; a bad input yields no output and a quarantine outcome.

        ``destination`` may be a function of the output's own identity (the new study, series and instance UIDs
        and the modality, as the core reports them), for layouts by study. With ``reid``, the outcome carries the
        (new, original) pairs of the identifiers a re-identification table needs.

        The one place the path is chosen: the core does the file end to end (:meth:`native_file`) when this
        Deidentifier can (:attr:`native`: no free-text peek, no pixel work) and the call needs nothing the core
        does not report (no re-identification pairs, a destination known before the rewrite); else the Python
        path reads, rewrites, redacts and writes. Either way, one :class:`FileOutcome`.
        """
        started = _clock()
        # The common case costs the fewest Python operations (this runs once per file; ~40 us on a small one):
        # str paths taken as they are, the core's bound method kept.
        src = source if source.__class__ is str else _fspath(source)
        if self.native and not reid and (destination.__class__ is str or not callable(destination)):
            if destination.__class__ is not str:
                destination = _fspath(destination)
            try:
                native, size, written = self._rewrite_file(src, destination, SMALL_FILE, None, self.direct)
            except (VeilError, OSError) as exc:
                return refused(src, exc, started)
            # Every field given, so the tuple is made without the named tuple's Python-level __new__.
            return _new_outcome(FileOutcome, (
                src, destination, "written", "", size, written, native.sop_class_uid, native.sop_instance_uid,
                native.study_instance_uid, native.series_instance_uid, native.modality, native.transfer_syntax,
                native.counts_row, (_clock() - started) // 1000, False, None, (),
            ))
        try:
            fd = os.open(src, _READ_FLAGS)
            mm: mmap.mmap | None = None
            result: RewriteResult | None = None
            try:
                size = os.fstat(fd).st_size
                if size == 0:
                    raise MalformedDicom(src, 0, "empty file")
                # Small files: one read, one writev. Large ones: mapped, the pixel tail copied by the kernel.
                small = size <= SMALL_FILE
                data: bytes | mmap.mmap
                if small:
                    data = _read_all(fd, size)
                else:
                    data = mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
                result = self.rewrite(data, src)
                if callable(destination):
                    dst = destination({"study_instance_uid": result.study_instance_uid,
                                       "series_instance_uid": result.series_instance_uid,
                                       "sop_instance_uid": result.sop_instance_uid,
                                       "modality": result.modality})
                else:
                    dst = os.fspath(destination)
                redacted = self._pixels(data, result, src) if self.pixel_policy is not None else None
                if redacted is None:
                    written = _write_atomically(dst, result, None if small else fd, self.direct)
                else:
                    written = _write_bytes_atomically(dst, redacted.data, self.direct)
                    redacted = dataclasses.replace(redacted, data=b"")  # the audit needs the record only
                pairs: tuple[tuple[str, bytes, bytes], ...] = ()
                if reid:
                    original = peek(data, src)
                    new: dict[str, object] = {"patient_id": None, "accession_number": None}
                    if any(original[name] for name in new):
                        new.update((k, v) for k, v in peek(result.header, src).items() if k in new)
                    new.update(study_instance_uid=result.study_instance_uid,
                               series_instance_uid=result.series_instance_uid,
                               sop_instance_uid=result.sop_instance_uid)
                    pairs = reid_pairs(original, new)
            finally:
                if result is not None and result.pixels is not None:
                    result.pixels.release()
                if mm is not None:
                    mm.close()
                os.close(fd)
            return FileOutcome(
                source=src,
                destination=dst,
                status="written",
                input_bytes=size,
                output_bytes=written,
                sop_class_uid=result.sop_class_uid,
                sop_instance_uid=result.sop_instance_uid,
                study_instance_uid=result.study_instance_uid,
                series_instance_uid=result.series_instance_uid,
                modality=result.modality,
                transfer_syntax=result.transfer_syntax,
                counts_row=result.counts_row,
                microseconds=(time.perf_counter_ns() - started) // 1000,
                reid_pairs=pairs,
                pixel_redaction=redacted is not None,
                pixel_record=redacted,
            )
        except (VeilError, OSError) as exc:
            return refused(src, exc, started)

    deidentify_file = process  # the name the API and earlier callers use


def reid_pairs(original: dict[str, Any], new: dict[str, Any]) -> tuple[tuple[str, bytes, bytes], ...]:
    """The (kind, new, original) rows of a re-identification table from the ``peek`` of an input and what
    its output carries: each identifier the output changed."""
    return tuple(
        (kind, str(new[name]).encode(), str(original[name]).encode())
        for name, kind in _REID_VALUES
        if original[name] and new.get(name) and new[name] != original[name]
    )


def write_output(dst: str, data: bytes, direct: bool = False) -> int:
    """A whole output written to ``dst``: under a temporary name then renamed, or (``direct``) under its own
    name; a missing folder is made. Returns the bytes written."""
    return _write_bytes_atomically(dst, data, direct)


def refused(src: str, exc: VeilError | OSError, started: int) -> FileOutcome:
    """The quarantine outcome of a file that could not be de-identified; a full disk is re-raised (it stops
    the run; the partial output was already removed)."""
    return FileOutcome(src, None, "quarantined", reason=refusal_reason(exc),
                       microseconds=(time.perf_counter_ns() - started) // 1000)


def refusal_reason(exc: VeilError | OSError) -> str:
    """The audit's reason for a refused file (no value from the file in it); a full disk is re-raised."""
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise exc
        return f"{type(exc).__name__}: {exc.strerror}"
    return exc.reason if isinstance(exc, MalformedDicom) else str(exc)


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def _read_all(fd: int, size: int) -> bytes:
    """The whole file in one ``read`` (a loop only if the kernel returns less)."""
    data = os.read(fd, size)
    if len(data) < size:
        parts = [data]
        got = len(data)
        while got < size:
            chunk = os.read(fd, size - got)
            if not chunk:
                break  # the file shrank while it was read: parse what is there (a truncated file fails)
            parts.append(chunk)
            got += len(chunk)
        data = b"".join(parts)
    return data


# Inputs up to this size are read whole (one read, one writev); larger ones are mapped and their pixel tail
# copied in the kernel (copy_file_range, else sendfile), which measured faster for 0.5 MB CT images.
SMALL_FILE = 128 << 10

_MADE_DIRECTORIES: set[str] = set()


def _make_directory(directory: str) -> None:
    """``os.makedirs`` once per directory and process (outputs of a series share one)."""
    if directory not in _MADE_DIRECTORIES:
        os.makedirs(directory, exist_ok=True)
        if len(_MADE_DIRECTORIES) > 100_000:
            _MADE_DIRECTORIES.clear()
        _MADE_DIRECTORIES.add(directory)


def _open_temporary(tmp: str, directory: str) -> int:
    try:
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except FileNotFoundError:
        # The directory went away since it was made (a cleaned DST in a long-lived worker): make it again.
        _MADE_DIRECTORIES.discard(directory)
        _make_directory(directory)
        return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)


def _write_to(dst: str, write: Callable[[int], int], direct: bool = False) -> int:
    """Runs ``write(fd)`` on a temporary file beside ``dst``, then renames it: the output appears whole or not
    at all. The temporary name is fixed, so a retried or resumed write replaces it, never leaves another.
    ``direct`` writes ``dst`` itself (removed on a failure), for runs whose shard is the atomic unit."""
    directory = os.path.dirname(dst) or "."
    _make_directory(directory)
    tmp = dst if direct else os.path.join(directory, f".{os.path.basename(dst)}.veil-tmp")
    fd = _open_temporary(tmp, directory)
    try:
        total = write(fd)
        os.close(fd)
        fd = -1
        if not direct:
            os.replace(tmp, dst)
        return total
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _write_bytes_atomically(dst: str, data: bytes, direct: bool = False) -> int:
    return _write_to(dst, lambda fd: _write_all(fd, data), direct)


def _write_atomically(dst: str, result: RewriteResult, source_fd: int | None, direct: bool = False) -> int:
    """Header, pixel tail, trailer. With ``source_fd`` the pixel tail is copied from the input in the kernel;
    without, all parts go in one ``writev``."""
    if source_fd is None:
        return _write_to(dst, lambda fd: _writev_all(fd, result.parts()), direct)

    def write(fd: int) -> int:
        total = _write_all(fd, result.header)
        if result.pixel_range is not None:
            start, stop = result.pixel_range
            total += _copy_range(source_fd, fd, start, stop - start, result)
        if result.trailer:
            total += _write_all(fd, result.trailer)
        return total

    return _write_to(dst, write, direct)


def _writev_all(fd: int, parts: list[Any]) -> int:
    expected = sum(len(p) for p in parts)
    done = os.writev(fd, parts)
    if done < expected:  # a short write: finish the rest plainly
        rest = memoryview(b"".join(bytes(p) for p in parts))[done:]
        done += _write_all(fd, rest)
    return done


def _write_all(fd: int, data: bytes | memoryview) -> int:
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.write(fd, view[done:])
    return done


def _copy_range(src_fd: int, dst_fd: int, offset: int, count: int, result: RewriteResult) -> int:
    """Copies count bytes at offset of src_fd to the current end of dst_fd without a user-space copy."""
    copied = 0
    copy: Callable[..., int] | None = getattr(os, "copy_file_range", None)
    while copied < count and copy is not None:
        try:
            n = copy(src_fd, dst_fd, count - copied, offset + copied)
        except OSError as exc:
            if exc.errno in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                copy = None
                break
            raise
        if n == 0:
            break
        copied += n
    while copied < count:
        try:
            n = os.sendfile(dst_fd, src_fd, offset + copied, count - copied)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS):
                raise
            assert result.pixels is not None
            return copied + _write_all(dst_fd, result.pixels[copied:])
        if n == 0:
            raise OSError(errno.EIO, "input file shrank while it was being copied")
        copied += n
    return copied
