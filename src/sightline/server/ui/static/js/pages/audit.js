// Audit log (auditor; admin read): filter, verify the hash chain, export.

import { api } from "../api.js";
import { boot, showError } from "../app.js";
import { $, clear, fmtTime, h, inputToEpoch } from "../dom.js";

const ACTIONS = ["auth.login", "auth.logout", "search.photo", "search.sightings", "person.create", "person.enroll",
  "person.delete", "photo.delete", "watchlist.create", "watchlist.update", "watchlist.delete", "watchlist.member_add",
  "watchlist.member_remove", "camera.create", "camera.update", "camera.delete", "camera.start", "camera.stop",
  "alert.decision", "user.create", "user.update", "user.delete", "token.create", "token.revoke", "channel.create",
  "channel.delete", "audit.export", "subject.export", "subject.erase", "retention.purge", "key.rotate"];

function filters() {
  return {
    actor: $("#a-actor").value.trim(),
    action: $("#a-action").value.trim(),
    since: inputToEpoch($("#a-since").value),
    until: inputToEpoch($("#a-until").value),
  };
}

/** The export links download what the filter shows. */
function updateExports(f) {
  for (const fmt of ["csv", "json"]) {
    const q = new URLSearchParams({ format: fmt });
    for (const [k, v] of Object.entries(f)) if (v !== undefined && v !== "") q.set(k, String(v));
    $(`#export-${fmt}`).setAttribute("href", `/api/audit/export?${q}`);
  }
}

function detailsText(d) {
  if (!d || typeof d !== "object" || !Object.keys(d).length) return "";
  return Object.entries(d).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ");
}

async function load() {
  const f = filters();
  updateExports(f);
  const list = await api("/api/audit", { query: { ...f, limit: 500 } });
  const items = Array.isArray(list) ? list : (list && list.entries) || [];
  const body = clear($("#audit"));
  for (const e of items) {
    body.append(h("tr", { class: e.outcome && e.outcome !== "ok" ? "warn-row" : "" },
      h("td", { class: "small num", "data-label": "#" }, String(e.seq ?? "")),
      h("td", { class: "small nowrap", "data-label": "Time" }, fmtTime(e.ts)),
      h("td", { "data-label": "Actor" }, e.actor || ""),
      h("td", { class: "code small", "data-label": "Action" }, e.action || ""),
      h("td", { class: "small", "data-label": "Target" }, e.target || "",
        detailsText(e.details) ? h("div", { class: "muted small details" }, detailsText(e.details)) : null),
      h("td", { class: "small", "data-label": "Reason" }, e.reason || ""),
      h("td", { "data-label": "Outcome" },
        h("span", { class: `status-badge ${e.outcome === "ok" ? "confirmed" : "rejected"}` }, e.outcome || ""))));
  }
  $("#audit-empty").hidden = items.length > 0;
}

async function verify() {
  const box = $("#verify-result");
  try {
    const r = await api("/api/audit/verify");
    const ok = Boolean(r && r.ok);
    box.hidden = false;
    box.className = `notice ${ok ? "ok" : "bad"}`;
    const n = r && r.entries;
    const head = r && r.head && r.head.hash ? ` Head #${r.head.seq}: ${String(r.head.hash).slice(0, 16)}…` : "";
    box.textContent = ok
      ? `Hash chain intact (${n ?? "?"} entries).${head}`
      : `Hash chain BROKEN${r && r.first_broken_seq != null ? ` at entry ${r.first_broken_seq}` : ""}` +
        `${r && r.problem ? `: ${r.problem}` : ""}.`;
  } catch (e) { showError(e); }
}

boot(async () => {
  const dl = $("#a-actions");
  for (const a of ACTIONS) dl.append(h("option", { value: a }));
  $("#audit-filter").addEventListener("submit", (e) => { e.preventDefault(); load().catch(showError); });
  $("#verify-btn").addEventListener("click", verify);
  await load();
});
