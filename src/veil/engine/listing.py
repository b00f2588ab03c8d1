"""The inputs of a run, listed lazily and in a stable order: a walk of SRC, or the lines of ``--files-from``; what
cannot be read is listed too, with its reason (an :class:`Entry` with an ``error``)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, cast, overload

from veil.core._core import SCAN_DIRECTORY, SCAN_ERROR, SCAN_FILE, SCAN_SYMLINK, scan_directory

__all__ = ["Entry", "EntryBlock", "list_blocks", "list_inputs", "pack"]


class Entry(NamedTuple):
    """One listed input: a file to process, or a path recorded with the reason it cannot be (``error``).
    A named tuple: a million of them flow through the driver and are pickled to the workers."""

    path: str
    rel: str
    size: int = 0
    error: str = ""


class EntryBlock(Sequence[Entry]):
    """A shard of plain files as columns: the paths' common ``prefix``, each path relative to SRC (``rels``) and
    each size; its entries are made on demand. What a shard that the listing refused nothing of is sent to a
    worker as: a third of the bytes of its Entry tuples, pickled in a fifth of the time, and the native batch
    path reads the columns without making an Entry per file (see :func:`pack`)."""

    __slots__ = ("prefix", "rels", "sizes")

    def __init__(self, prefix: str, rels: list[str], sizes: list[int]) -> None:
        if len(rels) != len(sizes):
            raise ValueError(f"{len(rels)} paths but {len(sizes)} sizes")
        self.prefix = prefix
        self.rels = rels
        self.sizes = sizes

    def __len__(self) -> int:
        return len(self.rels)

    @overload
    def __getitem__(self, index: int) -> Entry: ...
    @overload
    def __getitem__(self, index: slice) -> list[Entry]: ...
    def __getitem__(self, index: int | slice) -> Entry | list[Entry]:
        if isinstance(index, slice):
            return [Entry(self.prefix + rel, rel, size) for rel, size in zip(self.rels[index], self.sizes[index],
                                                                              strict=True)]
        rel = self.rels[index]
        return Entry(self.prefix + rel, rel, self.sizes[index])

    def __iter__(self) -> Iterator[Entry]:
        prefix = self.prefix
        for rel, size in zip(self.rels, self.sizes, strict=True):
            yield Entry(prefix + rel, rel, size)

    def paths(self) -> list[str]:
        prefix = self.prefix
        return [prefix + rel for rel in self.rels]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EntryBlock):
            return (self.prefix, self.rels, self.sizes) == (other.prefix, other.rels, other.sizes)
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable columns, as a list

    def __repr__(self) -> str:  # no path: a folder's name in SRC may name a patient, and a repr can reach a log
        return f"EntryBlock({len(self)} entries)"

    def __reduce__(self) -> tuple[Any, ...]:
        return EntryBlock, (self.prefix, self.rels, self.sizes)


def pack(entries: list[Entry]) -> Sequence[Entry]:
    """``entries`` as an :class:`EntryBlock` when each is a plain file whose path is one common prefix + its
    path relative to SRC (a walk of SRC), else as they are (refusals, a ``--files-from`` listing)."""
    if not entries:
        return entries
    first = entries[0]
    if first.error or not first.path.endswith(first.rel):
        return entries
    prefix = first.path[:len(first.path) - len(first.rel)]
    for entry in entries:
        if entry.error or entry.path != prefix + entry.rel:
            return entries
    return EntryBlock(prefix, [entry.rel for entry in entries], [entry.size for entry in entries])


def list_inputs(src: str, files_from: str | None = None) -> Iterator[Entry]:
    """Inputs in a stable order, lazily: a recursive walk of SRC (one directory's names in memory at a time),
    or the lines of a listing file. Unreadable directories, loops and symlinks out of SRC are yielded as
    entries with an ``error`` so the run records them and goes on."""
    if files_from is not None:  # entries already: no layer between them and the caller
        yield from _list_file(os.path.realpath(src), files_from)
        return
    for item in list_blocks(src):
        if type(item) is EntryBlock:  # (not isinstance: EntryBlock's ABC check costs an item 0.5 us)
            yield from item
        else:
            yield cast(Entry, item)


def list_blocks(src: str, files_from: str | None = None) -> Iterator[Entry | EntryBlock]:
    """:func:`list_inputs` in the same order, with each run of a folder's plain files (the files between two of
    its sub-folders, by name; 4,096 at most) as one :class:`EntryBlock` (prefix SRC + "/", paths relative to
    SRC, sizes): what the driver cuts into shards (:func:`~veil.engine.sharding.shards`) without an object per
    file. A symbolic link, and what the listing refuses, is an :class:`Entry`; so is every line of a listing
    file."""
    root = os.path.realpath(src)
    if files_from is not None:
        yield from _list_file(root, files_from)
        return
    if os.path.isfile(root):
        yield _entry(root, os.path.basename(root), root)
        return
    yield from _walk(root, "", root, {_dir_id(root)})


def _dir_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _entry(path: str, rel: str, root: str) -> Entry:
    real = os.path.realpath(path)
    if real != root and not real.startswith(root + os.sep):
        return Entry(path, rel, error="symlink out of SRC")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return Entry(path, rel, error="vanished before it was read")
    except OSError as exc:
        return Entry(path, rel, error=f"cannot stat: {exc.strerror}")
    if not stat.S_ISREG(st.st_mode):
        return Entry(path, rel, error="not a regular file")
    return Entry(path, rel, st.st_size)


_BLOCK_FILES = 4096  # plain files a block of the walk holds at most


def _walk(top: str, rel: str, root: str, ancestors: set[tuple[int, int]]) -> Iterator[Entry | EntryBlock]:
    """Depth first, names sorted, one frame per open directory on an explicit stack (no generator per level:
    each item is yielded once, not passed up through every parent). Each directory is read by the core's
    ``scan_directory``: one pass, and an ``lstat`` relative to the directory for each file. A run of plain
    files is yielded as one block, before whatever follows it (a sub-folder, a link, a refusal)."""
    inside = root + os.sep
    # Every path the walk makes is this prefix + the path relative to SRC (SRC's folders are joined with "/").
    base = root if root.endswith(os.sep) else inside
    rels: list[str] = []
    sizes: list[int] = []
    stack: list[list[Any]] = [[top, rel, frozenset(ancestors), None]]
    while stack:
        frame = stack[-1]
        directory, rel, ancestors, items = frame
        if items is None:
            try:
                listed = sorted(scan_directory(directory))
            except OSError as exc:
                stack.pop()
                if rels:
                    yield EntryBlock(base, rels, sizes)
                    rels, sizes = [], []
                yield Entry(directory, rel or ".", error=f"cannot list directory: {exc.strerror}")
                continue
            items = frame[3] = iter(listed)
        prefix = f"{rel}/" if rel else ""
        folder = directory if directory.endswith(os.sep) else directory + os.sep
        for name, kind, value in items:
            if name.startswith(".veil"):
                continue
            if kind == SCAN_FILE:
                # A plain file under a directory already known to be inside SRC: its size came with the scan.
                rels.append(prefix + name)
                sizes.append(value)
                if len(rels) >= _BLOCK_FILES:
                    yield EntryBlock(base, rels, sizes)
                    rels, sizes = [], []
                continue
            if rels:  # the run of plain files before this item
                yield EntryBlock(base, rels, sizes)
                rels, sizes = [], []
            path = folder + name
            child_rel = prefix + name
            is_link = kind == SCAN_SYMLINK
            if kind == SCAN_DIRECTORY or (is_link and os.path.isdir(path)):
                if is_link:
                    real = os.path.realpath(path)
                    if real != root and not real.startswith(inside):
                        yield Entry(path, child_rel, error="symlink out of SRC")
                        continue
                try:
                    ident = _dir_id(path)
                except OSError as exc:
                    yield Entry(path, child_rel, error=f"cannot stat directory: {exc.strerror}")
                    continue
                if ident in ancestors:
                    yield Entry(path, child_rel, error="directory loop")
                    continue
                stack.append([path, child_rel, ancestors | {ident}, None])
                break  # the child first; this directory's iterator resumes after it
            if is_link:
                yield _entry(path, child_rel, root)
            elif kind == SCAN_ERROR:
                yield Entry(path, child_rel, error=f"cannot stat: {os.strerror(value)}")
            else:
                yield Entry(path, child_rel, error="not a regular file")
        else:
            stack.pop()
            if rels:  # a block holds one folder's files (a listing in memory stays one folder's)
                yield EntryBlock(base, rels, sizes)
                rels, sizes = [], []


def _list_file(root: str, listing: str) -> Iterator[Entry]:
    """The lines of a listing file as entries. Each directory is resolved once (listings come grouped by
    directory), then each file costs one ``lstat``: a plain file under a directory known to be inside SRC is
    inside SRC; a symlink is resolved in full."""
    directories: dict[str, str | None] = {}  # directory as listed -> its real path (None: outside SRC)
    inside = root + os.sep
    with open(listing, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            path = line.rstrip("\n")
            if not path.strip():
                continue
            full = path if os.path.isabs(path) else os.path.join(root, path)
            folder, name = os.path.split(full)
            real_folder = directories.get(folder, "")
            if real_folder == "":
                real_folder = os.path.realpath(folder)
                if real_folder != root and not real_folder.startswith(inside):
                    real_folder = None
                if len(directories) > 65536:
                    directories.clear()
                directories[folder] = real_folder
            if real_folder is None:
                yield Entry(full, os.path.basename(full), error="listed path is outside SRC")
                continue
            if os.path.isabs(path):
                rel = os.path.join(real_folder[len(inside):], name) if real_folder != root else name
            else:
                rel = os.path.normpath(path)  # as listed (through an in-SRC symlinked folder too)
                if rel.startswith(".."):
                    yield Entry(full, os.path.basename(full), error="listed path is outside SRC")
                    continue
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                yield Entry(full, rel, error="vanished before it was read")
                continue
            except OSError as exc:
                yield Entry(full, rel, error=f"cannot stat: {exc.strerror}")
                continue
            if stat.S_ISLNK(st.st_mode):
                yield _entry(full, rel, root)
            elif stat.S_ISREG(st.st_mode):
                yield Entry(full, rel, st.st_size)
            else:
                yield Entry(full, rel, error="not a regular file")
