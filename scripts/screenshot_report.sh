#!/usr/bin/env bash
# Render a `dataprune prune` report in headless Chromium and save a PNG of it, to look at the page
# as a person would (Debian: apt-get install chromium).
#   scripts/screenshot_report.sh runs/prune70/report.html docs/report-screenshot.png [height]
set -euo pipefail
page="$(realpath "$1")"
out="$2"
height="${3:-2400}"
browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then
    echo "no chromium on PATH (Debian: apt-get install chromium)" >&2
    exit 2
fi
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile" \
    --window-size=1200,"$height" --screenshot="$(realpath -m "$out")" "file://$page" 2>/dev/null
echo "wrote $out"
