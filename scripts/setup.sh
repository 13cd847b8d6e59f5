#!/usr/bin/env bash
# Set up errprop in a virtual environment at .venv (repo root), with its test dependencies.
# Idempotent: a second run only checks. Fashion-MNIST comes from Debian's dataset-fashion-mnist
# package when apt-get can install it (as root, or with password-less sudo); otherwise the
# Fashion-MNIST parts say how to get it.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned here: on a CPU box this is the local 2.13.0 CPU build, on a GPU box the CUDA one.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
# Inception FID/IS/KID use torch-fidelity's InceptionV3 module only; --no-deps keeps its
# torchvision requirement (which would replace the pinned torch) out.
.venv/bin/python -m pip install -q --no-deps "torch-fidelity==0.4.0"

if [ ! -e /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo -n"
  if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist; } >/dev/null 2>&1; then
    echo "setup: could not install dataset-fashion-mnist (apt-get); Fashion-MNIST tests will be skipped" >&2
  fi
fi
