// Small pieces shared by several pages.

import { api } from "./api.js";
import { h } from "./dom.js";

/** sessionStorage key: the reason given when a person was created, offered again for their photos. */
export const REASON_KEY = "sightline.enroll.reason";

/** Append an <option value=name data-id=id> per watchlist to each select; returns the watchlists. */
export async function fillWatchlists(...selects) {
  const list = await api("/api/watchlists");
  const items = Array.isArray(list) ? list : [];
  for (const sel of selects) {
    for (const wl of items) sel.append(h("option", { value: wl.name, dataset: { id: String(wl.id) } }, wl.name));
  }
  return items;
}

/** Wire a drop zone (and its hidden file input) to onFiles(File[]). */
export function dropZone(zone, input, onFiles) {
  const pick = () => input.click();
  zone.addEventListener("click", pick);
  zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
  input.addEventListener("click", (e) => e.stopPropagation());
  input.addEventListener("change", () => { if (input.files.length) onFiles(Array.from(input.files)); input.value = ""; });
  for (const ev of ["dragenter", "dragover"]) {
    zone.addEventListener(ev, (e) => { e.preventDefault(); zone.classList.add("over"); });
  }
  for (const ev of ["dragleave", "dragend"]) zone.addEventListener(ev, () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    const files = Array.from((e.dataTransfer && e.dataTransfer.files) || []).filter((f) => !f.type || f.type.startsWith("image/"));
    if (files.length) onFiles(files);
  });
}
