// The page shell: who is signed in, role-aware nav and controls, logout, toasts, dialogs, service worker.

import { api, ApiError, me, setCsrf } from "./api.js";
import { $, $$, h } from "./dom.js";

/** Show elements marked data-roles="a b" when the user's role is listed (the API still enforces). */
export function applyRoles(role, root = document) {
  for (const el of $$("[data-roles]", root)) {
    if (el === document.body) continue;
    const roles = el.dataset.roles.split(/\s+/).filter(Boolean);
    el.hidden = !roles.includes(role);
  }
}

/** The first nav page the role may open. */
export function homeFor(role) {
  for (const a of $$("#nav a[data-roles]")) {
    if (a.dataset.roles.split(/\s+/).includes(role)) return a.getAttribute("href");
  }
  return role === "auditor" ? "/audit" : "/";
}

export function toast(message, kind = "info", ms = 5000) {
  const box = $("#toasts");
  if (!box) return;
  const t = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  box.append(t);
  setTimeout(() => t.remove(), ms);
}

export function showError(e) {
  const msg = e instanceof ApiError ? e.message : String(e && e.message ? e.message : e);
  toast(msg, "error", 8000);
}

/**
 * ask({title, message, input: "Reason", okText, danger}) -> Promise<string|null|true>
 * A modal dialog (no window.prompt): resolves with the input text (or true without input), null on cancel.
 */
export function ask({ title, message = "", input = null, okText = "OK", danger = false, required = true }) {
  const dlg = $("#ask-dialog");
  $("#ask-title").textContent = title;
  $("#ask-message").textContent = message;
  const label = $("#ask-input-label");
  const field = $("#ask-input");
  label.hidden = !input;
  $("#ask-input-name").textContent = input || "";
  field.value = "";
  field.required = Boolean(input && required);
  const ok = $("#ask-ok");
  ok.textContent = okText;
  ok.className = danger ? "btn danger" : "btn primary";
  return new Promise((resolve) => {
    const done = (value) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dlg.removeEventListener("cancel", onCancel);
      if (dlg.open) dlg.close();
      resolve(value);
    };
    const form = $("#ask-form");
    const cancel = $("#ask-cancel");
    const onSubmit = (e) => {
      e.preventDefault();
      if (input && required && !field.value.trim()) { field.focus(); return; }
      done(input ? field.value.trim() : true);
    };
    const onCancel = (e) => { e.preventDefault(); done(null); };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dlg.addEventListener("cancel", onCancel);
    dlg.showModal();
    if (input) field.focus();
  });
}

function wireShell() {
  const btn = $("#menu-btn");
  const nav = $("#nav");
  if (btn && nav) {
    btn.addEventListener("click", () => {
      const open = !document.body.classList.contains("nav-open");
      document.body.classList.toggle("nav-open", open);
      btn.setAttribute("aria-expanded", String(open));
    });
  }
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && document.body.classList.contains("nav-open")) {
      document.body.classList.remove("nav-open");
      if (btn) btn.setAttribute("aria-expanded", "false");
    }
  });
  const out = $("#logout-btn");
  if (out) {
    out.addEventListener("click", async () => {
      try {
        await api("/api/auth/logout", { method: "POST", noRedirect: true });
      } catch (e) {
        /* the session may already be gone; go to the login page anyway */
      }
      setCsrf(null);
      location.assign("/login");
    });
  }
}

export function registerServiceWorker() {
  if ("serviceWorker" in navigator && window.isSecureContext) {
    navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => undefined);
  }
}

/**
 * boot(init): run by every signed-in page. Loads the user, reveals what the role may use,
 * sends users to their home page when this page is not for them, then calls init(ctx).
 * ctx = {user, role, can(...roles) -> bool}
 */
export async function boot(init) {
  wireShell();
  registerServiceWorker();
  const status = $("#boot-status");
  let user;
  try {
    user = await me();
  } catch (e) {
    if (status) status.textContent = e instanceof ApiError && e.status === 401 ? "Signing in…" : `Cannot load the console: ${e.message}`;
    return;
  }
  $("#user-name").textContent = user.username;
  $("#user-role").textContent = user.role;
  $("#user-chip").hidden = false;
  applyRoles(user.role);
  const pageRoles = (document.body.dataset.roles || "").split(/\s+/).filter(Boolean);
  if (pageRoles.length && !pageRoles.includes(user.role)) {
    location.replace(homeFor(user.role));
    return;
  }
  const brand = $(".brand");
  if (brand) brand.setAttribute("href", homeFor(user.role));
  if (status) status.remove();
  $("#page-body").hidden = false;
  const ctx = { user, role: user.role, can: (...roles) => roles.includes(user.role) };
  try {
    await init(ctx);
  } catch (e) {
    showError(e);
  } finally {
    document.body.dataset.ready = "1"; // first data loaded (tests and screenshots wait for it)
  }
}
