#!/usr/bin/env bash
# Vendor the ALTCHA widget from npm into static/vendor/altcha (no CDN: the pages' CSP is 'self').
# The "external" build: no inline styles or workers, so it runs under script-src/style-src 'self';
# only the PBKDF2 worker is needed (services/captcha/pow.py issues PBKDF2/SHA-256 challenges).
set -euo pipefail
VERSION="${1:-3.2.2}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/static/vendor/altcha"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "altcha@$VERSION" >/dev/null && tar xzf "altcha-$VERSION.tgz")
mkdir -p "$DEST/workers"
cp "$WORK/package/dist/external/altcha.min.js" "$WORK/package/dist/external/altcha.css" "$DEST/"
cp "$WORK/package/dist/workers/pbkdf2.js" "$DEST/workers/"
cp "$WORK/package/LICENSE.txt" "$DEST/"
echo "altcha@$VERSION from npm (dist/external, workers/pbkdf2.js); scripts/vendor-altcha.sh" > "$DEST/VERSION"
