#!/usr/bin/env bash
# Makes sure Debian's headless Chromium is installed for the browser tests (tests/browser), which drive
# it through Playwright; Playwright's own browser download (`playwright install`) is never used.
# Installs `chromium` and `chromium-driver` with apt-get, as root or through sudo; when neither is
# possible it says so in one line and fails, so `make test` never skips the browser tests quietly.
set -euo pipefail

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
PACKAGES=(chromium chromium-driver)

[ -x "$CHROMIUM" ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  as_root=(env)
elif command -v sudo >/dev/null && { sudo -n true 2>/dev/null || [ -t 0 ]; }; then  # no password, or a person to type it
  as_root=(sudo env)
else
  echo "make test needs $CHROMIUM for the browser tests: run 'sudo apt-get install ${PACKAGES[*]}' (Debian), then make test again" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "make test needs $CHROMIUM for the browser tests, and this is not a Debian system: install Debian's ${PACKAGES[*]} or equivalent at $CHROMIUM" >&2
  exit 1
fi

echo "installing ${PACKAGES[*]} for the browser tests (apt-get)"
"${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PACKAGES[@]}"
if [ ! -x "$CHROMIUM" ]; then
  echo "apt-get installed ${PACKAGES[*]} but $CHROMIUM is still missing" >&2
  exit 1
fi
