#!/usr/bin/env bash
# Downloads into wheels/gpu the wheels benchmarks/gpu_check.py installs on a GPU machine without network
# (the list and why: benchmarks/gpu_wheels.txt). Python 3.12, binary wheels only, no dependencies
# (the machine has the rest).
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-.venv/bin/python -m pip}
mkdir -p wheels/gpu
grep -v '^#' benchmarks/gpu_wheels.txt | xargs $PIP download -q --no-deps --python-version 3.12 \
    --only-binary=:all: -d wheels/gpu
ls -l wheels/gpu && du -sh wheels/gpu
