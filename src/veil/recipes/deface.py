"""The recipe's ``deface:`` section (PS3.15 E.3.2, Clean Recognizable Visual Features): which head CT and MR
series are defaced, and how. The shipped option layer ``clean-recognizable-visual-features`` turns it on with
the defaults below; a recipe may set any key, a later layer's keys replace an earlier one's::

    deface:
      modalities: [CT, MR]          # the modalities whose series are looked at
      body_parts: [HEAD, BRAIN, ...]  # BodyPartExamined values of a head series (upper case)
      unknown_body_part: check      # a series with no BodyPartExamined: "check" (defaced when the volume is
                                    # a head) or "skip" (left as it is)
      method: plane                 # "plane": everything in front of the face plane; "shell": its outer shell
      margin: 10                    # mm kept around the brain estimate
      depth: 20                     # mm the face plane is set back from the front of the protected brain
      shell: 8                      # mm of head removed under method "shell"
      ears: false                   # also remove the ears
      min_slices: 20                # fewer parallel slices (or under 50 mm): not a volume, left as it is
      output: rle                   # how a compressed defaced series is written (the pixels.output names)

A head series that cannot be defaced safely is quarantined with a reason; there is no setting that writes it
with its face.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the YAML reader only where a recipe is parsed, not where a policy is used or unpickled
    import yaml

    from veil.recipes.reader import _Reader

__all__ = ["DefacePolicy", "HEAD_BODY_PARTS"]

# BodyPartExamined values (PS3.16 CID 4031 and common scanner spellings) of series that show the face.
HEAD_BODY_PARTS = ("HEAD", "BRAIN", "SKULL", "HEADNECK", "FACE", "ORBIT", "SINUS", "IAC", "EAR", "NOSE", "JAW",
                   "MANDIBLE", "MAXILLA", "TMJ", "CRANIUM", "HEAD_NECK", "NEURO")
_METHODS = ("plane", "shell")
_UNKNOWN = ("check", "skip")
_OUTPUTS = ("rle", "jpeg-ls", "jpeg2000", "uncompressed")
_KEYS = {"modalities", "body_parts", "unknown_body_part", "method", "margin", "depth", "shell", "ears",
         "min_slices", "output"}


@dataclass(frozen=True)
class DefacePolicy:
    """The resolved ``deface:`` section."""

    modalities: tuple[str, ...] = ("CT", "MR")
    body_parts: tuple[str, ...] = HEAD_BODY_PARTS
    unknown_body_part: str = "check"
    method: str = "plane"
    margin: float = 10.0
    depth: float = 20.0
    shell: float = 8.0
    ears: bool = False
    min_slices: int = 20
    output: str = "rle"

    def canonical(self) -> dict[str, Any]:
        return {"modalities": list(self.modalities), "body_parts": list(self.body_parts),
                "unknown_body_part": self.unknown_body_part, "method": self.method, "margin": self.margin,
                "depth": self.depth, "shell": self.shell, "ears": self.ears, "min_slices": self.min_slices,
                "output": self.output}


def parse_deface(rd: _Reader, node: yaml.Node) -> dict[str, Any]:
    """The keys a layer's ``deface:`` sets, checked (merged over the base's by :func:`merge_deface`)."""
    if rd.is_scalar(node) and rd.scalar(node, "deface") in (None, True):
        return {}  # ``deface:`` or ``deface: true``: the defaults
    fields = rd.mapping(node, "deface", _KEYS)
    out: dict[str, Any] = {}
    for key in ("modalities", "body_parts"):
        if key in fields:
            values = tuple(rd.string(n, f"deface.{key}").strip().upper() for n in rd.sequence(fields[key][1],
                                                                                               f"deface.{key}"))
            if not values or any(not v for v in values):
                raise rd.fail(fields[key][1], f"deface.{key} lists at least one value, none empty")
            out[key] = values
    for key, allowed in (("unknown_body_part", _UNKNOWN), ("method", _METHODS), ("output", _OUTPUTS)):
        if key in fields:
            value = rd.string(fields[key][1], f"deface.{key}")
            if value not in allowed:
                raise rd.fail(fields[key][1], f"deface.{key}: {value!r} is not one of {', '.join(allowed)}")
            out[key] = value
    for key, top in (("margin", 40.0), ("depth", 60.0), ("shell", 30.0)):
        if key in fields:
            value = rd.scalar(fields[key][1], f"deface.{key}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= top:
                raise rd.fail(fields[key][1], f"deface.{key}: millimetres from 0 to {top:g}, not {value!r}")
            out[key] = float(value)
    if "margin" in out and out["margin"] < 3.0:
        raise rd.fail(fields["margin"][1], "deface.margin: at least 3 mm (the brain estimate's own precision)")
    if "ears" in fields:
        value = rd.scalar(fields["ears"][1], "deface.ears")
        if not isinstance(value, bool):
            raise rd.fail(fields["ears"][1], "deface.ears is true or false")
        out["ears"] = value
    if "min_slices" in fields:
        slices = rd.integer(fields["min_slices"][1], "deface.min_slices")
        if not 8 <= slices <= 1000:
            raise rd.fail(fields["min_slices"][1], f"deface.min_slices {slices}: from 8 to 1000")
        out["min_slices"] = slices
    return out


def merge_deface(base: DefacePolicy | None, section: dict[str, Any] | None) -> DefacePolicy | None:
    """A layer's keys over the policy it builds on (None: no layer asked for defacing)."""
    if section is None:
        return base
    return replace(base or DefacePolicy(), **section)
