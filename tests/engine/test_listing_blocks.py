"""The driver lists SRC with runs of plain files as blocks (``list_blocks``) and cuts shards from them with no
object per file: the same entries in the same order as ``list_inputs``, and the same shards, cut for cut, as
the entry by entry cut (which ``--resume`` relies on)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veil.engine.listing import Entry, EntryBlock, list_blocks, list_inputs, pack
from veil.engine.sharding import choose_shard_files, shards


def entry_by_entry(entries: list[Entry], max_files: int, max_bytes: int) -> list[tuple[int, object]]:
    """The cut as it was made before blocks: entry by entry, each shard packed."""
    out: list[tuple[int, object]] = []
    batch: list[Entry] = []
    size = 0
    for entry in entries:
        batch.append(entry)
        size += entry.size
        if len(batch) >= max_files or size >= max_bytes:
            out.append((len(out), pack(batch)))
            batch, size = [], 0
    if batch:
        out.append((len(out), pack(batch)))
    return out


def same(a: list[tuple[int, object]], b: list[tuple[int, object]]) -> None:
    assert [n for n, _ in a] == [n for n, _ in b]
    for (_, x), (_, y) in zip(a, b, strict=True):
        assert type(x) is type(y)
        assert list(x) == list(y)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """Files around sub-folders (by name), a link to a file and a link to a folder inside SRC, a link out of SRC,
    a folder loop, an empty folder, a FIFO, veil's own folder, and one folder of 5,000 files."""
    tmp_path = tmp_path_factory.mktemp("blocks")
    src = tmp_path / "in"
    for rel, size in [("a.dcm", 10), ("b/x.dcm", 20), ("b/y.dcm", 30), ("c.dcm", 40), ("d/e/f.dcm", 50),
                      ("d/g.dcm", 60), ("z.dcm", 70)]:
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    (src / "empty").mkdir()
    (src / "bb.dcm").symlink_to(src / "a.dcm")
    (src / "d" / "link").symlink_to(src / "b")
    (tmp_path / "out.dcm").write_bytes(b"y")
    (src / "d" / "out.dcm").symlink_to(tmp_path / "out.dcm")
    (src / "d" / "e" / "up").symlink_to(src / "d")
    os.mkfifo(src / "d" / "pipe.dcm")
    (src / ".veil").mkdir()
    (src / ".veil" / "manifest.json").write_text("{}")
    many = src / "many"
    many.mkdir()
    for i in range(5000):
        (many / f"{i:05d}.dcm").write_bytes(b"z" * (i % 7))
    return src


def test_blocks_hold_the_entries_of_list_inputs_in_its_order(tree) -> None:
    items = list(list_blocks(str(tree)))
    flat: list[Entry] = []
    for item in items:
        flat.extend([item] if type(item) is Entry else item)
    assert flat == list(list_inputs(str(tree)))
    assert len(flat) == 7 + 5000 + 1 + 2 + 3  # the files, a link to a file, a linked folder's 2 files, 3 refused
    blocks = [item for item in items if type(item) is EntryBlock]
    assert max(len(block) for block in blocks) == 4096, "a folder of 5,000 files comes in blocks of 4,096 at most"
    assert all(block.prefix == str(tree) + os.sep for block in blocks)
    errors = sorted(entry.error for entry in flat if entry.error)
    assert errors == ["directory loop", "not a regular file", "symlink out of SRC"]


@pytest.mark.parametrize(("max_files", "max_bytes"), [(1, 1 << 30), (3, 1 << 30), (64, 100), (1024, 45),
                                                      (4096, 1 << 30), (5000, 10_000), (2, 1)])
def test_shards_cut_from_blocks_are_the_shards_cut_entry_by_entry(tree, max_files, max_bytes) -> None:
    entries = list(list_inputs(str(tree)))
    same(list(shards(list_blocks(str(tree)), max_files, max_bytes)), entry_by_entry(entries, max_files, max_bytes))
    same(list(shards(iter(entries), max_files, max_bytes)), entry_by_entry(entries, max_files, max_bytes))


@pytest.mark.parametrize("workers", [1, 2, 8])
def test_the_shard_size_is_chosen_alike_from_blocks(tree, workers) -> None:
    by_blocks, rest = choose_shard_files(list_blocks(str(tree)), workers)
    by_entries, _ = choose_shard_files(iter(list(list_inputs(str(tree)))), workers)
    assert by_blocks == by_entries
    flat: list[Entry] = []
    for item in rest:
        flat.extend([item] if type(item) is Entry else item)
    assert flat == list(list_inputs(str(tree))), "the look-ahead gives back every item"


# Listings as a generator would give them: runs of plain files of random sizes, between entries of their own
# (links, refusals); bounds from one file up.
_sizes = st.lists(st.integers(0, 50), min_size=1, max_size=40)
_items = st.lists(st.one_of(_sizes, st.tuples(st.integers(0, 50), st.booleans())), max_size=30)


@settings(max_examples=300, deadline=None)
@given(_items, st.integers(1, 50), st.integers(1, 400))
def test_any_listing_cuts_alike(items, max_files, max_bytes) -> None:  # type: ignore[no-untyped-def]
    listing: list[Entry | EntryBlock] = []
    flat: list[Entry] = []
    for k, item in enumerate(items):
        if isinstance(item, list):
            rels = [f"d{k}/f{i}" for i in range(len(item))]
            listing.append(EntryBlock("/src/", rels, list(item)))
            flat.extend(listing[-1])
        else:
            size, refused = item
            listing.append(Entry(f"/src/e{k}", f"e{k}", 0 if refused else size, "refused" if refused else ""))
            flat.append(listing[-1])
    same(list(shards(iter(listing), max_files, max_bytes)), entry_by_entry(flat, max_files, max_bytes))
