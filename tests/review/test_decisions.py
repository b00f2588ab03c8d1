"""The review decision log: append-only, hash-chained, private, tied to what was shown, safe to export."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pytest

from veil.errors import VeilError
from veil.review.decisions import (
    CSV_COLUMNS,
    DECISIONS,
    GENESIS,
    Decision,
    DecisionLog,
    DecisionLogError,
    decisions_path,
    shown_digest,
)

NOW = 1_796_450_462.123456  # 2026-12-05T06:01:02.123456Z
DIGEST_A = shown_digest("instance", b"pixels A")
DIGEST_B = shown_digest("instance", b"pixels B")
UID_1 = "2.25.1001"
UID_2 = "2.25.1002"


def _append(log: DecisionLog, **over: Any) -> Decision:
    fields: dict[str, Any] = {"operator": "alice", "run_id": "ab" * 16, "recipe_hash": "cd" * 32,
                              "instances": [UID_1], "shown": DIGEST_A, "decision": "approve", "now": NOW}
    fields.update(over)
    return log.append(**fields)


def _three(log: DecisionLog) -> list[Decision]:
    return [_append(log, note="first"), _append(log, decision="reject", reason="burned-in name", note="second"),
            _append(log, decision="second-look", instances=[UID_1, UID_2], note="third")]


def _lines(log: DecisionLog) -> list[bytes]:
    return log.path.read_bytes().split(b"\n")[:-1]


def _rewrite(log: DecisionLog, lines: list[bytes]) -> None:
    log.path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_three_appends_round_trip_and_chain(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path)
    written = _three(log)
    assert log.path == tmp_path / ".veil" / "review" / "decisions.jsonl" == decisions_path(tmp_path)
    assert log.records() == written
    assert log.verify() == 3
    lines = _lines(log)
    assert written[0].prev == GENESIS
    assert written[1].prev == hashlib.sha256(lines[0]).hexdigest()
    assert written[2].prev == hashlib.sha256(lines[1]).hexdigest()
    assert log.head() == hashlib.sha256(lines[2]).hexdigest()
    assert written[0].time == "2026-12-05T06:01:02.123456Z"
    assert written[2].instances == (UID_1, UID_2)
    assert lines[0].decode() == written[0].to_json()
    assert json.loads(lines[1])["reason"] == "burned-in name"


def test_a_missing_log_is_empty(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path)
    assert log.records() == [] and log.verify() == 0 and log.head() == GENESIS
    assert log.states({UID_1: DIGEST_A}) == {UID_1: ("pending", None)}
    assert not log.path.exists()


def test_the_time_defaults_to_now_in_utc_with_microseconds(tmp_path: Path) -> None:
    record = _append(DecisionLog(tmp_path), now=None)
    assert len(record.time) == 27 and record.time.endswith("Z") and record.time[10] == "T"


def test_the_log_is_0600_in_a_0700_folder(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path)
    _append(log)
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.path.parent.stat().st_mode) == 0o700


def test_non_ascii_text_round_trips_unescaped(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path)
    _append(log, operator="Zoë", note="vérifié — ok")
    assert "vérifié — ok".encode() in log.path.read_bytes()
    assert log.records()[0].operator == "Zoë"


def test_an_edited_note_breaks_the_chain_at_the_next_line(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path)
    _three(log)
    lines = _lines(log)
    lines[1] = lines[1].replace(b'"note":"second"', b'"note":"SECOND, edited"')
    _rewrite(log, lines)
    with pytest.raises(DecisionLogError, match=r"^line 3: prev"):
        log.verify()
    with pytest.raises(DecisionLogError, match=r"^line 3"):
        log.records()


def test_an_edited_prev_or_a_non_canonical_line_is_named(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path)
    _three(log)
    original = _lines(log)
    lines = list(original)
    lines[1] = Decision(**{**json.loads(lines[1]), "instances": (UID_1,), "prev": "f" * 64}).to_json().encode()
    _rewrite(log, lines)
    with pytest.raises(DecisionLogError, match=r"^line 2: prev"):
        log.verify()
    lines = list(original)
    lines[1] = json.dumps(json.loads(lines[1]), sort_keys=True).encode()  # same content, spaces added
    _rewrite(log, lines)
    with pytest.raises(DecisionLogError, match=r"^line 2: .*canonical"):
        log.verify()


def test_a_deleted_or_reordered_or_inserted_line_fails(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path)
    _three(log)
    lines = _lines(log)
    for changed, where in (([lines[0], lines[2]], 2), (lines[1:], 1), ([lines[0], lines[2], lines[1]], 2),
                           ([lines[0], lines[0], *lines[1:]], 2)):
        _rewrite(log, changed)
        with pytest.raises(DecisionLogError, match=rf"^line {where}: "):
            log.verify()


def test_a_torn_last_line_fails_verify_and_append_refuses(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path)
    _three(log)
    with open(log.path, "r+b") as fh:
        fh.truncate(log.path.stat().st_size - 5)
    before = log.path.read_bytes()
    with pytest.raises(DecisionLogError, match=r"^line 3: cut short"):
        log.verify()
    with pytest.raises(DecisionLogError, match="verify"):
        _append(log)
    assert log.path.read_bytes() == before


def test_append_refuses_to_chain_onto_a_garbage_last_line(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path)
    _append(log)
    with open(log.path, "ab") as fh:
        fh.write(b'{"not":"a decision"}\n')
    with pytest.raises(DecisionLogError, match="last line"):
        _append(log)
    log.path.write_bytes(b"\n")  # an empty line: not an empty log
    with pytest.raises(DecisionLogError, match="last line"):
        _append(log)
    with pytest.raises(DecisionLogError, match=r"^line 1: empty"):
        log.verify()


def test_a_log_others_can_read_is_refused(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path)
    _append(log)
    os.chmod(log.path, 0o644)
    before = log.path.read_bytes()
    with pytest.raises(DecisionLogError, match="0644"):
        _append(log)
    assert log.path.read_bytes() == before
    assert isinstance(DecisionLogError("x"), VeilError)


@pytest.mark.parametrize(("over", "message"), [
    ({"decision": "reject"}, "reason"),
    ({"decision": "reject", "reason": "   "}, "reason"),
    ({"decision": "maybe"}, "decision must be one of"),
    ({"note": "secret\nsecond line"}, "note contains a newline"),
    ({"note": "secret\u2028separator"}, "note contains a newline"),
    ({"reason": "x\x00"}, "reason contains"),
    ({"note": "n" * 501}, "note is longer than 500"),
    ({"operator": ""}, "operator"),
    ({"operator": "bob\r"}, "operator"),
    ({"instances": []}, "at least one"),
    ({"instances": "2.25.1"}, "not one string"),
    ({"instances": ["2.25.1", "secret name"]}, "UIDs"),
    ({"instances": ["1." * 40]}, "UIDs"),
    ({"instances": [UID_1, UID_1]}, "repeat"),
    ({"shown": "ABCDEF"}, "shown must be lowercase hex"),
    ({"run_id": ""}, "run_id"),
    ({"recipe_hash": "sha256:00"}, "recipe_hash"),
])
def test_invalid_fields_are_refused_without_echoing_them(tmp_path: Path, over: dict[str, Any],
                                                         message: str) -> None:
    log = DecisionLog(tmp_path)
    with pytest.raises(ValueError, match=message) as caught:
        _append(log, **over)
    assert "secret" not in str(caught.value)
    assert not log.path.exists()


def test_a_note_at_the_limit_and_an_empty_reason_on_approve_are_accepted(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path)
    _append(log, note="n" * 500)
    _append(log, decision="second-look", reason="")
    assert [r.decision for r in log.records()] == ["approve", "second-look"]
    assert DECISIONS == ("approve", "reject", "second-look")


def test_states_follow_the_latest_decision_on_what_is_shown_now(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path)
    assert log.states({UID_1: DIGEST_A}) == {UID_1: ("pending", None)}
    approval = _append(log, shown=DIGEST_A)
    assert log.states({UID_1: DIGEST_A}) == {UID_1: ("approve", approval)}
    assert log.states({UID_1: DIGEST_B}) == {UID_1: ("pending", None)}  # the output changed after a rerun
    second = _append(log, decision="second-look", shown=DIGEST_A)
    assert log.states({UID_1: DIGEST_A})[UID_1] == ("second-look", second)
    assert log.states({UID_2: DIGEST_A, "2.25.9": DIGEST_A}) == {UID_2: ("pending", None),
                                                                "2.25.9": ("pending", None)}


def test_states_of_two_instances_with_two_decisions(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path)
    both = _append(log, instances=[UID_1, UID_2], shown=DIGEST_A)
    rejected = _append(log, instances=[UID_2], shown=DIGEST_B, decision="reject", reason="face visible")
    states = log.states({UID_1: DIGEST_A, UID_2: DIGEST_B})
    assert states == {UID_1: ("approve", both), UID_2: ("reject", rejected)}
    # the latest decision naming UID_2 was on B: shown A now, it is pending (not the older approval)
    assert log.states({UID_2: DIGEST_A}) == {UID_2: ("pending", None)}


def test_write_csv_has_a_header_rows_and_defuses_formulas(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path)
    _append(log, instances=[UID_1, UID_2], note='=HYPERLINK("http://x")')
    _append(log, decision="reject", reason="-ish", note="plain, with comma")
    out = io.StringIO()
    assert log.write_csv(out) == 2
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[0] == "time,operator,run_id,recipe_hash,instances,shown,decision,reason,note,prev".split(",")
    assert len(rows) == 3
    first = dict(zip(rows[0], rows[1], strict=True))
    assert first["instances"] == f"{UID_1} {UID_2}"
    assert first["note"] == "'=HYPERLINK(\"http://x\")"
    assert first["prev"] == GENESIS and first["decision"] == "approve"
    second = dict(zip(rows[0], rows[2], strict=True))
    assert second["reason"] == "'-ish" and second["note"] == "plain, with comma"


def test_shown_digest_prefixes_each_part_with_its_length() -> None:
    assert shown_digest("ab", "c") != shown_digest("a", "bc")
    assert shown_digest("a") != shown_digest("a", "")
    assert shown_digest("é") == shown_digest("é".encode())
    expected = hashlib.sha256(b"\x00" * 7 + b"\x02ab" + b"\x00" * 7 + b"\x01c").hexdigest()
    assert shown_digest(b"ab", "c") == expected
    with pytest.raises(TypeError):
        shown_digest(3)  # type: ignore[arg-type]


def test_concurrent_appends_never_interleave(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        log = DecisionLog(tmp_path)  # one log object per thread, as two servers would have
        try:
            for i in range(25):
                _append(log, note=f"thread {n} append {i}", now=None)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    log = DecisionLog(tmp_path)
    assert log.verify() == 100
    assert len({r.note for r in log.records()}) == 100


def test_the_tail_is_found_across_read_chunks(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path)
    for i in range(3):  # lines of ~13 KiB: each is read from the end in more than one 8 KiB chunk
        _append(log, instances=[f"2.25.{j:055d}.{i}" for j in range(200)])
    assert len(log.path.read_bytes()) > 3 * 12_000
    assert log.verify() == 3
