"""Builds the Cython core only; all metadata lives in pyproject.toml."""

import sys
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "ext"))
import gen_vrtable  # noqa: E402

gen_vrtable.main(str(HERE / "ext" / "vrtable.h"))

extensions = [
    Extension(
        "veil._core",
        ["ext/_core.pyx"],
        include_dirs=["ext"],
        extra_compile_args=["-O3"],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["ext"],
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )
)
