"""The review server's routes: server-rendered pages, each with a JSON twin under ``/api``, over
:class:`~veil.review.model.ReviewData`.

Every route names the :class:`veil.access.Action` it needs and calls :func:`veil.access.authorize` (which logs a
denial without values); :mod:`veil.review.security` has already checked the Host, the session and, for a POST,
the CSRF token and Origin. Images are rendered in memory per request and sent with ``no-store``; nothing is
cached on disk. Decisions go to the hash-chained log (:mod:`veil.review.decisions`), proposals to the site layer
(:mod:`veil.review.proposals`); no route writes a DICOM file.
"""

from __future__ import annotations

import io
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from veil.access import AccessDenied, Action, authorize
from veil.errors import VeilError
from veil.review.decisions import DecisionLog
from veil.review.model import Instance, ReviewData
from veil.review.proposals import (
    HEADER_ACTIONS,
    ProposalError,
    Proposals,
    is_site_layer,
    layer_text,
    pixel_regions,
    rerun_command,
    round_box,
    save_layer,
)
from veil.review.security import COOKIE, Guard, GuardMiddleware, Session

__all__ = ["DEFAULT_REJECT_REASONS", "ReviewConfig", "create_app"]

log = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
DEFAULT_REJECT_REASONS = (
    "identifying text still visible",
    "face or other recognizable feature",
    "identifying value in the header",
    "redaction covers anatomy needed for research",
    "image unreadable or wrong",
)
PAGE = 200


@dataclass
class ReviewConfig:
    """What one start of ``veil review`` was given besides the data: where proposals go and how to rerun."""

    layer: Path | None = None
    key_path: str | None = None
    src_text: str | None = None
    dst_text: str = "DST"
    reject_reasons: tuple[str, ...] = DEFAULT_REJECT_REASONS


def _session(request: Request) -> Session:
    session: Session = request.state.session
    return session


def _need(request: Request, action: Action, resource: str = "") -> Session:
    session = _session(request)
    authorize(session, action, resource=resource)
    return session


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise ValueError("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the request body is a JSON object")
    return data


def create_app(data: ReviewData, guard: Guard, config: ReviewConfig | None = None) -> Any:
    """The ASGI app: Starlette routes behind :class:`~veil.review.security.GuardMiddleware`."""
    config = config or ReviewConfig()
    import jinja2

    templates = Jinja2Templates(env=jinja2.Environment(loader=jinja2.FileSystemLoader(str(HERE / "templates")),
                                                       autoescape=True))
    decisions = DecisionLog(data.dst)
    proposals = Proposals(data.dst)

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
        session = _session(request)
        base = {"session": session, "can": session.can, "Action": Action, "overview_recipe":
                (data.manifest.get("recipe") or {}).get("name")}
        return templates.TemplateResponse(request, name, {**base, **context}, status_code=status)

    def reply(request: Request, name: str, context: dict[str, Any], api: Any) -> Response:
        if _wants_json(request):
            return JSONResponse(api)
        return page(request, name, context)

    def states(items: list[Instance]) -> dict[str, tuple[str, Any]]:
        return decisions.states({i.sop_instance_uid: data.shown(i) for i in items})

    # --- sign in ------------------------------------------------------------------------------------------

    async def login(request: Request) -> Response:
        cookie = guard.exchange(request.query_params.get("token", ""))
        if cookie is None:
            return PlainTextResponse("this sign-in address was used already or is wrong: restart veil review",
                                     status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, cookie, httponly=True, samesite="strict", path="/")
        return response

    # --- overview -----------------------------------------------------------------------------------------

    async def overview(request: Request) -> Response:
        session = _need(request, Action.REVIEW_VIEW)
        info = data.overview()
        items = data.instances()
        current = states(items)
        progress = Counter(state for state, _ in current.values())
        waiting = [uid for uid, (state, record) in current.items()
                   if state == "second-look" and record is not None and record.operator != session.name]
        info["progress"] = {"instances": len(items), "pending": progress.get("pending", 0),
                            "approve": progress.get("approve", 0), "reject": progress.get("reject", 0),
                            "second-look": progress.get("second-look", 0), "second_look_for_me": len(waiting)}
        sample: list[str] = []
        mode = request.query_params.get("sample")
        if mode:
            try:
                sample = data.sample(mode, int(request.query_params.get("n", "1") or 1),
                                     int(request.query_params.get("seed", "0") or 0))
            except ValueError as exc:
                return _error(request, 400, str(exc))
        info["sample"] = sample
        return reply(request, "overview.html", {"info": info, "sample": sample, "waiting": waiting}, info)

    # --- quarantine ---------------------------------------------------------------------------------------

    async def quarantine(request: Request) -> Response:
        _need(request, Action.REVIEW_VIEW)
        rows = data.quarantined()
        groups: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(row["reason"], []).append(row)
        rejected = {r.instances[0] for r in decisions.records() if r.decision == "reject"}
        ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        api = {"total": len(rows), "groups": [{"reason": k, "count": len(v), "rows": v} for k, v in ordered]}
        return reply(request, "quarantine.html", {"groups": ordered, "total": len(rows), "rejected": rejected,
                                                  "reasons": config.reject_reasons}, api)

    async def quarantined_original(request: Request) -> Response:
        digest = request.path_params["digest"]
        _need(request, Action.QUARANTINE_VIEW_ORIGINAL, resource=f"quarantine {digest[:12]}")
        try:
            raw = data.quarantined_original(digest)
        except KeyError as exc:
            return _error(request, 404, str(exc.args[0]))
        except PermissionError as exc:
            return _error(request, 403, str(exc))
        from veil.review import frames

        rows: list[dict[str, str]] = []
        info: dict[str, Any] = {"frames": 0}
        problem = ""
        try:
            ds = frames.read_dataset(raw)
            from veil.audit.changes import display_value

            rows = [{"tag": f"({e.tag.group:04X},{e.tag.element:04X})", "keyword": e.keyword or "", "vr": e.VR,
                     "value": display_value(ds, e.tag)} for e in ds]
            info = {"frames": frames.frame_count(ds), "rows": int(ds.get("Rows", 0) or 0),
                    "columns": int(ds.get("Columns", 0) or 0), "windows": [w.name for w in frames.windows(ds)]}
        except VeilError as exc:
            problem = str(exc)
        api = {"input_digest": digest, "elements": rows, "problem": problem, **info}
        return reply(request, "quarantine_item.html", {"digest": digest, "rows": rows, "problem": problem,
                                                       "info": info}, api)

    async def quarantined_frame(request: Request) -> Response:
        digest = request.path_params["digest"]
        _need(request, Action.QUARANTINE_VIEW_ORIGINAL, resource=f"quarantine {digest[:12]}")
        from veil.review import frames

        try:
            png = frames.render_png(data.quarantined_original(digest), _int(request, "frame"),
                                    request.query_params.get("window") or None)
        except (KeyError, PermissionError, VeilError) as exc:
            return PlainTextResponse(_message(exc), status_code=404)
        return Response(png, media_type="image/png")

    async def quarantine_propose_box(request: Request) -> Response:
        """A pixel rule drawn on a quarantined original (one the pixel policy refused, say): matched on its
        signature, so a rerun redacts such images instead of refusing them."""
        digest = request.path_params["digest"]
        _need(request, Action.QUARANTINE_VIEW_ORIGINAL, resource=f"quarantine {digest[:12]}")
        session = _need(request, Action.REVIEW_PROPOSE_RULE, resource=f"quarantine {digest[:12]}")
        from veil.review import frames
        from veil.review.model import input_signature

        try:
            body = await _body(request)
            ds = frames.read_dataset(data.quarantined_original(digest))
            signature = input_signature(ds)
            x0, y0, x1, y1 = (float(body[k]) for k in ("x0", "y0", "x1", "y1"))
            box = round_box(x0, y0, x1, y1, rows=signature["Rows"], columns=signature["Columns"])
            proposal = _pixel_proposal(session, f"q:{digest}", signature, box, [], body, "")
        except (KeyError, ValueError, TypeError) as exc:
            return _error(request, 400, f"a box is x0, y0, x1, y1 in image pixels ({_message(exc)})")
        except PermissionError as exc:
            return _error(request, 403, str(exc))
        except VeilError as exc:
            return _error(request, 400, str(exc))
        log.info("review: %s proposed a pixel rule from a quarantined input", session.name)
        return JSONResponse({"ok": True, "proposal": proposal.to_dict(), "drawn": list(box)})

    def _pixel_proposal(session: Session, instance: str, signature: dict[str, Any], box: tuple[int, int, int, int],
                        blanked: list[Any], body: dict[str, Any], note: str) -> Any:
        frame = None if body.get("frames", "all") == "all" else int(body.get("frame", 0))
        compiled = data.compiled_recipe()
        if compiled is None:
            raise ProposalError("the run's recipe is not known here: start veil review with --recipe")
        from veil.recipes.model import pixel_policy

        regions, frames_ = pixel_regions(pixel_policy(compiled.recipe), signature, box, blanked, frame)
        return proposals.add_pixel(operator=session.name, instance=instance, match=signature, regions=regions,
                                   frames=frames_, note=note)

    async def quarantine_reject(request: Request) -> Response:
        digest = request.path_params["digest"]
        session = _need(request, Action.REVIEW_DECIDE, resource=f"quarantine {digest[:12]}")
        body = await _body(request)
        if digest not in {r["input_digest"] for r in data.quarantined()}:
            return _error(request, 404, "no such quarantined input")
        reason = str(body.get("reason", ""))
        if reason not in config.reject_reasons:
            return _error(request, 400, "choose one of the configured reasons")
        record = decisions.append(operator=session.name, run_id=str(data.manifest.get("run_id", "")),
                                  recipe_hash=str((data.manifest.get("recipe") or {}).get("hash", "")),
                                  instances=[f"q:{digest}"], shown=digest, decision="reject", reason=reason,
                                  note=str(body.get("note", "")))
        log.info("review: quarantined input rejected by %s", session.name)
        return JSONResponse({"ok": True, "time": record.time})

    # --- redactions ---------------------------------------------------------------------------------------

    def _listed(request: Request) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        q = request.query_params
        items = sorted(data.instances(), key=lambda i: (i.shard, i.row))
        if q.get("only", "redacted") == "redacted":
            items = [i for i in items if i.pixel_redaction]
        if q.get("modality"):
            items = [i for i in items if i.modality == q["modality"]]
        if q.get("source"):
            items = [i for i in items if q["source"].lower() in i.source.lower()]
        if q.get("signature"):
            items = [i for i in items if _signature_label(i) == q["signature"]]
        if q.get("sample"):
            chosen = set(data.sample(q["sample"], int(q.get("n", "1") or 1), int(q.get("seed", "0") or 0)))
            items = [i for i in items if i.sop_instance_uid in chosen]
        current = states(items)
        if q.get("state"):
            items = [i for i in items if current[i.sop_instance_uid][0] == q["state"]]
        rows = [{"uid": i.sop_instance_uid, "modality": i.modality, "series": i.series_instance_uid,
                 "signature": _signature_label(i), "source": i.source, "boxes": len(i.boxes),
                 "state": current[i.sop_instance_uid][0], "by": _by(current[i.sop_instance_uid][1]),
                 "output": i.output_path} for i in items]
        everything = data.instances()
        facets = {"modality": sorted({i.modality for i in everything}),
                  "signature": sorted({_signature_label(i) for i in everything}),
                  "source": sorted({i.source for i in everything if i.source}),
                  "state": ["pending", "approve", "reject", "second-look"]}
        return rows, facets

    async def redactions(request: Request) -> Response:
        _need(request, Action.REVIEW_VIEW)
        rows, facets = _listed(request)
        start = max(0, _int(request, "start"))
        shown = rows[start:start + PAGE]
        api = {"total": len(rows), "start": start, "instances": shown, "facets": facets}
        return reply(request, "redactions.html", {"rows": shown, "total": len(rows), "start": start, "page": PAGE,
                                                  "facets": facets, "query": dict(request.query_params)}, api)

    def _neighbours(request: Request, uid: str) -> tuple[str | None, str | None]:
        rows, _ = _listed(request)
        uids = [r["uid"] for r in rows]
        if uid not in uids:
            return None, None
        i = uids.index(uid)
        return (uids[i - 1] if i > 0 else None), (uids[i + 1] if i + 1 < len(uids) else None)

    def _instance(request: Request) -> Instance:
        return data.instance(request.path_params["uid"])

    async def instance(request: Request) -> Response:
        session = _need(request, Action.REVIEW_VIEW_AFTER, resource="instance")
        try:
            inst = _instance(request)
            info = data.frame_info(inst)
        except (KeyError, VeilError) as exc:
            return _error(request, 404, _message(exc))
        state, record = decisions.states({inst.sop_instance_uid: data.shown(inst)})[inst.sop_instance_uid]
        before = data.can_show_before and session.can(Action.REVIEW_VIEW_BEFORE)
        previous, following = _neighbours(request, inst.sop_instance_uid)
        defaced = data.deface_record(inst.series_instance_uid)
        api = {"uid": inst.sop_instance_uid, "series": inst.series_instance_uid, "modality": inst.modality,
               "source": inst.source, "boxes": inst.boxes, "state": state, "by": _by(record),
               "signature": data.signature(inst), "before_available": before, "shown": data.shown(inst), **info,
               "previous": previous, "next": following, "deface": defaced}
        query = urlencode([(k, v) for k, v in request.query_params.items()
                           if k in ("only", "modality", "source", "signature", "state")])
        return reply(request, "instance.html", {"inst": inst, "info": info, "state": state, "record": record,
                                                "before": before, "api": api, "previous": previous,
                                                "next": following, "query": query, "deface": defaced,
                                                "reasons": config.reject_reasons}, api)

    async def after_png(request: Request) -> Response:
        _need(request, Action.REVIEW_VIEW_AFTER, resource="instance image")
        try:
            png = data.after_png(_instance(request), _int(request, "frame"), request.query_params.get("window") or None)
        except (KeyError, VeilError) as exc:
            return PlainTextResponse(_message(exc), status_code=404)
        return Response(png, media_type="image/png")

    async def before_png(request: Request) -> Response:
        _need(request, Action.REVIEW_VIEW_BEFORE, resource="instance before-image")
        try:
            png = data.before_png(_instance(request), _int(request, "frame"),
                                  request.query_params.get("window") or None)
        except (KeyError, VeilError) as exc:
            return PlainTextResponse(_message(exc), status_code=404)
        if png is None:
            return PlainTextResponse("no before-image: give --src and the key that opens this run's originals",
                                     status_code=404)
        return Response(png, media_type="image/png")

    async def rendering(request: Request) -> Response:
        which = request.query_params.get("which", "after")
        if which == "before":
            _need(request, Action.REVIEW_VIEW_BEFORE, resource="series before-rendering")
        else:
            _need(request, Action.REVIEW_VIEW_AFTER, resource="series rendering")
        try:
            png = data.rendering_png(request.path_params["uid"], which)
        except (KeyError, VeilError) as exc:
            return PlainTextResponse(_message(exc), status_code=404)
        if png is None:
            return PlainTextResponse("no rendering: the series was not defaced, or its before-rendering is sealed "
                                     "to a key not given", status_code=404)
        return Response(png, media_type="image/png")

    async def projection(request: Request) -> Response:
        _need(request, Action.REVIEW_VIEW_AFTER, resource="series projection")
        try:
            png = data.projection_png(request.path_params["uid"], request.query_params.get("kind", "max"))
        except (KeyError, VeilError) as exc:
            return PlainTextResponse(_message(exc), status_code=404)
        return Response(png, media_type="image/png")

    async def decide(request: Request) -> Response:
        session = _need(request, Action.REVIEW_DECIDE, resource="instance")
        try:
            inst = _instance(request)
            body = await _body(request)
        except (KeyError, ValueError) as exc:
            return _error(request, 400, _message(exc))
        decision = str(body.get("decision", ""))
        reason = str(body.get("reason", ""))
        if decision == "reject" and reason not in config.reject_reasons:
            return _error(request, 400, "a rejection needs one of the configured reasons")
        shown = str(body.get("shown") or data.shown(inst))
        if shown != data.shown(inst):
            return _error(request, 409, "the output changed since this page was loaded: reload it")
        try:
            record = decisions.append(operator=session.name, run_id=inst.run_id, recipe_hash=inst.recipe_hash,
                                      instances=[inst.sop_instance_uid], shown=shown, decision=decision,
                                      reason=reason, note=str(body.get("note", "")))
        except ValueError as exc:
            return _error(request, 400, str(exc))
        log.info("review: %s decided %s on one instance", session.name, decision)
        return JSONResponse({"ok": True, "state": record.decision, "time": record.time})

    # --- header -------------------------------------------------------------------------------------------

    async def header(request: Request) -> Response:
        session = _need(request, Action.REVIEW_VIEW_HEADER_DIFF, resource="instance header")
        try:
            inst = _instance(request)
            view = data.header(inst)
        except (KeyError, VeilError) as exc:
            return _error(request, 404, _message(exc))
        originals = view.originals == "opened" and session.can(Action.REVIEW_VIEW_ORIGINAL)
        flt = request.query_params.get("filter", "")
        rows = [r for r in view.rows if (flt != "changed" or r.changed) and (flt != "free" or r.kept_free_text)
                and (flt != "unnamed" or r.unnamed)]
        api = {"uid": inst.sop_instance_uid, "origin": view.origin,
               "originals": view.originals if originals or view.originals != "opened" else "sealed",
               "rows": [r.to_dict(originals) for r in rows]}
        return reply(request, "header.html", {"inst": inst, "view": view, "rows": rows, "originals": originals,
                                              "filter": flt, "actions": HEADER_ACTIONS, "api": api}, api)

    # --- proposals ----------------------------------------------------------------------------------------

    async def propose_box(request: Request) -> Response:
        session = _need(request, Action.REVIEW_PROPOSE_RULE, resource="instance")
        try:
            inst = _instance(request)
            body = await _body(request)
            ds = data.output_dataset(inst)
            rows, columns = int(ds.Rows), int(ds.Columns)
            x0, y0, x1, y1 = (float(body[k]) for k in ("x0", "y0", "x1", "y1"))
            box = round_box(x0, y0, x1, y1, rows=rows, columns=columns)
            blanked = list(inst.record.boxes if inst.record is not None else ())
            note = ("replaces text detection for this signature; carries the boxes blanked on this instance"
                    if "detector" in inst.source else "")
            proposal = _pixel_proposal(session, inst.sop_instance_uid, data.signature(inst), box, blanked, body,
                                       note)
        except (KeyError, ValueError, TypeError) as exc:
            return _error(request, 400, f"a box is x0, y0, x1, y1 in image pixels ({_message(exc)})")
        except VeilError as exc:
            return _error(request, 400, str(exc))
        log.info("review: %s proposed a pixel rule", session.name)
        return JSONResponse({"ok": True, "proposal": proposal.to_dict(), "drawn": list(box)})

    async def propose_header(request: Request) -> Response:
        session = _need(request, Action.REVIEW_PROPOSE_RULE, resource="instance header")
        try:
            inst = _instance(request)
            body = await _body(request)
            proposal = proposals.add_header(operator=session.name, instance=inst.sop_instance_uid,
                                            element=str(body.get("element", "")), action=str(body.get("action", "")))
        except (KeyError, ValueError) as exc:
            return _error(request, 400, _message(exc))
        except VeilError as exc:
            return _error(request, 400, str(exc))
        return JSONResponse({"ok": True, "proposal": proposal.to_dict()})

    def _layer_plan() -> tuple[Path | None, str | None, str]:
        """(the layer file, its text if it exists, the base recipe name)."""
        recipe = data.manifest.get("recipe") or {}
        target = config.layer
        if target is None and data.recipe_spec and is_site_layer(data.recipe_spec):
            target = Path(data.recipe_spec)
        existing = target.read_text(encoding="utf-8") if target is not None and target.is_file() else None
        return target, existing, str(recipe.get("name") or "research")

    async def proposals_page(request: Request) -> Response:
        session = _need(request, Action.REVIEW_VIEW_LOG)
        pending = proposals.pending()
        target, existing, base = _layer_plan()
        preview = ""
        if pending:
            recipe = data.manifest.get("recipe") or {}
            preview, _ = layer_text(base=base, base_version=str(recipe.get("version", "")), existing=existing,
                                    proposals=pending, operator=session.name, when="(on save)",
                                    name=f"{base}-site")
        import difflib

        diff = list(difflib.unified_diff((existing or "").splitlines(), preview.splitlines(), "site layer now",
                                         "after saving", lineterm="")) if preview else []
        records = decisions.records()
        try:
            chain = f"valid, {decisions.verify()} lines"
        except VeilError as exc:
            chain = f"BROKEN: {exc}"
        api = {"pending": [p.to_dict() for p in pending], "layer": str(target) if target else None,
               "preview": preview, "existing": existing, "diff": diff, "chain": chain,
               "decisions": [r.__dict__ | {"instances": list(r.instances)} for r in records[-500:]]}
        return reply(request, "proposals.html", {"pending": pending, "target": target, "preview": preview, "diff": diff,
                                                 "existing": existing, "records": records[-500:], "chain": chain,
                                                 "can_save": session.can(Action.REVIEW_PROPOSE_RULE)}, api)

    async def save_proposals(request: Request) -> Response:
        session = _need(request, Action.REVIEW_PROPOSE_RULE, resource="site layer")
        pending = proposals.pending()
        if not pending:
            return _error(request, 400, "no pending proposals")
        target, existing, base = _layer_plan()
        if target is None:
            return _error(request, 400, "no site layer file: start veil review with --layer FILE")
        import time

        from veil.audit.schema import iso_time

        recipe = data.manifest.get("recipe") or {}
        text, version = layer_text(base=base, base_version=str(recipe.get("version", "")), existing=existing,
                                   proposals=pending, operator=session.name,
                                   when=iso_time(int(time.time() * 1e6)), name=f"{base}-site")
        try:
            compiled = save_layer(target, text, data.dst)
        except ProposalError as exc:
            return _error(request, 400, str(exc))
        proposals.remove([p.id for p in pending])
        command = rerun_command(src=config.src_text, dst=config.dst_text, layer=str(target), key=config.key_path,
                                manifest=data.manifest)
        log.info("review: %s wrote a site layer with %d proposals", session.name, len(pending))
        return JSONResponse({"ok": True, "layer": str(target), "name": compiled.recipe.name, "version": version,
                             "hash": compiled.recipe.content_hash, "command": command})

    async def drop_proposal(request: Request) -> Response:
        _need(request, Action.REVIEW_PROPOSE_RULE, resource="proposal")
        removed = proposals.remove([request.path_params["pid"]])
        return JSONResponse({"ok": bool(removed)})

    async def log_csv(request: Request) -> Response:
        _need(request, Action.REVIEW_VIEW_LOG)
        out = io.StringIO()
        decisions.write_csv(out)
        return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                        headers={"content-disposition": "attachment; filename=decisions.csv"})

    async def denied(request: Request, exc: Exception) -> Response:
        return _error(request, 403, "your role does not allow this")

    async def problem(request: Request, exc: Exception) -> Response:
        log.error("review: %s in %s", type(exc).__name__, request.url.path.split("/")[1] or "/")
        return _error(request, 500, "internal error (the server log names its type)")

    def _error(request: Request, status: int, message: str) -> Response:
        if _wants_json(request) or request.method != "GET":
            return JSONResponse({"error": message}, status_code=status)
        return page(request, "error.html", {"status": status, "message": message}, status)

    routes: list[Route | Mount] = []
    for suffix, endpoint, methods in (
        ("/", overview, ["GET"]),
        ("/quarantine", quarantine, ["GET"]),
        ("/quarantine/{digest:str}", quarantined_original, ["GET"]),
        ("/quarantine/{digest:str}/reject", quarantine_reject, ["POST"]),
        ("/quarantine/{digest:str}/propose-box", quarantine_propose_box, ["POST"]),
        ("/redactions", redactions, ["GET"]),
        ("/instance/{uid:str}", instance, ["GET"]),
        ("/instance/{uid:str}/decide", decide, ["POST"]),
        ("/instance/{uid:str}/header", header, ["GET"]),
        ("/instance/{uid:str}/propose-box", propose_box, ["POST"]),
        ("/instance/{uid:str}/propose-header", propose_header, ["POST"]),
        ("/proposals", proposals_page, ["GET"]),
        ("/proposals/save", save_proposals, ["POST"]),
        ("/proposals/{pid:str}/drop", drop_proposal, ["POST"]),
    ):
        routes.append(Route(suffix, endpoint, methods=methods))
        routes.append(Route("/api" + (suffix if suffix != "/" else "/overview"), endpoint, methods=methods))
    routes += [
        Route("/login", login, methods=["GET"]),
        Route("/quarantine/{digest:str}/frame.png", quarantined_frame, methods=["GET"]),
        Route("/instance/{uid:str}/after.png", after_png, methods=["GET"]),
        Route("/instance/{uid:str}/before.png", before_png, methods=["GET"]),
        Route("/series/{uid:str}/projection.png", projection, methods=["GET"]),
        Route("/series/{uid:str}/rendering.png", rendering, methods=["GET"]),
        Route("/log.csv", log_csv, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    # More specific routes first: the image routes must not be taken for an instance page.
    routes.sort(key=lambda r: (0 if getattr(r, "path", "").endswith(".png") else 1))
    app = Starlette(routes=routes, exception_handlers={AccessDenied: denied, Exception: problem})
    app.state.data = data
    app.state.guard = guard
    return GuardMiddleware(app, guard)


def _int(request: Request, name: str) -> int:
    try:
        return int(request.query_params.get(name, "0") or 0)
    except ValueError:
        return 0


def _by(record: Any) -> str:
    return f"{record.operator} {record.time}" if record is not None else ""


def _signature_label(inst: Instance) -> str:
    size = f"{inst.record.columns}x{inst.record.rows}" if inst.record is not None else "-"
    return f"{inst.modality} {size}"


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    return str(exc) or type(exc).__name__


def environment_default_layer(recipe: str | None) -> Path | None:
    """Where a site layer goes by default: beside a recipe file (so ``extends`` finds it), else none."""
    if recipe and os.sep in recipe:
        path = Path(recipe)
        if is_site_layer(path):
            return path
        return path.with_name(f"{path.stem}-site.yml")
    return None
