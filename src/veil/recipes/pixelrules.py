"""Pixel rules: a recipe's ``pixels:`` section and the rule libraries in ``recipes/shipped/pixels/``, parsed
and checked with file and line, merged through the layers into one :class:`PixelPolicy`.

  pixels:
    library: [ultrasound]          # rule files in recipes/shipped/pixels/ (or beside the recipe), one rule a line
    ultrasound_regions: true       # US: blank everything outside the SequenceOfUltrasoundRegions regions
    at_risk: detect                # images at risk that no rule matches: detect | redact-all | quarantine | flag
    prefilter: true                # every other image: a cheap pre-filter, and at_risk where it sees text
    text: all                      # what detection redacts: all (but safe_text) | identifiers (the file's own)
    margin: 4                      # pixels added around each detected box
    fill: 0                        # the value written into redacted pixels
    output: rle                    # compressed inputs after redaction: rle | jpeg-ls | jpeg2000 | uncompressed
                                   # (lossless each; native inputs keep their transfer syntax)
    rules:
      - {match: {Modality: US, Manufacturer: "ACME*", Rows: 480, Columns: 640}, regions: [[0, 0, 640, 40]]}
      - {match: {Modality: XA}, regions: [[0, 0, 200, 30]], frames: [0]}
    safe_text:                     # with text: all, a text region whose every word is listed here is kept
      - {modality: [CR, DX], words: [PA, AP, LAT], patterns: ['\\d{2,3}KVP?']}

A library file holds ``rules`` (may be empty) and optionally ``safe_text`` (``safe-annotations.yml``): the
annotations a recipe that blanks all detected text may keep, per modality (wildcards), as words (compared
without regard to case) and regular expressions (each must match a whole word).

A match holds header keywords, each a value or a list of values (any of them), with DICOM wildcards
``*`` and ``?`` (PS3.4 C.2.2.2.4), compared without regard to case; every keyword must match. The first
matching rule wins: a recipe's own rules, then its libraries in order, then those of the recipe it extends.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veil.errors import RecipeError
from veil.recipes.paths import pixel_rules_dir

if TYPE_CHECKING:  # the YAML reader only where rules are parsed, not where a policy is used or unpickled
    import yaml

    from veil.recipes.reader import _Reader

__all__ = ["AT_RISK_ACTIONS", "PIXEL_MATCH_KEYS", "PixelPolicy", "PixelRule", "SafeText", "load_pixel_rules",
           "load_safe_text"]

PIXEL_MATCH_KEYS: dict[str, str] = {
    "Modality": "modality",
    "Manufacturer": "manufacturer",
    "ManufacturerModelName": "manufacturer_model_name",
    "SoftwareVersions": "software_versions",
    "Rows": "rows",
    "Columns": "columns",
    "ImageType": "image_type",
    "SOPClassUID": "sop_class_uid",
    "BurnedInAnnotation": "burned_in_annotation",
}
AT_RISK_ACTIONS = ("detect", "redact-all", "quarantine", "flag")
_PIXEL_SECTION_KEYS = {
    "library",
    "ultrasound_regions",
    "at_risk",
    "prefilter",
    "text",
    "safe_text",
    "margin",
    "fill",
    "output",
    "rules",
}
_PIXEL_RULE_KEYS = {"match", "regions", "frames", "ultrasound_regions", "name"}
_PIXEL_LIBRARY_KEYS = {"name", "version", "description", "rules", "safe_text"}
_SAFE_TEXT_KEYS = {"modality", "words", "patterns"}
_PIXEL_TEXT = ("identifiers", "all")
_PIXEL_OUTPUT = ("rle", "jpeg-ls", "jpeg2000", "uncompressed")


@dataclass(frozen=True)
class PixelRule:
    """Regions to blank in images whose header signature matches; frames None means every frame."""

    match: tuple[tuple[str, tuple[str, ...]], ...]  # (keyword, patterns: any of them)
    regions: tuple[tuple[int, int, int, int], ...] = ()  # (x, y, width, height)
    frames: tuple[int, ...] | None = None
    ultrasound_regions: bool = False
    name: str = ""
    source: str = ""  # "file.yml:12"

    def canonical(self) -> list[Any]:
        return [
            [[k, list(v)] for k, v in self.match],
            [list(r) for r in self.regions],
            "all" if self.frames is None else list(self.frames),
            self.ultrasound_regions,
        ]


@dataclass(frozen=True)
class SafeText:
    """Annotations that are not identifying on images of the listed modalities (wildcards): words, compared
    without regard to case, and regular expressions each matching a whole word (``\\d{2,3}KVP?``)."""

    modalities: tuple[str, ...]
    words: tuple[str, ...] = ()  # upper case, sorted
    patterns: tuple[str, ...] = ()
    source: str = ""  # "file.yml:12"

    def canonical(self) -> list[Any]:
        return [list(self.modalities), list(self.words), list(self.patterns)]


@dataclass(frozen=True)
class PixelPolicy:
    """A recipe's resolved pixel section: the rules in matching order and what to do with the rest."""

    rules: tuple[PixelRule, ...] = ()
    ultrasound_regions: bool = False
    at_risk: str = "detect"
    text: str = "identifiers"
    margin: int = 4
    fill: int = 0
    output: str = "rle"
    prefilter: bool = True  # images not at risk by their header: pre-filtered, at risk where text is seen
    safe_text: tuple[SafeText, ...] = ()  # with text "all": what a detected text region may say and stay

    def canonical(self) -> dict[str, Any]:
        return {
            "rules": [r.canonical() for r in self.rules],
            "ultrasound_regions": self.ultrasound_regions,
            "at_risk": self.at_risk,
            "text": self.text,
            "margin": self.margin,
            "fill": self.fill,
            "output": self.output,
            "prefilter": self.prefilter,
            "safe_text": [t.canonical() for t in self.safe_text],
        }


@dataclass(frozen=True)
class _PixelSection:
    """A ``pixels:`` section as one file wrote it: the options it sets, and its rules in the order they are
    tried (its own, then its libraries')."""

    options: dict[str, Any]
    rules: tuple[PixelRule, ...]
    safe_text: tuple[SafeText, ...] = ()


def _pixel_pattern(rd: _Reader, node: yaml.Node, key: str) -> str:
    value = rd.scalar(node, f"match.{key}")
    if key in ("Rows", "Columns"):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise rd.fail(node, f"match.{key} must be a whole number from 1 to 65535, not {value!r}")
        return str(value)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise rd.fail(node, f"match.{key} must be a string (quote it), not {value!r}")
    text = str(value)
    if not text or not text.isprintable() or "\\" in text:
        raise rd.fail(node, f"match.{key} {text!r}: a non-empty printable value without backslash")
    return text


def _parse_pixel_rule(rd: _Reader, node: yaml.Node) -> PixelRule:
    fields = rd.mapping(node, "a pixel rule", _PIXEL_RULE_KEYS)
    source = f"{os.path.basename(rd.path)}:{rd.line(node) or 0}"
    if "match" not in fields:
        raise rd.fail(node, "a pixel rule needs a match (header keywords and values)")
    match: list[tuple[str, tuple[str, ...]]] = []
    match_node = fields["match"][1]
    for key, (_, value_node) in rd.mapping(match_node, "match", PIXEL_MATCH_KEYS).items():
        if rd.is_sequence(value_node):
            items = rd.sequence(value_node, f"match.{key}")
            if not items:
                raise rd.fail(value_node, f"match.{key}: an empty list matches nothing")
            patterns = tuple(_pixel_pattern(rd, n, key) for n in items)
        else:
            patterns = (_pixel_pattern(rd, value_node, key),)
        match.append((key, patterns))
    if not match:
        raise rd.fail(match_node, "an empty match would apply to every image; name at least one keyword")
    regions: list[tuple[int, int, int, int]] = []
    if "regions" in fields:
        for region_node in rd.sequence(fields["regions"][1], "regions"):
            numbers = rd.sequence(region_node, "a region")
            if len(numbers) != 4:
                raise rd.fail(region_node, "a region is [x, y, width, height]")
            x, y, w, h = (rd.integer(n, "a region coordinate") for n in numbers)
            if x < 0 or y < 0 or w <= 0 or h <= 0 or max(x + w, y + h) > 65535:
                raise rd.fail(region_node, f"region [{x}, {y}, {w}, {h}]: x, y >= 0; width, height > 0")
            regions.append((x, y, w, h))
    ultrasound = False
    if "ultrasound_regions" in fields:
        ultrasound = rd.scalar(fields["ultrasound_regions"][1], "ultrasound_regions")
        if not isinstance(ultrasound, bool):
            raise rd.fail(fields["ultrasound_regions"][1], "ultrasound_regions is true or false")
    if not regions and not ultrasound:
        raise rd.fail(node, "a pixel rule needs regions (or ultrasound_regions: true)")
    frames: tuple[int, ...] | None = None
    if "frames" in fields:
        frames_node = fields["frames"][1]
        if rd.is_scalar(frames_node):
            if rd.string(frames_node, "frames") != "all":
                raise rd.fail(frames_node, "frames is all or a list of frame numbers (from 0)")
        else:
            listed = [rd.integer(n, "a frame number") for n in rd.sequence(frames_node, "frames")]
            if not listed or any(f < 0 for f in listed) or len(set(listed)) != len(listed):
                raise rd.fail(frames_node, "frames lists distinct frame numbers from 0")
            frames = tuple(sorted(listed))
    name = rd.string(fields["name"][1], "name") if "name" in fields else ""
    return PixelRule(tuple(match), tuple(regions), frames, ultrasound, name, source)


def _safe_strings(rd: _Reader, node: yaml.Node, key: str) -> list[str]:
    """A safe_text value or list of values: words (no space, no backslash) or, for patterns, expressions."""
    nodes = rd.sequence(node, f"safe_text.{key}") if rd.is_sequence(node) else [node]
    values = []
    for item in nodes:
        value = rd.string(item, f"safe_text.{key}")
        if not value or not value.isprintable() or (key != "patterns" and (" " in value or "\\" in value)):
            raise rd.fail(item, f"safe_text.{key} {value!r}: a non-empty printable word without space")
        if key == "patterns":
            try:
                re.compile(value)
            except re.error as exc:
                raise rd.fail(item, f"safe_text pattern {value!r}: {exc}") from None
        values.append(value)
    return values


def _parse_safe_text(rd: _Reader, node: yaml.Node) -> list[SafeText]:
    out: list[SafeText] = []
    for entry in rd.sequence(node, "safe_text"):
        fields = rd.mapping(entry, "a safe_text entry", _SAFE_TEXT_KEYS)
        if "modality" not in fields:
            raise rd.fail(entry, 'a safe_text entry needs a modality (a value, a list, or "*" for every one)')
        listed = {key: _safe_strings(rd, value, key) for key, (_, value) in fields.items()}
        words = tuple(sorted({w.upper() for w in listed.get("words", ())}))
        patterns = tuple(listed.get("patterns", ()))
        if not words and not patterns:
            raise rd.fail(entry, "a safe_text entry needs words or patterns")
        modalities = tuple(m.upper() for m in listed["modality"])
        out.append(SafeText(modalities, words, patterns, f"{os.path.basename(rd.path)}:{rd.line(entry) or 0}"))
    return out


def _parse_pixel_rules(rd: _Reader, node: yaml.Node) -> list[PixelRule]:
    out: list[PixelRule] = []
    seen: dict[str, PixelRule] = {}
    for rule_node in rd.sequence(node, "pixels.rules"):
        rule = _parse_pixel_rule(rd, rule_node)
        key = json.dumps(rule.canonical()[0])
        if key in seen:
            raise rd.fail(rule_node, f"a pixel rule with the same match is at {seen[key].source}")
        seen[key] = rule
        out.append(rule)
    return out


def _find_pixel_library(name: str, base_dir: Path | None) -> Path | None:
    dirs = ([base_dir / "pixels", base_dir] if base_dir is not None else []) + [pixel_rules_dir()]
    for directory in dirs:
        candidate = directory / f"{name}.yml"
        if candidate.is_file():
            return candidate
    return None


def _parse_pixels(rd: _Reader, node: yaml.Node, base_dir: Path | None) -> _PixelSection:
    fields = rd.mapping(node, "pixels", _PIXEL_SECTION_KEYS)
    options: dict[str, Any] = {}
    for key in ("ultrasound_regions", "prefilter"):
        if key in fields:
            value = rd.scalar(fields[key][1], f"pixels.{key}")
            if not isinstance(value, bool):
                raise rd.fail(fields[key][1], f"pixels.{key} is true or false")
            options[key] = value
    for key, allowed in (("at_risk", AT_RISK_ACTIONS), ("text", _PIXEL_TEXT), ("output", _PIXEL_OUTPUT)):
        if key in fields:
            value = rd.string(fields[key][1], f"pixels.{key}")
            if value not in allowed:
                raise rd.fail(fields[key][1], f"pixels.{key}: {value!r} is not one of {', '.join(allowed)}")
            options[key] = value
    for key, top in (("margin", 256), ("fill", 2**32 - 1)):
        if key in fields:
            value = rd.integer(fields[key][1], f"pixels.{key}")
            if not 0 <= value <= top:
                raise rd.fail(fields[key][1], f"pixels.{key} {value}: from 0 to {top}")
            options[key] = value
    rules = _parse_pixel_rules(rd, fields["rules"][1]) if "rules" in fields else []
    safe = _parse_safe_text(rd, fields["safe_text"][1]) if "safe_text" in fields else []
    if "library" in fields:
        names = rd.sequence(fields["library"][1], "pixels.library")
        for name_node in names:
            name = rd.string(name_node, "a pixel rule library")
            found = _find_pixel_library(name, base_dir)
            if found is None:
                shipped = ", ".join(sorted(p.stem for p in pixel_rules_dir().glob("*.yml")))
                raise rd.fail(name_node, f"unknown pixel rule library {name!r}; shipped: {shipped}")
            library_rules, library_safe = _load_library(found)
            rules.extend(library_rules)
            safe.extend(library_safe)
    return _PixelSection(options, tuple(rules), tuple(safe))


def _merge_pixels(base: PixelPolicy | None, section: _PixelSection | None) -> PixelPolicy | None:
    if section is None:
        return base
    base = base or PixelPolicy()
    return PixelPolicy(
        rules=section.rules + base.rules,
        ultrasound_regions=section.options.get("ultrasound_regions", base.ultrasound_regions),
        at_risk=section.options.get("at_risk", base.at_risk),
        text=section.options.get("text", base.text),
        margin=section.options.get("margin", base.margin),
        fill=section.options.get("fill", base.fill),
        output=section.options.get("output", base.output),
        prefilter=section.options.get("prefilter", base.prefilter),
        safe_text=section.safe_text + base.safe_text,
    )


def load_pixel_rules(name_or_path: str | os.PathLike[str]) -> tuple[PixelRule, ...]:
    """The rules of a pixel rule library: a shipped one by name (``ultrasound``) or a file by path."""
    return _load_library(name_or_path)[0]


def load_safe_text(name_or_path: str | os.PathLike[str]) -> tuple[SafeText, ...]:
    """The safe annotations of a pixel library: a shipped one by name (``safe-annotations``) or by path."""
    return _load_library(name_or_path)[1]


def _load_library(name_or_path: str | os.PathLike[str]) -> tuple[tuple[PixelRule, ...], tuple[SafeText, ...]]:
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, os.PathLike) or text.endswith((".yml", ".yaml")) or os.sep in text:
        path = Path(text)
    else:
        found = _find_pixel_library(text, None)
        if found is None:
            raise RecipeError(text, None, f"no shipped pixel rule library named {text!r}")
        path = found
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(str(path), None, "no such pixel rule file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(str(path), None, f"cannot read pixel rules: {exc}") from None
    from veil.recipes.reader import _Reader, _required_name

    rd = _Reader(str(path))
    root = rd.compose(content)
    top = rd.mapping(root, "the pixel rule library", _PIXEL_LIBRARY_KEYS)
    _required_name(rd, root, top)
    if isinstance(rd.scalar(top["version"][1], "version"), float):
        raise rd.fail(top["version"][1], "version must be a string: quote it")
    safe = _parse_safe_text(rd, top["safe_text"][1]) if "safe_text" in top else []
    return tuple(_parse_pixel_rules(rd, top["rules"][1])), tuple(safe)
