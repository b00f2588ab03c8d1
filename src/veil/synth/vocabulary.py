"""The vocabulary the synthetic identities and headers draw from: names, places, institutions, exams."""

from __future__ import annotations

__all__: list[str] = []  # package-internal tables, read by identities, header and modalities

_FAMILY_NAMES = (
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ", "MARTINEZ",
    "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR", "MOORE", "JACKSON", "MARTIN",
    "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "SANCHEZ", "CLARK", "RAMIREZ", "LEWIS", "ROBINSON",
    "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT", "SCOTT", "TORRES", "NGUYEN", "HILL", "FLORES",
    "O'BRIEN", "SMITH-JONES", "MÜLLER", "GARCÍA", "DUBOIS", "VAN DER BERG", "KOWALSKI", "NAKAMURA", "OKAFOR",
    "DOE",
)  # fmt: skip
_MALE_NAMES = (
    "JOHN", "JAMES", "ROBERT", "MICHAEL", "WILLIAM", "DAVID", "RICHARD", "JOSEPH", "THOMAS", "CHARLES",
    "CHRISTOPHER", "DANIEL", "MATTHEW", "ANTHONY", "MARK", "JOSÉ", "JÜRGEN", "KENJI", "CHIDI", "LUCAS",
)  # fmt: skip
_FEMALE_NAMES = (
    "MARY", "PATRICIA", "JENNIFER", "LINDA", "ELIZABETH", "BARBARA", "SUSAN", "JESSICA", "SARAH", "KAREN",
    "NANCY", "LISA", "BETTY", "MARGARET", "SANDRA", "ASHLEY", "ZOË", "RENÉE", "AIKO", "NGOZI",
)  # fmt: skip
_STREETS = (
    "OAK ST",
    "MAPLE AVE",
    "ELM ST",
    "PINE RD",
    "CEDAR LN",
    "LAKE DR",
    "HILL ST",
    "PARK AVE",
    "MAIN ST",
)
_CITIES = (
    ("SPRINGFIELD", "IL", "62704", "217"), ("RIVERSIDE", "CA", "92501", "951"), ("FAIRVIEW", "TN", "37062", "615"),
    ("GREENVILLE", "SC", "29601", "864"), ("MADISON", "WI", "53703", "608"), ("SALEM", "OR", "97301", "503"),
    ("FRANKLIN", "MA", "02038", "508"), ("CLINTON", "IA", "52732", "563"),
)  # fmt: skip
_INSTITUTIONS = (
    ("SPRINGFIELD GENERAL HOSPITAL", "SGH", "1 HOSPITAL PLAZA, SPRINGFIELD, IL 62702"),
    ("RIVERSIDE MEDICAL CENTER", "RMC", "4500 RIVER RD, RIVERSIDE, CA 92505"),
    ("ST. ELSEWHERE HOSPITAL", "STE", "736 CAMBRIDGE ST, BOSTON, MA 02135"),
    ("MERCY REGIONAL HEALTH", "MRH", "200 MERCY WAY, GREENVILLE, SC 29605"),
    ("LAKEVIEW UNIVERSITY HOSPITAL", "LUH", "1 UNIVERSITY AVE, MADISON, WI 53706"),
    ("FAIRVIEW IMAGING CENTER", "FIC", "88 COMMERCE BLVD, FAIRVIEW, TN 37062"),
)
_DEPARTMENTS = ("RADIOLOGY", "EMERGENCY RADIOLOGY", "CARDIOLOGY", "NUCLEAR MEDICINE", "WOMENS IMAGING")
_OCCUPATIONS = ("TEACHER", "NURSE", "ENGINEER", "RETIRED", "FARMER", "STUDENT", "ACCOUNTANT", "DRIVER")
_ETHNIC_GROUPS = ("WHITE", "BLACK", "HISPANIC", "ASIAN", "OTHER", "UNKNOWN")
_RELIGIONS = ("CATHOLIC", "PROTESTANT", "JEWISH", "MUSLIM", "HINDU", "NONE", "DECLINED")
_ALERTS = ("NONE", "PENICILLIN ALLERGY", "IODINE CONTRAST ALLERGY", "LATEX ALLERGY", "PACEMAKER")
_HISTORIES = (
    "hypertension and type 2 diabetes", "prior left lower lobe pneumonia", "smoker, 30 pack-years",
    "fall from ladder two days ago", "follow-up of a 6 mm pulmonary nodule", "chronic kidney disease stage 3",
)  # fmt: skip
_EQUIPMENT = (  # manufacturer, model family, software version prefix
    ("GE MEDICAL SYSTEMS", "Revolution", "gmp_vct"),
    ("SIEMENS", "SOMATOM", "syngo"),
    ("Philips", "Ingenuity", "PHL"),
    ("Canon Medical Systems", "Aquilion", "V"),
)
# Exams per modality: (local code, description, Body Part Examined).
_EXAMS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "CT": (
        ("CTCHESTC", "CT CHEST W CONTRAST", "CHEST"),
        ("CTABPELC", "CT ABDOMEN PELVIS W CONTRAST", "ABDOMEN"),
        ("CTHEADNC", "CT HEAD WO CONTRAST", "HEAD"),
        ("CTAPE", "CTA CHEST PE PROTOCOL", "CHEST"),
    ),
    "MR": (
        ("MRBRAINWWO", "MRI BRAIN W WO CONTRAST", "BRAIN"),
        ("MRKNEERT", "MRI KNEE RIGHT WO CONTRAST", "KNEE"),
        ("MRLSPINE", "MRI LUMBAR SPINE WO CONTRAST", "LSPINE"),
    ),
    "US": (
        ("USABDCOMP", "US ABDOMEN COMPLETE", "ABDOMEN"),
        ("USTHYROID", "US THYROID", "NECK"),
        ("USOB2", "US OB SECOND TRIMESTER", "PELVIS"),
    ),
    "CR": (("CRCHEST2V", "XR CHEST 2 VIEWS", "CHEST"), ("CRHAND3V", "XR HAND 3 VIEWS", "HAND")),
    "DX": (("DXCHEST1V", "XR CHEST 1 VIEW PORTABLE", "CHEST"), ("DXKNEE2V", "XR KNEE 2 VIEWS", "KNEE")),
    "MG": (
        ("MGSCRBIL", "MAMMO SCREENING BILATERAL", "BREAST"),
        ("MGDXLT", "MAMMO DIAGNOSTIC LEFT", "BREAST"),
    ),
    "PT": (("PTCTWBFDG", "PET CT WHOLE BODY FDG", "WHOLEBODY"),),
    "NM": (
        ("NMBONEWB", "NM BONE SCAN WHOLE BODY", "WHOLEBODY"),
        ("NMMPI", "NM MYOCARDIAL PERFUSION", "HEART"),
    ),
    "XA": (("XACORO", "CARDIAC CATH CORONARY ANGIOGRAPHY", "HEART"),),
    "SC": (("SCOUTSIDE", "OUTSIDE IMAGES IMPORT", "CHEST"),),
}
_SERIES_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "CT": ("AX 5.0 SOFT TISSUE", "AX 1.25 LUNG", "COR MPR 3.0", "SAG MPR 3.0", "TOPOGRAM"),
    "MR": ("AX T1 SE", "AX T2 FSE", "SAG T2 FLAIR", "AX DWI B1000", "COR T1 POST GAD"),
    "US": ("ABDOMEN", "LIVER LONG", "RIGHT KIDNEY", "THYROID TRANSVERSE"),
    "CR": ("CHEST PA", "CHEST LAT", "HAND PA"),
    "DX": ("CHEST AP PORTABLE", "KNEE AP", "KNEE LAT"),
    "MG": ("L CC", "L MLO", "R CC", "R MLO"),
    "PT": ("PET WB AC", "PET WB NAC"),
    "NM": ("ANT WB", "POST WB", "STRESS"),
    "XA": ("LCA RAO 30", "RCA LAO 45"),
    "SC": ("OUTSIDE IMAGE", "SCANNED DOCUMENT"),
}
