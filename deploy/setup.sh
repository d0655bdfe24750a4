#!/usr/bin/env bash
# Installs what adoption-pulse needs on a Debian/Ubuntu machine; safe to run again (skips what is there).
#   Debian packages: Java 17 + Maven (to fetch and run the Kafka broker), Prometheus + Alertmanager,
#   Chromium + poppler-utils (the report's PDF and its browser tests) and a monospace font with Vietnamese.
#   Python: this package with its test extras.  Kafka: broker jars from Maven Central, cached.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
  echo "need root to install Debian packages: $*" >&2; return 1; fi; }

missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v promtool >/dev/null || missing+=(prometheus)
{ command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null; } || missing+=(prometheus-alertmanager)
command -v chromium >/dev/null || missing+=(chromium)
command -v pdftoppm >/dev/null || missing+=(poppler-utils)
[ -d /usr/share/fonts/truetype/jetbrains-mono ] || missing+=(fonts-jetbrains-mono)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian prometheus package starts a system service on install; ours run on the same ports.
for unit in prometheus prometheus-alertmanager; do
  if pgrep -f "^/usr/bin/$unit" >/dev/null 2>&1 && ! pgrep -f "$unit.*\.pulse" >/dev/null 2>&1; then
    (command -v systemctl >/dev/null && as_root systemctl stop "$unit" 2>/dev/null) || as_root pkill -f "^/usr/bin/$unit" || true
  fi
done

echo "== installing Python packages"
"$PYTHON" -m pip install -q --disable-pip-version-check -e ".[test]"

echo "== fetching Kafka broker jars (cached)"
"$PYTHON" -m pulse.cli infra fetch
