// Search by photo: one photo, a reason (audited), optional watchlist; candidates per face found.

import { upload } from "../api.js";
import { boot, showError, toast } from "../app.js";
import { dropZone, fillWatchlists } from "../common.js";
import { $, clear, fmtFmr, fmtNum, h } from "../dom.js";

let file = null;
let previewUrl = null;

function choose(files) {
  file = files[0];
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  const img = $("#preview");
  img.src = previewUrl;
  img.hidden = false;
  $("#drop-icon").classList.add("hidden-sm");
  $("#drop-text").textContent = file.name;
}

function candidateRow(c) {
  return h("li", { class: "candidate" },
    c.crop_url ? h("img", { src: c.crop_url, alt: `Enrolled face of ${c.name}`, loading: "lazy" }) : h("div", { class: "noimg small" }, "—"),
    h("div", { class: "grow" },
      h("div", { class: "title-row" },
        h("a", { href: `/persons/${encodeURIComponent(c.person_id)}`, class: "person-link" }, c.name || `Person ${c.person_id}`),
        c.is_match === undefined ? null
          : h("span", { class: `status-badge ${c.is_match ? "confirmed" : "new"}` }, c.is_match ? "Above threshold" : "Below threshold")),
      h("p", { class: "small" }, h("strong", {}, fmtNum(c.similarity, 2)), " similarity",
        c.meaning ? ` · ${c.meaning}` : "", " · est. false-match rate ", fmtFmr(c.est_fmr)),
      c.meaning_for_list ? h("p", { class: "small list-meaning" }, `Against the list searched: ${c.meaning_for_list}`) : null));
}

function showResults(res) {
  const box = clear($("#results"));
  const faces = (res && res.faces) || [];
  $("#search-summary").textContent = faces.length
    ? `${faces.length} ${faces.length === 1 ? "face" : "faces"} found.`
    : "No face found in this photo.";
  faces.forEach((f, i) => {
    const cands = f.candidates || [];
    box.append(h("article", { class: "card" },
      h("div", { class: "title-row" }, h("h3", {}, `Face ${i + 1}`),
        h("span", { class: "muted small" }, `quality ${fmtNum(f.quality, 2)}`)),
      cands.length ? h("ol", { class: "candidates" }, cands.map(candidateRow))
        : h("p", { class: "muted" }, "No enrolled person is similar enough.")));
  });
}

boot(async () => {
  await fillWatchlists($("#watchlist")).catch(showError);
  dropZone($("#dropzone"), $("#file-input"), choose);
  $("#search-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!file) { toast("Choose a photo first.", "error"); return; }
    const reason = $("#reason").value.trim();
    if (!reason) { $("#reason").focus(); toast("A reason is required for every search.", "error"); return; }
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("reason", reason);
    if ($("#watchlist").value) form.append("watchlist", $("#watchlist").value);
    const k = Number($("#top-k").value);
    if (Number.isFinite(k) && k > 0) form.append("top_k", String(Math.round(k)));
    const btn = $("#search-btn");
    btn.disabled = true;
    btn.textContent = "Searching…";
    try {
      showResults(await upload("/api/search", form));
      $("#search-summary").scrollIntoView({ behavior: "smooth", block: "start" });
    } catch (ex) {
      showError(ex);
    } finally {
      btn.disabled = false;
      btn.textContent = "Search";
    }
  });
});
