// One alert as a card: the captured best shot beside the enrolled photo, the similarity and what it
// means (estimated false-match rate), camera, time, status and the confirm / reject decision.

import { api } from "./api.js";
import { showError, toast } from "./app.js";
import { fmtAgo, fmtFmr, fmtNum, fmtTime, h } from "./dom.js";

const STATUS_TEXT = { new: "Undecided", confirmed: "Confirmed", rejected: "Rejected" };

function shot(url, alt, caption) {
  return h("figure", { class: "shot" },
    url ? h("img", { src: url, alt, loading: "lazy", decoding: "async" }) : h("div", { class: "noimg" }, "No image"),
    h("figcaption", {}, caption));
}

function statusLine(a) {
  const s = a.status || "new";
  const parts = [h("span", { class: `status-badge ${s}` }, STATUS_TEXT[s] || s)];
  if (s !== "new" && a.decided_by) {
    parts.push(h("span", { class: "muted small" }, ` by ${a.decided_by}${a.decided_at ? " · " + fmtTime(a.decided_at) : ""}`));
  }
  if (a.comment) parts.push(h("span", { class: "muted small comment" }, ` “${a.comment}”`));
  return h("div", { class: "status-line" }, parts);
}

/**
 * alertCard(alert, {canDecide, onDecided, compact}) -> <article>
 * canDecide: show the buttons (operator, supervisor); onDecided(updatedAlert) after a decision.
 */
export function alertCard(a, opts = {}) {
  const card = h("article", { class: `alert-card ${a.status || "new"}${opts.compact ? " compact" : ""}`, dataset: { alertId: String(a.id) } });
  fillCard(card, a, opts);
  return card;
}

function fillCard(card, a, opts) {
  card.replaceChildren();
  card.className = `alert-card ${a.status || "new"}${opts.compact ? " compact" : ""}`;
  const sim = Number(a.similarity);
  const thr = Number(a.threshold);
  const person = a.person_id != null
    ? h("a", { href: `/persons/${encodeURIComponent(a.person_id)}`, class: "person-link" }, a.person_name || `Person ${a.person_id}`)
    : h("span", {}, a.person_name || "Unknown");
  const meaning = a.meaning ? String(a.meaning) : "";
  const info = h("div", { class: "info" },
    h("div", { class: "title-row" },
      h("h3", {}, person),
      a.watchlist ? h("span", { class: "chip" }, a.watchlist) : null),
    h("div", { class: "score" },
      h("span", { class: "sim" }, fmtNum(sim, 2)),
      h("span", { class: "sim-label" }, "similarity"),
      Number.isFinite(thr) ? h("span", { class: "muted small" }, ` (threshold ${fmtNum(thr, 2)})`) : null),
    h("p", { class: "meaning" },
      meaning ? meaning + " · " : "",
      "estimated false-match rate ", h("strong", {}, fmtFmr(a.est_fmr))),
    a.meaning_for_list ? h("p", { class: "list-meaning small" }, `Against this list: ${a.meaning_for_list}`) : null,
    h("dl", { class: "facts" },
      h("dt", {}, "Camera"), h("dd", { class: "camera" }, a.camera_id || "—"),
      h("dt", {}, "Time"), h("dd", { title: fmtTime(a.ts) }, `${fmtTime(a.ts)} (${fmtAgo(a.ts)})`)),
    statusLine(a));
  if (opts.canDecide && (a.status || "new") === "new") {
    const confirmBtn = h("button", { type: "button", class: "btn ok decide", dataset: { decision: "confirmed" } }, "Confirm");
    const rejectBtn = h("button", { type: "button", class: "btn danger decide", dataset: { decision: "rejected" } }, "Reject");
    const decide = async (decision) => {
      confirmBtn.disabled = true;
      rejectBtn.disabled = true;
      try {
        const res = await api(`/api/alerts/${encodeURIComponent(a.id)}/decision`, { method: "POST", json: { decision } });
        const updated = res && typeof res === "object" && res.id !== undefined ? res : { ...a, status: decision };
        toast(`Alert ${decision === "confirmed" ? "confirmed" : "rejected"}: ${a.person_name || ""}`, "ok");
        fillCard(card, updated, opts);
        if (opts.onDecided) opts.onDecided(updated, card);
      } catch (e) {
        showError(e);
        confirmBtn.disabled = false;
        rejectBtn.disabled = false;
      }
    };
    confirmBtn.addEventListener("click", () => decide("confirmed"));
    rejectBtn.addEventListener("click", () => decide("rejected"));
    info.append(h("div", { class: "actions" }, confirmBtn, rejectBtn));
  }
  card.append(
    h("div", { class: "shots" },
      shot(a.crop_url, `Face captured on ${a.camera_id || "camera"}`, "Captured"),
      shot(a.enrolled_crop_url, `Enrolled photo of ${a.person_name || "the person"}`, "Enrolled")),
    info);
}

/** Replace a card's content in place (a decision made elsewhere). */
export function updateCard(card, a, opts = {}) {
  fillCard(card, a, opts);
}
