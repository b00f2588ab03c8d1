"""The keyed functions behind UIDs, pseudonyms and date shifts, and counter pseudonym formats.

Every mapping is a keyed function of the original value (BLAKE3 in keyed mode with a sub-key per purpose), so
the same original gives the same output in every file, shard, run and site that shares the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import blake3

from veil.errors import KeyError_
from veil.keys.material import Key

__all__ = ["KeyedFunctions", "CounterFormat", "CounterPseudonymError", "counter_format",
           "COUNTER_EXTRA_DIGITS", "COUNTER_MAX_WIDTH"]


_UUID_CLEAR = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID_V8_BITS = (0x8 << 76) | (0x2 << 62)
_PATTERN_FIELD = re.compile(r"\{hash(?::(\d+))?\}")
_COUNTER_FIELD = re.compile(r"\{counter(?::(\d+))?\}")
COUNTER_MAX_WIDTH = 12  # {counter:N}: N is the least number of digits, 1 to 12
# A counter outgrows its N digits after 10**N - 1 values; it may grow by this many digits more, and recipes check
# that the longest such value (literal text + N + 3) fits every VR it is written to. The key service refuses to
# hand out a longer number rather than write a value the recipe was not checked for.
COUNTER_EXTRA_DIGITS = 3


class CounterPseudonymError(KeyError_):
    """A counter pseudonym that cannot be made here: no number was handed out for the value (the file is
    quarantined), the counter is exhausted, or the tool has no key service to number values."""


@dataclass(frozen=True)
class CounterFormat:
    """A counter pseudonym pattern such as ``SUBJ-{counter:6}``: literal prefix, least digits, literal suffix."""

    prefix: str
    width: int
    suffix: str = ""

    @property
    def max_digits(self) -> int:
        return self.width + COUNTER_EXTRA_DIGITS

    @property
    def max_length(self) -> int:
        """The longest pseudonym this format can make (what recipes check against the VR limits)."""
        return len(self.prefix) + self.max_digits + len(self.suffix)

    def format(self, number: int) -> bytes:
        """``prefix`` + ``number`` zero-padded to ``width`` + ``suffix``; refuses a number of more digits than
        :attr:`max_digits`."""
        if not 1 <= number < 10**self.max_digits:
            raise CounterPseudonymError(
                f"counter pseudonym {self.pattern!r} is exhausted: number {number} needs more than "
                f"{self.max_digits} digits (widen {{counter:N}})"
            )
        return b"%s%0*d%s" % (self.prefix.encode("ascii"), self.width, number, self.suffix.encode("ascii"))

    def number_of(self, value: bytes) -> int | None:
        """The number inside a pseudonym of this format, or None when ``value`` is not one."""
        prefix, suffix = self.prefix.encode("ascii"), self.suffix.encode("ascii")
        if not (value.startswith(prefix) and value.endswith(suffix)) or len(value) < len(prefix) + len(suffix):
            return None
        digits = value[len(prefix) : len(value) - len(suffix)]
        if not (self.width <= len(digits) <= self.max_digits and digits.isdigit()):
            return None
        if len(digits) > self.width and digits[:1] == b"0":
            return None  # a number that outgrew the width is never zero-padded
        number = int(digits)
        return number if number >= 1 else None

    @property
    def pattern(self) -> str:
        return f"{self.prefix}{{counter:{self.width}}}{self.suffix}"


def counter_format(pattern: str | None) -> CounterFormat | None:
    """The :class:`CounterFormat` of a ``{counter:N}`` pattern, None for a ``{hash}`` pattern (or None).
    Raises ``KeyError_`` for a pattern that mixes the two or holds more than one counter field; recipes
    report the same problems with file and line first (``veil.recipes``)."""
    if pattern is None:
        return None
    fields = list(_COUNTER_FIELD.finditer(pattern))
    if not fields:
        return None
    if len(fields) > 1 or _PATTERN_FIELD.search(pattern):
        raise KeyError_(f"pseudonym pattern {pattern!r}: exactly one {{counter:N}} field and no {{hash}} field")
    field_ = fields[0]
    if field_.group(1) is None or not 1 <= int(field_.group(1)) <= COUNTER_MAX_WIDTH:
        raise KeyError_(f"pseudonym pattern {pattern!r}: write {{counter:N}} with N from 1 to {COUNTER_MAX_WIDTH}")
    return CounterFormat(pattern[: field_.start()], int(field_.group(1)), pattern[field_.end() :])
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class KeyedFunctions:
    """The keyed functions a worker needs, made once from the key's sub-keys."""

    def __init__(self, key: Key, *, pseudonym_pattern: str = "{hash:16}", shift_range: tuple[int, int] = (-3650, -1)):
        lo, hi = shift_range
        if lo > hi:
            raise KeyError_(f"date shift range {shift_range} is empty")
        # A counter pattern's numbers come from the run's key service (veil.keys.service), never from here.
        self.counter = counter_format(pseudonym_pattern)
        if self.counter is None and not _PATTERN_FIELD.search(pseudonym_pattern):
            raise KeyError_(
                f"pseudonym pattern {pseudonym_pattern!r} has no {{hash}}, {{hash:N}} or {{counter:N}} field"
            )
        self.key_id = key.key_id
        self._uid_key = key.subkey("uid")
        self._id_key = key.subkey("id")
        self._date_key = key.subkey("date")
        self._pattern = pseudonym_pattern
        self._shift_lo = lo
        self._shift_span = hi - lo + 1

    def uid(self, original: bytes) -> bytes:
        """``2.25.`` + the decimal of a version 8 UUID (RFC 9562) made from keyed BLAKE3 of the UID."""
        value = int.from_bytes(blake3.blake3(original, key=self._uid_key).digest(length=16), "big")
        # RFC 9562: version 8 in bits 48-51 (from the most significant), variant 0b10 in bits 64-65.
        value = (value & _UUID_CLEAR) | _UUID_V8_BITS
        return b"2.25.%d" % value

    def pseudonym(self, original: bytes) -> bytes:
        """A keyed hash of an ID formatted to the pattern: ``{hash:N}`` is N base32 characters.

        A counter pattern is refused: its numbers are handed out by the key service of ``veil run`` (which
        keeps them in the re-identification table), and a keyed hash in their place would be a silent change
        of scheme."""
        if self.counter is not None:
            raise CounterPseudonymError(
                f"pseudonym pattern {self.counter.pattern!r} numbers values through the key service of "
                "`veil run --reid-table`; this tool cannot make counter pseudonyms"
            )
        digest = blake3.blake3(original, key=self._id_key).digest(length=40)
        alphabet = "".join(_B32[b & 31] for b in digest)

        def field_(m: re.Match[str]) -> str:
            return alphabet[: int(m.group(1) or 16)]

        return _PATTERN_FIELD.sub(field_, self._pattern).encode("ascii")

    def date_shift(self, patient_id: str | bytes | None) -> int:
        """Whole days to add to every date of this patient, in the configured range (PS3.15 E.3.6)."""
        value = patient_id.encode("utf-8") if isinstance(patient_id, str) else (patient_id or b"")
        digest = blake3.blake3(value.strip(b" \x00"), key=self._date_key).digest(length=8)
        return self._shift_lo + int.from_bytes(digest, "big") % self._shift_span
