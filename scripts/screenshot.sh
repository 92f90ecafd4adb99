#!/usr/bin/env bash
# Screenshot of a local HTML page with headless Chromium (scripts/install-deps.sh
# --perf-report installs it): screenshot.sh page.html out.png [width]
# The height comes from the page's <meta name="fastdit-page-height"> when it has one.
# Nothing is fetched: the browser runs with a fresh profile and its network features off.
set -euo pipefail
page=$(realpath "$1")
png=$(realpath -m "$2")
width=${3:-1280}
chromium=$(command -v chromium || command -v chromium-browser) || { echo "chromium is not installed" >&2; exit 2; }
height=$(sed -n 's/.*name="fastdit-page-height" content="\([0-9]*\)".*/\1/p' "$page" | head -1)
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# Chromium logs D-Bus noise on machines without a session bus: kept, shown only on failure.
mkdir -p "$(dirname "$png")"
"$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile" \
  --screenshot="$png" --window-size="$width,${height:-900}" "file://$page" >"$profile/log" 2>&1 \
  || { cat "$profile/log" >&2; exit 1; }
[[ -s $png ]] || { cat "$profile/log" >&2; echo "no screenshot written" >&2; exit 1; }
