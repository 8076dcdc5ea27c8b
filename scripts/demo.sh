#!/usr/bin/env bash
# The README's main job on the embedded default: every lfw-dev photo through the dlib model
# into ./data (resumable: run it again and it picks up where it stopped).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PHOTOS=${1:-../shared/data/lfw-dev/images}
.venv/bin/facelab run "$PHOTOS" --model dlib
.venv/bin/facelab doctor
