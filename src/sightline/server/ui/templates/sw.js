/* Sightline service worker: caches the app shell only (static CSS/JS/icons, the offline page and the
   manifest). API responses, WebSocket traffic, face images and HTML pages are never cached; a page that
   cannot be loaded (no network) is answered with the cached offline page. */
const VERSION = {{ version|tojson }};
const CACHE = "sightline-shell-" + VERSION;
const SHELL = {{ shell|tojson }};

function isShell(url) {
  return url.origin === self.location.origin &&
    (url.pathname.startsWith("/static/") || url.pathname === "/manifest.webmanifest" || url.pathname === "/offline");
}

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("sightline-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim())
  );
});

self.addEventListener("fetch", (event) => {
  const req = event.request;
  if (req.method !== "GET") return;
  const url = new URL(req.url);
  if (req.mode === "navigate") {
    event.respondWith(fetch(req).catch(() => caches.match("/offline")));
    return;
  }
  if (!isShell(url)) return; /* network only: /api/*, pages, crops, snapshots */
  event.respondWith(
    caches.open(CACHE).then((cache) =>
      cache.match(req, { ignoreSearch: true }).then((hit) => {
        const fresh = fetch(req).then((res) => {
          if (res.ok && res.type === "basic") cache.put(url.pathname, res.clone());
          return res;
        });
        if (hit) { fresh.catch(() => undefined); return hit; }
        return fresh;
      })
    )
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(
    self.clients.matchAll({ type: "window" }).then((wins) => {
      for (const w of wins) { if ("focus" in w) return w.focus(); }
      return self.clients.openWindow("/");
    })
  );
});
