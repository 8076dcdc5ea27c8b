#!/usr/bin/env bash
# The README's main job: the whole workbench on a fresh machine, no model download.
# A synthetic library (dlib-like identities) plus, when lfw-dev is beside the checkout, the
# faces of some of its photos (dlib, offline) go into ./data/demo; then the notebook pipeline
# (detect -> dual clustering -> centroid trimming -> threshold tuning -> training) runs on it,
# writing executed notebooks + HTML under reports/demo/. Label the result in
# notebooks/06_labeling.ipynb. Extra arguments go to `facelab demo` (e.g. --photos DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
args=("$@")
LFW=../shared/data/lfw-dev/images
if [ ${#args[@]} -eq 0 ] && [ -d "$LFW" ]; then
  args=(--photos "$LFW" --limit 200)
fi
.venv/bin/facelab demo "${args[@]}"
.venv/bin/facelab doctor --workspace data/demo
