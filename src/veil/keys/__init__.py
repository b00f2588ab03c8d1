"""Keys: key material, the keyed functions (UIDs, pseudonyms, date shifts), the run's key service and the
sealed re-identification table.

``from veil.keys import Key, KeyedFunctions, load_key`` is the usual entry; the service and the table live in
:mod:`veil.keys.service` and :mod:`veil.keys.reid` and are imported where used (they bring Ray or
multiprocessing with them).
"""

from __future__ import annotations

from veil.keys.functions import (
    COUNTER_EXTRA_DIGITS,
    COUNTER_MAX_WIDTH,
    CounterFormat,
    CounterPseudonymError,
    KeyedFunctions,
    counter_format,
)
from veil.keys.material import KEY_ENV, KEY_SIZE, Key, generate_key_file, load_key, run_key

__all__ = ["Key", "KeyedFunctions", "CounterFormat", "CounterPseudonymError", "counter_format", "generate_key_file",
           "load_key", "run_key", "KEY_ENV", "KEY_SIZE", "COUNTER_EXTRA_DIGITS", "COUNTER_MAX_WIDTH"]
