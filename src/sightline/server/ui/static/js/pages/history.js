// History: past alerts (and, for operators and supervisors, sightings) by camera and period.

import { alertCard } from "../alertcard.js";
import { api } from "../api.js";
import { boot, showError } from "../app.js";
import { $, clear, fmtNum, fmtTime, h, inputToEpoch } from "../dom.js";

let ctx;
let tab = "alerts";

function sightingCard(s) {
  const who = s.person_name || (s.person_id != null ? `Person ${s.person_id}` : "No watchlist match");
  const start = s.start_ts ?? s.ts;
  return h("article", { class: "alert-card compact sighting" },
    h("div", { class: "shots" },
      h("figure", { class: "shot" },
        s.crop_url
          ? h("img", { src: s.crop_url, alt: "Sighting", loading: "lazy" })
          : h("div", { class: "noimg" }, "No image"),
        h("figcaption", {}, "Seen"))),
    h("div", { class: "info" },
      h("h3", {}, s.person_id != null ? h("a", { href: `/persons/${encodeURIComponent(s.person_id)}` }, who) : who),
      h("dl", { class: "facts" },
        h("dt", {}, "Camera"), h("dd", {}, s.camera_id || "—"),
        h("dt", {}, "From"), h("dd", {}, fmtTime(start)),
        h("dt", {}, "To"), h("dd", {}, fmtTime(s.end_ts)),
        s.similarity != null ? [h("dt", {}, "Similarity"), h("dd", {}, fmtNum(s.similarity, 2))] : null)));
}

async function load() {
  const query = {
    camera: $("#h-camera").value,
    since: inputToEpoch($("#h-since").value),
    until: inputToEpoch($("#h-until").value),
    limit: 200,
  };
  const box = clear($("#history"));
  if (tab === "alerts") {
    query.status = $("#h-status").value;
    const list = await api("/api/alerts", { query });
    const items = Array.isArray(list) ? list : [];
    for (const a of items) box.append(alertCard(a, { compact: true, canDecide: ctx.can("operator", "supervisor") }));
    $("#history-empty").hidden = items.length > 0;
  } else {
    const list = await api("/api/sightings", { query });
    const items = Array.isArray(list) ? list : [];
    for (const s of items) box.append(sightingCard(s));
    $("#history-empty").hidden = items.length > 0;
  }
}

function selectTab(name) {
  tab = name;
  $("#tab-alerts").setAttribute("aria-selected", String(name === "alerts"));
  const st = $("#tab-sightings");
  if (st) st.setAttribute("aria-selected", String(name === "sightings"));
  $("#h-status-field").hidden = name !== "alerts";
  load().catch(showError);
}

boot(async (c) => {
  ctx = c;
  try {
    const cams = await api("/api/cameras");
    for (const cam of Array.isArray(cams) ? cams : []) $("#h-camera").append(h("option", { value: cam.id }, cam.id));
  } catch (e) { /* camera list is a convenience */ }
  $("#tab-alerts").addEventListener("click", () => selectTab("alerts"));
  const st = $("#tab-sightings");
  if (st) st.addEventListener("click", () => selectTab("sightings"));
  $("#history-filter").addEventListener("submit", (e) => { e.preventDefault(); load().catch(showError); });
  await load();
});
