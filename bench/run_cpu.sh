#!/bin/sh
# lomo (C, this repo) against PyTorch transformers + lomo-optim (the authors'
# package) on this CPU, interleaved: three shapes (the 25M bench shape, a long
# 1 x 2048 sequence, a ~110M GQA model with vocab 32000), PAIRS pairs each
# after a warm-up pair, the machine's own sgemm peak measured in every pair,
# then the same with a busy loop on every core. Details in bench/run_cpu.py;
# writes bench/out/cpu.json and bench/out/cpu.md.
#   PYTHON=/path/to/venv/bin/python PAIRS=5 sh bench/run_cpu.sh
# The venv needs torch, transformers and lomo-optim==0.1.1 (bench/README.md).
set -e
cd "$(dirname "$0")/.."
export PYTHON=${PYTHON:-/root/lomo-venv/bin/python}
mkdir -p bench/out
make -s build/bench_cpu
exec python3 bench/run_cpu.py
