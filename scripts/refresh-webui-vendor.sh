#!/usr/bin/env bash
# Refresh the libraries the web page (localhost_ai/webui) ships in the package: nothing is
# fetched from a CDN at run time.  Pinned: change a version here, run this, commit the result.
# Each tarball is checked against the integrity npm's registry publishes before it is used,
# and SHA256SUMS records what was shipped (tests/webui/test_vendor.py checks it).
set -euo pipefail
PACKAGES=(
  "@alpinejs/csp@3.17.4 dist/cdn.min.js alpine-csp.min.js"  # Alpine's build for a strict CSP: no eval
  "marked@18.3.0 lib/marked.umd.js marked.umd.js"
  "dompurify@3.5.0 dist/purify.min.js purify.min.js"
)
here="$(cd "$(dirname "$0")/.." && pwd)"
target="$here/localhost_ai/webui/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$target"
: > "$work/VERSIONS"
for entry in "${PACKAGES[@]}"; do
  read -r spec source name <<< "$entry"
  rm -rf "$work/package" "$work"/*.tgz
  (cd "$work" && npm pack --silent "$spec" >/dev/null)
  tarball="$(ls "$work"/*.tgz)"
  expected="$(npm view "$spec" dist.integrity)"
  actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  [ "$expected" = "$actual" ] || { echo "$spec: integrity $actual, registry says $expected" >&2; exit 1; }
  tar xzf "$tarball" -C "$work"
  # The source-map comment would send DevTools after a file that is not shipped.
  sed '/^\/\/# sourceMappingURL=/d; s|//# sourceMappingURL=[^ ]*$||' "$work/package/$source" > "$target/$name"
  license="$(ls "$work"/package/LICENSE* 2>/dev/null | head -n1 || true)"
  if [ -n "$license" ]; then
    cp "$license" "$target/${name%%.*}.LICENSE"
  else  # Alpine's tarballs carry no LICENSE file; package.json says MIT
    printf '%s is MIT-licensed (package.json: "license": "%s"), Copyright (c) Caleb Porzio and contributors.\n' \
      "$spec" "$(node -p "require('$work/package/package.json').license")" > "$target/${name%%.*}.LICENSE"
  fi
  echo "$spec $actual" >> "$work/VERSIONS"
done
cp "$work/VERSIONS" "$target/VERSIONS"
(cd "$target" && sha256sum -- *.js > SHA256SUMS)
