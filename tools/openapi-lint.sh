#!/usr/bin/env bash
# Makes sure the OpenAPI linters the contract tests run (tests/contract/test_openapi_lint.py) are
# installed: Redocly CLI and Spectral from the npm registry, at the versions pinned in
# tools/openapi-lint/package-lock.json, into build/openapi-lint. Installs once (again only when the
# lock changes); when that is impossible it says so in one line and fails, so `make test` never
# skips the lint quietly.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SOURCE="$ROOT/tools/openapi-lint"
TARGET="$ROOT/build/openapi-lint"
STAMP="$TARGET/.installed"

if [ -f "$STAMP" ] && cmp -s "$SOURCE/package-lock.json" "$STAMP" \
  && [ -x "$TARGET/node_modules/.bin/redocly" ] && [ -x "$TARGET/node_modules/.bin/spectral" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "make test needs npm (Node.js 20 or later) to install the OpenAPI linters: install Node.js, then make test again" >&2
  exit 1
fi

echo "installing the OpenAPI linters (redocly, spectral) from the npm registry into build/openapi-lint"
mkdir -p "$TARGET"
cp "$SOURCE/package.json" "$SOURCE/package-lock.json" "$TARGET/"
if ! (cd "$TARGET" && npm ci --no-audit --no-fund --loglevel=error >/dev/null); then
  echo "npm could not install the OpenAPI linters pinned in tools/openapi-lint/package-lock.json (is the npm registry reachable?)" >&2
  exit 1
fi
cp "$SOURCE/package-lock.json" "$STAMP"
