"""Keys: key material, the keyed functions (UIDs, pseudonyms, date shifts), the run's key service, the sealed
re-identification table and the custodian key.

``from veil.keys import Key, KeyedFunctions, load_key`` is the usual entry; the service and the table live in
:mod:`veil.keys.service` and :mod:`veil.keys.reid` and are imported where used (they bring Ray or
multiprocessing with them). The custodian key (:mod:`veil.keys.custodian`) and sealed parts
(:mod:`veil.keys.envelope`) load on first use: they bring ``cryptography``, which most workers never need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from veil.keys.functions import (
    COUNTER_EXTRA_DIGITS,
    COUNTER_MAX_WIDTH,
    CounterFormat,
    CounterPseudonymError,
    KeyedFunctions,
    counter_format,
)
from veil.keys.material import KEY_ENV, KEY_SIZE, Key, generate_key_file, load_key, run_key
from veil.system import lazy_exports

if TYPE_CHECKING:
    from veil.keys.custodian import (
        PASSPHRASE_ENV,
        CustodianPrivateKey,
        CustodianPublicKey,
        generate_custodian,
        load_custodian_private,
        load_custodian_public,
        read_passphrase,
    )
    from veil.keys.envelope import Opener, SealTarget, open_bytes, seal_bytes, symmetric_seal

_LAZY = {
    **dict.fromkeys(("CustodianPublicKey", "CustodianPrivateKey", "PASSPHRASE_ENV", "generate_custodian",
                     "load_custodian_public", "load_custodian_private", "read_passphrase"), "custodian"),
    **dict.fromkeys(("SealTarget", "Opener", "seal_bytes", "open_bytes", "symmetric_seal"), "envelope"),
}

__all__ = ["Key", "KeyedFunctions", "CounterFormat", "CounterPseudonymError", "counter_format", "generate_key_file",
           "load_key", "run_key", "KEY_ENV", "KEY_SIZE", "COUNTER_EXTRA_DIGITS", "COUNTER_MAX_WIDTH",
           "CustodianPublicKey", "CustodianPrivateKey", "PASSPHRASE_ENV", "generate_custodian",
           "load_custodian_public", "load_custodian_private", "read_passphrase",
           "SealTarget", "Opener", "seal_bytes", "open_bytes", "symmetric_seal"]

# The custodian key and the envelope, imported from their modules on first use (PEP 562).
__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())
