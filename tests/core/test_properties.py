"""Property tests: random small data sets under random Plans, written by pydicom in the four uncompressed
transfer syntaxes, rewritten by the native core and compared with the pydicom reference; and the date-shift
helper's invariants.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import os
import warnings
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from plans import echo_callback, keyed_id, keyed_uid
from pydicom.datadict import DicomDictionary
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from reference import DEFLATED_LE, EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE, Reject, read_file
from test_differential import check_rewrite

from veil.core.plan import Action, Plan, Rule, clamp_age_value, shift_date_value

A = Action
logging.getLogger("pydicom").setLevel(logging.ERROR)  # generated values are often invalid on purpose
TRANSFER_SYNTAXES = [IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE, DEFLATED_LE]
# More examples in the nightly run (VEIL_NIGHTLY=1) or when asked for (VEIL_HYPOTHESIS_EXAMPLES=n).
EXAMPLES = int(
    os.environ.get("VEIL_HYPOTHESIS_EXAMPLES", "1000" if os.environ.get("VEIL_NIGHTLY") == "1" else "60")
)
PROFILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

# --- values ------------------------------------------------------------------------------------------------

TEXT_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ^-._,()/"
CS_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 _"
pads = st.sampled_from(["", "", "", " ", "  ", "\x00"])


def _padded(core: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A value with, sometimes, leading spaces and trailing spaces or a NUL (as real files have)."""
    return st.tuples(st.sampled_from(["", "", "", " "]), core, pads).map("".join)


def _multi(one: st.SearchStrategy[str], most: int = 3) -> st.SearchStrategy[str]:
    return st.lists(one, min_size=1, max_size=most).map("\\".join)


@st.composite
def da_values(draw) -> str:
    def one_date() -> st.SearchStrategy[str]:
        full = st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)).map(
            lambda d: f"{d.year:04d}{d.month:02d}{d.day:02d}"
        )
        partial = st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)).flatmap(
            lambda d: st.sampled_from([f"{d.year:04d}", f"{d.year:04d}{d.month:02d}"])
        )
        bad = st.sampled_from(["20231301", "20230230", "2023011", "abcdefgh", "19000229", "2023-01-01", "0"])
        return st.one_of(full, full, full, partial, bad)

    one = one_date()
    single = st.one_of(
        one,
        one,
        st.tuples(one, one).map("-".join),
        one.map(lambda d: "-" + d),
        one.map(lambda d: d + "-"),
    )
    return draw(_padded(_multi(single, 2)))


@st.composite
def dt_values(draw) -> str:
    date = draw(st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)))
    text = f"{date.year:04d}{date.month:02d}{date.day:02d}"
    precision = draw(st.integers(0, 5))
    text = text[: [4, 6, 8, 8, 8, 8][precision]]
    if precision >= 3:
        text += f"{draw(st.integers(0, 23)):02d}"
    if precision >= 4:
        text += f"{draw(st.integers(0, 59)):02d}{draw(st.integers(0, 59)):02d}"
    if precision == 5:
        text += "." + draw(st.text("0123456789", min_size=1, max_size=7))
    if draw(st.booleans()):
        text += (
            draw(st.sampled_from(["+", "-"]))
            + f"{draw(st.integers(0, 14)):02d}{draw(st.sampled_from([0, 30, 45])):02d}"
        )
    if draw(st.integers(0, 9)) == 0:
        text = draw(st.sampled_from(["2023XX", "20231340", "2023010112-", "-", "2023-2024-2025"]))
    if draw(st.integers(0, 5)) == 0:
        other = draw(dt_values())
        text = draw(st.sampled_from([f"{text}-{other}", f"-{text}", f"{text}-"]))
    return draw(_padded(st.just(text)))


as_values = _padded(
    st.one_of(
        st.tuples(st.integers(0, 999), st.sampled_from("DWMY")).map(lambda t: f"{t[0]:03d}{t[1]}"),
        st.sampled_from(["089Y", "090Y", "091Y", "1095M", "45Y", "ABCY", "120", "4696W", "32871D", ""]),
    )
)
uid_component = st.one_of(
    st.lists(st.integers(0, 99999).map(str), min_size=2, max_size=8).map(".".join).map(lambda u: "1." + u),
    st.sampled_from(["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.1.2.1", "2.25.1234567890", ""]),
)
ui_values = st.one_of(uid_component, _multi(uid_component), uid_component.map(lambda u: u + " "))


def text_values(vr: str) -> st.SearchStrategy[str]:
    if vr == "DA":
        return da_values()
    if vr == "DT":
        return dt_values()
    if vr == "AS":
        return as_values
    if vr == "UI":
        return ui_values
    if vr == "CS":
        return _padded(_multi(st.text(CS_CHARS, max_size=12)))
    # pydicom turns DS and IS into numbers (keeping the original string): no NUL padding for those
    if vr in ("DS",):
        numbers = _multi(st.integers(-99999, 99999).map(str) | st.sampled_from(["1.5", "-0.25", "1e3"]))
        return st.tuples(st.sampled_from(["", " "]), numbers, st.sampled_from(["", " "])).map("".join)
    if vr == "IS":
        numbers = _multi(st.integers(-99999, 99999).map(str))
        return st.tuples(st.sampled_from(["", " "]), numbers, st.sampled_from(["", " "])).map("".join)
    if vr == "TM":
        return _padded(st.sampled_from(["120000", "235959.999999", "0930", "12", "bad"]))
    if vr in ("LT", "ST", "UT", "UR"):
        return _padded(st.text(TEXT_CHARS + "\\", max_size=40))
    if vr == "PN":
        return _padded(_multi(st.text(TEXT_CHARS + "=", max_size=20)))
    return _padded(_multi(st.text(TEXT_CHARS, max_size=14)))


BINARY_WIDTH = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "AT": 4}


def binary_values(vr: str) -> st.SearchStrategy:
    if vr == "US":
        ints = st.integers(0, 0xFFFF)
    elif vr == "SS":
        ints = st.integers(-0x8000, 0x7FFF)
    elif vr == "UL":
        ints = st.integers(0, 0xFFFFFFFF)
    elif vr == "SL":
        ints = st.integers(-0x80000000, 0x7FFFFFFF)
    elif vr == "AT":
        ints = st.integers(0, 0xFFFFFFFF)
    elif vr == "FL":
        return st.floats(width=32, allow_nan=False)
    elif vr == "FD":
        return st.floats(allow_nan=False)
    elif vr == "OW":
        return st.binary(max_size=12).map(lambda b: b + b"\x00" * (len(b) % 2))
    else:  # OB, UN
        return st.binary(max_size=12)
    return st.one_of(ints, st.lists(ints, min_size=1, max_size=3))


TEXT_VRS = [
    "AE",
    "AS",
    "CS",
    "DA",
    "DS",
    "DT",
    "IS",
    "LO",
    "LT",
    "PN",
    "SH",
    "ST",
    "TM",
    "UC",
    "UI",
    "UR",
    "UT",
]
BIN_VRS = ["US", "SS", "UL", "SL", "FL", "FD", "AT", "OB", "OW"]


def _pool() -> dict[str, list[int]]:
    pool: dict[str, list[int]] = {}
    for tag, entry in DicomDictionary.items():
        group, element = tag >> 16, tag & 0xFFFF
        if group in (0x0000, 0x0002, 0xFFFE) or group >= 0x7F00 or element == 0 or tag == 0x00080005:
            continue
        if tag in (0x00080016, 0x00080018) or " or " in entry[0]:
            continue
        pool.setdefault(entry[0], []).append(tag)
    return {vr: sorted(tags) for vr, tags in pool.items()}


POOL = _pool()
# Elements the Plans often target, so that AGE, PSEUDO, SHIFT and friends meet their usual tags.
FAVOURITES = {
    "PN": [0x00100010, 0x00080090], "LO": [0x00100020, 0x00101000], "SH": [0x00080050, 0x00200010],
    "AS": [0x00101010], "DA": [0x00080020, 0x00100030], "DT": [0x0008002A], "UI": [0x0020000D, 0x0020000E],
    "SQ": [0x00081140, 0x00082112, 0x00081111],
}  # fmt: skip


@dataclass
class Spec:
    """What the generator made, for the Plan generator: public tags with VR, private (group, creator, byte)."""

    public: dict[int, str] = field(default_factory=dict)
    private: dict[tuple[int, str, int], str] = field(default_factory=dict)


PRIVATE_GROUPS = [0x0009, 0x0011, 0x0029, 0x4001]
CREATORS = ["VEIL A", "VEIL B ", "ACME^1.0", "X"]
PRIVATE_VRS = ["LO", "SH", "US", "UL", "DA", "UI", "OB", "PN", "AS", "DS", "SQ"]


@st.composite
def public_element(draw, spec: Spec, depth: int) -> DataElement:
    vr = draw(st.sampled_from(TEXT_VRS + BIN_VRS + ["SQ"] * (depth < 2)))
    candidates = FAVOURITES.get(vr, []) + POOL[vr]
    tag = draw(st.sampled_from(FAVOURITES.get(vr, [])) if FAVOURITES.get(vr) and draw(st.booleans())
               else st.sampled_from(candidates))  # fmt: skip
    spec.public[tag] = vr
    if vr == "SQ":
        return sequence_element(draw, tag, "SQ", spec, depth)
    if vr in TEXT_VRS:
        value = draw(text_values(vr))
        if vr in ("LO", "SH", "PN", "CS", "DA") and draw(st.integers(0, 7)) == 0:
            return DataElement(tag, "UN", value.encode("latin-1"))  # explicit UN of a known tag
        return DataElement(tag, vr, value)
    return DataElement(tag, vr, draw(binary_values(vr)))


def sequence_element(draw, tag: int, vr: str, spec: Spec, depth: int) -> DataElement:
    items = []
    for _ in range(draw(st.integers(0, 3))):
        item = draw(dataset(spec, depth + 1))
        item.is_undefined_length_sequence_item = draw(st.booleans())
        items.append(item)
    elem = DataElement(tag, vr, Sequence(items))
    elem.is_undefined_length = draw(st.booleans())
    return elem


@st.composite
def private_block(draw, spec: Spec, depth: int) -> list[DataElement]:
    group = draw(st.sampled_from(PRIVATE_GROUPS))
    block = draw(st.sampled_from([0x10, 0x11, 0x20, 0xFF]))
    creator = draw(st.sampled_from(CREATORS))
    out = []
    if draw(st.integers(0, 9)):  # sometimes the creator is missing: the data elements are orphans
        out.append(DataElement(group << 16 | block, "LO", creator))
    for _ in range(draw(st.integers(1, 4))):
        byte = draw(st.integers(0, 0xFF))
        vr = draw(st.sampled_from(PRIVATE_VRS if depth < 2 else PRIVATE_VRS[:-1]))
        tag = group << 16 | block << 8 | byte
        spec.private[(group, creator.rstrip(" "), byte)] = vr
        if vr == "SQ":
            out.append(sequence_element(draw, tag, "SQ", spec, depth))
        elif vr in TEXT_VRS:
            out.append(DataElement(tag, vr, draw(text_values(vr))))
        else:
            out.append(DataElement(tag, vr, draw(binary_values(vr))))
    if draw(st.integers(0, 5)) == 0:  # an odd-group element outside any block
        out.append(
            DataElement(group << 16 | draw(st.sampled_from([0x0001, 0x0005, 0x0100, 0x0FFF])), "LO", "odd")
        )
    return out


@st.composite
def dataset(draw, spec: Spec, depth: int = 0) -> Dataset:
    ds = Dataset()
    for _ in range(draw(st.integers(0 if depth else 1, 8 if depth == 0 else 3))):
        elem = draw(public_element(spec, depth))
        ds[elem.tag] = elem
    for _ in range(draw(st.integers(0, 2))):
        for elem in draw(private_block(spec, depth)):
            ds[elem.tag] = elem
    if draw(st.integers(0, 4)) == 0:  # a group length, always dropped
        group = draw(st.sampled_from([0x0008, 0x0010, 0x0009]))
        ds[group << 16] = DataElement(group << 16, "UL", draw(st.integers(0, 999)))
    return ds


# --- plans -------------------------------------------------------------------------------------------------

UNIVERSAL = [A.KEEP, A.REMOVE, A.EMPTY, A.DUMMY, A.SHIFT, A.RECURSE]


@st.composite
def rule_for(draw, vr: str) -> Rule:
    choices: list[Rule | Action] = list(UNIVERSAL)
    if vr != "SQ":
        choices.append(A.CALL)
    if vr in TEXT_VRS and vr != "UI" or vr == "UN":
        choices += [A.PSEUDO, Rule(A.REPLACE, draw(st.sampled_from(["X", "REPLACED", "ab cd", ""])))]
    if vr == "UI":
        choices += [A.UID, A.UID, A.UID, Rule(A.REPLACE, "1.2.3.4")]
    if vr == "AS":
        choices += [A.AGE, A.AGE]
    if vr in ("DA", "DT"):
        choices += [A.SHIFT, A.SHIFT]
    if vr in BINARY_WIDTH:
        width = BINARY_WIDTH[vr]
        choices.append(Rule(A.REPLACE, draw(st.binary(min_size=width, max_size=width))))
    picked = draw(st.sampled_from(choices))
    return picked if isinstance(picked, Rule) else Rule(picked)


@st.composite
def plans_for(draw, spec: Spec) -> Plan:
    tags = {}
    for tag, vr in spec.public.items():
        if draw(st.integers(0, 2)) == 0:
            tags[tag] = draw(rule_for(vr))
    vr_defaults = {}
    for vr in draw(st.sets(st.sampled_from(TEXT_VRS + BIN_VRS + ["SQ", "UN"]), max_size=6)):
        rule = draw(rule_for(vr))
        if rule.action != A.REPLACE:
            vr_defaults[vr] = rule.action
    masks = []
    for _ in range(draw(st.integers(0, 2))):
        tag = draw(st.sampled_from(sorted(spec.public))) if spec.public else 0x00100010
        mask = draw(st.sampled_from([0xFFFF0000, 0xFFFFFF00, 0xFF00FFFF]))
        masks.append((mask, tag & mask, Rule(draw(st.sampled_from(UNIVERSAL)))))
    private = {}
    for key, vr in spec.private.items():
        if draw(st.integers(0, 1)) == 0:
            private[key] = draw(rule_for(vr))
    if draw(st.booleans()):  # a creator whose only rule removes: the creator itself follows default_private
        private[(draw(st.sampled_from(PRIVATE_GROUPS)), "VEIL A", 0x42)] = Rule(A.REMOVE)
    return Plan(
        tags=tags,
        masks=tuple(masks),
        private=private,
        vr_defaults=vr_defaults,
        default_public=draw(st.sampled_from([A.KEEP, A.KEEP, A.KEEP, A.REMOVE, A.RECURSE])),
        default_private=draw(st.sampled_from([A.KEEP, A.REMOVE, A.EMPTY, A.DUMMY])),
        age_cap=draw(st.sampled_from([18, 89, 90, 120])),
        callback=echo_callback,
        name="random",
    )


# --- writing -----------------------------------------------------------------------------------------------


def write(ds: Dataset, transfer_syntax: str) -> bytes:
    """The data set as a Part 10 file in ``transfer_syntax`` (SOP Class/Instance UIDs added)."""
    ds = ds.copy()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SOPInstanceUID = "1.2.3.4.5.6.7.8.9"
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    fp = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(
            fp,
            implicit_vr=transfer_syntax == IMPLICIT_LE,
            little_endian=transfer_syntax != EXPLICIT_BE,
            enforce_file_format=True,
        )
    return fp.getvalue()


def _check(core, data: bytes, plan: Plan, shift_days: int, where: str) -> None:
    try:
        parsed = read_file(data)
    except Reject as exc:  # pragma: no cover - pydicom wrote it
        pytest.fail(f"{where}: the reference cannot read what pydicom wrote: {exc.reason}")
    rewriter = core.Rewriter(plan, keyed_uid, keyed_id)
    problems = check_rewrite(data, where, parsed, None, plan, rewriter, shift_days)
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize("transfer_syntax", TRANSFER_SYNTAXES)
@PROFILE
@given(data=st.data(), shift_days=st.integers(-40000, 40000))
def test_random_data_set_under_random_plan_matches_reference(core, transfer_syntax, data, shift_days) -> None:
    spec = Spec()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = data.draw(dataset(spec), label="data set")
    plan = data.draw(plans_for(spec), label="plan")
    _check(core, write(ds, transfer_syntax), plan, shift_days, f"random [{transfer_syntax}]")


VALUE_ACTIONS = {
    "DA": [A.SHIFT], "DT": [A.SHIFT], "AS": [A.AGE], "UI": [A.UID], "LO": [A.PSEUDO, A.CALL, A.SHIFT, A.AGE],
    "PN": [A.PSEUDO, A.DUMMY, A.EMPTY], "CS": [A.DUMMY, A.PSEUDO], "TM": [A.SHIFT, A.DUMMY],
}  # fmt: skip
VALUE_TAGS = {"DA": 0x00080020, "DT": 0x0008002A, "AS": 0x00101010, "UI": 0x0020000D, "LO": 0x00100020,
              "PN": 0x00100010, "CS": 0x00080060, "TM": 0x00080030}  # fmt: skip


@pytest.mark.parametrize("transfer_syntax", [IMPLICIT_LE, EXPLICIT_BE])
@PROFILE
@given(data=st.data(), shift_days=st.integers(-3_000_000, 3_000_000) | st.integers(-400, 400))
def test_value_actions_on_one_element_match_reference(core, transfer_syntax, data, shift_days) -> None:
    """The value rules (SHIFT, AGE, UID, PSEUDO, ...) on one element, values drawn from their full syntax."""
    vr = data.draw(st.sampled_from(sorted(VALUE_ACTIONS)), label="vr")
    action = data.draw(st.sampled_from(VALUE_ACTIONS[vr]), label="action")
    value = data.draw(text_values(vr), label="value")
    ds = Dataset()
    ds[VALUE_TAGS[vr]] = DataElement(VALUE_TAGS[vr], vr, value)
    plan = Plan(
        tags={VALUE_TAGS[vr]: Rule(action)},
        default_public=A.KEEP,
        age_cap=data.draw(st.sampled_from([89, 90, 120])),
        callback=echo_callback,
    )
    _check(core, write(ds, transfer_syntax), plan, shift_days, f"{vr} {action.name} {value!r}")


# --- the date shift helper ---------------------------------------------------------------------------------

dates = st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31))


def _da(d: dt.date) -> str:
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


def _parse(text: str) -> dt.date:
    return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))


@given(first=dates, second=dates, days=st.integers(-1_000_000, 1_000_000))
def test_shift_keeps_the_interval_between_two_dates(first, second, days) -> None:
    a, b = shift_date_value(_da(first), "DA", days), shift_date_value(_da(second), "DA", days)
    try:
        moved_first, moved_second = first + dt.timedelta(days), second + dt.timedelta(days)
    except OverflowError:
        assume(False)
    assert a == _da(moved_first) and b == _da(moved_second)
    assert _parse(a) - _parse(b) == first - second


@given(first=dates, second=dates, days=st.integers(-100_000, 100_000))
def test_shift_moves_both_ends_of_a_range_alike(first, second, days) -> None:
    shifted = shift_date_value(f"{_da(first)}-{_da(second)}", "DA", days)
    assume(shifted is not None)
    start, stop = shifted.split("-")
    assume(int(start[:4]) >= 1 and int(stop[:4]) >= 1)  # year 0 is a valid DA, but not a Python date
    assert _parse(stop) - _parse(start) == second - first


full_da = dates.map(_da)
full_dt = st.tuples(
    dates,
    st.sampled_from(["", "10", "1030", "103005", "103005.5", "103005.123456"]),
    st.sampled_from(["", "+0100", "-0530"]),
).map(lambda t: _da(t[0]) + t[1] + t[2])


def _ranges(one: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    single = st.one_of(
        one, st.tuples(one, one).map("-".join), one.map(lambda v: "-" + v), one.map(lambda v: v + "-")
    )
    return st.lists(single, min_size=1, max_size=3).map("\\".join)


@given(
    pair=st.one_of(_ranges(full_da).map(lambda v: (v, "DA")), _ranges(full_dt).map(lambda v: (v, "DT"))),
    days=st.integers(-100_000, 100_000),
)
def test_shift_round_trips_with_minus_days(pair, days) -> None:
    value, vr = pair
    once = shift_date_value(value, vr, days)
    assume(once is not None)  # out of 0000-9999
    assert shift_date_value(once, vr, -days) == value


@given(
    value=st.sampled_from(["2023", "202302", "2023-2024", "202301-", "-1999"]), days=st.integers(-5000, 5000)
)
def test_partial_dates_keep_their_precision(value, days) -> None:
    shifted = shift_date_value(value, "DA", days)
    assert shifted is not None
    assert [len(p) for p in shifted.split("-")] == [len(p) for p in value.split("-")]


@given(value=as_values, cap=st.integers(1, 150))
def test_clamped_age_is_below_the_cap_or_the_cap(value, cap) -> None:
    out = clamp_age_value(value, cap)
    if out in (None, ""):
        return
    assert out == f"{cap:03d}Y" or out == value.strip(" \x00")
