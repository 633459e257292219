#!/usr/bin/env bash
# Rebuild server/static/vendor/ (what the pages import and WebCrypto lacks: ML-KEM-768, X25519,
# SHA3-256, HKDF) from the exact versions pinned in scripts/js/package-lock.json: `npm ci` in a
# scratch folder, one esbuild ESM bundle of scripts/js/entry.js, and the libraries' licences.
# Reproducible: the same lock file gives the same bytes (check with `git diff server/static/vendor`).
# Needs node and npm (the npm registry); nothing is built when the registry serves the pages.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/server/static/vendor"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$root/scripts/js/package.json" "$root/scripts/js/package-lock.json" "$root/scripts/js/entry.js" "$work/"
cd "$work"
npm ci --no-audit --no-fund --loglevel=error
mkdir -p "$out"
./node_modules/.bin/esbuild entry.js --bundle --format=esm --target=es2022 --charset=utf8 \
    --legal-comments=inline --log-level=warning --outfile="$out/noble.js"
for lib in post-quantum curves hashes; do
    cp "node_modules/@noble/$lib/LICENSE" "$out/LICENSE.noble-$lib"
done
{
    echo "noble.js: esbuild $(./node_modules/.bin/esbuild --version) bundle of scripts/js/entry.js"
    for lib in post-quantum curves hashes; do
        echo "@noble/$lib $(node -p "require('./node_modules/@noble/$lib/package.json').version")"
    done
} >"$out/VERSIONS"
