"""Builds the Cython core (``veil.core._core``) only; all metadata lives in pyproject.toml."""

import sys
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
CORE = HERE / "src" / "veil" / "core"
sys.path.insert(0, str(HERE / "scripts"))
import gen_vrtable  # noqa: E402

gen_vrtable.main(str(CORE / "vrtable.h"))

extensions = [
    Extension(
        "veil.core._core",
        ["src/veil/core/_core.pyx"],
        include_dirs=["src/veil/core"],
        extra_compile_args=["-O3"],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["src/veil/core"],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )
)
