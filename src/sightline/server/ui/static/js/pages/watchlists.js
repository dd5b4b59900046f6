// Watchlists: list, create, delete; members; notification channels (webhook, apprise, mqtt); deliveries
// (supervisor, admin): the outbox of notifications, with a retry for failed ones.

import { api } from "../api.js";
import { ask, boot, showError, toast } from "../app.js";
import { $, clear, fmtFmr, fmtNum, fmtTime, h } from "../dom.js";

let ctx;

function memberList(wl) {
  const members = Array.isArray(wl.members) ? wl.members : [];
  if (!members.length) return h("p", { class: "muted small" }, "No members.");
  return h("ul", { class: "chips" }, members.map((m) => {
    const id = typeof m === "object" ? (m.person_id ?? m.id) : m;
    const name = typeof m === "object" ? (m.name || m.person_name || `Person ${id}`) : `Person ${m}`;
    const chip = h("li", { class: "chip" }, h("a", { href: `/persons/${encodeURIComponent(id)}` }, name));
    if (ctx.can("supervisor", "admin")) {
      chip.append(h("button", {
        type: "button", class: "chip-x", "aria-label": `Remove ${name} from ${wl.name}`,
        onclick: async () => {
          try {
            await api(`/api/watchlists/${encodeURIComponent(wl.id)}/members/${encodeURIComponent(id)}`, { method: "DELETE" });
            toast(`${name} removed from ${wl.name}`, "ok");
            await load();
          } catch (e) { showError(e); }
        },
      }, "×"));
    }
    return chip;
  }));
}

function channelForm(wl, reload) {
  const kind = h("select", { "aria-label": "Channel kind" },
    h("option", { value: "webhook" }, "Webhook"), h("option", { value: "apprise" }, "Apprise URL"), h("option", { value: "mqtt" }, "MQTT"));
  const target = h("input", { placeholder: "https://… or mqtt://host/topic", "aria-label": "Target", autocomplete: "off", required: true });
  const secret = h("input", { placeholder: "Signing secret (optional)", "aria-label": "Secret", autocomplete: "off", type: "password" });
  return h("form", {
    class: "row wrap",
    onsubmit: async (e) => {
      e.preventDefault();
      if (!target.value.trim()) { target.focus(); return; }
      const body = { kind: kind.value, target: target.value.trim() };
      if (secret.value) body.secret = secret.value;
      try {
        await api(`/api/watchlists/${encodeURIComponent(wl.id)}/channels`, { method: "POST", json: body });
        toast("Channel added", "ok");
        reload();
      } catch (ex) { showError(ex); }
    },
  }, kind, target, secret, h("button", { type: "submit", class: "btn small" }, "Add channel"));
}

async function channels(wl, box) {
  const reload = () => channels(wl, box).catch(showError);
  const list = await api(`/api/watchlists/${encodeURIComponent(wl.id)}/channels`);
  clear(box);
  const items = Array.isArray(list) ? list : [];
  box.append(items.length
    ? h("ul", { class: "list" }, items.map((ch) => h("li", { class: "row between" },
        h("span", {}, h("span", { class: "chip" }, ch.kind), " ", h("span", { class: "mono small" }, ch.target)),
        ctx.can("supervisor", "admin")
          ? h("button", {
              type: "button", class: "btn small danger",
              onclick: async () => {
                try { await api(`/api/channels/${encodeURIComponent(ch.id)}`, { method: "DELETE" }); reload(); } catch (e) { showError(e); }
              },
            }, "Remove")
          : null)))
    : h("p", { class: "muted small" }, "No notification channels."));
  if (ctx.can("supervisor", "admin")) box.append(channelForm(wl, reload));
}

const FMR_CHOICES = [["", "Model default"], ["0.01", "1 in 100"], ["0.001", "1 in 1,000"], ["0.0001", "1 in 10,000"],
  ["0.00001", "1 in 100,000"], ["0.000001", "1 in 1,000,000"]];

/** Supervisors set how strict a watchlist is by the false-match rate they accept (the server converts it
 * to a similarity threshold with the model's calibration). */
function thresholdForm(wl) {
  const sel = h("select", { "aria-label": `Target false-match rate of ${wl.name}` },
    FMR_CHOICES.map(([v, label]) => h("option", { value: v }, label)));
  return h("form", {
    class: "row wrap threshold-form",
    onsubmit: async (e) => {
      e.preventDefault();
      const body = sel.value ? { fmr: Number(sel.value) } : { default_threshold: true };
      try {
        await api(`/api/watchlists/${encodeURIComponent(wl.id)}`, { method: "PATCH", json: body });
        toast(`${wl.name}: threshold updated`, "ok");
        await load();
      } catch (ex) { showError(ex); }
    },
  }, h("span", { class: "muted small" }, "Accept false matches:"), sel, h("button", { type: "submit", class: "btn small" }, "Apply"));
}

function wlCard(wl) {
  let details = null;
  if (ctx.can("supervisor", "admin")) { // channels hold delivery targets and secrets: writers only
    const chanBox = h("div", { class: "channels" }, h("p", { class: "muted small" }, "Loading…"));
    details = h("details", { class: "sub" }, h("summary", {}, "Notification channels"), chanBox);
    let loaded = false;
    details.addEventListener("toggle", () => {
      if (details.open && !loaded) { loaded = true; channels(wl, chanBox).catch(showError); }
    });
  }
  const count = wl.member_count ?? (Array.isArray(wl.members) ? wl.members.length : null);
  const thrValue = wl.effective_threshold ?? wl.threshold;
  const thr = thrValue != null
    ? `threshold ${fmtNum(thrValue, 3)}${wl.threshold == null ? " (model default)" : ""}`
    : "model default threshold";
  const fmr = wl.est_fmr != null ? ` · estimated false-match rate ${fmtFmr(wl.est_fmr)}` : "";
  return h("article", { class: "card", dataset: { watchlistId: String(wl.id) } },
    h("div", { class: "title-row" },
      h("h3", {}, wl.name),
      count != null ? h("span", { class: "chip" }, `${count} ${count === 1 ? "person" : "persons"}`) : null,
      h("span", { class: "spacer" }),
      ctx.can("supervisor", "admin")
        ? h("button", { type: "button", class: "btn small danger", onclick: () => removeWl(wl) }, "Delete")
        : null),
    wl.description ? h("p", {}, wl.description) : null,
    h("p", { class: "muted small" }, thr + fmr),
    wl.meaning ? h("p", { class: "small meaning" }, wl.meaning) : null,
    memberList(wl),
    ctx.can("supervisor", "admin") ? thresholdForm(wl) : null,
    details);
}

async function removeWl(wl) {
  const ok = await ask({ title: `Delete watchlist ${wl.name}?`, message: "The persons stay enrolled.", okText: "Delete", danger: true });
  if (!ok) return;
  try {
    await api(`/api/watchlists/${encodeURIComponent(wl.id)}`, { method: "DELETE" });
    toast(`Watchlist ${wl.name} deleted`, "ok");
    await load();
  } catch (e) { showError(e); }
}

async function load() {
  const list = await api("/api/watchlists");
  const items = Array.isArray(list) ? list : [];
  // the list may omit members: ask each watchlist for its detail
  const full = await Promise.all(items.map((wl) => (Array.isArray(wl.members)
    ? wl : api(`/api/watchlists/${encodeURIComponent(wl.id)}`).catch(() => wl))));
  const box = clear($("#wls"));
  for (const wl of full) box.append(wlCard(wl));
  $("#wl-empty").hidden = full.length > 0;
}

function deliveryItem(d) {
  const when = d.delivered_at ?? d.created_at;
  return h("li", { class: "row between wrap", dataset: { deliveryId: String(d.id), status: d.status } },
    h("span", {},
      h("span", { class: `chip status-${d.status}` }, d.status), " ",
      h("span", { class: "chip" }, d.kind), " ",
      h("span", { class: "mono small" }, d.target), " ",
      h("span", { class: "muted small" },
        `alert ${d.alert_id} · ${d.watchlist} · ${d.camera_id} · ${d.attempts} attempt${d.attempts === 1 ? "" : "s"} · ${fmtTime(when)}`),
      d.last_error ? h("div", { class: "small bad-text" }, d.last_error) : null),
    d.status === "failed"
      ? h("button", {
          type: "button", class: "btn small",
          onclick: async () => {
            try {
              await api(`/api/deliveries/${encodeURIComponent(d.id)}/retry`, { method: "POST" });
              toast(`Delivery ${d.id} queued again`, "ok");
              await loadDeliveries();
            } catch (e) { showError(e); }
          },
        }, "Retry")
      : null);
}

async function loadDeliveries() {
  const status = $("#d-status").value;
  const list = await api("/api/deliveries", { query: status ? { status } : {} });
  const items = Array.isArray(list) ? list : [];
  const box = clear($("#deliveries"));
  for (const d of items) box.append(deliveryItem(d));
  $("#deliveries-empty").hidden = items.length > 0;
}

boot(async (c) => {
  ctx = c;
  const panel = $("#deliveries-panel");
  if (panel) {
    let loaded = false;
    panel.addEventListener("toggle", () => {
      if (panel.open && !loaded) { loaded = true; loadDeliveries().catch(showError); }
    });
    $("#deliveries-filter").addEventListener("submit", (e) => { e.preventDefault(); loadDeliveries().catch(showError); });
  }
  const addForm = $("#add-wl");
  if (addForm) addForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("#wl-name").value.trim();
    if (!name) { $("#wl-name").focus(); return; }
    const body = { name, description: $("#wl-desc").value.trim() };
    if ($("#wl-fmr").value) body.fmr = Number($("#wl-fmr").value);
    try {
      await api("/api/watchlists", { method: "POST", json: body });
      toast(`Watchlist ${name} created`, "ok");
      e.target.reset();
      $("#add-wl-panel").open = false;
      await load();
    } catch (ex) { showError(ex); }
  });
  await load();
});
