#!/bin/sh
# gpu_prep.sh - run HERE (with network) before asking for a GPU: fills .gpu/ (git-ignored)
# with what the device machine lacks: the lomo-optim wheel (.gpu/whl) and the stories260K
# checkpoint (.gpu/stories260K, from ../shared, which does not travel). Then, on the GPU:
#   run(command="make gpu-check", carry=[".gpu"], timeout_s=540)
set -eu
cd "$(dirname "$0")/.."
PIP=${PIP:-/root/lomo-venv/bin/pip}
mkdir -p .gpu/whl
[ -n "$(ls .gpu/whl/lomo_optim-*.whl 2>/dev/null)" ] || "$PIP" download -q --no-deps lomo-optim -d .gpu/whl
src=${LOMO_STORIES260K:-../shared/models/stories260K}
[ -d "$src" ] && { rm -rf .gpu/stories260K; cp -rL "$src" .gpu/stories260K; }
du -sh .gpu; ls .gpu .gpu/whl
