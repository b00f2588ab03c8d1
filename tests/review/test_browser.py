"""The review UI in a real browser: Debian's Chromium driven by Playwright, against ``veil review`` started as a
process on 127.0.0.1 (stopped by its PID). Every page load fails the test on a console error or a
Content-Security-Policy violation."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from review_run import ID_BOX, NAME_BOX, PLANTED_NAME, ReviewRun, Server, make_run

CHROMIUM = "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip("no Chromium at /usr/bin/chromium (make test installs it with apt)", allow_module_level=True)

pytestmark = pytest.mark.browser
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-default-apps", "--disable-extensions"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield chromium
        chromium.close()


class Watched:
    """A page whose console errors and CSP violations fail the test."""

    def __init__(self, browser: Any, *, width: int = 1280, height: int = 900, scale: float = 1) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height}, device_scale_factor=scale)
        self.page = self.context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))

    def go(self, url: str) -> Any:
        self.page.goto(url)
        self.page.wait_for_load_state("networkidle")
        self.check()
        return self.page

    def check(self) -> None:
        assert not self.problems, f"console or CSP errors: {self.problems}"

    def close(self) -> None:
        self.check()
        self.context.close()


def sign_in(browser: Any, server: Server, **kw: Any) -> Watched:
    watched = Watched(browser, **kw)
    page = watched.go(server.url)
    assert "token" not in page.url, "the token is removed from the address bar"
    assert page.url == server.origin + "/"
    cookies = watched.context.cookies()
    assert [c["httpOnly"] for c in cookies] == [True] and cookies[0]["sameSite"] == "Strict"
    return watched


def test_overview_quarantine_and_the_name_only_before(browser: Any, review_run: ReviewRun) -> None:
    from veil.audit.tally import summarize

    server = Server(review_run, "alice")
    try:
        anonymous = Watched(browser)
        response = anonymous.page.goto(server.origin + "/")
        assert response.status == 401
        anonymous.context.close()
        watched = sign_in(browser, server)
        page = watched.page
        audit = summarize(review_run.dst)
        for name, value in (("files", audit.files), ("written", audit.written),
                            ("quarantined", audit.quarantined), ("pixel_redacted", audit.pixel_redacted)):
            assert page.locator(f'#overview [data-count="{name}"]').inner_text() == str(value)
        page = watched.go(server.origin + "/quarantine")
        digests = page.locator("tr[data-digest]").evaluate_all("rows => rows.map(r => r.dataset.digest)")
        assert sorted(digests) == sorted(d for d, _ in audit.quarantine)
        assert page.locator(".reason").all_inner_texts() == sorted({r for _, r in audit.quarantine})
        page = watched.go(server.origin + "/redactions")
        page.locator("a.open").first.click()
        page.wait_for_load_state("networkidle")
        watched.check()
        rect = page.locator("#after-overlay rect.box.rule")
        assert rect.count() == 1
        assert [int(rect.get_attribute(a) or -1) for a in ("x", "y", "width", "height")] == list(NAME_BOX)
        # The red box covers the name: the rule's box on screen contains where the name is drawn.
        overlay, shown = page.locator("#after-overlay").bounding_box(), rect.bounding_box()
        scale = overlay["width"] / 128
        assert shown["x"] <= overlay["x"] + NAME_BOX[0] * scale + 1
        assert shown["x"] + shown["width"] >= overlay["x"] + (NAME_BOX[0] + NAME_BOX[2]) * scale - 1
        assert page.locator("#before-img").count() == 1
        page.keyboard.press("o")
        assert "hidden" in (page.locator("#after-overlay").get_attribute("class") or "")
        watched.close()
        log = server.stop()
        assert server.token not in log and PLANTED_NAME not in log and "Quorrel" not in log
    finally:
        server.stop()
    plain = Server(review_run, "rita", key=False)
    try:
        watched = sign_in(browser, plain)
        page = watched.go(plain.origin + "/redactions")
        page.locator("a.open").first.click()
        page.wait_for_load_state("networkidle")
        assert page.locator("#before-img").count() == 0, "no before-image without the key"
        watched.close()
    finally:
        plain.stop()


def _draw(page: Any, box: tuple[int, int, int, int]) -> None:
    """Drags over ``box`` (image pixels) on the after-image, through the page's own geometry."""
    overlay = page.locator("#after-overlay").bounding_box()
    sx, sy = overlay["width"] / 128, overlay["height"] / 128
    x, y, w, h = box
    page.keyboard.press("b")
    page.mouse.move(overlay["x"] + (x + 0.2) * sx, overlay["y"] + (y + 0.2) * sy)
    page.mouse.down()
    page.mouse.move(overlay["x"] + (x + w / 2) * sx, overlay["y"] + (y + h / 2) * sy, steps=3)
    page.mouse.move(overlay["x"] + (x + w - 0.2) * sx, overlay["y"] + (y + h - 0.2) * sy, steps=3)
    page.mouse.up()


@pytest.mark.parametrize(("width", "height", "scale"), [(1280, 900, 1), (760, 700, 2)])
def test_a_drawn_box_becomes_a_rule_that_covers_it(browser: Any, tmp_path: Path, width: int, height: int,
                                                   scale: float) -> None:
    import yaml

    run = make_run(tmp_path)
    server = Server(run, "alice")
    try:
        watched = sign_in(browser, server, width=width, height=height, scale=scale)
        page = watched.go(server.origin + "/redactions")
        page.locator("a.open").first.click()
        page.wait_for_load_state("networkidle")
        page.keyboard.press("a")
        sync_api.expect(page.locator("#state")).to_have_text("approve")
        _draw(page, ID_BOX)
        page.locator("#save-rule").click()
        sync_api.expect(page.locator("#message")).to_have_text(re.compile("^Proposed"))
        page = watched.go(server.origin + "/proposals")
        page.locator("#save-layer").click()
        page.wait_for_selector("#saved:not([hidden])")
        command = page.locator("#rerun-command").inner_text()
        assert "--recipe" in command and str(run.layer_path) in command
        watched.close()
    finally:
        server.stop()
    layer = yaml.safe_load(run.layer_path.read_text())
    rule = layer["pixels"]["rules"][0]
    x, y, w, h = ID_BOX
    assert [x, y, w, h] in rule["regions"] or any(
        rx <= x and ry <= y and rx + rw >= x + w and ry + rh >= y + h for rx, ry, rw, rh in rule["regions"]), \
        f"no region covers the drawn box: {rule['regions']}"
    assert list(NAME_BOX) in rule["regions"], "the rule keeps the region that blanked the name"
    _rerun_blanks_it_and_reopens(browser, run)


def _rerun_blanks_it_and_reopens(browser: Any, run: ReviewRun) -> None:
    import pydicom

    import veil
    from veil.audit.tally import summarize

    veil.deidentify(run.src, run.dst, recipe=run.layer_path, key=run.key_path, workers=1, change_records=True)
    assert all(r.startswith("review-test-site 1 ") for r in summarize(run.dst).recipes)
    x, y, w, h = ID_BOX
    for output in run.ct_outputs:
        pixels = pydicom.dcmread(output).pixel_array
        assert np.ptp(pixels[y:y + h, x:x + w]) == 0, "the rerun blanks the drawn box"
    server = Server(run, "alice")
    try:
        watched = sign_in(browser, server)
        page = watched.go(server.origin + "/redactions?state=approve")
        assert page.locator("tr[data-uid]").count() == 0, "the old approval is pending again"
        page = watched.go(server.origin + "/redactions?state=pending")
        assert page.locator("tr[data-uid]").count() == 3
        watched.close()
    finally:
        server.stop()


def test_header_page_decisions_log_and_second_look(browser: Any, fresh_run: ReviewRun) -> None:
    from veil.review.decisions import DecisionLog

    alice = Server(fresh_run, "alice")
    try:
        watched = sign_in(browser, alice)
        page = watched.go(alice.origin + "/redactions")
        page.locator("a.open").first.click()
        page.wait_for_load_state("networkidle")
        uid = page.locator("#review").get_attribute("data-uid")
        page.keyboard.press("s")
        sync_api.expect(page.locator("#state")).to_have_text("second-look")
        page.locator("#next").click()
        page.wait_for_load_state("networkidle")
        page.select_option("#reject-reason", "identifying text still visible")
        page.locator("#reject").click()
        sync_api.expect(page.locator("#state")).to_have_text("reject")
        page = watched.go(alice.origin + f"/instance/{uid}/header")
        assert page.locator("#originals").inner_text() == "shown"
        expected = _inspect_rows(fresh_run, uid)
        shown = page.locator("#header-rows tr[data-path]").evaluate_all(
            "rows => rows.map(r => [...r.querySelectorAll('td')].slice(0, 7).map(c => c.textContent.trim()))")
        assert shown == [[e.path, e.keyword, e.vr, e.before, e.after, e.action, e.rule] for e in expected], \
            "the header page shows veil inspect's rows, row for row"
        page = watched.go(alice.origin + f"/instance/{uid}/header?filter=changed")
        keywords = page.locator("#header-rows tr[data-path] td:nth-child(2)").all_inner_texts()
        assert "PatientName" in keywords and len(keywords) < len(expected)
        page = watched.go(alice.origin + "/proposals")
        assert page.locator("#chain").inner_text().startswith("valid, 2 lines")
        with page.expect_download() as download:
            page.locator("#csv-link").click()
        csv_text = Path(download.value.path()).read_text()
        assert csv_text.splitlines()[0].startswith("time,operator,run_id,recipe_hash,instances")
        assert len(csv_text.splitlines()) == 3
        watched.close()
        log = alice.stop()
        assert alice.token not in log and PLANTED_NAME not in log
    finally:
        alice.stop()
    records = DecisionLog(fresh_run.dst).records()
    assert [r.decision for r in records] == ["second-look", "reject"]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", r.time) for r in records)
    bob = Server(fresh_run, "bob")
    try:
        watched = sign_in(browser, bob)
        assert watched.page.locator("#second-look-waiting").count() == 1, "a restart keeps decisions"
        watched.page.locator("#second-look-waiting a").click()
        watched.page.wait_for_load_state("networkidle")
        assert watched.page.locator("tr[data-uid]").evaluate_all("r => r.map(x => x.dataset.uid)") == [uid]
        watched.close()
    finally:
        bob.stop()


def _inspect_rows(run: ReviewRun, uid: str) -> list[Any]:
    """``veil inspect`` of the input of ``uid`` with the run's recipe and key, values trimmed as a page shows them."""
    from veil.keys import KeyedFunctions, load_key
    from veil.preview.inspect import inspect_file
    from veil.recipes import compile_recipe
    from veil.review.model import ReviewData

    key = load_key(run.key_path)
    data = ReviewData(run.dst, src=run.src, key=key)
    source = data.source_file(data.instance(uid))
    assert source is not None
    compiled = compile_recipe(run.recipe_path)
    rows = inspect_file(source, compiled, KeyedFunctions(key, **compiled.key_parameters)).rows
    return [type(r)(*(v.strip() if isinstance(v, str) else v for v in r.__dict__.values())) for r in rows]


def test_defaced_series_shows_its_renderings(browser: Any, deface_run: ReviewRun) -> None:
    """A defaced head series: the instance page shows the frontal renderings from the audit, after for anyone
    who may review, before (sealed) only where the key opens it."""
    server = Server(deface_run, "alice")
    try:
        watched = sign_in(browser, server)
        page = watched.go(server.origin + "/redactions")
        page.locator("a.open").first.click()
        page.wait_for_load_state("networkidle")
        watched.check()
        assert page.locator("#deface h2").inner_text() == "Defaced series"
        assert page.locator("#deface-fraction").inner_text().endswith("%")
        for image in ("#rendering-after", "#rendering-before"):
            width = page.locator(image).evaluate("img => img.complete ? img.naturalWidth : 0")
            assert width > 0, f"{image} did not load"
        watched.close()
    finally:
        server.stop()
    plain = Server(deface_run, "rita", key=False)
    try:
        watched = sign_in(browser, plain)
        page = watched.go(plain.origin + "/redactions")
        page.locator("a.open").first.click()
        page.wait_for_load_state("networkidle")
        assert page.locator("#rendering-after").evaluate("img => img.naturalWidth") > 0
        assert page.locator("#rendering-before").count() == 0, "no before-rendering without the key"
        watched.close()
    finally:
        plain.stop()
