#!/usr/bin/env bash
# Vendor axe-core from npm into tests/browser/vendor/axe-core (test-only: the browser tests
# inject it into the pages and assert 0 violations; never served). As scripts/vendor-altcha.sh:
# committed, so CI on a fresh machine needs neither npm nor the network.
set -euo pipefail
VERSION="${1:-4.14.1}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="$ROOT/tests/browser/vendor/axe-core"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "axe-core@$VERSION" >/dev/null && tar xzf "axe-core-$VERSION.tgz")
mkdir -p "$DEST"
cp "$WORK/package/axe.min.js" "$WORK/package/LICENSE" "$DEST/"
echo "axe-core@$VERSION from npm (axe.min.js); scripts/vendor-axe.sh" > "$DEST/VERSION"
