"""The review UI on a defaced series (Starlette's TestClient, no browser): the series' defacing record and its
frontal renderings, after in clear for every reviewer, before (sealed in the audit) only with the key it was
sealed to and the permission to see originals."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from review_run import ReviewRun

pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

from veil.access import Role  # noqa: E402
from veil.audit import deface_dir, read_pixel_records  # noqa: E402
from veil.keys import load_key  # noqa: E402
from veil.review.app import ReviewConfig, create_app  # noqa: E402
from veil.review.model import ReviewData  # noqa: E402
from veil.review.security import Guard  # noqa: E402

HOST = "testserver"


def _client(run: ReviewRun, *, key: bool, roles: set[Role]) -> TestClient:
    data = ReviewData(run.dst, src=run.src if key else None, key=load_key(run.key_path) if key else None,
                      recipe=str(run.recipe_path))
    guard = Guard("alice", roles, None, hosts=(HOST,))
    config = ReviewConfig(layer=run.layer_path, key_path=str(run.key_path), src_text=str(run.src),
                          dst_text=str(run.dst))
    client = TestClient(create_app(data, guard, config), base_url=f"http://{HOST}")
    assert client.get(f"/login?token={guard.token}", follow_redirects=False).status_code == 303
    return client


def _png(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("L"))


def _series(client: TestClient) -> tuple[str, list[str]]:
    rows = client.get("/api/redactions").json()["instances"]
    series = {r["series"] for r in rows}
    assert len(series) == 1, "one head series in the run"
    return series.pop(), [r["uid"] for r in rows]


def test_model_reads_the_record_and_the_renderings(deface_run: ReviewRun) -> None:
    data = ReviewData(deface_run.dst)
    carriers = [i for i in data.instances() if i.defaced]
    assert len(carriers) == 1, "the series' first instance carries the renderings"
    series = carriers[0].series_instance_uid
    record = data.deface_record(series)
    on_disk = [json.loads(p.read_text()) for p in deface_dir(deface_run.dst).glob("series-*.json")]
    assert record == on_disk[0] and record["status"] == "defaced"
    after = _png(data.rendering_png(series, "after") or b"")
    stored = read_pixel_records(deface_run.dst)[carriers[0].shard][0].thumbnail
    assert np.array_equal(after, stored), "the after-rendering is the audit's, as stored"
    assert data.rendering_png(series, "before") is None, "the before-rendering is sealed: no key, nothing"
    assert data.rendering_png("1.2.3.4", "after") is None and data.deface_record("1.2.3.4") is None
    with pytest.raises(Exception, match="after"):
        data.rendering_png(series, "sideways")


def test_instance_page_shows_the_defacing(deface_run: ReviewRun) -> None:
    client = _client(deface_run, key=True, roles={Role.REVIEWER, Role.CUSTODIAN})
    series, uids = _series(client)
    for uid in (uids[0], uids[-1]):  # every instance of the series shows it, not only the one carrying it
        api = client.get(f"/api/instance/{uid}").json()
        assert api["deface"]["status"] == "defaced" and 0 < api["deface"]["head_fraction_removed"] < 1
        page = client.get(f"/instance/{uid}").text
        assert 'id="rendering-after"' in page and 'id="rendering-before"' in page
        assert f"{api['deface']['head_fraction_removed'] * 100:.1f}%" in page
    after = client.get(f"/series/{series}/rendering.png?which=after")
    before = client.get(f"/series/{series}/rendering.png?which=before")
    assert after.status_code == before.status_code == 200
    assert after.headers["content-type"] == before.headers["content-type"] == "image/png"
    a, b = _png(after.content), _png(before.content)
    assert a.shape == b.shape and not np.array_equal(a, b), "the face is in the before-rendering only"
    # Seen from the front, the defaced head shows less surface in the face's lower half than the original.
    lower = slice(a.shape[0] // 2, None)
    assert np.count_nonzero(a[lower]) < np.count_nonzero(b[lower])
    assert client.get(f"/series/{series}/rendering.png?which=sideways").status_code == 404
    assert client.get("/series/1.2.3.4/rendering.png").status_code == 404


def test_before_rendering_needs_the_key_and_the_permission(deface_run: ReviewRun) -> None:
    keyless = _client(deface_run, key=False, roles={Role.REVIEWER, Role.CUSTODIAN})
    series, uids = _series(keyless)
    assert keyless.get(f"/series/{series}/rendering.png?which=after").status_code == 200
    assert keyless.get(f"/series/{series}/rendering.png?which=before").status_code == 404
    assert 'id="rendering-before"' not in keyless.get(f"/instance/{uids[0]}").text
    reviewer = _client(deface_run, key=True, roles={Role.REVIEWER})
    assert reviewer.get(f"/series/{series}/rendering.png?which=after").status_code == 200
    assert reviewer.get(f"/series/{series}/rendering.png?which=before").status_code == 403
