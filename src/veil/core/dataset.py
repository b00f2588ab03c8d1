"""Walking a pydicom data set the way the Plan sees it: every element at any depth with the VR, private
creator and path the Plan's lookup uses (pydicom, never the native core; verify and the preview share it).
"""

from __future__ import annotations

import io
import mmap
from collections.abc import Iterator
from functools import lru_cache
from typing import cast

import pydicom
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset

from veil.core.dictionary import dictionary_entry

__all__ = ["Node", "element_bytes", "plan_vr", "read_dataset", "walk_dataset"]

_UNDEFINED_LENGTH = 0xFFFFFFFF


class Node:
    """One element of a data set at any depth, with what the Plan needs to choose its rule."""

    __slots__ = ("path", "tag", "vr", "depth", "dataset", "item", "creator", "sequence", "parent")

    def __init__(
        self,
        path: str,
        tag: int,
        vr: str,
        depth: int,
        dataset: Dataset,
        item: RawDataElement | DataElement,
        creator: str | None,
        sequence: bool,
        parent: str,
    ) -> None:
        self.path = path  # "(0008,1140)[0](0008,1155)", the format of RewriteResult.touched()
        self.tag = tag
        self.vr = vr  # the VR the Plan looks up (see plan_vr)
        self.depth = depth
        self.dataset = dataset  # the data set (top level or item) holding the element
        self.item = item  # as pydicom holds it: raw until converted
        self.creator = creator  # private data element: its block's creator; private creator: its own value
        self.sequence = sequence
        self.parent = parent  # path of the enclosing sequence, "" at the top level

    def __repr__(self) -> str:
        return f"Node({self.path} {self.vr})"

    @property
    def keyword(self) -> str:
        return _keyword(self.tag)

    def element(self) -> DataElement:
        """The element converted by pydicom (values decoded)."""
        return self.dataset[self.tag]

    def value_bytes(self) -> bytes:
        """The value as stored (raw bytes where pydicom has not converted it), for byte-level comparison."""
        return _item_bytes(self.item)


@lru_cache(maxsize=8192)
def _keyword(tag: int) -> str:
    if tag >> 16 & 1:
        return ""
    entry = dictionary_entry(tag)
    return entry[1] if entry else ""


def element_bytes(ds: Dataset, tag: int) -> bytes:
    """The raw value bytes of an element; a value pydicom already converted is re-encoded as text."""
    return _item_bytes(ds.get_item(tag))


def _item_bytes(item: RawDataElement | DataElement | None) -> bytes:
    if item is None:
        return b""
    value = item.value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if value is None:
        return b""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        text = "\\".join(str(v) for v in value)
    else:
        text = str(value)
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode("utf-8")


@lru_cache(maxsize=16384)
def plan_vr(tag: int, written: str | None) -> str:
    """The VR the Plan sees: the explicit VR; for implicit data and explicit ``UN`` the dictionary's VR
    (first choice of an ambiguous one: ``US or SS`` -> US); private creators LO, private data UN."""
    if written and written != "UN" and " or " not in written:
        return written
    group, element = tag >> 16, tag & 0xFFFF
    if group & 1:
        if 0x0010 <= element <= 0x00FF:
            return "LO"
        return "UN"
    if element == 0:
        return "UL"
    entry = dictionary_entry(tag)
    if entry is None:
        return written if written and " or " not in written else "UN"
    return entry[0].split(" or ")[0].strip()


def walk_dataset(ds: Dataset, prefix: str = "", depth: int = 0, parent: str = "") -> Iterator[Node]:
    """Every element of ``ds`` in tag order, each sequence followed by its items' elements (depth first)."""
    items = sorted(ds.items(), key=lambda kv: int(kv[0]))
    creators: dict[tuple[int, int], str] = {}
    for raw_tag, item in items:
        group, element = raw_tag >> 16, raw_tag & 0xFFFF
        if group & 1 and 0x0010 <= element <= 0x00FF:
            creators[(group, element)] = _item_bytes(item).rstrip(b" \x00").decode("latin-1")
    for raw_tag, item in items:
        tag = int(raw_tag)
        group, element = tag >> 16, tag & 0xFFFF
        written = item.VR
        vr = plan_vr(tag, written)
        creator: str | None = None
        if group & 1:
            if 0x0010 <= element <= 0x00FF:
                creator = creators.get((group, element))
            elif element >> 8 >= 0x10:
                creator = creators.get((group, element >> 8))
        sequence = False
        if isinstance(item, DataElement):
            sequence = item.VR == "SQ"
        elif item.VR == "SQ" or (vr == "SQ" and item.VR in (None, "UN")) or item.length == _UNDEFINED_LENGTH:
            try:
                item = ds[tag]
                sequence = item.VR == "SQ"
            except Exception:  # a value pydicom cannot convert stays a leaf
                sequence = False
        if sequence:
            vr = "SQ"
        path = f"{prefix}({group:04X},{element:04X})"
        yield Node(path, tag, vr, depth, ds, item, creator, sequence, parent)
        if sequence:
            for index, child in enumerate(cast(DataElement, item).value):
                yield from walk_dataset(child, f"{path}[{index}]", depth + 1, path)


def read_dataset(data: bytes | memoryview | mmap.mmap, *, pixels: bool = False) -> Dataset:
    """The data set of a file's bytes as pydicom reads it (``force``: a bare data set too), without the
    pixel data unless ``pixels``."""
    return pydicom.dcmread(io.BytesIO(bytes(data)), force=True, stop_before_pixels=not pixels)
