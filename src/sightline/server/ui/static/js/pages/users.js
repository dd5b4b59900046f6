// Users (admin): create, change role, disable / enable, delete.

import { api } from "../api.js";
import { ask, boot, showError, toast } from "../app.js";
import { $, clear, fmtTime, h } from "../dom.js";

const ROLES = ["admin", "supervisor", "operator", "auditor"];
let ctx;

async function patch(u, body, what) {
  try {
    await api(`/api/users/${encodeURIComponent(u.id)}`, { method: "PATCH", json: body });
    toast(`${u.username}: ${what}`, "ok");
  } catch (e) { showError(e); }
  await load();
}

function row(u) {
  const self = u.id === ctx.user.id;
  const role = h("select", { "aria-label": `Role of ${u.username}`, disabled: self },
    ROLES.map((r) => h("option", { value: r, selected: r === u.role }, r)));
  role.addEventListener("change", () => patch(u, { role: role.value }, `role ${role.value}`));
  const disabled = Boolean(u.disabled);
  return h("tr", { dataset: { userId: String(u.id) } },
    h("td", { "data-label": "User" }, h("strong", {}, u.username), self ? h("span", { class: "muted small" }, " (you)") : null),
    h("td", { "data-label": "Role" }, role),
    h("td", { "data-label": "Status" },
      h("span", { class: `status-badge ${disabled ? "rejected" : "confirmed"}` }, disabled ? "Disabled" : "Active")),
    h("td", { class: "small", "data-label": "Last login" }, u.last_login_at ? fmtTime(u.last_login_at) : "never"),
    h("td", { class: "row end" },
      self ? null : h("button", { type: "button", class: "btn small", onclick: () => patch(u, { disabled: !disabled }, disabled ? "enabled" : "disabled") }, disabled ? "Enable" : "Disable"),
      self ? null : h("button", {
        type: "button", class: "btn small danger",
        onclick: async () => {
          if (!(await ask({ title: `Delete user ${u.username}?`, okText: "Delete", danger: true }))) return;
          try { await api(`/api/users/${encodeURIComponent(u.id)}`, { method: "DELETE" }); toast(`${u.username} deleted`, "ok"); } catch (e) { showError(e); }
          await load();
        },
      }, "Delete")));
}

async function load() {
  const list = await api("/api/users");
  const body = clear($("#users"));
  for (const u of Array.isArray(list) ? list : []) body.append(row(u));
}

boot(async (c) => {
  ctx = c;
  $("#add-user").addEventListener("submit", async (e) => {
    e.preventDefault();
    const username = $("#u-name").value.trim();
    const password = $("#u-pass").value;
    if (!username || !password) { toast("A new user needs a username and a password.", "error"); return; }
    try {
      await api("/api/users", { method: "POST", json: { username, password, role: $("#u-role").value } });
      toast(`User ${username} created`, "ok");
      e.target.reset();
      await load();
    } catch (ex) { showError(ex); }
  });
  await load();
});
