"""The Python API (``import veil``): the same outputs as the ``veil`` command, clear errors, the README's example."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import veil
from veil.cli.main import EXIT_OK, main
from veil.keys import generate_key_file
from veil.synth import write_archive

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("api")
    src = base / "in"
    write_archive(src, patients=2, studies_per_patient=1, series_per_study=2, instances_per_series=3, seed=5)
    key = base / "project.key"
    generate_key_file(key)
    return src, key


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.dcm"))
            if ".veil" not in p.relative_to(root).parts}


def test_the_api_exports_what_it_documents() -> None:
    for name in ("deidentify", "deidentify_file", "deidentify_bytes", "verify", "load_recipe", "load_key",
                 "VeilError", "MalformedDicom", "RecipeError", "KeyError_"):
        assert name in veil.__all__
        assert getattr(veil, name).__doc__
    with pytest.raises(AttributeError):
        veil.no_such_function  # noqa: B018


def test_deidentify_writes_what_veil_run_writes(archive: tuple[Path, Path], tmp_path: Path) -> None:
    src, key_path = archive
    summary = veil.deidentify(src, tmp_path / "api", recipe="research", key=veil.load_key(key_path), workers=1)
    assert (summary.files, summary.written, summary.quarantined) == (12, 12, 0)
    assert main(["run", str(src), str(tmp_path / "cli"), "--recipe", "research", "--key", str(key_path),
                 "--workers", "1"]) == EXIT_OK
    api_files, cli_files = _files(tmp_path / "api"), _files(tmp_path / "cli")
    assert len(api_files) == 12
    assert api_files == cli_files
    assert (tmp_path / "api" / ".veil" / "manifest.json").exists()


def test_deidentify_file_and_bytes_agree(archive: tuple[Path, Path], tmp_path: Path) -> None:
    src, key_path = archive
    key = veil.load_key(key_path)
    one = sorted(src.rglob("*.dcm"))[0]
    outcome = veil.deidentify_file(one, tmp_path / "one.dcm", recipe="research", key=key)
    assert outcome.status == "written", outcome.reason
    data = veil.deidentify_bytes(one.read_bytes(), recipe="research", key=key)
    assert (tmp_path / "one.dcm").read_bytes() == data
    # The key as its 32 raw bytes gives the same output.
    assert veil.deidentify_bytes(one.read_bytes(), recipe="research", key=key.material) == data


def test_bad_input_gives_a_clear_error_and_no_output(archive: tuple[Path, Path], tmp_path: Path) -> None:
    src, key_path = archive
    key = veil.load_key(key_path)
    with pytest.raises(veil.MalformedDicom):
        veil.deidentify_bytes(b"DICM but not really" * 10, recipe="research", key=key)
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(sorted(src.rglob("*.dcm"))[0].read_bytes()[:400])
    outcome = veil.deidentify_file(broken, tmp_path / "out" / "broken.dcm", recipe="research", key=key)
    assert outcome.status == "quarantined" and outcome.reason
    assert not (tmp_path / "out" / "broken.dcm").exists()
    with pytest.raises(veil.KeyError_):
        veil.deidentify_bytes(b"", recipe="research", key=b"short")
    with pytest.raises(veil.RecipeError):
        veil.load_recipe("no-such-recipe")


def test_a_keyed_recipe_without_a_key_is_refused(archive: tuple[Path, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    src, _ = archive
    monkeypatch.delenv("VEIL_KEY", raising=False)
    with pytest.raises(veil.KeyError_):
        veil.deidentify(src, tmp_path / "out", recipe="research", workers=1)
    assert not (tmp_path / "out").exists() or not _files(tmp_path / "out")


def test_verify_passes_on_veils_own_output(archive: tuple[Path, Path], tmp_path: Path) -> None:
    src, key_path = archive
    key = veil.load_key(key_path)
    veil.deidentify(src, tmp_path / "out", recipe="research", key=key, workers=1)
    report = veil.verify(src, tmp_path / "out", recipe="research", key=key, dciodvfy_sample=0)
    assert report.passed, report.errors


def test_the_readme_example_runs(tmp_path: Path) -> None:
    """The Python example of the README, run as written in a fresh folder."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README shows the Python API"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("VEIL_KEY", None)
    for code in blocks:
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]


def test_no_api_function_is_shadowed_by_a_subpackage() -> None:
    """Importing a subpackage sets an attribute of the same name on ``veil``: no API name may be one."""
    import veil.verification  # noqa: F401

    subpackages = {p.name for p in (ROOT / "src" / "veil").iterdir() if (p / "__init__.py").exists()}
    assert not subpackages & set(veil.__all__)
    assert callable(veil.verify) and veil.verify.__module__ == "veil.api"


def test_ray_missing_is_a_clear_error(archive: tuple[Path, Path], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray is an extra: asked for and not installed, the run stops before any work and says how to get it."""
    from veil.engine import FatalRunError

    src, key_path = archive
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(FatalRunError, match=r"veil\[ray\]"):
        veil.deidentify(src, tmp_path / "out", recipe="research", key=key_path, workers=2, ray=True)
    assert not (tmp_path / "out").exists() or not _files(tmp_path / "out")
