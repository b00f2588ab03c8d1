"""The pydicom oracle: the Plan semantics of ``veil.core.plan`` implemented independently on pydicom's raw elements.

Nothing here imports ``veil.core._core``. pydicom parses the file (its lenient structural guesses, reported as
warnings, become rejections); every value stays the raw bytes pydicom read (``RawDataElement``), so no
character-set or number decoding can hide a difference. Each data set becomes a list of :class:`Elem` with
the VR resolved exactly as plan.py says; :func:`apply_plan` rewrites such a list, :func:`compare` diffs two.

The same reader parses the rewriter's output, so expected and actual go through the same code and differ
only where the rewriter and this module disagree.

Beyond plan.py's own words the reference follows PS3.5 6.2.2: an element whose VR resolves to ``UN`` and
whose length is undefined is a sequence of implicit VR little endian items (RECURSE walks it).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from pydicom import config
from pydicom.datadict import DicomDictionary, RepeatersDictionary
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset, read_sequence
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from veil.core.plan import (
    DUMMY_VALUES,
    STANDARD_UID_PREFIX,
    Action,
    Plan,
    Rule,
    clamp_age_value,
    shift_date_value,
)

__all__ = [
    "Elem",
    "Parsed",
    "Reject",
    "Context",
    "IMPLICIT_LE",
    "EXPLICIT_LE",
    "EXPLICIT_BE",
    "DEFLATED_LE",
    "read_file",
    "items_of",
    "find",
    "apply_plan",
    "reference_deidentify",
    "reference_view",
    "expected_meta",
    "compare",
    "dictionary_vr",
    "format_path",
]

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"

UNDEFINED = 0xFFFFFFFF
PIXEL_DATA = 0x7FE00010

VALID_VRS = frozenset(
    "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()
)
# Text VRs: a value the Plan writes is padded with a space; UI and the binary VRs with a NUL (plan.py).
TEXT_VRS = frozenset("AE AS CS DA DS DT IS LO LT PN SH ST TM UC UR UT".split())
# Bytes per number for the binary VRs, to turn REPLACE values (little endian) into big endian.
_WORD = {"AT": 2, "US": 2, "SS": 2, "OW": 2, "UL": 4, "SL": 4, "FL": 4, "OF": 4, "OL": 4,
         "FD": 8, "OD": 8, "SV": 8, "UV": 8, "OV": 8}  # fmt: skip


class Reject(Exception):
    """The reference cannot read the file (the rewriter is expected to raise MalformedDicom)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- VR resolution (plan.py: "The VR is the explicit VR; for implicit VR data sets ...") -------------------

_REPEATERS = [
    (int(p.replace("x", "0"), 16), int("".join("0" if c == "x" else "F" for c in p), 16), e[0])
    for p, e in RepeatersDictionary.items()
]


def _first_choice(vr: str) -> str:
    vr = vr.split(" or ")[0].strip()
    return "UN" if vr == "NONE" or vr not in VALID_VRS else vr


def dictionary_vr(tag: int) -> str | None:
    """The dictionary VR of a public tag (ambiguous VRs: first choice), None when the dictionary lacks it."""
    entry = DicomDictionary.get(tag)
    if entry is not None:
        return _first_choice(entry[0])
    for value, mask, vr in _REPEATERS:
        if tag & mask == value:
            return _first_choice(vr)
    return None


def resolve_vr(tag: int, file_vr: str | None) -> str:
    """The VR the Plan sees: ``file_vr`` is the explicit VR, None for an element read implicitly."""
    group, element = tag >> 16, tag & 0xFFFF
    if group & 1:
        if file_vr is not None:
            return file_vr
        return "LO" if 0x10 <= element <= 0xFF else "UN"
    if file_vr is None or file_vr == "UN":
        return dictionary_vr(tag) or "UN"
    return file_vr


# --- the element view --------------------------------------------------------------------------------------

Item = list["Elem"]


@dataclass
class Elem:
    """One element: resolved VR, and the value as raw bytes or as items (each a list of Elem).

    ``implicit``/``little`` are the encoding of the value's content (what a sequence's items are read
    with); for an SQ still held as bytes, :func:`items_of` parses them.
    """

    tag: int
    vr: str
    value: bytes | list[Item]
    implicit: bool
    little: bool
    file_vr: str | None = None
    undefined_length: bool = False

    @property
    def is_sequence_like(self) -> bool:
        return self.is_sequence or isinstance(self.value, list)

    @property
    def is_sequence(self) -> bool:
        """SQ, or UN of undefined length: PS3.5 6.2.2 makes that a sequence of implicit VR items."""
        return self.vr == "SQ" or self.vr == "UN" and self.undefined_length


@dataclass
class Parsed:
    """A file as the reference reads it."""

    meta: FileMetaDataset | None
    meta_raw: dict[int, bytes]
    elems: list[Elem]
    transfer_syntax: str
    implicit: bool
    little: bool
    preamble: bool


# pydicom's warnings (reading_validation_mode WARN) that mean it guessed at the structure: a Reject here.
# RAISE would turn them into errors too, but also every bad character set, which the bytes-only reference
# does not care about.
_STRUCTURAL_WARNINGS = ("VR, but found", "End of file", "delimiter")


@contextlib.contextmanager
def _strict() -> Iterator[None]:
    """pydicom reads leniently but every structural guess (VR switch, missing delimiter) becomes a Reject."""
    settings = config.settings
    old = (settings.reading_validation_mode, settings.infer_sq_for_un_vr, config.replace_un_with_known_vr)
    settings.reading_validation_mode = config.WARN
    settings.infer_sq_for_un_vr = True
    config.replace_un_with_known_vr = True
    pydicom_logger = logging.getLogger("pydicom")
    old_level = pydicom_logger.level
    pydicom_logger.setLevel(logging.CRITICAL)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            settings.reading_validation_mode, settings.infer_sq_for_un_vr, config.replace_un_with_known_vr = (
                old
            )
            pydicom_logger.setLevel(old_level)
    for warning in caught:
        message = str(warning.message)
        if any(marker in message for marker in _STRUCTURAL_WARNINGS):
            raise Reject(f"pydicom: {message}")


class _Buffer(io.BytesIO):
    """A BytesIO that notices an element header cut short at the end (pydicom ignores one silently)."""

    short_header = False

    def read(self, size: int | None = -1) -> bytes:  # type: ignore[override]
        data = super().read(size)
        if size == 8 and 0 < len(data) < 8:
            self.short_header = True
        return data


def _strip_uid(value: bytes) -> bytes:
    return value.rstrip(b"\x00")


def _meta_value(meta: FileMetaDataset, tag: int) -> bytes | None:
    elem = meta._dict.get(tag)  # type: ignore[attr-defined]
    if elem is None:
        return None
    value = elem.value if isinstance(elem, RawDataElement) else None
    return value or b""


def read_file(data: bytes | bytearray | memoryview | str | os.PathLike[str]) -> Parsed:
    """Read a whole file (Part 10, or a bare data set read as implicit VR little endian) into Elem lists."""
    if isinstance(data, (str, os.PathLike)):
        with open(data, "rb") as fh:
            data = fh.read()
    data = bytes(data)
    with _strict():
        try:
            return _read_file(data)
        except Reject:
            raise
        except (RecursionError, MemoryError) as exc:  # pragma: no cover - depends on the input
            raise Reject(f"{type(exc).__name__}") from None
        except Exception as exc:
            raise Reject(f"pydicom: {type(exc).__name__}: {exc}") from None


def _read_file(data: bytes) -> Parsed:
    preamble = len(data) >= 132 and data[128:132] == b"DICM"
    start = 132 if preamble else 0
    meta: FileMetaDataset | None = None
    meta_raw: dict[int, bytes] = {}
    if preamble or data[:2] == b"\x02\x00":
        # PS3.10 7.1: the File Meta group is explicit VR little endian; read every (0002,xxxx) element.
        fp = io.BytesIO(data)
        fp.seek(start)
        meta = FileMetaDataset(
            read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag >> 16 != 2)
        )
        for tag, elem in meta._dict.items():  # type: ignore[attr-defined]
            if not isinstance(elem, RawDataElement) or elem.VR not in VALID_VRS or elem.is_implicit_VR:
                raise Reject("file meta is not explicit VR little endian")
            value = elem.value or b""
            if len(value) != elem.length:
                raise Reject(f"file meta element ({tag >> 16:04X},{tag & 0xFFFF:04X}) is truncated")
            meta_raw[int(tag)] = value
        # Where the data set starts: after the last meta element (fp.tell() is off when fewer than 8 bytes
        # follow the meta, as with the 2-byte deflate stream of an empty data set).
        start = max((e.value_tell + e.length for e in meta._dict.values()), default=start)  # type: ignore[attr-defined]
        if not meta_raw and preamble:
            raise Reject("no file meta after the DICM prefix")
    ts_raw = meta_raw.get(0x00020010)
    body = data[start:]
    if ts_raw:
        transfer_syntax = ts_raw.rstrip(b"\x00 ").decode("ascii", "replace")
    else:
        transfer_syntax = bare_transfer_syntax(body)
    if transfer_syntax == IMPLICIT_LE:
        implicit, little = True, True
    elif transfer_syntax == EXPLICIT_BE:
        implicit, little = False, False
    else:
        implicit, little = False, True
    if transfer_syntax == DEFLATED_LE:
        try:
            inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            body = inflater.decompress(body) + inflater.flush()
        except zlib.error as exc:
            raise Reject(f"deflate: {exc}") from None
        if not inflater.eof:
            raise Reject("deflate: stream ends early")
    fp = _Buffer(body)
    ds = _read_top_level(fp, implicit, little)
    if fp.short_header:
        raise Reject("element header cut short at the end of the data")
    if fp.tell() != len(body):
        raise Reject(f"data set reading stopped at byte {fp.tell()} of {len(body)}")
    elems = _view(ds, body, implicit, little)
    return Parsed(meta, meta_raw, elems, transfer_syntax, implicit, little, preamble)


def _read_top_level(fp: _Buffer, implicit: bool, little: bool) -> Dataset:
    """The top-level data set. pydicom reads the items of an undefined-length UN in a big endian data set as
    big endian; PS3.5 6.2.2 says they are implicit VR little endian, so those are read here (top level only).
    """
    if little:
        return read_dataset(fp, implicit, little)

    def stop(tag: int, vr: str | None, length: int) -> bool:
        return vr == "UN" and length == UNDEFINED

    merged: dict = {}
    ds = read_dataset(fp, implicit, little, stop_when=stop)
    while True:
        merged.update(ds._dict)  # type: ignore[attr-defined]
        header = fp.read(12)
        if len(header) < 12:
            fp.seek(-len(header), 1)
            break
        tag = int.from_bytes(header[:2], "big") << 16 | int.from_bytes(header[2:4], "big")
        seq = read_sequence(fp, True, True, UNDEFINED, "iso8859")
        elem = DataElement(tag, "SQ", seq, None, is_undefined_length=True)
        elem.veil_file_vr = "UN"  # type: ignore[attr-defined]  # the VR is known, no need to look back
        merged[tag] = elem
        ds = read_dataset(fp, implicit, little, stop_when=stop)
    top = Dataset(merged)
    top.set_original_encoding(implicit, little, "iso8859")
    return top


# Without a Transfer Syntax UID the data set's encoding is read off its first element, as pydicom does: a
# valid VR after the tag means explicit VR, and a first group that only makes sense byte-swapped means big
# endian. (The first brief said implicit VR little endian always; the core sniffs, and so does pydicom.)
BARE_DATA_SET_SNIFFING = True


def bare_transfer_syntax(body: bytes) -> str:
    """The transfer syntax of a data set with no Transfer Syntax UID in front of it."""
    if not BARE_DATA_SET_SNIFFING or len(body) < 6:
        return IMPLICIT_LE
    if body[4:6].decode("latin-1") not in VALID_VRS:
        return IMPLICIT_LE
    return EXPLICIT_BE if int.from_bytes(body[:2], "little") >= 0x0400 else EXPLICIT_LE


def _view(ds: Dataset, buf: bytes, implicit: bool, little: bool) -> list[Elem]:
    """The Elem list of one data set as pydicom read it from ``buf``."""
    read_implicit, read_little = ds.original_encoding
    if read_implicit is not None:
        implicit, little = bool(read_implicit), bool(read_little)
    out = []
    for tag in sorted(ds._dict):  # type: ignore[attr-defined]
        raw = ds._dict[tag]  # type: ignore[attr-defined]
        tag = int(tag)
        if (tag >> 16) == 0xFFFE:
            raise Reject(f"item or delimiter tag ({tag >> 16:04X},{tag & 0xFFFF:04X}) inside a data set")
        if isinstance(raw, RawDataElement):
            if raw.VR is None and not raw.is_implicit_VR:
                raise Reject(f"invalid VR in ({tag >> 16:04X},{tag & 0xFFFF:04X})")
            file_vr = None if raw.is_implicit_VR else raw.VR
            if file_vr is not None and file_vr not in VALID_VRS:
                raise Reject(f"unknown VR {file_vr!r} in ({tag >> 16:04X},{tag & 0xFFFF:04X})")
            value = raw.value if raw.value is not None else b""
            if not isinstance(value, bytes):
                value = bytes(value)
            if raw.length != UNDEFINED and len(value) != raw.length:
                raise Reject(f"value of ({tag >> 16:04X},{tag & 0xFFFF:04X}) runs past the end of the data")
            vr = resolve_vr(tag, file_vr)
            content_implicit, content_little = (
                (True, True) if file_vr == "UN" else (raw.is_implicit_VR, little)
            )
            out.append(
                Elem(tag, vr, value, content_implicit, content_little, file_vr, raw.length == UNDEFINED)
            )
        else:  # an undefined length sequence pydicom parsed while reading
            assert isinstance(raw, DataElement) and isinstance(raw.value, Sequence)
            file_vr = getattr(raw, "veil_file_vr", None)
            if not implicit and file_vr is None:
                tell = raw.file_tell or 0
                header = buf[tell - 8 : tell - 6]
                file_vr = header.decode("latin-1") if len(header) == 2 else None
                if file_vr not in VALID_VRS:
                    raise Reject(f"cannot find the VR of ({tag >> 16:04X},{tag & 0xFFFF:04X})")
            vr = resolve_vr(tag, file_vr)
            item_little = True if file_vr == "UN" else little
            _check_items(raw.value, buf, item_little, None, tag)
            items = [_view(item, buf, implicit, item_little) for item in raw.value]
            out.append(Elem(tag, vr, items, implicit, little, file_vr, True))
    return out


def _check_items(seq: Sequence, buf: bytes, little: bool, end: int | None, tag: int) -> None:
    """What pydicom does not check: each item starts with an Item tag and a defined item length is exact.

    ``end`` is where a defined-length sequence ends; None for an undefined-length one, whose last item
    must then be followed by the Sequence Delimitation Item.
    """
    order = "little" if little else "big"
    item_tag = (0xFFFE).to_bytes(2, order) + (0xE000).to_bytes(2, order)
    delimiter = (0xFFFE).to_bytes(2, order) + (0xE0DD).to_bytes(2, order)
    where = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    for i, item in enumerate(seq):
        start = item.seq_item_tell
        if buf[start : start + 4] != item_tag:
            raise Reject(f"sequence {where}: item {i} does not start with an Item tag")
        length = int.from_bytes(buf[start + 4 : start + 8], order)
        if length == UNDEFINED:
            continue
        stop = start + 8 + length
        if i + 1 < len(seq):
            if seq[i + 1].seq_item_tell != stop:
                raise Reject(f"sequence {where}: item {i} content does not match its length")
        elif end is not None:
            if stop != end:
                raise Reject(f"sequence {where}: the last item does not end with the sequence")
        elif buf[stop : stop + 4] != delimiter:
            raise Reject(f"sequence {where}: item {i} content does not match its length")


def items_of(elem: Elem) -> list[Item]:
    """The items of a sequence (parsed from the raw value on first use); Reject when they cannot be read."""
    if isinstance(elem.value, list):
        return elem.value
    value = elem.value
    if not value:
        return []
    with _strict():
        fp = io.BytesIO(value)
        try:
            seq = read_sequence(fp, elem.implicit, elem.little, len(value), "iso8859")
        except Exception as exc:
            raise Reject(f"sequence ({elem.tag >> 16:04X},{elem.tag & 0xFFFF:04X}): {exc}") from None
        if fp.tell() != len(value):
            raise Reject(f"sequence ({elem.tag >> 16:04X},{elem.tag & 0xFFFF:04X}) items overrun its length")
        _check_items(seq, value, elem.little, len(value), elem.tag)
        return [_view(item, value, elem.implicit, elem.little) for item in seq]


# --- applying a Plan ---------------------------------------------------------------------------------------


@dataclass
class Context:
    """What a rewrite depends on besides the Plan: the keyed functions and the file's date shift."""

    plan: Plan
    uid_fn: Callable[[bytes], bytes]
    id_fn: Callable[[bytes], bytes]
    shift_days: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, action: Action) -> None:
        self.counts[action.name] = self.counts.get(action.name, 0) + 1


def strip_value(value: bytes, vr: str) -> bytes:
    """A value without its padding, for showing differences: trailing NULs for UI, spaces for text VRs."""
    if vr == "UI":
        return value.rstrip(b"\x00")
    if vr in TEXT_VRS:
        return value.strip(b" ")
    return value


def pad_value(value: bytes, vr: str) -> bytes:
    """Pad to an even length: NUL for UI and binary VRs, space for text VRs."""
    if len(value) % 2:
        value += b" " if vr in TEXT_VRS else b"\x00"
    return value


def _encode_text(text: str) -> bytes:
    return text.encode("utf-8")


def _binary_to_order(value: bytes, vr: str, little: bool) -> bytes:
    """REPLACE values of binary VRs are given little endian; swap each word for a big endian data set."""
    width = _WORD.get(vr, 1)
    if little or width == 1:
        return value
    return b"".join(value[i : i + width][::-1] for i in range(0, len(value), width))


def _component(value: bytes) -> bytes:
    """One value of a multi-value for UID and PSEUDO: leading and trailing spaces and NULs stripped."""
    return value.strip(b" \x00")


def _uid_map(value: bytes, ctx: Context) -> bytes:
    out = []
    for one in value.split(b"\\"):
        one = _component(one)
        if not one or one.startswith(STANDARD_UID_PREFIX.encode()):
            out.append(one)
        else:
            out.append(ctx.uid_fn(one))
    return b"\\".join(out)


def _pseudo(value: bytes, ctx: Context) -> bytes:
    out = []
    for one in value.split(b"\\"):
        one = _component(one)
        out.append(ctx.id_fn(one) if one else one)
    return b"\\".join(out)


def _text(value: bytes) -> str | None:
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        return None


def _rule_for(elem: Elem, creators: dict[tuple[int, int], str], plan: Plan) -> Rule:
    group, element = elem.tag >> 16, elem.tag & 0xFFFF
    if not group & 1:
        return plan.rule_for_public(elem.tag, elem.vr)
    if 0x10 <= element <= 0xFF:
        creator = creators.get((group, element))
        if creator is not None and plan.keeps_creator(group, creator):
            return Rule(Action.KEEP)
        return Rule(plan.default_private)
    if element >> 8 >= 0x10:
        return plan.rule_for_private(group, creators.get((group, element >> 8)), element & 0xFF)
    return Rule(plan.default_private)


def _creators(elems: list[Elem]) -> dict[tuple[int, int], str]:
    """Private creators of one data set by (group, block): the (gggg,00xx) value, trailing spaces/NULs stripped."""
    found: dict[tuple[int, int], str] = {}
    for elem in elems:
        group, element = elem.tag >> 16, elem.tag & 0xFFFF
        if group & 1 and 0x10 <= element <= 0xFF and isinstance(elem.value, bytes):
            found[(group, element)] = elem.value.rstrip(b" \x00").decode("latin-1")
    return found


def _replace_value(elem: Elem, value: bytes) -> Elem:
    return Elem(elem.tag, elem.vr, value, elem.implicit, elem.little, elem.file_vr, False)


def _apply(elem: Elem, rule: Rule, ctx: Context) -> Elem | None:
    action, vr = rule.action, elem.vr
    if action == Action.KEEP:
        # plan.py: "A kept value of odd length is padded to even length" (a kept sequence is not examined).
        if isinstance(elem.value, bytes) and not elem.undefined_length and len(elem.value) % 2:
            return _replace_value(elem, pad_value(elem.value, vr))
        return elem
    if action == Action.REMOVE:
        return None
    if action == Action.RECURSE:
        if not elem.is_sequence:
            return None
        items = [apply_plan(item, ctx) for item in items_of(elem)]
        return Elem(elem.tag, vr, items, elem.implicit, elem.little, elem.file_vr, elem.undefined_length)
    if action in (Action.EMPTY, Action.DUMMY) and elem.is_sequence_like:
        return _replace_value(elem, [] if elem.is_sequence else b"")
    value = elem.value if isinstance(elem.value, bytes) else b""
    if action == Action.EMPTY:
        new = b""
    elif action == Action.DUMMY:
        dummy = DUMMY_VALUES.get(vr, b"")
        new = _encode_text(dummy) if isinstance(dummy, str) else dummy
    elif action == Action.REPLACE:
        given = rule.value if rule.value is not None else b""
        new = _encode_text(given) if isinstance(given, str) else _binary_to_order(given, vr, elem.little)
    elif action == Action.UID:
        new = _uid_map(value, ctx)
    elif action == Action.SHIFT:
        new = b""
        text = _text(value) if vr in ("DA", "DT") else None  # shift_date_value strips each component
        if text is not None:
            shifted = shift_date_value(text, vr, ctx.shift_days)
            new = shifted.encode("ascii") if shifted is not None else b""
    elif action == Action.PSEUDO:
        new = _pseudo(value, ctx)
    elif action == Action.AGE:
        text = _text(value)  # clamp_age_value strips spaces and NULs
        clamped = clamp_age_value(text, ctx.plan.age_cap) if text is not None else None
        new = clamped.encode("ascii") if clamped is not None else b""
    elif action == Action.CALL:
        assert ctx.plan.callback is not None, "CALL without a callback"
        result = ctx.plan.callback(elem.tag, vr, value)  # the raw value bytes (plan.py)
        if result is None:
            return None
        new = bytes(result)
    else:  # pragma: no cover
        raise AssertionError(f"unknown action {action!r}")
    return _replace_value(elem, pad_value(new, vr))


def apply_plan(elems: list[Elem], ctx: Context) -> list[Elem]:
    """Rewrite one data set (and, through RECURSE, its items) under ``ctx.plan``."""
    creators = _creators(elems)
    out = []
    for elem in elems:
        if elem.tag & 0xFFFF == 0:  # group length: always dropped (PS3.5 7.2)
            ctx.count(Action.REMOVE)
            continue
        rule = _rule_for(elem, creators, ctx.plan)
        new = _apply(elem, rule, ctx)
        if new is None:  # REMOVE, RECURSE on a non-sequence, CALL answering None: all count as removals
            ctx.count(Action.REMOVE)
        elif rule.action != Action.KEEP and new.value != elem.value:
            ctx.count(rule.action)
        if new is not None:
            out.append(new)
    return out


def find(elems: list[Elem], tag: int) -> Elem | None:
    for elem in elems:
        if elem.tag == tag:
            return elem
    return None


def reference_view(
    source: bytes | str | os.PathLike[str] | Parsed,
    plan: Plan,
    uid_fn: Callable[[bytes], bytes],
    id_fn: Callable[[bytes], bytes],
    shift_days: int = 0,
) -> tuple[Parsed, list[Elem], Context]:
    """The input as read and the expected output data set as an Elem list (raises Reject)."""
    parsed = source if isinstance(source, Parsed) else read_file(source)
    ctx = Context(plan, uid_fn, id_fn, shift_days)
    with _strict():
        out = apply_plan(parsed.elems, ctx)
    if plan.insert:
        inserted = _inserted_elems(plan, parsed.implicit, parsed.little)
        tags = {elem.tag for elem in inserted}
        out = sorted([elem for elem in out if elem.tag not in tags] + inserted, key=lambda e: e.tag)
    return parsed, out, ctx


def _inserted_elems(plan: Plan, implicit: bool, little: bool) -> list[Elem]:
    """The Plan's inserted elements, encoded by pydicom (not by veil's encoder) and read back."""
    ds = Dataset()
    for tag, vr, value in plan.insert:
        if vr == "SQ":
            items = []
            for item in value:
                item_ds = Dataset()
                for item_tag, item_vr, text in item:
                    item_ds.add_new(item_tag, item_vr, text)
                items.append(item_ds)
            ds.add_new(tag, "SQ", Sequence(items))
        else:
            ds.add_new(tag, vr, value)
    fp = DicomBytesIO()
    fp.is_implicit_VR = implicit
    fp.is_little_endian = little
    write_dataset(fp, ds)
    body = fp.getvalue()
    return _view(_read_top_level(_Buffer(body), implicit, little), body, implicit, little)


def expected_meta(parsed: Parsed, out: list[Elem]) -> dict[int, bytes]:
    """The File Meta the rewriter must write, values stripped (implementation class/version excluded).

    Without a SOP Instance UID (or with an empty one) in the output data set the core names the instance itself (a new UID in
    (0002,0003) only); that value is left open here.
    """
    meta: dict[int, bytes] = {0x00020001: b"\x00\x01", 0x00020010: parsed.transfer_syntax.encode()}
    sop_class = parsed.meta_raw.get(0x00020002)
    if sop_class is None:
        elem = find(parsed.elems, 0x00080016)
        sop_class = elem.value if elem is not None and isinstance(elem.value, bytes) else None
    if sop_class is not None:
        meta[0x00020002] = _strip_uid(sop_class)
    sop_instance = find(out, 0x00080018)
    if sop_instance is not None and isinstance(sop_instance.value, bytes) and _strip_uid(sop_instance.value):
        meta[0x00020003] = _strip_uid(sop_instance.value)
    return meta


def _to_dataset(elems: list[Elem]) -> Dataset:
    ds = Dataset()
    for elem in elems:
        if isinstance(elem.value, list):
            seq = Sequence([_to_dataset(item) for item in elem.value])
            ds._dict[elem.tag] = DataElement(elem.tag, "SQ", seq, validation_mode=config.IGNORE)  # type: ignore[attr-defined]
        else:
            ds._dict[elem.tag] = RawDataElement(  # type: ignore[attr-defined]
                elem.tag, elem.vr, len(elem.value), elem.value, 0, elem.implicit, elem.little
            )
    return ds


def reference_deidentify(
    path_or_bytes: bytes | str | os.PathLike[str],
    plan: Plan,
    uid_fn: Callable[[bytes], bytes],
    id_fn: Callable[[bytes], bytes],
    shift_days: int = 0,
) -> Dataset:
    """The expected de-identified data set (raw elements, resolved VRs) with its expected ``file_meta``."""
    parsed, out, _ = reference_view(path_or_bytes, plan, uid_fn, id_fn, shift_days)
    ds = _to_dataset(out)
    meta = FileMetaDataset()
    for tag, value in sorted(expected_meta(parsed, out).items()):
        vr = "OB" if tag == 0x00020001 else "UI"
        meta._dict[tag] = RawDataElement(tag, vr, len(value), pad_value(value, vr), 0, False, True)  # type: ignore[attr-defined]
    ds.file_meta = meta
    return ds


# --- comparing -------------------------------------------------------------------------------------------


def format_tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def format_path(parts: tuple[str, ...]) -> str:
    return "".join(parts)


def _show(value: bytes | list[Item], limit: int = 48) -> str:
    if isinstance(value, list):
        return f"<{len(value)} items>"
    text = repr(value[:limit])
    return text + (f"...({len(value)} bytes)" if len(value) > limit else "")


def compare(
    expected: list[Elem], actual: list[Elem], path: tuple[str, ...] = (), limit: int = 20
) -> list[str]:
    """Differences between two data sets, each as ``path: what`` (tag, VR, value bytes, items)."""
    diffs: list[str] = []
    _compare(expected, actual, path, diffs, limit)
    return diffs


def _as_items(elem: Elem) -> list[Item] | None:
    try:
        return items_of(elem)
    except Reject:
        return None


def _compare(
    expected: list[Elem], actual: list[Elem], path: tuple[str, ...], diffs: list[str], limit: int
) -> None:
    exp = {e.tag: e for e in expected}
    act = {e.tag: e for e in actual}
    for tag in sorted(set(exp) | set(act)):
        if len(diffs) >= limit:
            return
        where = format_path(path + (format_tag(tag),))
        e, a = exp.get(tag), act.get(tag)
        if a is None:
            assert e is not None
            diffs.append(f"{where}: missing in output (expected {e.vr} {_show(e.value)})")
            continue
        if e is None:
            diffs.append(f"{where}: unexpected in output ({a.vr} {_show(a.value)})")
            continue
        if e.vr != a.vr:
            diffs.append(f"{where}: VR expected {e.vr} got {a.vr}")
            continue
        if e.file_vr is not None and a.file_vr is not None and e.file_vr != a.file_vr:
            # plan.py: the output keeps the element's VR as written (an explicit UN stays UN)
            diffs.append(f"{where}: VR as written expected {e.file_vr} got {a.file_vr}")
            continue
        if e.is_sequence_like or a.is_sequence_like:
            e_items, a_items = _as_items(e), _as_items(a)
            if e_items is None or a_items is None:
                if e.value != a.value:
                    diffs.append(f"{where}: unparseable sequence values differ")
                continue
            if len(e_items) != len(a_items):
                diffs.append(f"{where}: expected {len(e_items)} items, got {len(a_items)}")
                continue
            for i, (ei, ai) in enumerate(zip(e_items, a_items, strict=True)):
                _compare(ei, ai, path + (format_tag(tag), f"[{i}]"), diffs, limit)
            continue
        assert isinstance(e.value, bytes) and isinstance(a.value, bytes)
        if e.value != a.value:
            if strip_value(e.value, e.vr).rstrip(b"\x00 ") == strip_value(a.value, a.vr).rstrip(b"\x00 "):
                diffs.append(
                    f"{where}: {e.vr} padding differs: expected {_show(e.value)} got {_show(a.value)}"
                )
            else:
                diffs.append(f"{where}: {e.vr} expected {_show(e.value)} got {_show(a.value)}")
