"""Fixtures of the review UI's tests: a real run (``tests/support/review_run.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from review_run import ReviewRun, make_run

pytest.importorskip("starlette")
pytest.importorskip("jinja2")


@pytest.fixture(scope="session")
def review_run(tmp_path_factory: pytest.TempPathFactory) -> ReviewRun:
    """One run shared by the read-only tests (do not write decisions or proposals into it)."""
    return make_run(tmp_path_factory.mktemp("review-run"))


@pytest.fixture
def fresh_run(tmp_path: Path) -> ReviewRun:
    """A run of its own, for a test that decides, proposes or reruns."""
    return make_run(tmp_path)



@pytest.fixture(scope="session")
def deface_run(tmp_path_factory: pytest.TempPathFactory) -> ReviewRun:
    """A run whose head MR series was defaced (read-only tests)."""
    pytest.importorskip("scipy")
    from review_run import make_deface_run

    return make_deface_run(tmp_path_factory.mktemp("deface-run"))
