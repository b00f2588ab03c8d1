"""The synthetic people and studies: each patient's and study's identifying values, drawn from the seed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from veil.synth.draws import _Draw, _uid
from veil.synth.vocabulary import (
    _CITIES,
    _EXAMS,
    _FAMILY_NAMES,
    _FEMALE_NAMES,
    _INSTITUTIONS,
    _MALE_NAMES,
    _STREETS,
)

__all__: list[str] = []  # package-internal: the header and private blocks read these values


@dataclass(frozen=True)
class _Patient:
    family: str
    given: str
    middle: str
    sex: str
    patient_id: str
    birth_date: date
    first_study_date: date
    address: str
    street: str
    city: str
    state: str
    telephone: str
    other_id: str
    national_id: str
    mother_family: str
    height_mm: int
    weight_kg: int
    draw: _Draw

    @property
    def name(self) -> str:
        return f"{self.family}^{self.given}^{self.middle}"


@dataclass(frozen=True)
class _Study:
    uid: str
    date: date
    seconds: int
    accession: str
    study_id: str
    institution: tuple[str, str, str]
    exam: tuple[str, str, str]
    referring: str
    reading: str
    requesting: str
    admission_id: str
    draw: _Draw


def _person(draw: _Draw, role: str, title: str = "") -> str:
    """A PN value for a staff member: family^given^middle^prefix (PS3.5 6.2.1.1)."""
    family = draw.choice(role + ".family", _FAMILY_NAMES)
    given = draw.choice(role + ".given", _MALE_NAMES + _FEMALE_NAMES)
    middle = chr(ord("A") + draw.integer(role + ".middle", 0, 25))
    return f"{family}^{given}^{middle}^{title}" if title else f"{family}^{given}^{middle}"


def _patient(seed: int, patient: int) -> _Patient:
    draw = _Draw(seed, "patient", patient)
    sex_draw = draw.integer("sex", 0, 99)
    sex = "M" if sex_draw < 48 else ("F" if sex_draw < 97 else "O")
    given_names = (
        _MALE_NAMES if sex == "M" else (_FEMALE_NAMES if sex == "F" else _MALE_NAMES + _FEMALE_NAMES)
    )
    first_study = date(2012, 1, 1) + timedelta(days=draw.integer("first_study", 0, 9 * 365))
    # About 8 % of patients are over 89: their age is itself identifying (HIPAA Safe Harbor, 45 CFR 164.514).
    bucket = draw.integer("age_bucket", 0, 999)
    if bucket < 20:
        age = 0
    elif bucket < 60:
        age = draw.integer("age", 1, 17)
    elif bucket < 920:
        age = draw.integer("age", 18, 89)
    else:
        age = draw.integer("age", 90, 104)
    birth = first_study - timedelta(days=age * 365 + age // 4 + draw.integer("birthday", 0, 330))
    city, state, zip_code, area = draw.choice("city", _CITIES)
    street = f"{draw.integer('house', 1, 9999)} {draw.choice('street', _STREETS)}"
    # An MRN per patient index through a bijection of [0, 9e7): unique in any archive, yet not sequential.
    mrn = 10_000_000 + (patient * 48_271 + _Draw(seed, "mrn").integer("offset", 0, 89_999_999)) % 90_000_000
    return _Patient(
        family=draw.choice("family", _FAMILY_NAMES),
        given=draw.choice("given", given_names),
        middle=chr(ord("A") + draw.integer("middle", 0, 25)),
        sex=sex,
        patient_id=str(mrn),
        birth_date=birth,
        first_study_date=first_study,
        address=f"{street}^^{city}^{state}^{zip_code}",
        street=street,
        city=city,
        state=state,
        telephone=f"+1 {area} 555 {draw.integer('phone', 100, 199):04d}",
        other_id=f"RMC{draw.integer('other_id', 100_000, 999_999)}",
        # 987-65-4320..4329 are reserved for advertising: an SSN-shaped value that is nobody's.
        national_id=f"987-65-432{draw.integer('ssn', 0, 9)}",
        mother_family=draw.choice("mother_family", _FAMILY_NAMES),
        height_mm=draw.integer("height", 500, 800)
        if age < 2
        else draw.integer("height", 1000 + min(age, 18) * 30, 1950),
        weight_kg=draw.integer("weight", 3, 12)
        if age < 2
        else draw.integer("weight", 15 + min(age, 18) * 2, 130),
        draw=draw,
    )


def _study(seed: int, patient: _Patient, patient_index: int, study: int, modality: str) -> _Study:
    draw = _Draw(seed, "study", patient_index, study)
    study_date = patient.first_study_date + timedelta(days=study * 120 + draw.integer("date", 0, 90))
    return _Study(
        uid=_uid(seed, "study", patient_index, study),
        date=study_date,
        seconds=draw.integer("time", 7 * 3600, 19 * 3600),
        accession=f"E{draw.integer('accession', 0, 10**13 - 1):013d}",
        study_id=str(draw.integer("study_id", 1000, 99999)),
        institution=draw.choice("institution", _INSTITUTIONS),
        exam=draw.choice("exam", _EXAMS[modality]),
        referring=_person(draw, "referring", "DR"),
        reading=_person(draw, "reading", "DR"),
        requesting=_person(draw, "requesting", "DR"),
        admission_id=f"ADM{draw.integer('admission', 1_000_000, 9_999_999)}",
        draw=draw,
    )
