// JSON API client: same-origin cookie session, X-CSRF-Token on every unsafe request, clear errors.

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
let csrfToken = null;

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
  }
}

export function setCsrf(token) {
  csrfToken = token || null;
}

export function loginUrl() {
  const here = location.pathname + location.search;
  return "/login?next=" + encodeURIComponent(here);
}

/** FastAPI error bodies: {"detail": "text"} or {"detail": [{loc, msg}, ...]} */
export function detailText(body, status) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) {
    return d.map((e) => {
      const loc = Array.isArray(e.loc) ? e.loc.filter((p) => p !== "body" && p !== "query").join(".") : "";
      return loc ? `${loc}: ${e.msg}` : String(e.msg || e);
    }).join("; ");
  }
  return `Request failed (HTTP ${status})`;
}

function query(params) {
  if (!params) return "";
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "") continue;
    q.append(k, String(v));
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

async function readBody(res) {
  const ct = res.headers.get("content-type") || "";
  if (res.status === 204) return null;
  if (ct.includes("json")) {
    try { return await res.json(); } catch { return null; }
  }
  return await res.text();
}

/**
 * api("/api/persons", {method: "POST", json: {...}}) -> parsed JSON.
 * Throws ApiError with the server's detail; a 401 sends the browser to the login page
 * (unless opts.noRedirect).
 */
export async function api(path, opts = {}) {
  const method = (opts.method || "GET").toUpperCase();
  const headers = { Accept: "application/json" };
  let body;
  if (opts.json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(opts.json);
  } else if (opts.form) {
    body = opts.form;
  }
  if (UNSAFE.has(method) && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let res;
  try {
    res = await fetch(path + query(opts.query), { method, headers, body, credentials: "same-origin", cache: "no-store" });
  } catch (e) {
    throw new ApiError(0, "The server cannot be reached. Check the connection.");
  }
  const data = await readBody(res);
  if (res.status === 401 && !opts.noRedirect) {
    location.assign(loginUrl());
    throw new ApiError(401, "Not signed in");
  }
  if (!res.ok) throw new ApiError(res.status, detailText(data, res.status));
  return data;
}

/**
 * Multipart upload with progress (XHR: fetch has no upload progress).
 * onProgress(fraction 0..1). Resolves with the parsed JSON response.
 */
export function upload(path, form, onProgress, method = "POST") {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    xhr.withCredentials = true;
    xhr.setRequestHeader("Accept", "application/json");
    if (csrfToken) xhr.setRequestHeader("X-CSRF-Token", csrfToken);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable && onProgress) onProgress(e.loaded / e.total);
    });
    xhr.addEventListener("load", () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch { data = null; }
      if (xhr.status === 401) { location.assign(loginUrl()); reject(new ApiError(401, "Not signed in")); return; }
      if (xhr.status >= 200 && xhr.status < 300) resolve(data);
      else reject(new ApiError(xhr.status, detailText(data, xhr.status)));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "Upload failed: the server cannot be reached.")));
    xhr.addEventListener("abort", () => reject(new ApiError(0, "Upload cancelled.")));
    xhr.send(form);
  });
}

/** GET /api/auth/me -> {id, username, role, csrf_token}; also stores the CSRF token. */
export async function me(opts = {}) {
  const u = await api("/api/auth/me", opts);
  setCsrf(u.csrf_token);
  return u;
}
