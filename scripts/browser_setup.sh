#!/usr/bin/env bash
# Install what tests/test_browser.py needs beside the venv: Debian's chromium and chromedriver.
# Idempotent and non-interactive; does nothing when both are already there. The Python side
# (selenium, jupyterlab) comes with the dev extra (scripts/setup.sh). The test never downloads
# a browser or a driver: it drives /usr/bin/chromium through /usr/bin/chromedriver.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  echo "browser_setup: $(/usr/bin/chromium --version 2>/dev/null | tail -n 1) and chromedriver present"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "browser_setup: no apt-get here; install chromium and chromedriver (Debian: chromium" \
       "chromium-driver) so that /usr/bin/chromium and /usr/bin/chromedriver exist" >&2
  exit 1
fi

SUDO=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n)
  else
    echo "browser_setup: run as root (or with sudo) to apt-get install chromium chromium-driver" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver
echo "browser_setup: installed $(/usr/bin/chromium --version 2>/dev/null | tail -n 1)"
