import { api, ApiError, setCsrf } from "../api.js";
import { registerServiceWorker } from "../app.js";
import { $ } from "../dom.js";

function nextTarget(role) {
  const n = new URLSearchParams(location.search).get("next") || "";
  if (n.startsWith("/") && !n.startsWith("//") && !n.includes("\\") && !n.startsWith("/login")) return n;
  return role === "auditor" ? "/audit" : "/";
}

async function alreadySignedIn() {
  try {
    const u = await api("/api/auth/me", { noRedirect: true });
    location.replace(nextTarget(u.role));
  } catch {
    /* not signed in: stay */
  }
}

function init() {
  registerServiceWorker();
  const form = $("#login-form");
  const err = $("#login-error");
  const btn = $("#login-btn");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.hidden = true;
    const username = $("#username").value.trim();
    const password = $("#password").value;
    if (!username || !password) {
      err.textContent = "Enter your username and password.";
      err.hidden = false;
      return;
    }
    btn.disabled = true;
    btn.textContent = "Signing in…";
    try {
      const res = await api("/api/auth/login", { method: "POST", json: { username, password }, noRedirect: true });
      setCsrf(res.csrf_token);
      location.assign(nextTarget(res.user && res.user.role));
    } catch (ex) {
      err.textContent = ex instanceof ApiError && ex.status === 401 ? "Wrong username or password." : ex.message;
      err.hidden = false;
      btn.disabled = false;
      btn.textContent = "Sign in";
    }
  });
  $("#username").focus();
  alreadySignedIn();
}

init();
