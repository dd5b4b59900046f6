// Live alerts: the latest alerts, then new ones pushed over the WebSocket /api/alerts/live
// (reconnects with backoff and back-fills what it missed), with a beep and a system notification.

import { alertCard, updateCard } from "../alertcard.js";
import { api } from "../api.js";
import { boot, showError, toast } from "../app.js";
import { $ } from "../dom.js";
import { beep, disableAlerts, enableAlerts, notify, resumeOnGesture, soundWanted } from "../sound.js";

const MAX_CARDS = 200;
const cards = new Map(); // alert id -> {card, alert}
let ctx;
let newest = 0;

function cardOpts() {
  return { canDecide: ctx.can("operator", "supervisor"), onDecided: (a) => { remember(a); refreshView(); } };
}

function remember(a) {
  const entry = cards.get(a.id);
  if (entry) entry.alert = a;
}

function refreshView() {
  const filter = $("#feed-filter").value;
  let shown = 0;
  for (const { card, alert } of cards.values()) {
    const visible = !filter || alert.status === filter;
    card.hidden = !visible;
    if (visible) shown += 1;
  }
  $("#feed-empty").hidden = shown > 0;
  $("#feed-count").textContent = cards.size ? `${shown} shown` : "";
}

/** Insert or update one alert; returns true when it is new to this page. */
function upsert(a, { live = false } = {}) {
  if (!a || a.id === undefined) return false;
  newest = Math.max(newest, Number(a.ts) || 0);
  const entry = cards.get(a.id);
  if (entry) {
    entry.alert = a;
    updateCard(entry.card, a, cardOpts());
    return false;
  }
  const card = alertCard(a, cardOpts());
  if (live) card.classList.add("fresh");
  const feed = $("#feed");
  // keep newest first
  let before = null;
  for (const { card: c, alert: other } of cards.values()) {
    if ((Number(other.ts) || 0) < (Number(a.ts) || 0) && (!before || Number(other.ts) > Number(before.alert.ts))) {
      before = { card: c, alert: other };
    }
  }
  if (before) feed.insertBefore(card, before.card);
  else feed.append(card);
  cards.set(a.id, { card, alert: a });
  while (cards.size > MAX_CARDS) {
    let oldest = null;
    for (const [id, e] of cards) if (!oldest || Number(e.alert.ts) < Number(oldest[1].alert.ts)) oldest = [id, e];
    oldest[1].card.remove();
    cards.delete(oldest[0]);
  }
  return true;
}

async function backfill() {
  const since = newest ? newest - 1 : undefined;
  const list = await api("/api/alerts", { query: { limit: 100, since } });
  const items = Array.isArray(list) ? list : (list && list.items) || [];
  const fresh = [];
  for (const a of items) if (upsert(a, { live: Boolean(since) })) fresh.push(a);
  refreshView();
  return fresh;
}

function announce(a) {
  beep();
  const title = `${a.person_name || "Watchlisted person"} on ${a.camera_id}`;
  notify(title, `${a.watchlist ? a.watchlist + " · " : ""}similarity ${Number(a.similarity).toFixed(2)}`, `alert-${a.id}`);
}

function setLive(state, text) {
  const pill = $("#live-state");
  pill.dataset.state = state;
  pill.textContent = text;
}

function connect() {
  let retry = 1000;
  let ws = null;
  const open = () => {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}/api/alerts/live`);
    setLive("connecting", "Connecting…");
    ws.addEventListener("open", () => {
      retry = 1000;
      setLive("live", "Live");
      backfill().then((missed) => missed.forEach(announce)).catch(showError);
    });
    ws.addEventListener("message", (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch { return; }
      if (msg && msg.type === "alert" && msg.alert) {
        if (upsert(msg.alert, { live: true })) announce(msg.alert);
        refreshView();
      } else if (msg && msg.type === "camera" && ["failed", "reconnecting"].includes(msg.state)) {
        // a camera that stops delivering frames cannot raise alerts: say so where the operator looks
        toast(`Camera ${msg.camera_id}: ${msg.state}${msg.last_error ? ` (${msg.last_error})` : ""}`, "error", 10000);
      }
    });
    ws.addEventListener("close", (ev) => {
      if (ev.code === 4401 || ev.code === 4403 || ev.code === 1008) {
        setLive("down", "Signed out");
        return;
      }
      setLive("down", "Reconnecting…");
      setTimeout(open, retry);
      retry = Math.min(retry * 2, 30000);
    });
  };
  open();
}

function wireSound() {
  const btn = $("#sound-btn");
  const show = (on) => {
    btn.setAttribute("aria-pressed", String(on));
    btn.textContent = on ? "Sound on" : "Enable sound & notifications";
    btn.classList.toggle("active", on);
  };
  show(false);
  btn.addEventListener("click", async () => {
    if (btn.getAttribute("aria-pressed") === "true") {
      disableAlerts();
      show(false);
      return;
    }
    const permission = enableAlerts();
    show(true);
    setTimeout(beep, 50);
    permission.then((perm) => {
      if (perm === "denied") toast("Notifications are blocked in this browser; the sound still plays.", "info");
    }).catch(() => undefined);
  });
  if (soundWanted()) {
    btn.textContent = "Tap anywhere to resume sound";
    resumeOnGesture(() => show(true));
  }
}

boot(async (c) => {
  ctx = c;
  wireSound();
  $("#feed-filter").addEventListener("change", refreshView);
  await backfill();
  connect();
});
