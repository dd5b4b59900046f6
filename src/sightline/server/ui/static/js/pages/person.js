// One person: facts, watchlists, enrolled photos; drag-and-drop enrollment with upload progress.

import { api, upload } from "../api.js";
import { ask, boot, showError, toast } from "../app.js";
import { dropZone, fillWatchlists, REASON_KEY } from "../common.js";
import { $, clear, fmtNum, fmtTime, h } from "../dom.js";

let ctx;
let personId;
let person;
let watchlists = [];

function wlName(w) {
  return typeof w === "object" && w !== null ? w.name : String(w);
}

function render() {
  $("#person-name").textContent = person.name;
  document.title = `${person.name} · Sightline`;
  const facts = clear($("#person-facts"));
  const add = (k, v) => { if (v !== undefined && v !== null && v !== "") facts.append(h("dt", {}, k), h("dd", {}, v)); };
  add("External id", person.external_id);
  add("Notes", person.notes);
  add("Enrolled", person.created_at ? fmtTime(person.created_at) : null);
  add("Photos", String(person.template_count ?? (person.photos || []).length));
  const chips = clear($("#person-wls"));
  for (const w of person.watchlists || []) {
    const name = wlName(w);
    const chip = h("span", { class: "chip" }, name);
    const wl = watchlists.find((x) => x.name === name);
    if (ctx.can("supervisor", "admin") && wl) {
      chip.append(h("button", {
        type: "button", class: "chip-x", "aria-label": `Remove from ${name}`,
        onclick: async () => {
          try {
            await api(`/api/watchlists/${encodeURIComponent(wl.id)}/members/${encodeURIComponent(personId)}`, { method: "DELETE" });
            toast(`Removed from ${name}`, "ok");
            await load();
          } catch (e) { showError(e); }
        },
      }, "×"));
    }
    chips.append(chip);
  }
  if (!(person.watchlists || []).length) chips.append(h("span", { class: "muted small" }, "On no watchlist."));
  const sel = $("#wl-select");
  if (sel) {
    clear(sel);
    const on = new Set((person.watchlists || []).map(wlName));
    for (const wl of watchlists) if (!on.has(wl.name)) sel.append(h("option", { value: String(wl.id) }, wl.name));
    $("#add-to-wl").hidden = !ctx.can("supervisor", "admin") || sel.options.length === 0;
  }

  const photos = clear($("#photos"));
  for (const ph of person.photos || []) {
    photos.append(h("figure", { class: "card photo", dataset: { templateId: String(ph.template_id) } },
      ph.crop_url ? h("img", { src: ph.crop_url, alt: `Enrolled face of ${person.name}`, loading: "lazy" }) : h("div", { class: "noimg" }, "No crop"),
      h("figcaption", {},
        h("span", { class: "small" }, `quality ${fmtNum(ph.quality, 2)}`),
        ph.source_name ? h("span", { class: "muted small ellipsis", title: ph.source_name }, ph.source_name) : null,
        ctx.can("supervisor", "admin")
          ? h("button", { type: "button", class: "btn small ghost", onclick: () => deletePhoto(ph) }, "Remove")
          : null)));
  }
  $("#photos-empty").hidden = (person.photos || []).length > 0;
}

async function load() {
  person = await api(`/api/persons/${encodeURIComponent(personId)}`);
  render();
}

async function deletePhoto(ph) {
  const ok = await ask({ title: "Remove this photo?", message: "Its face template is deleted.", okText: "Remove", danger: true });
  if (!ok) return;
  try {
    await api(`/api/persons/${encodeURIComponent(personId)}/photos/${encodeURIComponent(ph.template_id)}`, { method: "DELETE" });
    await load();
  } catch (e) { showError(e); }
}

function resultsOf(res) {
  if (Array.isArray(res)) return res;
  if (res && typeof res === "object") return res.results || res.files || res.photos || [];
  return [];
}

function showResults(res, files) {
  const ul = clear($("#upload-results"));
  const items = resultsOf(res);
  let accepted = 0;
  items.forEach((r, i) => {
    const name = r.file || r.filename || r.name || r.source_name || (files[i] && files[i].name) || `photo ${i + 1}`;
    const ok = r.accepted !== undefined ? Boolean(r.accepted)
      : r.status ? ["accepted", "ok", "enrolled"].includes(String(r.status))
      : Array.isArray(r.template_ids) ? r.template_ids.length > 0 : !r.reason;
    if (ok) accepted += 1;
    const why = r.reason || r.detail || r.error || r.message || "";
    ul.append(h("li", { class: ok ? "ok" : "bad" },
      h("span", { class: "status-badge " + (ok ? "confirmed" : "rejected") }, ok ? "Accepted" : "Skipped"),
      " ", h("span", { class: "ellipsis" }, name), why && !ok ? h("span", { class: "muted small" }, ` — ${why}`) : null));
  });
  return { accepted, total: items.length || files.length };
}

async function enroll(files) {
  const reason = $("#enroll-reason").value.trim();
  if (!reason) {
    $("#enroll-reason").focus();
    toast("Give the reason for enrolling these photos (recorded in the audit log).", "error");
    return;
  }
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  form.append("reason", reason);
  const status = $("#upload-status");
  const bar = $("#upload-progress");
  const label = $("#upload-label");
  status.hidden = false;
  bar.value = 0;
  bar.removeAttribute("data-done");
  label.textContent = `Uploading ${files.length} ${files.length === 1 ? "photo" : "photos"}…`;
  try {
    const res = await upload(`/api/persons/${encodeURIComponent(personId)}/photos`, form, (f) => {
      bar.value = Math.round(f * 100);
      if (f >= 1) label.textContent = "Analysing faces…";
    });
    bar.value = 100;
    bar.dataset.done = "1";
    const { accepted, total } = showResults(res, files);
    label.textContent = `Done: ${accepted} of ${total} accepted.`;
    toast(`${accepted} of ${total} photos enrolled`, accepted ? "ok" : "error");
    await load();
  } catch (e) {
    label.textContent = `Upload failed: ${e.message}`;
    showError(e);
  }
}

boot(async (c) => {
  ctx = c;
  personId = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
  watchlists = await fillWatchlists().catch(() => []);
  try {
    const saved = sessionStorage.getItem(REASON_KEY);
    if (saved && $("#enroll-reason")) { $("#enroll-reason").value = saved; sessionStorage.removeItem(REASON_KEY); }
  } catch { /* private mode */ }
  if (ctx.can("supervisor", "admin")) {
    dropZone($("#dropzone"), $("#file-input"), (files) => enroll(files));
    $("#add-to-wl").addEventListener("submit", async (e) => {
      e.preventDefault();
      const id = $("#wl-select").value;
      if (!id) return;
      try {
        await api(`/api/watchlists/${encodeURIComponent(id)}/members`, { method: "POST", json: { person_id: Number(personId) } });
        toast("Added to watchlist", "ok");
        await load();
      } catch (ex) { showError(ex); }
    });
    $("#delete-person").addEventListener("click", async () => {
      const reason = await ask({
        title: `Delete ${person ? person.name : "this person"}?`, message: "Their photos and face templates are deleted.",
        input: "Reason (recorded in the audit log)", okText: "Delete", danger: true,
      });
      if (!reason) return;
      try {
        await api(`/api/persons/${encodeURIComponent(personId)}`, { method: "DELETE", query: { reason } });
        toast("Person deleted", "ok");
        location.assign("/persons");
      } catch (e) { showError(e); }
    });
  }
  await load();
});
