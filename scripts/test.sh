#!/usr/bin/env bash
# The README's test command: set up .venv if needed, lint, run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Debian chromium + chromedriver for the browser test: required on CI, best effort elsewhere
# (without them tests/test_browser.py skips outside CI)
if ! bash scripts/browser_setup.sh; then
  if [ -n "${CI:-}" ]; then exit 1; fi
  echo "test.sh: no browser; tests/test_browser.py will be skipped" >&2
fi
.venv/bin/ruff check facelab tests notebooks
# two workers (CI has 2 cores), each test file whole on one worker (its module fixtures: one
# Ray, one workspace); FACELAB_TEST_WORKERS=0 runs everything in this process
.venv/bin/python -m pytest -q -n "${FACELAB_TEST_WORKERS:-2}" --dist loadfile "$@"
