#!/usr/bin/env bash
# The README's test command: set up .venv if needed, lint, run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check facelab tests
.venv/bin/python -m pytest -q "$@"
