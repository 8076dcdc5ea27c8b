#!/usr/bin/env bash
# The README's main job: the whole workbench on a fresh machine, no model download.
# The demo library goes into ./data, the workspace every command and notebook opens by
# default: real photos that ship inside installed packages (copied to data/photos/ with a few
# augmented copies, so each person appears several times) and, when lfw-dev is beside the
# checkout, some of its photos, all detected with dlib (offline); plus synthetic dlib-like
# identities (no photo: grey tiles). Then the notebook pipeline (detect -> dual clustering ->
# centroid trimming -> threshold tuning -> training) runs on it, writing executed notebooks +
# HTML under reports/demo/. Label the result in notebooks/06_labeling.ipynb, or with
# `facelab clusters` / `facelab label CLUSTER NAME`.
# Extra arguments go to `facelab demo` (e.g. -w DIR, --photos DIR, --people 50).
# DEMO_LFW= bash scripts/demo.sh leaves lfw-dev out even when ../shared has it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
args=("$@")
LFW=${DEMO_LFW-../shared/data/lfw-dev/images}
ws=${FACELAB_WORKSPACE:-data}
photos_given=0
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --photos|--photos=*) photos_given=1 ;;
    -w|--workspace) ws=${args[i + 1]:-$ws} ;;
    --workspace=*) ws=${args[i]#*=} ;;
  esac
done
if [ "$photos_given" -eq 0 ] && [ -n "$LFW" ] && [ -d "$LFW" ]; then
  args+=(--photos "$LFW" --limit 200)
fi
.venv/bin/facelab demo "${args[@]}"
.venv/bin/facelab doctor --workspace "$ws"
