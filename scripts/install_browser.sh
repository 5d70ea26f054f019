#!/usr/bin/env bash
# Debian's chromium + chromium-driver for the real-browser UI tests (tests/ui). Nothing downloads a
# browser at run time: these two packages are the browser. Skips the install when both are there.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: need root and apt-get to install chromium + chromium-driver (the UI tests use them)" >&2
  exit 1
fi
echo "install_browser: installing Debian chromium + chromium-driver" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
