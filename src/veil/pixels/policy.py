"""Which images a recipe's pixel rules touch: the at-risk test for burned-in text, rule matching on the header
signature, and the decision for one image (keep, redact with a rule, or the policy's at-risk action)."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from veil.recipes import PIXEL_MATCH_KEYS, PixelPolicy, PixelRule, load_pixel_rules, pixel_policy

__all__ = [
    "AT_RISK_MODALITIES",
    "PixelDecision",
    "PixelPolicy",
    "PixelRule",
    "at_risk",
    "decide",
    "load_pixel_rules",
    "match_rule",
    "pixel_policy",
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


@dataclass(frozen=True)
class PixelDecision:
    """What to do with one image's pixels: keep, redact (with ``rule``), or the at-risk action of the policy
    (detect, redact-all, quarantine, flag)."""

    action: str
    rule: PixelRule | None = None


def decide(policy: PixelPolicy, info: Mapping[str, Any]) -> PixelDecision:
    """The decision for one image from its header signature: the first matching rule, else the policy's
    at-risk action where :func:`at_risk` says so, else keep."""
    rule = match_rule(policy, info)
    if rule is not None:
        return PixelDecision("redact", rule)
    if at_risk(info):
        return PixelDecision(policy.at_risk)
    return PixelDecision("keep")
