"""Reading recipe YAML: a node reader whose every error names the file and the line, and the tag syntax
(``parse_tag``). The value checks of the VRs a recipe may write are in :mod:`veil.recipes.values`."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

import yaml

from veil.errors import RecipeError

__all__ = ["parse_tag"]

_NAME = re.compile(r"[a-z0-9][a-z0-9.+-]*")
_EDITION = re.compile(r"\d{4}[a-z]")
_TAG = re.compile(r"\(\s*([0-9A-Fa-fXx]{4})\s*,\s*([0-9A-Fa-fXx]{4})\s*\)")
_PRIVATE = re.compile(r'\(\s*([0-9A-Fa-f]{4})\s*,\s*"([^"]*)"\s*,\s*([0-9A-Fa-f]{2})\s*\)')


def parse_tag(text: str) -> tuple[str, Any]:
    """Classifies a ``tag:`` text: ("tag", int), ("mask", (mask, value)) or ("private", (group, creator, byte)).

    Raises ValueError with the problem for anything else.
    """
    m = _PRIVATE.fullmatch(text.strip())
    if m:
        group = int(m.group(1), 16)
        creator = m.group(2).rstrip(" \x00")
        if not group & 1:
            raise ValueError(f"{text}: a private element needs an odd group, not {group:04X}")
        if group in (0x0001, 0x0003, 0x0005, 0x0007, 0xFFFF):
            raise ValueError(f"{text}: group {group:04X} cannot hold private elements (PS3.5 7.8.1)")
        if not creator or len(creator) > 64 or "\\" in creator or not creator.isprintable():
            raise ValueError(f"{text}: a private creator is 1 to 64 printable characters without backslash")
        return "private", (group, creator, int(m.group(3), 16))
    m = _TAG.fullmatch(text.strip())
    if not m:
        raise ValueError(
            f'bad tag {text!r}: write "(gggg,eeee)", a pattern with x digits such as "(60xx,3000)", '
            "or a private element as '(gggg,\"CREATOR\",ee)'"
        )
    digits = (m.group(1) + m.group(2)).upper()
    if "X" in digits:
        mask = int("".join("0" if d == "X" else "F" for d in digits), 16)
        value = int(digits.replace("X", "0"), 16)
        if mask == 0:
            raise ValueError(f"{text}: a pattern matching every tag; use defaults.public")
        if (mask >> 16) == 0xFFFF and (value >> 16) & 1:
            raise ValueError(f"{text}: an odd group is private; match private elements by creator")
        if (mask >> 16) == 0xFFFF and value >> 16 == 0x0002:
            raise ValueError(f"{text}: group 0002 (File Meta) is rebuilt by the core, never taken from rules")
        return "mask", (mask, value)
    tag = int(digits, 16)
    group, element = tag >> 16, tag & 0xFFFF
    if group == 0x0002:
        raise ValueError(f"{text}: group 0002 (File Meta) is rebuilt by the core, never taken from rules")
    if group & 1:
        raise ValueError(f"{text}: an odd group is private; write '({group:04X},\"CREATOR\",ee)'")
    if element == 0:
        raise ValueError(f"{text}: group length elements are always dropped (PS3.5 7.2)")
    if group == 0xFFFE:
        raise ValueError(f"{text}: item and delimitation tags are not data elements")
    return "tag", tag


def _element(match: str, label: str) -> str:
    """How messages name an element: the match and, when known, its keyword."""
    return f"{match} {label}" if label else match


def _mask_text(mask: int, value: int) -> str:
    digits = "".join("x" if (mask >> s) & 0xF == 0 else f"{(value >> s) & 0xF:X}" for s in range(28, -4, -4))
    return f"({digits[:4]},{digits[4:]})"


def _private_text(group: int, creator: str, element: int) -> str:
    return f'({group:04X},"{creator}",{element:02X})'


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _line(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


class _Reader:
    """Reads a composed YAML node tree, checking shapes and keys; every error names the file and the line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._constructor = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node | int | None, problem: str) -> RecipeError:
        line = node if isinstance(node, int) or node is None else _line(node)
        return RecipeError(self.path, line, problem)

    def compose(self, text: str) -> yaml.Node:
        try:
            loader = _Loader(text)
            try:
                node = loader.get_single_node()
            finally:
                loader.dispose()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            raise self.fail(
                mark.line + 1 if mark else None, f"not valid YAML: {exc.problem or exc}"
            ) from None
        except yaml.YAMLError as exc:
            raise self.fail(None, f"not valid YAML: {exc}") from None
        if node is None:
            raise self.fail(1, "empty recipe")
        return node

    @staticmethod
    def is_scalar(node: yaml.Node) -> bool:
        """Whether a node is a single value (modules that only read nodes need not import YAML for this)."""
        return isinstance(node, yaml.ScalarNode)

    @staticmethod
    def is_sequence(node: yaml.Node) -> bool:
        return isinstance(node, yaml.SequenceNode)

    @staticmethod
    def line(node: yaml.Node | None) -> int | None:
        return _line(node)

    def scalar(self, node: yaml.Node, what: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, f"{what} must be a single value")
        return self._constructor.construct_object(node)

    def string(self, node: yaml.Node, what: str) -> str:
        value = self.scalar(node, what)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.fail(node, f"{what} must be a string (quote it), not {value!r}")
        return str(value)

    def integer(self, node: yaml.Node, what: str) -> int:
        value = self.scalar(node, what)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(node, f"{what} must be a whole number, not {value!r}")
        return value

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{what} must be a list")
        return list(node.value)

    def mapping(
        self, node: yaml.Node, what: str, allowed: Iterable[str]
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping of keys to values")
        allowed = set(allowed)
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, f"a key of {what}")
            if not isinstance(key, str):
                raise self.fail(key_node, f"a key of {what} must be a name, not {key!r}")
            if key not in allowed:
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                extra = (
                    f" (did you mean {hint[0]!r}?)" if hint else f"; known keys: {', '.join(sorted(allowed))}"
                )
                raise self.fail(key_node, f"unknown key {key!r} in {what}{extra}")
            if key in out:
                raise self.fail(
                    key_node, f"duplicate key {key!r} in {what} (first at line {_line(out[key][0])})"
                )
            out[key] = (key_node, value_node)
        return out


def _required_name(rd: _Reader, root: yaml.Node, top: dict[str, Any]) -> str:
    """The ``name`` of a recipe or a pixel rule library, after checking that the keys both need are there
    (``name``, ``version``, ``rules``) and that the name is one a file or a layer can be called by."""
    for required in ("name", "version", "rules"):
        if required not in top:
            raise rd.fail(root, f"missing key {required!r}")
    name = rd.string(top["name"][1], "name")
    if not _NAME.fullmatch(name):
        raise rd.fail(top["name"][1], f"name {name!r}: use lower case letters, digits and . + -")
    return name
