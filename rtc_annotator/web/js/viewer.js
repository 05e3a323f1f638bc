// Results viewer: the videos list, and one video with its timeline, boxes, jump, find,
// selections and exports.
import { ApiError, call, el, fmtTime, get } from "./api.js";

const TYPES = [
  ["scene", "scene", "Scenes"],
  ["transcript.segment", "transcript", "Transcript"],
  ["object.detection", "object", "Objects"],
  ["ocr.text", "ocr", "OCR text"],
];
const MODES = ["default", "latest", "pinned", "profile", "best_quality"];
const PIPELINE_OF = { "scene": "scenes", "transcript.segment": "transcript", "object.detection": "objects",
  "ocr.text": "ocr", "video.metadata": "metadata" };
const FORMATS = ["vtt", "srt", "coco", "jsonl", "zip"];

// ------------------------------------------------------------------ videos list

export async function showVideos() {
  const { videos } = await get("/v1/videos");
  const body = document.querySelector("#video-table tbody");
  body.replaceChildren();
  document.getElementById("videos-empty").hidden = videos.length > 0;
  for (const v of videos) {
    const { runs } = await get(`/v1/videos/${v.asset_id}`);
    const counts = Object.entries(v.artifact_counts).map(([t, n]) => `${t}: ${n}`).join(", ");
    const runText = runs.map((r) => `${r.pipeline} (${r.model_profile}, ${r.status})`).join(", ");
    body.append(el("tr", { dataset: { asset: v.asset_id } },
      el("td", {}, el("a", { href: `#/video/${v.asset_id}` }, v.filename),
        el("div", { class: "muted" }, v.asset_id.slice(0, 12))),
      el("td", {}, v.duration_ms ? fmtTime(v.duration_ms) : "-"),
      el("td", {}, counts || "none"),
      el("td", {}, runText || "-")));
  }
}

// ------------------------------------------------------------------ one video

let state = null;

export function leaveVideo() {
  if (!state) return;
  state.stop = true;
  document.removeEventListener("keydown", state.onKey);
  const player = document.getElementById("player");
  player.pause();
  player.removeAttribute("src");
  player.load();
  state = null;
}

export async function showVideo(asset) {
  leaveVideo();
  const st = { asset, items: {}, stop: false, hasFile: false, timeMs: 0 };
  state = st;
  const info = await get(`/v1/videos/${asset}`);
  st.info = info;
  document.getElementById("video-title").textContent = info.video.filename;
  await loadArtifacts(st);
  if (st !== state) return;
  setupPlayer(st);
  renderTimeline(st);
  renderLabelFilter(st);
  await renderSelections(st);
  renderExports(st);
  setupControls(st);
  tick(st);
}

async function loadArtifacts(st) {
  for (const [type, kind] of TYPES) {
    const { artifacts } = await get(`/v1/videos/${st.asset}/artifacts`, { type, limit: 10000 });
    st.items[kind] = artifacts;
  }
  const meta = (st.info.video.duration_ms || 0);
  let end = meta;
  for (const list of Object.values(st.items)) for (const a of list) end = Math.max(end, a.span_end_ms);
  st.durationMs = end || 1000;
  st.fps = st.info.video.fps || 25;
  // object frames: distinct frame_pts_ms, to know how long a frame's boxes stay up
  st.frames = [...new Set(st.items.object.map((a) => a.payload.frame_pts_ms))].sort((a, b) => a - b);
}

function setupPlayer(st) {
  const player = document.getElementById("player");
  const noFile = document.getElementById("no-file");
  noFile.hidden = true;
  document.getElementById("duration").textContent = "/ " + fmtTime(st.durationMs);
  const src = `/v1/videos/${st.asset}/media`;
  fetch(src, { headers: { Range: "bytes=0-0" }, credentials: "same-origin" }).then(async (resp) => {
    if (st !== state) return;
    if (resp.ok) {
      st.hasFile = true;
      player.src = src;
      player.hidden = false;
    } else {
      let msg = "The video file is not on this machine.";
      try { const body = await resp.json(); msg = `${body.error.message}: ${body.error.hint}`; } catch (e) { /* keep */ }
      showNoFile(msg);
    }
  }).catch(() => showNoFile("The video file could not be loaded."));
  player.onerror = () => showNoFile("The browser cannot play this video file.");
  player.ontimeupdate = () => { st.timeMs = player.currentTime * 1000; render(st); };
  player.onseeked = player.ontimeupdate;
  player.onloadedmetadata = () => { layoutOverlay(st); render(st); };
  window.onresize = () => layoutOverlay(st);
}

function showNoFile(text) {
  const noFile = document.getElementById("no-file");
  noFile.textContent = text + " Everything else is shown below.";
  noFile.hidden = false;
  const player = document.getElementById("player");
  player.style.minHeight = "240px";
}

export function seek(ms) {
  const st = state;
  if (!st) return;
  st.timeMs = Math.max(0, ms);
  const player = document.getElementById("player");
  if (st.hasFile) player.currentTime = st.timeMs / 1000;
  render(st);
}

function currentMs() {
  const player = document.getElementById("player");
  return state && state.hasFile ? player.currentTime * 1000 : (state ? state.timeMs : 0);
}

function tick(st) {
  if (st.stop) return;
  const player = document.getElementById("player");
  if (st.hasFile && !player.paused) { st.timeMs = player.currentTime * 1000; render(st); }
  requestAnimationFrame(() => tick(st));
}

// ------------------------------------------------------------------ timeline

function renderTimeline(st) {
  const tl = document.getElementById("timeline");
  tl.replaceChildren();
  const pct = (ms) => `${(100 * ms) / st.durationMs}%`;
  for (const [, kind, title] of TYPES) {
    const lane = el("div", { class: "lane", dataset: { lane: kind } }, el("span", { class: "lane-name" }, `${title} (${st.items[kind].length})`));
    const list = kind === "object" ? objectRuns(st.items.object) : st.items[kind];
    for (const a of list) {
      const start = a.span_start_ms, end = Math.max(a.span_end_ms, start + 1);
      const text = itemText(kind, a);
      lane.append(el("div", {
        class: `item ${kind}`, title: `${fmtTime(start)} ${text}`,
        style: `left:${pct(start)};width:${pct(end - start)}`,
        dataset: { start: String(start), id: a.artifact_id || "" },
        onclick: () => seek(start),
      }, kind === "scene" ? `#${a.payload.index}` : text));
    }
    tl.append(lane);
  }
  tl.append(el("div", { class: "playhead", id: "playhead" }));
}

// consecutive detections of one label (or track) merged into one timeline item
function objectRuns(dets) {
  const byKey = new Map();
  for (const d of dets) {
    const key = d.payload.track_id !== null && d.payload.track_id !== undefined ? `t${d.payload.track_id}` : `l${d.payload.label}`;
    if (!byKey.has(key)) byKey.set(key, []);
    byKey.get(key).push(d);
  }
  const out = [];
  for (const list of byKey.values()) {
    list.sort((a, b) => a.payload.frame_pts_ms - b.payload.frame_pts_ms);
    let run = null;
    for (const d of list) {
      const t = d.payload.frame_pts_ms;
      if (run && t - run.span_end_ms <= 1000) { run.span_end_ms = t; continue; }
      run = { span_start_ms: t, span_end_ms: t, payload: d.payload, artifact_id: d.artifact_id };
      out.push(run);
    }
  }
  return out;
}

function itemText(kind, a) {
  if (kind === "scene") return `scene ${a.payload.index}`;
  if (kind === "object") return a.payload.label;
  return a.payload.text;
}

// ------------------------------------------------------------------ rendering at time t

function render(st) {
  if (st !== state) return;
  const t = st.timeMs;
  document.getElementById("clock").textContent = fmtTime(t);
  document.getElementById("playhead").style.left = `calc((100% - 90px) * ${Math.min(t / st.durationMs, 1)})`;
  const seg = st.items.transcript.find((a) => a.span_start_ms <= t && t < a.span_end_ms);
  const nowT = document.getElementById("now-transcript");
  nowT.textContent = seg ? seg.payload.text : "-";
  nowT.dataset.id = seg ? seg.artifact_id : "";
  const ocr = st.items.ocr.filter((a) => a.span_start_ms <= t && t < Math.max(a.span_end_ms, a.span_start_ms + 1));
  document.getElementById("now-ocr").textContent = ocr.length ? ocr.map((a) => a.payload.text).join(" | ") : "-";
  for (const node of document.querySelectorAll("#timeline .item.current")) node.classList.remove("current");
  for (const a of [seg, ...ocr]) {
    if (!a) continue;
    const node = document.querySelector(`#timeline .item[data-id="${a.artifact_id}"]`);
    if (node) node.classList.add("current");
  }
  renderBoxes(st, t);
}

// The detections of the object frame shown at t: the last frame at or before t, held until
// the next sampled frame (at most one second), the last one for one frame period.
function visibleDetections(st, t) {
  const frames = st.frames;
  let lo = 0, hi = frames.length - 1, at = -1;
  while (lo <= hi) { const mid = (lo + hi) >> 1; if (frames[mid] <= t) { at = mid; lo = mid + 1; } else hi = mid - 1; }
  if (at < 0) return [];
  const f = frames[at];
  const hold = at + 1 < frames.length ? Math.min(frames[at + 1] - f, 1000) : 1000 / st.fps;
  if (t - f >= hold) return [];
  const labels = selectedLabels();
  const minConf = Number(document.getElementById("min-conf").value);
  return st.items.object.filter((a) => a.payload.frame_pts_ms === f && a.payload.confidence >= minConf
    && (labels.length === 0 || labels.includes(a.payload.label)));
}

function colour(p) {
  const key = p.track_id !== null && p.track_id !== undefined ? p.track_id * 137.508 + 120 : [...p.label].reduce((h, c) => h * 31 + c.charCodeAt(0), 7);
  return `hsl(${Math.abs(key) % 360}, 85%, 50%)`;
}

function layoutOverlay(st) {
  const player = document.getElementById("player");
  const overlay = document.getElementById("overlay");
  const w = player.clientWidth, h = player.clientHeight;
  const vw = player.videoWidth || 16, vh = player.videoHeight || 9;
  const scale = Math.min(w / vw, h / vh);
  const cw = vw * scale, ch = vh * scale;
  overlay.style.left = `${(w - cw) / 2}px`; overlay.style.top = `${(h - ch) / 2}px`;
  overlay.style.width = `${cw}px`; overlay.style.height = `${ch}px`;
  render(st);
}

function renderBoxes(st, t) {
  const overlay = document.getElementById("overlay");
  const dets = visibleDetections(st, t);
  overlay.replaceChildren(...dets.map((a) => {
    const p = a.payload, b = p.box, c = colour(p);
    return el("div", {
      class: "box", dataset: { label: p.label, track: p.track_id ?? "" },
      style: `left:${b.x1 * 100}%;top:${b.y1 * 100}%;width:${(b.x2 - b.x1) * 100}%;height:${(b.y2 - b.y1) * 100}%;border-color:${c}`,
    }, el("span", { style: `background:${c}` }, `${p.label} ${p.confidence.toFixed(2)}${p.track_id !== null && p.track_id !== undefined ? " #" + p.track_id : ""}`));
  }));
  document.getElementById("boxes-now").textContent = `${dets.length} box(es) at ${fmtTime(t)}`;
}

function renderLabelFilter(st) {
  const sel = document.getElementById("label-filter");
  const labels = [...new Set(st.items.object.map((a) => a.payload.label))].sort();
  sel.replaceChildren(...labels.map((l) => el("option", { value: l }, l)));
  sel.onchange = () => render(st);
  const conf = document.getElementById("min-conf");
  conf.value = "0";
  document.getElementById("min-conf-value").textContent = "0.00";
  conf.oninput = () => { document.getElementById("min-conf-value").textContent = Number(conf.value).toFixed(2); render(st); };
}

function selectedLabels() {
  return [...document.getElementById("label-filter").selectedOptions].map((o) => o.value);
}

// ------------------------------------------------------------------ jump, find

async function jump(kind, direction) {
  const st = state;
  if (!st) return;
  const status = document.getElementById("jump-status");
  const query = { kind, direction, from_ms: Math.round(currentMs()) };
  if (kind === "object") {
    query.label = selectedLabels();
    const minConf = Number(document.getElementById("min-conf").value);
    if (minConf > 0) query.min_confidence = minConf;
  }
  try {
    const { artifact } = await get(`/v1/videos/${st.asset}/jump`, query);
    const at = kind === "object" ? artifact.payload.frame_pts_ms : artifact.span_start_ms;
    seek(at);
    status.textContent = `${kind} at ${fmtTime(at)}`;
  } catch (err) {
    status.textContent = err instanceof ApiError && err.code === "NO_MATCH" ? `no ${kind} ${direction === "next" ? "after" : "before"} ${fmtTime(currentMs())}` : err.message;
  }
}

async function findAll(q) {
  const st = state;
  const list = document.getElementById("find-results");
  const status = document.getElementById("find-status");
  list.replaceChildren();
  status.textContent = "searching...";
  const matches = [];
  let cursor = null, from = -1;
  try {
    for (let i = 0; i < 200; i++) {
      const query = { q, direction: "next", from_ms: from };
      if (cursor) query.cursor = cursor;
      let match;
      try {
        ({ match } = await get(`/v1/videos/${st.asset}/find`, query));
      } catch (err) {
        if (err instanceof ApiError && err.code === "NO_MATCH") break;
        throw err;
      }
      matches.push(match);
      cursor = match.artifact_id; from = match.start_ms;
    }
  } catch (err) {
    status.textContent = `${err.message}${err.hint ? " -- " + err.hint : ""}`;
    return;
  }
  for (const m of matches) {
    list.append(el("li", { dataset: { start: String(m.start_ms) }, onclick: () => seek(m.start_ms) },
      el("span", { class: "muted" }, `${fmtTime(m.start_ms)} ${m.source}: `), highlight(m.snippet)));
  }
  status.textContent = `${matches.length} match(es)`;
}

// the store's snippet marks the matched words with [ ]
function highlight(text) {
  const out = [];
  for (const part of text.split(/(\[[^\]]*\])/)) {
    if (part.startsWith("[") && part.endsWith("]")) out.push(el("mark", {}, part.slice(1, -1)));
    else if (part) out.push(part);
  }
  return el("span", {}, out);
}

function setupControls(st) {
  for (const b of document.querySelectorAll("[data-jump]")) b.onclick = () => jump(b.dataset.jump, b.dataset.dir);
  document.getElementById("find-form").onsubmit = (ev) => {
    ev.preventDefault();
    const q = document.getElementById("find-q").value.trim();
    if (q) findAll(q);
  };
  document.getElementById("find-results").replaceChildren();
  document.getElementById("find-status").textContent = "";
  const keys = { s: "scene", o: "object", t: "transcript", x: "ocr" };
  st.onKey = (ev) => {
    const tag = (ev.target && ev.target.tagName) || "";
    if (["INPUT", "SELECT", "TEXTAREA"].includes(tag) || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const kind = keys[ev.key.toLowerCase()];
    if (kind) { ev.preventDefault(); jump(kind, ev.shiftKey ? "prev" : "next"); }
    else if (ev.key === " ") {
      ev.preventDefault();
      const player = document.getElementById("player");
      if (st.hasFile) { if (player.paused) player.play(); else player.pause(); }
    }
  };
  document.addEventListener("keydown", st.onKey);
}

// ------------------------------------------------------------------ selections, exports

async function renderSelections(st) {
  const box = document.getElementById("selections");
  box.replaceChildren();
  const runs = st.info.runs;
  for (const atype of Object.keys(st.info.selections).sort()) {
    const cur = st.info.selections[atype];
    const mode = el("select", { dataset: { type: atype, field: "mode" } }, MODES.map((m) => el("option", { value: m, selected: m === cur.selection.mode }, m)));
    const typeRuns = runs.filter((r) => !PIPELINE_OF[atype] || r.pipeline === PIPELINE_OF[atype]);
    const run = el("select", { dataset: { type: atype, field: "run" } }, el("option", { value: "" }, "(run)"),
      typeRuns.map((r) => el("option", { value: r.run_id, selected: r.run_id === cur.selection.run_id }, `${r.pipeline} ${r.model_profile} ${r.run_id.slice(0, 10)}`)));
    const profiles = [...new Set(typeRuns.map((r) => r.model_profile))];
    const prof = el("select", { dataset: { type: atype, field: "profile" } }, el("option", { value: "" }, "(profile)"),
      profiles.map((p) => el("option", { value: p, selected: p === cur.selection.model_profile }, p)));
    const out = el("div", { class: "muted" }, `counts run ${cur.run_id ? cur.run_id.slice(0, 12) : "-"}`);
    const apply = el("button", { type: "button", onclick: async () => {
      const body = { mode: mode.value };
      if (mode.value === "pinned") body.run_id = run.value || null;
      if (mode.value === "profile") body.model_profile = prof.value || null;
      try {
        const res = await call("PUT", `/v1/videos/${st.asset}/selections/${atype}`, { body });
        out.textContent = `counts run ${res.run_id ? res.run_id.slice(0, 12) : "-"}`;
        st.info = await get(`/v1/videos/${st.asset}`);
        await loadArtifacts(st);
        renderTimeline(st);
        render(st);
      } catch (err) {
        out.textContent = `${err.message}${err.hint ? " -- " + err.hint : ""}`;
      }
    } }, "Apply");
    box.append(el("div", { class: "selection", dataset: { type: atype } }, el("b", {}, atype), el("div", {}, mode, " ", run, " ", prof, " ", apply), out));
  }
}

function renderExports(st) {
  const box = document.getElementById("exports");
  box.replaceChildren(...FORMATS.map((f) => el("a", { href: `/v1/videos/${st.asset}/export/${f}`, download: "", dataset: { format: f } }, f.toUpperCase())));
}
