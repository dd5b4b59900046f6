#!/usr/bin/env bash
# Install the Debian packages Sightline's video stack and its tests need.
#
#   ffmpeg            the ffmpeg CLI: the video tests encode fixture clips and publish RTSP/MJPEG with it
#                     (decoding in Sightline itself uses PyAV, which bundles its own FFmpeg libraries)
#   rtsp-server-perl  /usr/bin/rtsp-server.pl, a small RTSP relay the RTSP capture tests publish into
#   chromium          /usr/bin/chromium, the real browser the console's end-to-end tests drive with Playwright
#   mosquitto         an MQTT broker the notification tests deliver alerts to
#
# Idempotent: packages already installed are skipped, and when nothing is missing apt is not run.
# Works as root (CI containers) or through sudo when run by another user.
set -euo pipefail

PACKAGES=(ffmpeg rtsp-server-perl chromium mosquitto)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        echo "install-system-deps: $pkg already installed, skipping"
    else
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install-system-deps: nothing to install"
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
else
    echo "install-system-deps: need root or sudo to install: ${missing[*]}" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-system-deps: apt-get update"
"${SUDO[@]}" apt-get update
echo "install-system-deps: apt-get install -y --no-install-recommends ${missing[*]}"
"${SUDO[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-system-deps: done"
