// Account: who I am, and my API tokens (create: shown once; revoke).

import { api } from "../api.js";
import { ask, boot, showError, toast } from "../app.js";
import { $, clear, fmtTime, h } from "../dom.js";

async function load() {
  const list = await api("/api/tokens");
  const items = Array.isArray(list) ? list : [];
  const body = clear($("#tokens"));
  for (const t of items) {
    const revoked = t.revoked_at != null;
    const expired = !revoked && t.expires_at != null && t.expires_at * 1000 < Date.now();
    const state = revoked ? "Revoked" : expired ? "Expired" : "Active";
    body.append(h("tr", { dataset: { tokenId: String(t.id) } },
      h("td", { "data-label": "Name" }, h("strong", {}, t.name)),
      h("td", { class: "small", "data-label": "Created" }, fmtTime(t.created_at)),
      h("td", { class: "small", "data-label": "Expires" }, t.expires_at ? fmtTime(t.expires_at) : "never"),
      h("td", { class: "small", "data-label": "Last used" }, t.last_used_at ? fmtTime(t.last_used_at) : "never"),
      h("td", { "data-label": "Status" }, h("span", { class: `status-badge ${state === "Active" ? "confirmed" : "rejected"}` }, state)),
      h("td", { class: "row end" }, revoked ? null : h("button", {
        type: "button", class: "btn small danger",
        onclick: async () => {
          if (!(await ask({ title: `Revoke token ${t.name}?`, message: "Integrations using it stop working at once.", okText: "Revoke", danger: true }))) return;
          try { await api(`/api/tokens/${encodeURIComponent(t.id)}`, { method: "DELETE" }); toast("Token revoked", "ok"); } catch (e) { showError(e); }
          await load();
        },
      }, "Revoke"))));
  }
  $("#tokens-empty").hidden = items.length > 0;
}

boot(async (ctx) => {
  const facts = $("#account-facts");
  facts.append(h("dt", {}, "User"), h("dd", {}, ctx.user.username), h("dt", {}, "Role"), h("dd", {}, ctx.role));
  $("#add-token").addEventListener("submit", async (e) => {
    e.preventDefault();
    const name = $("#t-name").value.trim();
    if (!name) { $("#t-name").focus(); toast("Give the token a name.", "error"); return; }
    const body = { name };
    if ($("#t-ttl").value) body.ttl_days = Number($("#t-ttl").value);
    try {
      const created = await api("/api/tokens", { method: "POST", json: body });
      $("#token-value").textContent = created.token;
      $("#token-once").hidden = false;
      e.target.reset();
      await load();
    } catch (ex) { showError(ex); }
  });
  $("#token-copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("#token-value").textContent);
      toast("Copied", "ok");
    } catch {
      toast("Select the token and copy it by hand.", "info");
    }
  });
  await load();
});
