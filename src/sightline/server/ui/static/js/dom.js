// DOM helpers: build elements with text nodes only (never innerHTML with data).

/** h("a", {href: "/x", class: "btn", onclick: fn}, "text", child) -> HTMLElement */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = String(v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "href" || k === "src") el.setAttribute(k, safeUrl(v));
    else if (typeof v === "boolean") el.toggleAttribute(k, v);
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** Only same-origin paths and blob: previews; anything else (javascript:, other hosts) becomes "#". */
export function safeUrl(u) {
  const s = String(u ?? "");
  if (s.startsWith("blob:")) return s;
  if (s.startsWith("/") && !s.startsWith("//") && !s.includes("\\")) return s;
  return "#";
}

export function icon(id, cls = "icon") {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", cls);
  svg.setAttribute("aria-hidden", "true");
  const use = document.createElementNS(ns, "use");
  use.setAttribute("href", "#" + id);
  svg.append(use);
  return svg;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function $(sel, root = document) {
  return root.querySelector(sel);
}

export function $$(sel, root = document) {
  return Array.from(root.querySelectorAll(sel));
}

const dateFmt = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit",
  hourCycle: "h23",
});

/** epoch seconds -> local date and time */
export function fmtTime(ts) {
  if (ts === null || ts === undefined || !Number.isFinite(Number(ts))) return "—";
  return dateFmt.format(new Date(Number(ts) * 1000));
}

/** epoch seconds -> "12 s ago", "5 min ago", ... */
export function fmtAgo(ts) {
  const d = Date.now() / 1000 - Number(ts);
  if (!Number.isFinite(d)) return "";
  if (d < 5) return "just now";
  if (d < 60) return `${Math.round(d)} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  return `${Math.round(d / 86400)} d ago`;
}

/** an estimated false-match rate -> "1 in 12,000" */
export function fmtFmr(fmr) {
  const f = Number(fmr);
  if (!Number.isFinite(f) || f <= 0) return "below measurable";
  if (f >= 0.5) return "very likely chance";
  const n = 1 / f;
  const r = n >= 1000 ? Math.round(n / 100) * 100 : Math.round(n);
  return `1 in ${r.toLocaleString("en-US")}`;
}

export function fmtNum(x, digits = 2) {
  const n = Number(x);
  return Number.isFinite(n) ? n.toFixed(digits) : "—";
}

/** a datetime-local input value -> epoch seconds, or undefined when empty */
export function inputToEpoch(value) {
  if (!value) return undefined;
  const t = new Date(value).getTime();
  return Number.isFinite(t) ? t / 1000 : undefined;
}
