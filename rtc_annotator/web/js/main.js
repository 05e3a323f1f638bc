// The page: tabs by location hash (#/videos, #/video/ID, #/jobs, #/room).
import { call, setUnauthorizedHandler } from "./api.js";
import { showVideos, showVideo, leaveVideo } from "./viewer.js";
import { showJobs, leaveJobs } from "./jobs.js";
import { showRoom, leaveRoom } from "./room.js";

const SECTIONS = ["login", "videos", "video", "jobs", "room"];

function only(id) {
  for (const s of SECTIONS) document.getElementById(s).hidden = s !== id;
  const tab = id === "video" ? "videos" : id;
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.dataset.tab === tab);
}

let current = null;
async function route() {
  const hash = location.hash || "#/videos";
  const parts = hash.slice(2).split("/");
  leaveVideo();
  if (parts[0] !== "jobs") leaveJobs();
  if (parts[0] !== "room") leaveRoom();
  if (parts[0] === "video" && parts[1]) { current = "video"; only("video"); await showVideo(parts[1]); }
  else if (parts[0] === "jobs") { current = "jobs"; only("jobs"); await showJobs(); }
  else if (parts[0] === "room") { current = "room"; only("room"); showRoom(); }
  else { current = "videos"; only("videos"); await showVideos(); }
}

setUnauthorizedHandler(() => { only("login"); });
document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = document.getElementById("login-token");
  try {
    await call("POST", "/v1/login", { body: { token: input.value } });
    input.value = "";
    document.getElementById("login-error").textContent = "";
    await route();
  } catch (err) {
    document.getElementById("login-error").textContent = err.message;
  }
});

window.addEventListener("hashchange", () => route().catch(report));
function report(err) { console.error(err); }
route().catch(report);
