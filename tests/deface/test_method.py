"""The defacing method on real heads with faces (tests/support/heads.py): the face region goes, the brain stays,
and a face detector that finds the face on a frontal rendering of the input finds none on the output's."""

from __future__ import annotations

import heads
import numpy as np
import pytest

from veil.deface.grid import Volume
from veil.deface.method import DefaceError, DefaceOptions, deface, head_mask
from veil.deface.render import frontal_render

pytestmark = pytest.mark.heavy  # seconds a case: run by make test, left out of make test-fast

# (head, modality, size (slices, rows, columns) or None for the head's own grid, spacing mm, tilt degrees)
CASES = [
    ("robex", "MR", None, None, 0.0),
    ("robex", "CT", (180, 256, 256), 1.0, 12.0),
    ("robex", "MR", (180, 256, 256), 1.0, 15.0),
    ("mean", "MR", (180, 256, 256), 1.0, 0.0),
    ("mean", "MR", None, None, 12.0),
    ("mean", "CT", None, None, 0.0),
    ("mean", "CT", (180, 256, 256), 1.0, 15.0),
]


def _faces(volume: Volume, stored: np.ndarray | None = None) -> int:
    """The most faces dlib's HOG frontal face detector finds on frontal renderings of the volume at 1, 1.5 and
    2 mm a pixel, each upsampled once and twice by the detector (it is sensitive to the face's size)."""
    dlib = pytest.importorskip("dlib")
    detector = dlib.get_frontal_face_detector()
    found = 0
    for spacing in (1.0, 1.5, 2.0):
        image = frontal_render(volume, stored, spacing=spacing)
        found = max(found, *(len(detector(image, up)) for up in (1, 2)))
    return found


def _volume(stack: heads.Stack) -> Volume:
    return Volume(stack.data, stack.affine, stack.modality, 1.0, stack.intercept)


@pytest.mark.parametrize(("head", "modality", "size", "spacing", "tilt"), CASES,
                         ids=[f"{h}-{m}-{'native' if s is None else 'x'.join(map(str, s))}-tilt{t:g}"
                              for h, m, s, _, t in CASES])
def test_face_removed_brain_kept_no_face_detected(head: str, modality: str, size: tuple[int, int, int] | None,
                                                  spacing: float | None, tilt: float) -> None:
    s = heads.stack(getattr(heads, head)(), modality, size=size, spacing=spacing, tilt=tilt)
    volume = _volume(s)
    found = deface(volume)
    out = s.data.copy()
    out[found.removed] = 0 if modality == "MR" else 24  # air: -1000 HU stored + 1024
    face_removed = np.count_nonzero(found.removed & s.face) / np.count_nonzero(s.face)
    assert face_removed >= 0.95, f"{face_removed:.3f} of the face region removed"
    kept = s.brain & (out == s.data)
    dice = 2 * np.count_nonzero(kept) / (np.count_nonzero(kept) + np.count_nonzero(s.brain))
    assert dice >= 0.99, f"brain Dice {dice:.4f}"
    assert _faces(volume) >= 1, "no face found on the input: the check proves nothing"
    assert _faces(volume, out) == 0, "a face is still found on a defaced rendering"
    assert 0.05 < found.fraction < 0.6
    assert found.fit > 0.85


def test_options_shell_and_ears() -> None:
    s = heads.stack(heads.robex(), "MR")
    volume = _volume(s)
    plane = deface(volume)
    shell = deface(volume, DefaceOptions(method="shell", shell=8.0))
    ears = deface(volume, DefaceOptions(ears=True))
    tissue = s.data > 100  # (air in front of the face is "removed" too: it is set to air)
    assert np.count_nonzero(shell.removed & tissue) < np.count_nonzero(plane.removed & tissue) / 2
    assert not np.any(shell.removed & ~plane.removed)  # the shell is part of what the plane removes
    extra = ears.removed & ~plane.removed & tissue
    assert np.count_nonzero(extra) > 1000
    columns = np.nonzero(extra)[2]  # columns run from the patient's right to left
    middle = s.data.shape[2] / 2
    assert np.any(columns < middle - 40) and np.any(columns > middle + 40)  # both sides
    for found in (shell, ears):
        assert not np.any(found.removed & s.brain)


def test_same_result_twice() -> None:
    s = heads.stack(heads.mean(), "CT", tilt=10)
    a, b = deface(_volume(s)), deface(_volume(s))
    assert np.array_equal(a.removed, b.removed) and a.offset == b.offset


def test_not_a_head_is_refused() -> None:
    rng = np.random.default_rng(3)
    # A torso-sized ellipse of soft tissue: no head shape, the atlas does not fit.
    k, r, c = np.mgrid[0:60, 0:128, 0:128]
    body = ((r - 64) / 60.0) ** 2 + ((c - 64) / 40.0) ** 2 < 1
    data = np.where(body, 1064, 24).astype(np.uint16) + rng.integers(0, 5, body.shape).astype(np.uint16)
    affine = np.diag([5.0, 3.0, 3.0, 1.0])
    with pytest.raises(DefaceError, match="does not fit|no head"):
        deface(Volume(data, affine, "CT", 1.0, -1024.0))
    with pytest.raises(DefaceError, match="no head"):
        deface(Volume(np.zeros((30, 64, 64), np.uint16), affine, "MR"))


def test_head_mask_finds_the_head() -> None:
    h = heads.robex()
    head = head_mask(h.values, "MR")
    assert np.count_nonzero(head & h.brain) / np.count_nonzero(h.brain) > 0.99
