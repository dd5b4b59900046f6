// Alert sound (a short two-tone beep made with WebAudio: no audio file) and system notifications.

const PREF = "sightline.alerts.sound";
let audio = null;

export function soundWanted() {
  try { return localStorage.getItem(PREF) === "on"; } catch { return false; }
}

function remember(on) {
  try { localStorage.setItem(PREF, on ? "on" : "off"); } catch { /* private mode */ }
}

/** Must run from a user gesture (browsers keep audio suspended until then). Starts the audio and asks
 * for notification permission; returns a Promise of the permission ("granted", "denied", "default",
 * "unsupported") that may settle late (the user answers the prompt when they like). */
export function enableAlerts() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (Ctx && !audio) audio = new Ctx();
  if (audio && audio.state === "suspended") audio.resume().catch(() => undefined);
  remember(true);
  if (!("Notification" in window)) return Promise.resolve("unsupported");
  if (Notification.permission !== "default") return Promise.resolve(Notification.permission);
  return Notification.requestPermission();
}

export function disableAlerts() {
  remember(false);
  if (audio) { audio.close().catch(() => undefined); audio = null; }
}

export function alertsEnabled() {
  return audio !== null;
}

/** After a reload the preference survives but audio needs a gesture: resume on the first tap. */
export function resumeOnGesture(onResumed) {
  if (!soundWanted()) return;
  const go = () => {
    document.removeEventListener("pointerdown", go);
    document.removeEventListener("keydown", go);
    enableAlerts().catch(() => undefined);
    onResumed();
  };
  document.addEventListener("pointerdown", go);
  document.addEventListener("keydown", go);
}

export function beep() {
  if (!audio || audio.state !== "running") return;
  const t0 = audio.currentTime;
  for (const [i, freq] of [[0, 880], [1, 1320]]) {
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    const start = t0 + i * 0.18;
    osc.type = "sine";
    osc.frequency.setValueAtTime(freq, start);
    gain.gain.setValueAtTime(0.0001, start);
    gain.gain.exponentialRampToValueAtTime(0.25, start + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.16);
    osc.connect(gain).connect(audio.destination);
    osc.start(start);
    osc.stop(start + 0.17);
  }
}

/** A system notification (through the service worker where there is one: required on Android). */
export async function notify(title, body, tag) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const opts = { body, tag, icon: "/static/icons/icon-192.png", badge: "/static/icons/icon-192.png", renotify: true };
  try {
    const reg = "serviceWorker" in navigator ? await navigator.serviceWorker.getRegistration() : null;
    if (reg) { await reg.showNotification(title, opts); return; }
    new Notification(title, opts);
  } catch {
    /* notifications are a convenience; the feed and the beep still work */
  }
}
