"""Deterministic draws for the synthetic archive: values and UIDs keyed by name through BLAKE2b.

No clock, no ``os.urandom``, no ``random`` module and no hash randomisation: a draw depends only on its key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TypeVar

__all__: list[str] = []  # package-internal: ``_Draw`` and ``_uid`` serve the other modules of veil.synth

_T = TypeVar("_T")
_UID_FLOOR = 10**37  # 38-digit integers only: every UID has the same length, so slots stay fixed width
_UID_SPAN = 9 * 10**37  # floor + span < 2**128, as PS3.5 B.2 asks of a 2.25 UID


class _Draw:
    """Values keyed by (seed, scope, name) through BLAKE2b: stable across Python versions and draw order."""

    __slots__ = ("_prefix",)

    def __init__(self, seed: int, *scope: object) -> None:
        self._prefix = "\x1f".join(["veil-synth", str(seed), *map(str, scope), ""]).encode()

    def integer(self, name: str, low: int, high: int) -> int:
        """An integer in ``[low, high]``."""
        digest = hashlib.blake2b(self._prefix + name.encode(), digest_size=8).digest()
        return low + int.from_bytes(digest, "big") % (high - low + 1)

    def choice(self, name: str, options: Sequence[_T]) -> _T:
        return options[self.integer(name, 0, len(options) - 1)]


def _uid(seed: int, kind: str, *indices: int) -> str:
    """A 43-character UID under ``2.25.`` derived from the seed, the kind of object and its indices."""
    key = "\x1f".join(["veil-synth-uid", str(seed), kind, *map(str, indices)]).encode()
    digest = hashlib.blake2b(key, digest_size=16).digest()
    return f"2.25.{_UID_FLOOR + int.from_bytes(digest, 'big') % _UID_SPAN}"
