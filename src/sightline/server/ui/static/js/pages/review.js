// Review queue: undecided alerts, oldest first; a decided card leaves the queue.

import { alertCard } from "../alertcard.js";
import { api } from "../api.js";
import { boot, showError } from "../app.js";
import { $, clear } from "../dom.js";

let ctx;

async function load() {
  const list = await api("/api/alerts", { query: { status: "new", limit: 200 } });
  const items = (Array.isArray(list) ? list : []).slice().sort((a, b) => Number(a.ts) - Number(b.ts));
  const box = clear($("#queue"));
  for (const a of items) {
    box.append(alertCard(a, {
      canDecide: ctx.can("operator", "supervisor"),
      onDecided: (_updated, card) => {
        card.classList.add("leaving");
        setTimeout(() => { card.remove(); $("#queue-empty").hidden = box.children.length > 0; }, 600);
      },
    }));
  }
  $("#queue-empty").hidden = items.length > 0;
}

boot(async (c) => {
  ctx = c;
  $("#refresh-btn").addEventListener("click", () => load().catch(showError));
  await load();
  setInterval(() => { if (!document.hidden) load().catch(() => undefined); }, 20000);
});
