// Jobs: submit a video (serve acts as the client), follow every job live, cancel.
import { call, el, events, get } from "./api.js";

const jobs = new Map();
let stream = null;

// answers and events can cross: keep the newest view of each job
function keep(job) {
  const old = jobs.get(job.job_id);
  if (!old || (job.seq || 0) >= (old.seq || 0)) jobs.set(job.job_id, job);
}

export async function showJobs() {
  const form = document.getElementById("job-form");
  form.onsubmit = submit;
  const { jobs: list } = await get("/v1/jobs");
  for (const j of list) keep(j);
  renderAll();
  if (!stream) follow();
}

export function leaveJobs() {
  if (stream) { stream.abort(); stream = null; }
}

function follow() {
  const ctrl = new AbortController();
  stream = ctrl;
  events("/v1/jobs/events", (name, job) => {
    if (name !== "job") return;
    keep(job);
    renderAll();
  }, ctrl.signal).catch(() => {}).finally(() => {
    if (stream === ctrl) { stream = null; setTimeout(() => { if (!document.getElementById("jobs").hidden && !stream) follow(); }, 2000); }
  });
}

async function submit(ev) {
  ev.preventDefault();
  const errBox = document.getElementById("job-error");
  errBox.textContent = "";
  const body = {
    video: document.getElementById("job-video").value.trim(),
    pipelines: document.getElementById("job-pipelines").value.split(",").map((s) => s.trim()).filter(Boolean),
    profile: document.getElementById("job-profile").value,
    transfer: document.getElementById("job-transfer").value,
  };
  try {
    const { job } = await call("POST", "/v1/jobs", { body });
    keep(job);
    renderAll();
  } catch (err) {
    errBox.textContent = `${err.code}: ${err.message}${err.hint ? " -- " + err.hint : ""}`;
  }
}

function statusOf(j) {
  const live = j.live;
  if (live && live.running) return live.phase;
  if (live && ["done", "failed", "cancelled"].includes(live.phase)) return live.phase;
  return j.status;
}

function progressCell(j) {
  const live = j.live;
  if (!live) return el("td", {}, j.error ? el("span", { class: "error" }, j.error) : "");
  const parts = [];
  if (live.phase === "queued" && live.queue_position) parts.push(el("div", { class: "queue" }, `queue position ${live.queue_position}`));
  if (live.decision) parts.push(el("div", { class: "muted" }, `routed: ${live.decision}`));
  const up = live.upload;
  if (up && up.total) {
    const frac = up.done / up.total;
    parts.push(el("div", {}, el("span", { class: "bar" }, el("i", { style: `width:${(100 * frac).toFixed(0)}%` })),
      `upload ${size(up.done)} of ${size(up.total)}`,
      up.mb_per_s !== null ? ` at ${up.mb_per_s} MB/s` : "", up.eta_s !== null && frac < 1 ? `, ETA ${up.eta_s} s` : ""));
  }
  for (const [stage, frac] of Object.entries(live.progress || {})) {
    parts.push(el("div", { dataset: { stage } }, el("span", { class: "bar" }, el("i", { style: `width:${(100 * frac).toFixed(0)}%` })), `${stage} ${(100 * frac).toFixed(0)}%`));
  }
  if (live.error) parts.push(el("div", { class: "error" }, `${live.error.code}: ${live.error.message}`, live.error.hint ? el("div", { class: "muted" }, live.error.hint) : ""));
  return el("td", {}, parts);
}

function size(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${(bytes / 1e3).toFixed(0)} kB`;
}

function renderAll() {
  const body = document.querySelector("#job-table tbody");
  const list = [...jobs.values()].sort((a, b) => String(b.created_at || "~").localeCompare(String(a.created_at || "~")));
  body.replaceChildren(...list.map((j) => {
    const status = statusOf(j);
    const ended = ["done", "failed", "cancelled"].includes(status);
    const video = j.video.split("/").pop();
    return el("tr", { dataset: { job: j.job_id, status } },
      el("td", {}, el("code", {}, j.job_id)),
      el("td", {}, j.asset_id ? el("a", { href: `#/video/${j.asset_id}` }, video) : video, el("div", { class: "muted" }, (j.pipelines || []).join(", "))),
      el("td", { class: `status status-${status}` }, status),
      el("td", {}, (j.live && j.live.worker) || j.worker || "-"),
      progressCell(j),
      el("td", {}, String(Math.max(j.artifacts || 0, (j.live && j.live.artifacts) || 0))),
      el("td", {}, ended ? "" : el("button", { type: "button", class: "cancel", onclick: (ev) => cancel(j.job_id, ev.target) }, "Cancel")));
  }));
}

async function cancel(jobId, button) {
  button.disabled = true;
  button.textContent = "cancelling...";
  try {
    const { job } = await call("DELETE", `/v1/jobs/${jobId}`);
    keep(job);
    renderAll();
  } catch (err) {
    button.disabled = false;
    button.textContent = "Cancel";
    document.getElementById("job-error").textContent = `${err.code}: ${err.message}`;
  }
}
