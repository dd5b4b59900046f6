// Cameras: status (state, fps, drops, last error), snapshot, start/stop, add and delete.

import { api } from "../api.js";
import { ask, boot, showError, toast } from "../app.js";
import { $, clear, fmtAgo, fmtNum, h } from "../dom.js";

let ctx;
const snapOn = new Set(); // cameras whose snapshot is shown (refreshed with the status)
// capture states (sightline.video.capture.CaptureState) -> pill colour
const STATE_CLASS = { live: "ok", connecting: "warn", reconnecting: "warn", ended: "idle", stopped: "idle", failed: "bad" };

function statusOf(cam) {
  return cam.status || {};
}

function cameraCard(cam) {
  const st = statusOf(cam);
  const state = String(st.state || "unknown");
  const img = h("img", { class: "snapshot", alt: `Latest frame from ${cam.id}`, hidden: true });
  const snapBox = h("div", { class: "snapshot-box" }, img, h("span", { class: "muted small snap-hint" }, "No snapshot loaded"));
  const loadSnap = () => {
    snapOn.add(cam.id);
    img.hidden = false;
    snapBox.querySelector(".snap-hint").hidden = true;
    img.src = `/api/cameras/${encodeURIComponent(cam.id)}/snapshot?t=${Date.now()}`;
  };
  img.addEventListener("error", () => {
    img.hidden = true;
    const hint = snapBox.querySelector(".snap-hint");
    hint.hidden = false;
    hint.textContent = "No frame available (camera not running?)";
  });
  const actions = h("div", { class: "actions" },
    h("button", { type: "button", class: "btn small", onclick: loadSnap }, "Snapshot"));
  if (ctx.can("supervisor", "admin")) {
    const running = st.running !== undefined ? Boolean(st.running) : ["live", "connecting", "reconnecting"].includes(state);
    actions.append(
      h("button", {
        type: "button", class: "btn small " + (running ? "" : "ok"),
        onclick: () => act(cam.id, running ? "stop" : "start"),
      }, running ? "Stop" : "Start"),
      h("button", { type: "button", class: "btn small danger", onclick: () => remove(cam.id) }, "Delete"));
  }
  if (snapOn.has(cam.id)) loadSnap();
  const options = cam.options && typeof cam.options === "object" ? Object.entries(cam.options) : [];
  return h("article", { class: "card camera", dataset: { cameraId: cam.id } },
    h("div", { class: "title-row" },
      h("h3", {}, cam.id),
      h("span", { class: `state-pill ${STATE_CLASS[state] || "idle"}` }, state)),
    h("p", { class: "mono small url" }, cam.url || ""),
    snapBox,
    h("dl", { class: "facts" },
      h("dt", {}, "Frames/s"), h("dd", {}, st.fps != null ? fmtNum(st.fps, 1) : "—"),
      h("dt", {}, "Dropped"), h("dd", {}, st.dropped != null ? String(st.dropped) : "—"),
      st.analysed != null ? [h("dt", {}, "Analysed"), h("dd", {}, `${st.analysed} frames`)] : null,
      st.alerts != null ? [h("dt", {}, "Alerts"), h("dd", {}, String(st.alerts))] : null,
      h("dt", {}, "Since"), h("dd", {}, st.since ? fmtAgo(st.since) : "—"),
      options.length ? [h("dt", {}, "Options"), h("dd", { class: "small" }, options.map(([k, v]) => `${k}=${v}`).join(", "))] : null),
    st.last_error ? h("p", { class: "form-error small" }, st.last_error) : null,
    actions);
}

async function load() {
  const cams = await api("/api/cameras");
  const box = clear($("#cams"));
  for (const cam of Array.isArray(cams) ? cams : []) box.append(cameraCard(cam));
  $("#cams-empty").hidden = box.children.length > 0;
}

async function act(id, verb) {
  try {
    await api(`/api/cameras/${encodeURIComponent(id)}/${verb}`, { method: "POST" });
    toast(`Camera ${id}: ${verb === "start" ? "starting" : "stopped"}`, "ok");
    await load();
  } catch (e) {
    showError(e);
  }
}

async function remove(id) {
  const ok = await ask({ title: `Delete camera ${id}?`, message: "Its past alerts and sightings stay.", okText: "Delete", danger: true });
  if (!ok) return;
  try {
    await api(`/api/cameras/${encodeURIComponent(id)}`, { method: "DELETE" });
    toast(`Camera ${id} deleted`, "ok");
    await load();
  } catch (e) {
    showError(e);
  }
}

function wireAdd() {
  const form = $("#add-camera");
  if (!form) return;
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const id = $("#cam-id").value.trim();
    const url = $("#cam-url").value.trim();
    if (!id || !url) { toast("A camera needs a name and a URL.", "error"); return; }
    const options = {};
    const fps = Number($("#cam-fps").value);
    if (Number.isFinite(fps) && fps > 0 && fps !== 5) options.analysis_fps = fps;
    if ($("#cam-loop").checked) options.loop = true;
    try {
      await api("/api/cameras", { method: "POST", json: { id, url, options } });
      if ($("#cam-start").checked) await api(`/api/cameras/${encodeURIComponent(id)}/start`, { method: "POST" });
      toast(`Camera ${id} added`, "ok");
      form.reset();
      $("#add-camera-panel").open = false;
      await load();
    } catch (ex) {
      showError(ex);
    }
  });
}

boot(async (c) => {
  ctx = c;
  wireAdd();
  $("#refresh-btn").addEventListener("click", () => load().catch(showError));
  await load();
  setInterval(() => { if (!document.hidden) load().catch(() => undefined); }, 5000);
});
