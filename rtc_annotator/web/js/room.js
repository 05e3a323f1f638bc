// Room dashboard. The admin token lives in this module's memory only: never in a URL, never in
// storage; it travels in the X-Room-Token header to serve, which talks to the signaling server.
import { call, el } from "./api.js";

let token = null;
let timer = null;

export function showRoom() {
  document.getElementById("room-login").onsubmit = (ev) => {
    ev.preventDefault();
    const input = document.getElementById("room-token");
    token = input.value.trim() || null;
    input.value = "";
    refresh();
  };
  document.getElementById("room-forget").onclick = () => { token = null; hideRoom(""); };
  document.getElementById("policy-form").onsubmit = savePolicy;
  document.getElementById("token-form").onsubmit = issueToken;
  document.getElementById("revoke-form").onsubmit = revokeToken;
  if (token) refresh(); else hideRoom("");
}

export function leaveRoom() {
  if (timer) { clearTimeout(timer); timer = null; }
}

function hideRoom(message) {
  leaveRoom();
  const body = document.getElementById("room-body");
  body.hidden = true;
  for (const t of body.querySelectorAll("tbody")) t.replaceChildren();
  document.getElementById("room-name").textContent = "";
  document.getElementById("token-issued").textContent = "";
  document.getElementById("room-error").textContent = message;
}

const admin = (method, path, body) => call(method, path, { body, headers: { "X-Room-Token": token } });

async function refresh() {
  leaveRoom();
  if (!token || document.getElementById("room").hidden) return;
  try {
    render(await admin("GET", "/v1/room"));
  } catch (err) {
    if (err.status === 401 || err.status === 403) { token = null; hideRoom(`${err.message} -- ${err.hint}`); return; }
    document.getElementById("room-error").textContent = `${err.code}: ${err.message}`;
  }
  timer = setTimeout(refresh, 2000);
}

const when = (ts) => (ts ? new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) : "-");

function render(room) {
  document.getElementById("room-error").textContent = "";
  document.getElementById("room-body").hidden = false;
  document.getElementById("room-name").textContent = room.room;
  document.getElementById("room-updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  document.querySelector("#worker-table tbody").replaceChildren(...room.workers.map((w) => el("tr", { dataset: { worker: w.name } },
    el("td", {}, w.name, el("div", { class: "muted" }, w.version || "")),
    el("td", {}, w.storage_backends.map((b) => `${b.name} (${b.type})`).join(", ") || "-"),
    el("td", {}, w.pipelines.join(", ") || "-"),
    el("td", { class: "muted" }, Object.entries(w.unavailable || {}).map(([k, v]) => `${k}: ${v}`).join("; ") || "-"),
    el("td", {}, w.gpus.map((g) => `${g.name} ${g.memory_mb} MiB`).join(", ") || "cpu"),
    el("td", {}, `${w.free_slots}/${w.job_slots}`),
    el("td", {}, String(w.load)),
    el("td", { class: "state" }, w.draining ? "draining" : "online"),
    el("td", {}, el("button", { type: "button", class: "drain", onclick: () => drain(w.name, !w.draining) }, w.draining ? "Undrain" : "Drain")))));
  document.querySelector("#queue-table tbody").replaceChildren(...room.queue.map((q) => el("tr", {},
    el("td", {}, String(q.position)), el("td", {}, q.client),
    el("td", {}, (q.requirements.pipelines || []).join(", ")),
    el("td", {}, q.requirements.required_storage || "-"),
    el("td", {}, when(q.since)), el("td", {}, q.reason))));
  document.querySelector("#decision-table tbody").replaceChildren(...[...room.decisions].reverse().map((d) => el("tr", {},
    el("td", {}, when(d.at)), el("td", {}, d.client), el("td", {}, d.outcome), el("td", {}, d.worker || "-"),
    el("td", {}, (d.requirements.required_storage || "-") + (d.strict ? " (strict)" : "")), el("td", {}, d.reason))));
  const p = room.policy;
  const form = document.getElementById("policy-form");
  if (!form.contains(document.activeElement)) {
    document.getElementById("policy-storage").value = p.storage;
    document.getElementById("policy-strict").value = (p.strict_backends || []).join(", ");
    document.getElementById("policy-max-queue").value = p.max_queue;
  }
}

async function drain(worker, on) {
  try {
    await admin("POST", `/v1/room/workers/${encodeURIComponent(worker)}/drain`, { drain: on });
  } catch (err) { document.getElementById("room-error").textContent = err.message; }
  refresh();
}

async function savePolicy(ev) {
  ev.preventDefault();
  const status = document.getElementById("policy-status");
  try {
    const { policy } = await admin("PUT", "/v1/room/policy", {
      storage: document.getElementById("policy-storage").value,
      strict_backends: document.getElementById("policy-strict").value.split(",").map((s) => s.trim()).filter(Boolean),
      max_queue: Number(document.getElementById("policy-max-queue").value),
    });
    status.textContent = `saved: storage ${policy.storage}`;
  } catch (err) { status.textContent = err.message; }
}

async function issueToken(ev) {
  ev.preventDefault();
  const out = document.getElementById("token-issued");
  try {
    const t = await admin("POST", "/v1/room/tokens", {
      role: document.getElementById("token-role").value,
      ttl_s: Math.round(Number(document.getElementById("token-days").value) * 86400),
      label: document.getElementById("token-label").value,
    });
    out.replaceChildren(`${t.role} token, id ${t.token_id}, expires ${when(t.expires_at)} (shown once):`, el("br"), t.token);
  } catch (err) { out.textContent = err.message; }
}

async function revokeToken(ev) {
  ev.preventDefault();
  const status = document.getElementById("revoke-status");
  const id = document.getElementById("revoke-id").value.trim();
  try {
    const r = await admin("DELETE", `/v1/room/tokens/${encodeURIComponent(id)}`);
    status.textContent = `revoked ${r.token_id} (${r.closed_connections} connection(s) closed)`;
  } catch (err) { status.textContent = `${err.message}`; }
}


