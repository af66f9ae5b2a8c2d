#!/usr/bin/env bash
# Refresh the Swagger UI files that /docs serves from the package (nothing is fetched
# from a CDN at run time).  Pinned: change VERSION, run this, commit the result.
set -euo pipefail
VERSION=5.35.0
here="$(cd "$(dirname "$0")/.." && pwd)"
target="$here/localhost_ai/api/docs"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "swagger-ui-dist@$VERSION" >/dev/null && tar xzf swagger-ui-dist-*.tgz)
for file in swagger-ui-bundle.js swagger-ui.css LICENSE; do
  cp "$work/package/$file" "$target/$file"
done
echo "swagger-ui-dist $VERSION" > "$target/VERSION"
