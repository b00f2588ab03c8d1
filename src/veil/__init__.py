"""veil: high-throughput DICOM de-identification.

The Python API (see :mod:`veil.api`)::

    import veil

    key = veil.load_key("project.key")
    summary = veil.deidentify("archive/", "out/", recipe="research", key=key)
    report = veil.verify("archive/", "out/", recipe="research", key=key)

``deidentify`` (a whole archive, as ``veil run``), ``deidentify_file``, ``deidentify_bytes``, ``verify``,
``load_recipe``, ``load_key`` and the error types. The functions are loaded on first use, so importing veil (as
every worker process does) costs no more than the parts it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from veil._version import __version__
from veil.errors import AuditError, KeyError_, MalformedDicom, PlanError, RecipeError, VeilError
from veil.system import lazy_exports

if TYPE_CHECKING:
    from veil.api import deidentify, deidentify_bytes, deidentify_file, load_key, load_recipe, verify

_API_NAMES = ("deidentify", "deidentify_file", "deidentify_bytes", "verify", "load_recipe", "load_key")

__all__ = [
    "__version__",
    "deidentify",
    "deidentify_file",
    "deidentify_bytes",
    "verify",
    "load_recipe",
    "load_key",
    "VeilError",
    "MalformedDicom",
    "RecipeError",
    "KeyError_",
    "PlanError",
    "AuditError",
]

# The API functions, imported from veil.api on first use (PEP 562).
__getattr__, __dir__ = lazy_exports(__name__, dict.fromkeys(_API_NAMES, "api"), globals())
