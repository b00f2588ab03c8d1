"""``veil inspect FOLDER``: the defacing preview. The series a run would deface, leave or quarantine, found and
decided as the run decides them (the same plane and fraction as a real run under the same key), nothing
written into the folder, and only the rendering after defacing written where ``--render`` asks."""

from __future__ import annotations

import json
import shutil
from contextlib import redirect_stdout
from io import StringIO
from pathlib import Path

import heads
import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

pytest.importorskip("scipy")

from veil.api import deidentify  # noqa: E402
from veil.audit import deface_dir, read_pixel_records  # noqa: E402
from veil.cli.main import EXIT_OK, main  # noqa: E402
from veil.errors import RecipeError  # noqa: E402
from veil.keys import Key, KeyedFunctions  # noqa: E402
from veil.preview.deface import preview_defacing  # noqa: E402
from veil.recipes import compile_recipe  # noqa: E402

RECIPE = """name: preview-defaced
version: "1"
extends: research
options: [clean-recognizable-visual-features]
rules: []
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deface-preview")
    src = root / "src"
    robex = heads.robex()
    heads.write_series(heads.stack(robex, "MR", spacing=2.0), src / "a_head")
    heads.write_series(heads.stack(robex, "MR", size=(10, 150, 116)), src / "b_short")
    gap = heads.write_series(heads.stack(robex, "MR", spacing=2.5), src / "c_gap")
    gap[len(gap) // 2].unlink()
    heads.write_series(heads.stack(robex, "CT", spacing=3.0), src / "d_chest", body_part="CHEST")
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "e_ct_small.dcm")
    (root / "recipe.yml").write_text(RECIPE)
    return root


def _listing(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_preview_decides_each_series_as_a_run(folder: Path, tmp_path: Path) -> None:
    key = Key(b"p" * 32)
    compiled = compile_recipe(folder / "recipe.yml")
    before = _listing(folder / "src")
    result = preview_defacing(folder / "src", compiled, KeyedFunctions(key, **compiled.key_parameters))
    assert _listing(folder / "src") == before, "a preview writes nothing into the folder"
    by_folder = {s.first_file.split("/")[0]: s for s in result.series}
    assert set(by_folder) == {"a_head", "b_short", "c_gap", "e_ct_small.dcm"}, "the chest is not taken"
    # A CT with no body part is checked by its volume: one slice is no volume, so it is left as it is.
    assert by_folder["e_ct_small.dcm"].selected_by == "check"
    assert by_folder["e_ct_small.dcm"].status == "untouched"
    assert by_folder["a_head"].status == "defaced" and by_folder["a_head"].after is not None
    assert by_folder["b_short"].status == "untouched" and by_folder["b_short"].after is None
    assert by_folder["c_gap"].status == "quarantined" and by_folder["c_gap"].reason
    taken = sum(s.files for s in result.series)
    assert result.files == taken + result.per_file and result.per_file > 1
    assert not result.throwaway_key and result.key_id == key.key_id
    # The run under the same key defaces the same way: the same plane, the same fraction, the same rendering.
    deidentify(folder / "src", tmp_path / "dst", recipe=folder / "recipe.yml", key=key, workers=1)
    records = [json.loads(p.read_text()) for p in deface_dir(tmp_path / "dst").glob("series-*.json")]
    run = next(r for r in records if r.get("status") == "defaced")
    shown = by_folder["a_head"].record
    for field in ("plane_normal_lps", "plane_offset_mm", "head_fraction_removed", "voxels_changed", "method"):
        assert shown[field] == run[field], field
    thumbnails = [r.thumbnail for recs in read_pixel_records(tmp_path / "dst").values() for r in recs
                  if "deface" in r.source]
    assert len(thumbnails) == 1 and np.array_equal(thumbnails[0], by_folder["a_head"].after)


def test_cli_json_and_render(folder: Path, tmp_path: Path) -> None:
    out = StringIO()
    with redirect_stdout(out):
        code = main(["inspect", str(folder / "src"), "--recipe", str(folder / "recipe.yml"), "--json",
                     "--render", str(tmp_path / "renders")])
    assert code == EXIT_OK
    content = json.loads(out.getvalue())
    assert content["throwaway_key"] is True
    statuses = {s["first_file"].split("/")[0]: s for s in content["series"]}
    assert statuses["a_head"]["status"] == "defaced" and statuses["a_head"]["rendering"]
    assert statuses["b_short"]["rendering"] is None
    written = sorted((tmp_path / "renders").iterdir())
    assert [p.name for p in written] == ["series-001-after.png"], "only the after-rendering, only when defaced"
    image = np.asarray(Image.open(written[0]))
    assert image.dtype == np.uint8 and image.ndim == 2 and image.any()
    table = StringIO()
    with redirect_stdout(table):
        assert main(["inspect", str(folder / "src"), "--recipe", str(folder / "recipe.yml")]) == EXIT_OK
    text = table.getvalue()
    assert "defaced" in text and "quarantined" in text and "per-file path" in text


def test_bad_requests_are_clear(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RecipeError, match="no deface: section"):
        preview_defacing(folder / "src", "research")
    assert main(["inspect", str(folder / "src"), "--recipe", "research"]) != EXIT_OK
    assert "no deface: section" in capsys.readouterr().err
    one = next((folder / "src" / "a_head").iterdir())
    assert main(["inspect", str(one), "--recipe", str(folder / "recipe.yml"), "--render", str(tmp_path)]) != EXIT_OK
    assert "give a folder" in capsys.readouterr().err
