"""Fuzzing the native rewriter with mutated and truncated real files (corpus and pydicom test files).

Every case must either produce output or raise MalformedDicom: never another exception, a crash or a hang.
The cases run in a child process, so a segfault or a stack overflow is a test failure naming the case (and
leaving its bytes in pytest's tmp directory to reproduce), not the end of the pytest run.

The default run does ~2,000 cases; with VEIL_NIGHTLY=1 the slow test runs 100,000 (VEIL_FUZZ_CASES overrides).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import struct
import time
import traceback
from pathlib import Path

import pytest
from corpus import all_dicom_files, file_id
from plans import PLANS, keyed_id, keyed_uid

DEFAULT_CASES = 2_000
NIGHTLY_CASES = 100_000
CASE_SECONDS = 5.0  # one case slower than this is reported (per-case time check)
STALL_SECONDS = 60.0  # no progress for this long: the child is hung and is killed
SEED = 20240611

ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
UNDEFINED = 0xFFFFFFFF
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
ALL_VRS = [v.encode() for v in "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM "
           "UC UI UL UN UR US UT UV".split()] + [b"  ", b"\x00\x00", b"ZZ", b"sq"]  # fmt: skip


# --- where the structure is: length fields, VRs and tags, found by a best-effort walk ----------------------


class Landmarks:
    """Offsets of length fields (offset, size, little endian), explicit VRs and tags in one file."""

    def __init__(self) -> None:
        self.lengths: list[tuple[int, int, bool]] = []
        self.vrs: list[int] = []
        self.tags: list[tuple[int, bool]] = []
        self.end = 0


def _u16(data: bytes, pos: int, little: bool) -> int:
    return struct.unpack_from("<H" if little else ">H", data, pos)[0]


def _u32(data: bytes, pos: int, little: bool) -> int:
    return struct.unpack_from("<I" if little else ">I", data, pos)[0]


def landmarks(data: bytes) -> Landmarks:
    marks = Landmarks()
    n, pos = len(data), 0
    if n >= 132 and data[128:132] == b"DICM":
        pos = 132
    ts = b"1.2.840.10008.1.2"
    while pos + 8 <= n and data[pos : pos + 2] == b"\x02\x00":
        marks.tags.append((pos, True))
        marks.vrs.append(pos + 4)
        if data[pos + 4 : pos + 6] in LONG_VRS and pos + 12 <= n:
            marks.lengths.append((pos + 8, 4, True))
            length, start = _u32(data, pos + 8, True), pos + 12
        else:
            marks.lengths.append((pos + 6, 2, True))
            length, start = _u16(data, pos + 6, True), pos + 8
        if data[pos + 2 : pos + 4] == b"\x10\x00":
            ts = data[start : start + length].rstrip(b"\x00 ")
        pos = start + length
    if ts != b"1.2.840.10008.1.2.1.99":
        try:
            _walk(data, pos, n, ts == b"1.2.840.10008.1.2", ts != b"1.2.840.10008.1.2.2", marks, 0)
        except (struct.error, RecursionError):
            pass
    marks.end = max([o for o, _, _ in marks.lengths] + [0])
    return marks


def _walk(data: bytes, pos: int, end: int, implicit: bool, little: bool, marks: Landmarks, depth: int) -> int:
    while pos + 8 <= end and len(marks.lengths) < 4000 and depth < 32:
        tag = _u16(data, pos, little) << 16 | _u16(data, pos + 2, little)
        marks.tags.append((pos, little))
        if tag in (ITEM_END, SEQ_END):
            marks.lengths.append((pos + 4, 4, little))
            return pos + 8
        vr = None
        if implicit or tag >> 16 == 0xFFFE:
            marks.lengths.append((pos + 4, 4, little))
            length, start = _u32(data, pos + 4, little), pos + 8
        else:
            vr = data[pos + 4 : pos + 6]
            marks.vrs.append(pos + 4)
            if vr in LONG_VRS:
                marks.lengths.append((pos + 8, 4, little))
                length, start = _u32(data, pos + 8, little), pos + 12
            else:
                marks.lengths.append((pos + 6, 2, little))
                length, start = _u16(data, pos + 6, little), pos + 8
        items_implicit, items_little = (True, True) if vr == b"UN" else (implicit, little)
        if length == UNDEFINED:
            return_pos = _items(data, start, end, items_implicit, items_little, marks, depth + 1)
            if return_pos is None:
                return pos
            pos = return_pos
            continue
        if start + 8 <= end and _u16(data, start, items_little) == 0xFFFE and vr in (None, b"SQ", b"UN"):
            _items(data, start, min(end, start + length), items_implicit, items_little, marks, depth + 1)
        pos = start + length
    return pos


def _items(
    data: bytes, pos: int, end: int, implicit: bool, little: bool, marks: Landmarks, depth: int
) -> int | None:
    while pos + 8 <= end:
        tag = _u16(data, pos, little) << 16 | _u16(data, pos + 2, little)
        marks.tags.append((pos, little))
        marks.lengths.append((pos + 4, 4, little))
        length = _u32(data, pos + 4, little)
        if tag == SEQ_END:
            return pos + 8
        if tag != ITEM:
            return None
        if length == UNDEFINED:
            pos = _walk(data, pos + 8, end, implicit, little, marks, depth)
        else:
            _walk(data, pos + 8, min(end, pos + 8 + length), implicit, little, marks, depth)
            pos = pos + 8 + length
    return pos


# --- cases -------------------------------------------------------------------------------------------------


def _position(rng: random.Random, data: bytes, marks: Landmarks) -> int:
    """Mostly inside the structure (header, sequences), sometimes anywhere."""
    n = len(data)
    if n == 0:
        return 0
    if rng.random() < 0.85:
        return rng.randrange(min(n, marks.end + 64) or 1)
    return rng.randrange(n)


def _mutate(rng: random.Random, data: bytearray, marks: Landmarks) -> str:
    kind = rng.choice(["flip", "flip", "insert", "delete", "length", "length", "length", "truncate", "vr", "tag",
                       "splice"])  # fmt: skip
    n = len(data)
    if kind == "flip" or n == 0:
        flips = [(_position(rng, data, marks), rng.randrange(1, 256)) for _ in range(rng.randint(1, 4))]
        for pos, bits in flips:
            if pos < len(data):
                data[pos] ^= bits
        return f"flip {flips}"
    if kind == "insert":
        pos, blob = _position(rng, data, marks), rng.randbytes(rng.randint(1, 16))
        data[pos:pos] = blob
        return f"insert {blob.hex()} at {pos}"
    if kind == "delete":
        pos, count = _position(rng, data, marks), rng.randint(1, 16)
        del data[pos : pos + count]
        return f"delete {count} at {pos}"
    if kind == "length" and marks.lengths:
        pos, size, little = rng.choice(marks.lengths)
        if pos + size > n:
            return "length (out of range)"
        fmt = ("<" if little else ">") + ("H" if size == 2 else "I")
        top = (1 << (8 * size)) - 1
        old = struct.unpack_from(fmt, data, pos)[0]
        new = rng.choice([top, top - 1, top >> 1, (top >> 1) + 1, n, n - pos, old + 1, max(old - 1, 0), old | 1,
                          0, min(old * 2, top), rng.randrange(top + 1), old + 8, max(old - 8, 0)])  # fmt: skip
        struct.pack_into(fmt, data, pos, new & top)
        return f"length at {pos} ({size} bytes) {old} -> {new & top}"
    if kind == "truncate":
        pos = _position(rng, data, marks)
        del data[pos:]
        return f"truncate at {pos}"
    if kind == "vr" and marks.vrs:
        pos = rng.choice(marks.vrs)
        vr = rng.choice(ALL_VRS)
        data[pos : pos + 2] = vr
        return f"vr at {pos} -> {vr!r}"
    if kind == "tag" and marks.tags:
        pos, little = rng.choice(marks.tags)
        tag = rng.choice([ITEM, ITEM_END, SEQ_END, 0x7FE00010, 0x00080005, 0x00091010, 0x00020010,
                          rng.randrange(1 << 32)])  # fmt: skip
        fmt = "<HH" if little else ">HH"
        if pos + 4 <= len(data):
            struct.pack_into(fmt, data, pos, tag >> 16, tag & 0xFFFF)
        return f"tag at {pos} -> {tag:08X}"
    # splice: a chunk of the file copied elsewhere (duplicated elements, items, sequences)
    start = _position(rng, data, marks)
    chunk = bytes(data[start : start + rng.randint(1, 512)])
    pos = _position(rng, data, marks)
    data[pos:pos] = chunk
    return f"splice {len(chunk)} bytes from {start} to {pos}"


def make_case(index: int, files: list[bytes], cache: dict[int, Landmarks]) -> tuple[int, str, bytes, str]:
    """Case ``index``: (file number, what was done, the bytes, plan name) — the same in parent and child."""
    rng = random.Random(f"{SEED}:{index}")
    which = rng.randrange(len(files))
    marks = cache.get(which)
    if marks is None:
        marks = cache[which] = landmarks(files[which])
    data = bytearray(files[which])
    steps = [_mutate(rng, data, marks) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
    plan = rng.choice(sorted(PLANS))
    return which, "; ".join(steps), bytes(data), plan


def special_cases() -> list[tuple[str, bytes]]:
    """Hand-made hostile inputs: deep nesting, huge lengths, empty and tiny files."""
    meta = _meta(b"1.2.840.10008.1.2")
    sop = _implicit(0x00080018, b"1.2.3.4\x00")
    nest = _implicit_header(0x00081140, UNDEFINED) + _implicit_header(ITEM, UNDEFINED)  # SQ > item, open
    cases = [
        ("empty", b""),
        ("DICM only", b"\x00" * 128 + b"DICM"),
        ("meta only", meta),
        ("deep nesting 100000 (undefined lengths, unterminated)", meta + sop + nest * 100_000),
        ("deep nesting 100000 (terminated)", meta + sop + nest * 100_000
         + (_implicit_header(ITEM_END, 0) + _implicit_header(SEQ_END, 0)) * 100_000),
        ("deep nesting 1000", meta + sop + nest * 1000
         + (_implicit_header(ITEM_END, 0) + _implicit_header(SEQ_END, 0)) * 1000),
        ("length 0xFFFFFFFE", meta + sop + _implicit_header(0x00100010, 0xFFFFFFFE)),
        ("undefined length text", meta + sop + _implicit_header(0x00100010, UNDEFINED) + b"ABCD"),
        ("item at top level", meta + sop + _implicit_header(ITEM, 0)),
        ("many items", meta + sop + _implicit_header(0x00081140, UNDEFINED)
         + _implicit_header(ITEM, 0) * 200_000 + _implicit_header(SEQ_END, 0)),
    ]  # fmt: skip
    return cases


def _implicit_header(tag: int, length: int) -> bytes:
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, length)


def _implicit(tag: int, value: bytes) -> bytes:
    return _implicit_header(tag, len(value)) + value


def _meta(transfer_syntax: bytes) -> bytes:
    ts = transfer_syntax + b"\x00" * (len(transfer_syntax) % 2)
    body = struct.pack("<HH2sH", 2, 0x10, b"UI", len(ts)) + ts
    return b"\x00" * 128 + b"DICM" + struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(body)) + body


# --- the child process -------------------------------------------------------------------------------------


def _worker(
    paths: list[str], first: int, count: int, special: bool, current, conn, check_output: bool
) -> None:
    """Runs cases ``first .. first+count`` (or the special cases); sends a summary when done.

    With ``check_output`` every output is also read back by the reference reader (pydicom, strict).
    """
    from reference import Reject, read_file

    from veil.core._core import Rewriter, peek
    from veil.errors import MalformedDicom

    rewriters = {name: Rewriter(plan, keyed_uid, keyed_id) for name, plan in PLANS.items()}
    files = [Path(p).read_bytes() for p in paths]
    cache: dict[int, Landmarks] = {}
    summary = {"ok": 0, "malformed": 0, "failures": [], "slow": []}
    cases = special_cases() if special else None
    total = len(cases) if cases is not None else count
    for k in range(total):
        index = k if cases is not None else first + k
        current.value = index
        if cases is not None:
            what, data = cases[k]
            plan = "basic"
        else:
            _, what, data, plan = make_case(index, files, cache)
        started = time.perf_counter()
        output = None
        try:
            try:
                peek(data, path="fuzz")
            except MalformedDicom:
                pass
            result = rewriters[plan].rewrite(data, shift_days=-1234, path="fuzz")
            output = result.tobytes()
            result.touched()
            summary["ok"] += 1
        except MalformedDicom:
            summary["malformed"] += 1
        except BaseException as exc:  # noqa: BLE001 - any other exception is the finding
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            summary["failures"].append((index, what, plan, tb))
        elapsed = time.perf_counter() - started  # the core's time only, not the pydicom check below
        if elapsed > CASE_SECONDS:
            summary["slow"].append((index, what, plan, round(elapsed, 2)))
        if output is not None and check_output and len(data) < 4_000_000 and _readable(data):
            try:  # what both accept, the rewriter writes as a file the reference reads again
                read_file(output)
            except Reject as exc:
                # pydicom decodes (0008,0005) while reading: a mutated one it cannot decode is not structure
                if not exc.reason.startswith(
                    ("pydicom: TypeError", "pydicom: ValueError", "pydicom: LookupError")
                ):
                    summary["failures"].append((index, what, plan, f"output not well formed: {exc.reason}"))
    current.value = -1
    conn.send(summary)
    conn.close()


def _readable(data: bytes) -> bool:
    from reference import Reject, read_file

    try:
        read_file(data)
    except Reject:
        return False
    return True


def run_fuzz(
    paths: list[Path],
    first: int,
    count: int,
    tmp_path: Path,
    special: bool = False,
    check_output: bool = True,
) -> dict:
    """Runs the cases in a child process; a crash or a stall becomes a failure naming the case."""
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    current = ctx.Value("q", -2)
    parent_end, child_end = ctx.Pipe(duplex=False)
    args = ([str(p) for p in paths], first, count, special, current, child_end, check_output)
    proc = ctx.Process(target=_worker, args=args)
    proc.start()
    child_end.close()
    last, last_change = current.value, time.monotonic()
    summary = None
    while True:
        if parent_end.poll(1.0):
            try:
                summary = parent_end.recv()
            except EOFError:
                summary = None
            break
        if not proc.is_alive():
            break
        if current.value != last:
            last, last_change = current.value, time.monotonic()
        elif time.monotonic() - last_change > STALL_SECONDS:
            proc.kill()
            proc.join()
            pytest.fail(
                _describe(paths, current.value, special, tmp_path, f"hung for over {STALL_SECONDS:.0f} s")
            )
    proc.join(30)
    if summary is None:
        pytest.fail(
            _describe(paths, current.value, special, tmp_path, f"child exited with code {proc.exitcode}")
        )
    return summary


def _describe(paths: list[Path], index: int, special: bool, tmp_path: Path, what: str) -> str:
    if index < 0:
        return f"fuzz child {what} outside any case (index {index})"
    if special:
        name, data = special_cases()[index]
        where, plan = f"special case {name!r}", "basic"
    else:
        files = [p.read_bytes() for p in paths]
        which, steps, data, plan = make_case(index, files, {})
        where = f"case {index}: {file_id(paths[which])}: {steps}"
    saved = tmp_path / f"fuzz-case-{index}.dcm"
    saved.write_bytes(data)
    return f"{what} on {where} (plan {plan}); input saved to {saved}"


def _report(summary: dict) -> str:
    lines = []
    for index, what, plan, error in summary["failures"][:30]:
        lines.append(f"case {index} [{plan}] {what}: {error}")
    for index, what, plan, seconds in summary["slow"][:30]:
        lines.append(f"case {index} [{plan}] {what}: took {seconds} s")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def seed_files(core) -> list[Path]:
    files = all_dicom_files()
    if not files:
        pytest.skip("no DICOM files to mutate")
    return files


def test_mutated_files_are_rewritten_or_rejected_as_malformed(seed_files, tmp_path) -> None:
    count = int(os.environ.get("VEIL_FUZZ_CASES", DEFAULT_CASES))
    summary = run_fuzz(seed_files, 0, count, tmp_path)
    assert summary["ok"] + summary["malformed"] <= count
    assert not summary["failures"] and not summary["slow"], _report(summary)


@pytest.mark.heavy
def test_hostile_inputs_are_rejected_without_crashing(core, tmp_path) -> None:
    summary = run_fuzz([], 0, 0, tmp_path, special=True)
    assert not summary["failures"] and not summary["slow"], _report(summary)


@pytest.mark.slow
def test_nightly_fuzz(seed_files, tmp_path) -> None:
    count = int(os.environ.get("VEIL_FUZZ_CASES", NIGHTLY_CASES))
    first = DEFAULT_CASES  # the default run's cases are covered already
    summary = run_fuzz(seed_files, first, count, tmp_path)
    assert not summary["failures"] and not summary["slow"], _report(summary)
