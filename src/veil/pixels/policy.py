"""Which images a recipe's pixel rules touch: the header triage for burned-in text (at risk: straight to the
detector; every other image that can carry text: the pre-filter), rule matching on the header signature, the
decision for one image, and the safe annotations a detected text region may say and stay."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from veil.recipes import PIXEL_MATCH_KEYS, PixelPolicy, PixelRule, load_pixel_rules, pixel_policy
from veil.recipes.pixelrules import SafeText

__all__ = [
    "AT_RISK_MODALITIES",
    "NO_BURNED_IN_TEXT_MODALITIES",
    "PixelDecision",
    "PixelPolicy",
    "PixelRule",
    "at_risk",
    "decide",
    "is_safe_text",
    "load_pixel_rules",
    "match_rule",
    "pixel_policy",
    "triage",
]

# Modalities known to carry burned-in text (PS3.3 C.7.3.1.1.1 defined terms), the same set ``veil profile``
# reports (veil.inventory.profile.BURNED_IN_MODALITIES; a test keeps the two equal): ultrasound and intravascular
# ultrasound, secondary capture, X-ray angiography and radiofluoroscopy, endoscopy, external-camera, ophthalmic,
# intra-oral and general microscopy photography, whole slide microscopy (slide labels), panoramic X-ray,
# documents, diaphanography, other. With them the secondary capture classes of PS3.4 B.5
# (1.2.840.10008.5.1.4.1.1.7[.1-4]) and the visible light classes (endoscopic, microscopic, photographic images
# and video, 1.2.840.10008.5.1.4.1.1.77.1.*). Localisers (ImageType value 3 LOCALIZER, PS3.3 C.8.2.1.1.1) of
# any modality are at risk too: scanners annotate them with the patient's name, dates and planned slices.
AT_RISK_MODALITIES = frozenset(
    {"US", "IVUS", "SC", "XA", "RF", "ES", "OT", "XC", "GM", "OP", "DOC", "PX", "IO", "SM", "DG"}
)
_AT_RISK_SOP_PREFIXES = ("1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.77.1.")
# Every other image is pre-filtered (veil.pixels.textdetect.prefilter, a few ms a frame): projection radiography
# (CR, DX, MG, RG; IO and PX are at risk above, detected directly) carries the patient's name and the date on its film label; CT, MR, PT and NM slices,
# screenshots of them re-stored under their modality, and any modality not named here, may carry it too. Only
# these are not: objects whose pixel values software computed as labels or doses (segmentations, RT dose
# grids), or that hold no image (reports, plans, structure sets, key objects, presentation states).
NO_BURNED_IN_TEXT_MODALITIES = frozenset(
    {"SEG", "RTDOSE", "RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "KO", "PR", "REG", "FID", "RWV", "ANN", "PLAN",
     "AU", "ECG", "HD", "EPS"}
)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _matches(rule: PixelRule, info: Mapping[str, Any]) -> bool:
    for keyword, patterns in rule.match:
        value = _text(info.get(PIXEL_MATCH_KEYS[keyword])).upper()
        if not any(fnmatch.fnmatchcase(value, p.upper()) for p in patterns):
            return False
    return True


def match_rule(policy: PixelPolicy, info: Mapping[str, Any]) -> PixelRule | None:
    """The first rule whose match the header signature (``veil.core._core.peek``) satisfies, else None.

    With ``ultrasound_regions`` set on the policy, an ultrasound image no rule names gets the data-region rule.
    """
    for rule in policy.rules:
        if _matches(rule, info):
            return rule
    if policy.ultrasound_regions and _text(info.get("modality")).upper() == "US":
        return PixelRule((("Modality", ("US",)),), (), None, True, "ultrasound_regions", "pixels.ultrasound_regions")
    return None


def at_risk(info: Mapping[str, Any]) -> bool:
    """Whether an image may carry burned-in text: BurnedInAnnotation YES, or (unless it says NO) a modality or
    SOP class known for it (:data:`AT_RISK_MODALITIES`: ultrasound, secondary capture, angiography, endoscopy,
    photography, slide microscopy, documents, other) or a localiser. CT, MR, PET slices and the like are not:
    their scanners do not burn text into the image."""
    burned = _text(info.get("burned_in_annotation")).upper()
    if burned == "YES":
        return True
    if burned == "NO":
        return False
    modality = _text(info.get("modality")).upper()
    sop_class = _text(info.get("sop_class_uid"))
    image_type = [v.strip().upper() for v in _text(info.get("image_type")).split("\\")]
    return (
        modality in AT_RISK_MODALITIES
        or sop_class.startswith(_AT_RISK_SOP_PREFIXES)
        or "LOCALIZER" in image_type[2:3]
    )


def triage(policy: PixelPolicy, info: Mapping[str, Any]) -> str:
    """The header triage of an image no rule names: ``"at-risk"`` (straight to the policy's at-risk action:
    :func:`at_risk`), ``"prefilter"`` (every frame pre-filtered; at risk where one may hold text), or ``"keep"``
    (a modality of :data:`NO_BURNED_IN_TEXT_MODALITIES`, or a policy with ``prefilter: false``).

    BurnedInAnnotation NO takes an image off the at-risk list but not off the pre-filter: it is a claim of
    whoever wrote the header, and real files contradict it (an ultrasound of the dcm4che test data says NO and
    shows a date)."""
    if at_risk(info):
        return "at-risk"
    if not policy.prefilter or _text(info.get("modality")).upper() in NO_BURNED_IN_TEXT_MODALITIES:
        return "keep"
    return "prefilter"


@dataclass(frozen=True)
class PixelDecision:
    """What to do with one image's pixels: keep, redact (with ``rule``), pre-filter (then the at-risk action
    where a frame may hold text), or the at-risk action of the policy (detect, redact-all, quarantine, flag)."""

    action: str
    rule: PixelRule | None = None


def decide(policy: PixelPolicy, info: Mapping[str, Any]) -> PixelDecision:
    """The decision for one image from its header signature: the first matching rule, else the policy's
    at-risk action where :func:`at_risk` says so, else prefilter or keep (:func:`triage`)."""
    rule = match_rule(policy, info)
    if rule is not None:
        return PixelDecision("redact", rule)
    found = triage(policy, info)
    return PixelDecision(policy.at_risk if found == "at-risk" else found)


# --- safe annotations ------------------------------------------------------------------------------------

# Between the words of one text region: spaces, commas, semicolons. Not "/", "." or "-", which join the parts
# of a date or an ID into one word that must be safe as a whole.
_SEPARATOR = r"[\s,;]+"


@lru_cache(maxsize=64)
def _safe_pattern(safe_text: tuple[SafeText, ...], modality: str) -> re.Pattern[str] | None:
    """One expression matching a whole text region made only of the safe words and patterns listed for
    ``modality``; None when nothing is listed for it."""
    items: list[str] = []
    for entry in safe_text:
        if any(fnmatch.fnmatchcase(modality, m) for m in entry.modalities):
            items.extend(re.escape(w) for w in entry.words)
            items.extend(f"(?:{p})" for p in entry.patterns)
    if not items:
        return None
    item = "(?:" + "|".join(sorted(set(items), key=len, reverse=True)) + ")"
    return re.compile(f"{item}(?:{_SEPARATOR}{item})*", re.IGNORECASE)


def is_safe_text(policy: PixelPolicy, modality: str, text: str) -> bool:
    """Whether a recognised text region says only what the policy's safe annotations list for the modality
    (every word of it; compared without regard to case). Fail closed: unreadable (empty) text is not safe."""
    text = " ".join(text.split()).strip(" ,;")
    if not text:
        return False
    pattern = _safe_pattern(policy.safe_text, modality.strip().upper())
    return pattern is not None and pattern.fullmatch(text) is not None
