// Persons: search by name and watchlist; create a person (then add photos on their page).

import { api } from "../api.js";
import { boot, showError, toast } from "../app.js";
import { fillWatchlists, REASON_KEY } from "../common.js";
import { $, clear, h } from "../dom.js";

function personCard(p) {
  const photos = Array.isArray(p.photos) ? p.photos : [];
  const first = photos.find((ph) => ph.crop_url);
  const avatar = p.crop_url || (first && first.crop_url);  // the list gives the best crop as p.crop_url
  const count = p.template_count ?? p.photo_count ?? photos.length;
  const wls = Array.isArray(p.watchlists) ? p.watchlists : [];
  return h("a", { class: "card person-card", href: `/persons/${encodeURIComponent(p.id)}`, dataset: { personId: String(p.id) } },
    avatar ? h("img", { class: "avatar", src: avatar, alt: "", loading: "lazy" }) : h("div", { class: "avatar placeholder" }, (p.name || "?").slice(0, 1).toUpperCase()),
    h("div", { class: "grow" },
      h("h3", {}, p.name),
      p.external_id ? h("p", { class: "muted small" }, p.external_id) : null,
      h("p", { class: "small" }, `${count} ${count === 1 ? "photo" : "photos"}`),
      wls.length ? h("div", { class: "chips" }, wls.map((w) => h("span", { class: "chip" }, typeof w === "object" ? w.name : w))) : null));
}

async function load() {
  const list = await api("/api/persons", { query: { q: $("#q").value.trim(), watchlist: $("#filter-wl").value } });
  const items = Array.isArray(list) ? list : (list && list.items) || [];
  const box = clear($("#persons"));
  for (const p of items) box.append(personCard(p));
  $("#persons-empty").hidden = items.length > 0;
}

boot(async (ctx) => {
  await fillWatchlists($("#filter-wl"), $("#p-wl")).catch(showError);
  $("#person-filter").addEventListener("submit", (e) => { e.preventDefault(); load().catch(showError); });
  $("#filter-wl").addEventListener("change", () => load().catch(showError));
  if (ctx.can("supervisor", "admin")) {
    $("#add-person").addEventListener("submit", async (e) => {
      e.preventDefault();
      const name = $("#p-name").value.trim();
      const reason = $("#p-reason").value.trim();
      if (!name) { $("#p-name").focus(); toast("A person needs a name.", "error"); return; }
      if (!reason) { $("#p-reason").focus(); toast("Give the reason for enrolling this person.", "error"); return; }
      const body = { name, reason };
      if ($("#p-ext").value.trim()) body.external_id = $("#p-ext").value.trim();
      if ($("#p-notes").value.trim()) body.notes = $("#p-notes").value.trim();
      if ($("#p-wl").value) body.watchlists = [$("#p-wl").value];
      try {
        const p = await api("/api/persons", { method: "POST", json: body });
        try { sessionStorage.setItem(REASON_KEY, reason); } catch { /* private mode */ }
        location.assign(`/persons/${encodeURIComponent(p.id)}`);
      } catch (ex) { showError(ex); }
    });
  }
  await load();
});
