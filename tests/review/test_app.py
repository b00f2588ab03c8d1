"""The review server over HTTP (Starlette's TestClient, no browser): sign-in, host and CSRF checks, the pages'
JSON twins against the audit and ``veil inspect``, roles, decisions, proposals and a rerun with the saved layer."""

from __future__ import annotations

import io
import json
import logging
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from review_run import ID_BOX, NAME_BOX, PLANTED_NAME, ReviewRun

pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

from veil.access import Role, add_user, save_users  # noqa: E402
from veil.access.users import Users  # noqa: E402
from veil.audit.tally import summarize  # noqa: E402
from veil.keys import load_key  # noqa: E402
from veil.review.app import ReviewConfig, create_app  # noqa: E402
from veil.review.decisions import DecisionLog  # noqa: E402
from veil.review.model import ReviewData  # noqa: E402
from veil.review.security import Guard  # noqa: E402

HOST = "testserver"
ORIGIN = {"origin": f"http://{HOST}"}


def serve(run: ReviewRun, *, key: bool = True, operator: str = "alice", roles: Any = None,
          users: Users | None = None) -> tuple[TestClient, Guard]:
    data = ReviewData(run.dst, src=run.src if key else None, key=load_key(run.key_path) if key else None,
                      recipe=str(run.recipe_path))
    if roles is None:
        roles = {Role.REVIEWER, Role.AUDITOR} | ({Role.CUSTODIAN} if key else set())
    guard = Guard(operator, roles, users, hosts=(HOST,))
    config = ReviewConfig(layer=run.layer_path, key_path=str(run.key_path), src_text=str(run.src),
                          dst_text=str(run.dst))
    return TestClient(create_app(data, guard, config), base_url=f"http://{HOST}"), guard


def signed_in(run: ReviewRun, **kw: Any) -> tuple[TestClient, str]:
    client, guard = serve(run, **kw)
    token = guard.token
    assert token
    response = client.get(f"/login?token={token}", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"
    page = client.get("/").text
    csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
    return client, csrf


def post(client: TestClient, csrf: str, url: str, body: dict[str, Any]) -> Any:
    return client.post(url, json=body, headers={"x-csrf-token": csrf, **ORIGIN})


def ct_uids(client: TestClient) -> list[str]:
    listed = client.get("/api/redactions").json()["instances"]
    return [r["uid"] for r in listed if r["modality"] == "CT"]


def png(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("L"))


# --- 1: sign-in, host, CSRF, headers ---------------------------------------------------------------------------


def test_token_cookie_host_and_csrf(review_run: ReviewRun) -> None:
    client, guard = serve(review_run)
    token = guard.token
    assert client.get("/").status_code == 401
    assert client.get("/api/overview").status_code == 401
    assert client.get("/login?token=wrong", follow_redirects=False).status_code == 401
    response = client.get(f"/login?token={token}", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get(f"/login?token={token}", follow_redirects=False).status_code == 401, "the token is one-time"
    page = client.get("/")
    assert page.status_code == 200
    for header, value in (("content-security-policy", "script-src 'self'"), ("cache-control", "no-store"),
                          ("x-frame-options", "DENY")):
        assert value in page.headers[header]
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    assert client.get("/", headers={"host": "evil.example:80"}).status_code == 400
    uid = ct_uids(client)[0]
    assert client.post(f"/instance/{uid}/decide", json={"decision": "approve"}, headers=ORIGIN).status_code == 403
    csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
    wrong_origin = client.post(f"/instance/{uid}/decide", json={"decision": "approve"},
                               headers={"x-csrf-token": csrf, "origin": "http://evil.example"})
    assert wrong_origin.status_code == 403


def test_overview_counts_equal_veil_audit(review_run: ReviewRun) -> None:
    client, _ = signed_in(review_run)
    info = client.get("/api/overview").json()
    audit = summarize(review_run.dst)
    assert (info["files"], info["written"], info["quarantined"], info["skipped"], info["pixel_redacted"]) == (
        audit.files, audit.written, audit.quarantined, audit.skipped, audit.pixel_redacted)
    assert info["written"] == 4 and info["quarantined"] == 1 and info["pixel_redacted"] == 3
    assert info["reasons"] == dict(audit.reasons)
    page = client.get("/").text
    assert f'data-count="written">{audit.written}<' in page


# --- 2: quarantine -----------------------------------------------------------------------------------------------


def test_quarantine_lists_exactly_the_quarantined_rows(review_run: ReviewRun) -> None:
    client, _ = signed_in(review_run)
    api = client.get("/api/quarantine").json()
    listed = sorted((row["input_digest"], row["reason"]) for g in api["groups"] for row in g["rows"])
    assert listed == sorted(summarize(review_run.dst).quarantine)
    assert [g["count"] for g in api["groups"]] == [1]
    digest = listed[0][0]
    original = client.get(f"/quarantine/{digest}")
    assert original.status_code == 200 and "CONTAINS PHI" in original.text
    reviewer, _ = signed_in(review_run, key=False)
    assert reviewer.get(f"/quarantine/{digest}").status_code == 403, "a reviewer never sees an original"
    assert "open original" not in reviewer.get("/quarantine").text
    assert "release" not in original.text.lower()


# --- 3: boxes, before and after ------------------------------------------------------------------------------


def test_the_rule_box_covers_the_name_and_the_name_shows_only_before(review_run: ReviewRun) -> None:
    client, _ = signed_in(review_run)
    uid = ct_uids(client)[0]
    detail = client.get(f"/api/instance/{uid}").json()
    (box,) = detail["boxes"]
    assert box["source"] == "rule" and (box["x"], box["y"], box["width"], box["height"]) == NAME_BOX
    x, y, w, h = NAME_BOX
    after = png(client.get(f"/instance/{uid}/after.png?window=full").content)
    before = png(client.get(f"/instance/{uid}/before.png?window=full").content)
    assert after.shape == before.shape == (128, 128)
    assert np.ptp(after[y:y + h, x:x + w]) == 0, "the name is blanked in the after-image"
    assert (before[y:y + h, x:x + w] == 255).sum() > 40, "the name shows in the before-image"
    without_key, _ = signed_in(review_run, key=False)
    assert without_key.get(f"/api/instance/{uid}").json()["before_available"] is False
    assert without_key.get(f"/instance/{uid}/before.png").status_code == 403
    assert 'id="before-img"' not in without_key.get(f"/instance/{uid}").text


def test_series_projection_and_frames(review_run: ReviewRun) -> None:
    client, _ = signed_in(review_run)
    uid = ct_uids(client)[0]
    detail = client.get(f"/api/instance/{uid}").json()
    projection = png(client.get(f"/series/{detail['series']}/projection.png").content)
    x, y, w, h = ID_BOX
    assert projection[y:y + h, x:x + w].max() == 255, "the ID left in the slices shows in the projection"
    every = client.get("/api/redactions?only=all").json()["instances"]
    (mr,) = [r for r in every if r["modality"] == "MR"]
    assert client.get(f"/api/instance/{mr['uid']}").json()["frames"] == 4
    first = client.get(f"/instance/{mr['uid']}/after.png?frame=0").content
    assert client.get(f"/instance/{mr['uid']}/after.png?frame=2").content != first
    assert client.get(f"/instance/{mr['uid']}/after.png?frame=9").status_code == 404


# --- 5: header ----------------------------------------------------------------------------------------------


def test_header_equals_veil_inspect_row_for_row(review_run: ReviewRun) -> None:
    from veil.cli.main import main

    client, _ = signed_in(review_run)
    uid = ct_uids(client)[0]
    rows = client.get(f"/api/instance/{uid}/header").json()
    assert rows["origin"] == "inspect" and rows["originals"] == "opened"
    detail = client.get(f"/api/instance/{uid}").json()
    data = ReviewData(review_run.dst, src=review_run.src, key=load_key(review_run.key_path))
    source = data.source_file(data.instance(detail["uid"]))
    assert source is not None
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["inspect", str(source), "--recipe", str(review_run.recipe_path), "--key",
                     str(review_run.key_path), "--json"]) == 0
    expected = json.loads(out.getvalue())["elements"]
    keys = ("path", "tag", "keyword", "vr", "before", "after", "action", "rule", "present_after")
    assert [[r[k] for k in keys] for r in rows["rows"]] == [[e[k] for k in keys] for e in expected]
    changed = client.get(f"/api/instance/{uid}/header?filter=changed").json()["rows"]
    assert 0 < len(changed) < len(rows["rows"])
    assert any(r["keyword"] == "PatientName" for r in changed)
    reviewer, _ = signed_in(review_run, key=False)
    plain = reviewer.get(f"/api/instance/{uid}/header").json()
    assert plain["origin"] == "change-records" and all("before" not in r for r in plain["rows"])
    assert PLANTED_NAME not in json.dumps(plain)


# --- roles ------------------------------------------------------------------------------------------------------


def test_roles_and_bearer_tokens(review_run: ReviewRun, tmp_path: Path) -> None:
    users = add_user(add_user(Users(), "ann", ["auditor"], "auditor-secret-1"), "rita", ["reviewer"], "review-secret-1")
    save_users(tmp_path / "users.yml", users)
    client, _ = serve(review_run, users=users, operator="ann", roles={Role.AUDITOR})
    assert client.get("/api/overview", headers={"authorization": "Bearer ann:wrong"}).status_code == 401
    ann = {"authorization": "Bearer ann:auditor-secret-1"}
    assert client.get("/api/overview", headers=ann).status_code == 200
    uid = ct_uids_with(client, ann)[0]
    assert client.get(f"/instance/{uid}/after.png", headers=ann).status_code == 403, "auditors see no images"
    assert client.post(f"/api/instance/{uid}/decide", json={"decision": "approve"}, headers=ann).status_code == 403
    rita = {"authorization": "Bearer rita:review-secret-1"}
    decided = client.post(f"/api/instance/{uid}/decide", json={"decision": "approve"}, headers=rita)
    assert decided.status_code == 200, decided.text
    assert client.get(f"/instance/{uid}/before.png", headers=rita).status_code == 403
    assert client.get("/api/proposals", headers=ann).json()["decisions"][-1]["operator"] == "rita"


def ct_uids_with(client: TestClient, headers: dict[str, str]) -> list[str]:
    listed = client.get("/api/redactions", headers=headers).json()["instances"]
    return [r["uid"] for r in listed if r["modality"] == "CT"]


# --- 4, 6, 7: decisions, proposals, rerun, restart --------------------------------------------------------------


def test_decisions_proposal_rerun_and_restart(fresh_run: ReviewRun, caplog: pytest.LogCaptureFixture) -> None:
    import veil

    caplog.set_level(logging.DEBUG)
    client, csrf = signed_in(fresh_run, operator="alice")
    first, second, third = ct_uids(client)
    assert post(client, csrf, f"/instance/{first}/decide", {"decision": "approve"}).status_code == 200
    assert post(client, csrf, f"/instance/{second}/decide", {"decision": "reject"}).status_code == 400
    assert post(client, csrf, f"/instance/{second}/decide",
                {"decision": "reject", "reason": "identifying text still visible"}).status_code == 200
    assert post(client, csrf, f"/instance/{third}/decide", {"decision": "second-look"}).status_code == 200
    x, y, w, h = ID_BOX
    drawn = {"x0": x + 0.4, "y0": y + 0.6, "x1": x + w - 0.3, "y1": y + h - 0.2, "frames": "all"}
    proposed = post(client, csrf, f"/instance/{second}/propose-box", drawn)
    assert proposed.status_code == 200, proposed.text
    assert proposed.json()["drawn"] == [x, y, w, h], "rounded outward to whole pixels"
    saved = post(client, csrf, "/proposals/save", {})
    assert saved.status_code == 200, saved.text
    layer = fresh_run.layer_path.read_text()
    assert "extends: review-test" in layer and "alice" in layer and saved.json()["version"] == "1"
    assert f"--recipe {fresh_run.layer_path}" in saved.json()["command"]

    log = DecisionLog(fresh_run.dst)
    assert log.verify() == 3
    record = log.records()[1]
    assert (record.operator, record.decision, record.reason, record.instances) == (
        "alice", "reject", "identifying text still visible", (second,))
    assert record.time.endswith("Z") and len(record.recipe_hash) == 64 and len(record.run_id) == 32

    summary = veil.deidentify(fresh_run.src, fresh_run.dst, recipe=fresh_run.layer_path, key=fresh_run.key_path,
                              workers=1, change_records=True)
    assert summary.totals.written == 4
    rerun = summarize(fresh_run.dst)
    assert rerun.recipes and all(r.startswith("review-test-site 1 ") for r in rerun.recipes)
    restarted, _ = signed_in(fresh_run, operator="bob")
    after = png(restarted.get(f"/instance/{second}/after.png?window=full").content)
    assert np.ptp(after[y:y + h, x:x + w]) == 0, "the rerun blanked the box drawn over the ID"
    states = {r["uid"]: r["state"] for r in restarted.get("/api/redactions").json()["instances"]}
    assert states[first] == "pending", "the old approval is pending again: the output changed"
    assert len(DecisionLog(fresh_run.dst).records()) == 3, "decisions survive a restart"
    text = " ".join(r.getMessage() for r in caplog.records)
    assert PLANTED_NAME not in text and "Quorrel" not in text


def test_second_operator_sees_second_look(fresh_run: ReviewRun) -> None:
    alice, csrf = signed_in(fresh_run, operator="alice")
    uid = ct_uids(alice)[0]
    assert post(alice, csrf, f"/instance/{uid}/decide", {"decision": "second-look"}).status_code == 200
    assert alice.get("/api/overview").json()["progress"]["second_look_for_me"] == 0
    bob, _ = signed_in(fresh_run, operator="bob")
    overview = bob.get("/api/overview").json()
    assert overview["progress"]["second_look_for_me"] == 1 and overview["progress"]["second-look"] == 1
    listed = bob.get("/api/redactions?only=all&state=second-look").json()["instances"]
    assert [r["uid"] for r in listed] == [uid]
    assert 'id="second-look-waiting"' in bob.get("/").text


def test_a_layer_that_does_not_compile_is_not_written(fresh_run: ReviewRun) -> None:
    client, csrf = signed_in(fresh_run)
    uid = ct_uids(client)[0]
    bad = post(client, csrf, f"/instance/{uid}/propose-header", {"element": "PatientName", "action": "clean"})
    assert bad.status_code == 200  # proposed; compiling it is what fails (PN cannot be cleaned)
    saved = post(client, csrf, "/proposals/save", {})
    assert saved.status_code == 400 and "does not compile" in saved.json()["error"]
    assert not fresh_run.layer_path.exists()


def test_the_command_serves_on_loopback_and_logs_no_token(review_run: ReviewRun) -> None:
    import httpx
    from review_run import Server

    server = Server(review_run, "alice")
    try:
        port = server.origin.rsplit(":", 1)[1]
        assert server.origin == f"http://127.0.0.1:{port}"
        with httpx.Client() as client:
            assert client.get(server.origin + "/").status_code == 401
            assert client.get(server.origin + "/", headers={"host": f"rebound.example:{port}"}).status_code == 400
            signed = client.get(server.url, follow_redirects=False)
            assert signed.status_code == 303 and signed.headers["location"] == "/"
            assert client.get(server.origin + "/api/overview").json()["written"] == 4
            assert client.get(server.url, follow_redirects=False).status_code == 401, "one-time token"
            denied = client.post(server.origin + "/proposals/save", json={}, headers={"origin": server.origin})
            assert denied.status_code == 403
    finally:
        log = server.stop()
    assert server.token not in log and PLANTED_NAME not in log
    assert "127.0.0.1" in log, "the log says where it serves (without the token)"


def test_a_rule_proposed_on_a_quarantined_original_lets_the_rerun_redact_it(tmp_path: Path) -> None:
    import pydicom
    from review_run import make_run

    import veil

    run = make_run(tmp_path, at_risk="quarantine")
    client, csrf = signed_in(run)
    groups = client.get("/api/quarantine").json()["groups"]
    (digest,) = [row["input_digest"] for g in groups for row in g["rows"] if "at risk" in g["reason"]]
    original = client.get(f"/api/quarantine/{digest}").json()
    assert original["frames"] == 4 and (original["rows"], original["columns"]) == (64, 64)
    assert client.get(f"/quarantine/{digest}/frame.png?frame=3").status_code == 200
    proposed = post(client, csrf, f"/quarantine/{digest}/propose-box",
                    {"x0": 10.5, "y0": 4, "x1": 30, "y1": 12.2, "frames": "all"})
    assert proposed.status_code == 200, proposed.text
    rule = proposed.json()["proposal"]
    assert {k: rule["match"][k] for k in ("Modality", "Rows", "Columns")} == {"Modality": "MR", "Rows": 64,
                                                                               "Columns": 64}
    assert [10, 4, 20, 9] in rule["regions"]
    diff = client.get("/api/proposals").json()["diff"]
    assert any(line.startswith("+") and "10, 4, 20, 9" in line for line in diff)
    assert post(client, csrf, "/proposals/save", {}).status_code == 200
    summary = veil.deidentify(run.src, run.dst, recipe=run.layer_path, key=run.key_path, workers=1)
    assert summary.totals.quarantined == 1, "the MR is redacted by the new rule instead of refused"
    (mr,) = [p for p in run.dst.rglob("*.dcm") if ".veil" not in p.parts
             and pydicom.dcmread(p, stop_before_pixels=True).Modality == "MR"]
    pixels = pydicom.dcmread(mr).pixel_array
    assert all(np.ptp(pixels[f, 4:13, 10:30]) == 0 for f in range(4))


def test_the_overview_shows_a_verify_verdict_without_its_paths(review_run: ReviewRun, tmp_path: Path) -> None:
    report = tmp_path / "verify.json"
    report.write_text(json.dumps({"verdict": "fail", "source": "/archive/Quorrel_Vantessa", "destination": "/out",
                                  "recipe": "review-test 1", "key_id": "ab", "counts": {
                                      "findings": 2, "findings_by_category": {"header": 2}, "outputs": 4}}))
    data = ReviewData(review_run.dst, verify_report=report)
    shown = data.overview()["verify"]
    assert shown["verdict"] == "fail" and shown["findings"] == 2 and shown["by_category"] == {"header": 2}
    assert "Quorrel" not in json.dumps(shown)
    report.write_text("{not json")
    assert "cannot read" in ReviewData(review_run.dst, verify_report=report).overview()["verify"]["error"]
