// veil review: the little behaviour the pages need. No inline script (the Content-Security-Policy forbids it):
// everything is wired here from data attributes. Every state change is a POST with the session's CSRF token.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
const SVG = "http://www.w3.org/2000/svg";

async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
    body: JSON.stringify(body || {}),
    credentials: "same-origin",
  });
  let data = {};
  try { data = await response.json(); } catch (e) { data = { error: "no answer" }; }
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function say(text, bad) {
  const el = document.getElementById("message");
  if (!el) return;
  el.textContent = text;
  el.classList.toggle("error", Boolean(bad));
}

// --- the instance page: images, overlays, frames, windows, decisions, drawing ------------------------------

function setupReview(root) {
  const rows = Number(root.dataset.rows), columns = Number(root.dataset.columns);
  const boxes = JSON.parse(document.getElementById("boxes-data").textContent);
  const overlays = [...root.querySelectorAll("svg.overlay")];
  const frameInput = document.getElementById("frame");
  const windowSelect = document.getElementById("window");
  let frame = 0, drawing = false, start = null, drawn = null;

  function imageUrl(base) {
    const params = new URLSearchParams({ frame: String(frame), window: windowSelect ? windowSelect.value : "" });
    return `${base}?${params}`;
  }

  function drawBoxes() {
    for (const svg of overlays) {
      svg.querySelectorAll("rect.box").forEach((r) => r.remove());
      for (const b of boxes) {
        if (b.frame !== -1 && b.frame !== frame) continue;
        const r = document.createElementNS(SVG, "rect");
        r.setAttribute("x", b.x); r.setAttribute("y", b.y);
        r.setAttribute("width", b.width); r.setAttribute("height", b.height);
        r.setAttribute("class", `box ${b.source}`);
        svg.appendChild(r);
      }
      if (drawn) {
        const r = document.createElementNS(SVG, "rect");
        r.setAttribute("x", drawn.x0); r.setAttribute("y", drawn.y0);
        r.setAttribute("width", drawn.x1 - drawn.x0); r.setAttribute("height", drawn.y1 - drawn.y0);
        r.setAttribute("class", "box reviewer");
        svg.appendChild(r);
      }
    }
  }

  function reload() {
    const after = document.getElementById("after-img");
    if (after) after.src = imageUrl(root.dataset.afterUrl);
    const before = document.getElementById("before-img");
    if (before) before.src = imageUrl(root.dataset.beforeUrl);
    drawBoxes();
  }

  if (frameInput) {
    frameInput.addEventListener("input", () => {
      frame = Number(frameInput.value);
      document.getElementById("frame-number").textContent = String(frame + 1);
      reload();
    });
  }
  if (windowSelect) windowSelect.addEventListener("change", reload);
  const overlayToggle = document.getElementById("overlay");
  function toggleOverlay() { overlays.forEach((s) => s.classList.toggle("hidden", !overlayToggle.checked)); }
  overlayToggle.addEventListener("change", toggleOverlay);

  // Image pixels from a pointer position: the SVG's own transform maps screen to viewBox units, whatever the
  // viewport size and device pixel ratio.
  function toImage(svg, event) {
    const point = svg.createSVGPoint();
    point.x = event.clientX; point.y = event.clientY;
    const p = point.matrixTransform(svg.getScreenCTM().inverse());
    return { x: Math.min(columns, Math.max(0, p.x)), y: Math.min(rows, Math.max(0, p.y)) };
  }
  const drawButton = document.getElementById("draw");
  const saveButton = document.getElementById("save-rule");
  function setDrawing(on) {
    drawing = on;
    overlays.forEach((s) => s.classList.toggle("drawing", on));
    if (drawButton) drawButton.classList.toggle("on", on);
    const status = document.getElementById("draw-status");
    if (status) status.textContent = on ? "drag over the image to draw a box" : "";
  }
  for (const svg of overlays) {
    svg.addEventListener("pointerdown", (event) => {
      if (!drawing) return;
      event.preventDefault();
      start = toImage(svg, event);
      svg.setPointerCapture(event.pointerId);
    });
    svg.addEventListener("pointermove", (event) => {
      if (!drawing || !start) return;
      const p = toImage(svg, event);
      drawn = { x0: Math.min(start.x, p.x), y0: Math.min(start.y, p.y), x1: Math.max(start.x, p.x), y1: Math.max(start.y, p.y) };
      drawBoxes();
    });
    svg.addEventListener("pointerup", (event) => {
      if (!drawing || !start) return;
      const p = toImage(svg, event);
      drawn = { x0: Math.min(start.x, p.x), y0: Math.min(start.y, p.y), x1: Math.max(start.x, p.x), y1: Math.max(start.y, p.y) };
      start = null;
      setDrawing(false);
      drawBoxes();
      if (saveButton) saveButton.disabled = !(drawn.x1 > drawn.x0 && drawn.y1 > drawn.y0);
      root.dataset.drawn = JSON.stringify(drawn);
    });
  }
  if (drawButton) drawButton.addEventListener("click", () => setDrawing(!drawing));
  if (saveButton) {
    saveButton.addEventListener("click", async () => {
      if (!drawn) return;
      const scope = document.querySelector('input[name="frames"]:checked');
      try {
        const data = await post(root.dataset.proposeUrl, { ...drawn, frames: scope && scope.value === "this" ? "this" : "all", frame });
        say(`Proposed: blank ${JSON.stringify(data.drawn)} (${data.proposal.regions.length} region(s) in the rule). See Proposals.`);
        root.dataset.proposal = data.proposal.id;
      } catch (e) { say(e.message, true); }
    });
  }

  async function decide(decision) {
    const body = { decision, shown: root.dataset.shown };
    if (decision === "reject") {
      body.reason = document.getElementById("reject-reason").value;
      if (!body.reason) { say("choose a reason to reject", true); return; }
    }
    try {
      const data = await post(root.dataset.decideUrl, body);
      const state = document.getElementById("state");
      state.textContent = data.state;
      state.className = `state ${data.state}`;
      say(`${data.state} recorded`);
    } catch (e) { say(e.message, true); }
  }
  root.querySelectorAll("button[data-decision]").forEach((b) => b.addEventListener("click", () => decide(b.dataset.decision)));

  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
    const go = (url) => { if (url) window.location.assign(url); };
    switch (event.key) {
      case "a": if (document.getElementById("approve")) decide("approve"); break;
      case "s": if (document.getElementById("second-look")) decide("second-look"); break;
      case "r": if (document.getElementById("reject")) decide("reject"); break;
      case "n": case "ArrowRight": go(root.dataset.next); break;
      case "p": case "ArrowLeft": go(root.dataset.prev); break;
      case "b": if (drawButton) setDrawing(!drawing); break;
      case "o": overlayToggle.checked = !overlayToggle.checked; toggleOverlay(); break;
      default: return;
    }
    event.preventDefault();
  });
  drawBoxes();
}

// --- header diff, quarantine, proposals ---------------------------------------------------------------------

function setupHeader(table) {
  const uid = table.dataset.uid;
  table.querySelectorAll("button.propose-header").forEach((button) => {
    button.addEventListener("click", async () => {
      const action = button.parentElement.querySelector("select.propose-action").value;
      try {
        await post(`/instance/${uid}/propose-header`, { element: button.dataset.element, action });
        say(`Proposed: ${action} ${button.dataset.element}. See Proposals.`);
      } catch (e) { say(e.message, true); }
    });
  });
}

function setupQuarantine() {
  document.querySelectorAll("button.quarantine-reject").forEach((button) => {
    button.addEventListener("click", async () => {
      const reason = button.parentElement.querySelector("select.reject-reason").value;
      if (!reason) { button.textContent = "Reject (choose a reason)"; return; }
      try {
        await post(`/quarantine/${button.dataset.digest}/reject`, { reason });
        button.replaceWith(Object.assign(document.createElement("span"), { className: "state reject", textContent: "rejected" }));
      } catch (e) { button.textContent = e.message; }
    });
  });
}

function setupProposals() {
  const save = document.getElementById("save-layer");
  if (save) {
    save.addEventListener("click", async () => {
      try {
        const data = await post("/proposals/save", {});
        document.getElementById("saved-layer").textContent = data.layer;
        document.getElementById("saved-version").textContent = data.version;
        document.getElementById("rerun-command").textContent = data.command;
        document.getElementById("saved").hidden = false;
        save.disabled = true;
        say("site layer written");
      } catch (e) { say(e.message, true); }
    });
  }
  document.querySelectorAll("button.drop").forEach((button) => {
    button.addEventListener("click", async () => {
      try { await post(`/proposals/${button.dataset.id}/drop`, {}); button.closest("tr").remove(); }
      catch (e) { say(e.message, true); }
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const review = document.getElementById("review");
  if (review) setupReview(review);
  const header = document.getElementById("header-rows");
  if (header) setupHeader(header);
  setupQuarantine();
  setupProposals();
});
