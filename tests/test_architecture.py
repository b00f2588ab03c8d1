"""The layout's rules, checked rather than remembered (docs/architecture.md): the import contracts, no module over
~600 lines, verify independent of the native core, the API importable without the heavy layers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "veil"
MAX_LINES = 620  # "no module over ~600 lines"


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*") if p.suffix in (".py", ".pyx", ".pxi", ".pxd"))


def test_the_import_contracts_hold() -> None:
    """The layers, verify's independence, no Ray below the engine, no cycles (pyproject [tool.importlinter])."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        pytest.fail("lint-imports is missing: `make setup` installs the test extras")
    done = subprocess.run([str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_module_is_much_over_600_lines() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by concern: {long}"


def test_no_module_inside_veil_imports_the_root_package() -> None:
    """The root package is the API's face; a module importing it would import the API and every layer with it
    (the import contracts ignore such imports, because the compiled core looks like one to them)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.parent == PACKAGE and path.name in ("__init__.py", "__main__.py", "api.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "veil" and node.level == 0:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
            elif isinstance(node, ast.Import) and any(a.name == "veil" for a in node.names):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not offenders


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return set(done.stdout.split())


def test_verify_never_loads_the_native_core() -> None:
    """verify is an independent second reading: a bug of the core cannot hide itself from it."""
    loaded = _loaded_after("import veil.verification, veil.verification.run, veil.verification.leaks, veil.verification.integrity")
    assert "veil.core._core" not in loaded
    assert "veil.pipeline" not in loaded


def test_importing_veil_loads_no_heavy_layer() -> None:
    """`import veil` (every worker does) loads the API lazily: no engine, pyarrow, pydicom or Ray."""
    loaded = _loaded_after("import veil")
    assert not {"veil.api", "veil.engine", "pyarrow", "pydicom", "ray", "numpy"} & loaded


def test_the_pipeline_and_the_core_never_load_ray() -> None:
    loaded = _loaded_after("import veil.pipeline, veil.audit, veil.recipes, veil.core.part10")
    assert "ray" not in loaded
