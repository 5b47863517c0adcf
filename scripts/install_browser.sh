#!/usr/bin/env bash
# Install the browser the explorer's page test drives (tests/test_explore.py): Debian's chromium and its
# chromium-driver, where this machine allows it. Nothing is downloaded at test time; elsewhere install a
# chromium and a matching chromedriver on PATH yourself (the test is skipped without them, and fails in CI).
set -euo pipefail

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "chromium: found $(command -v chromium) and $(command -v chromedriver)"
elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "chromium: installing Debian's chromium and chromium-driver"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium chromium-driver
else
  echo "chromium: not installed and apt-get is not usable here (needs root on Debian/Ubuntu);"
  echo "  the explorer's browser test will be skipped."
fi
