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
# Build the U-Net's C++ GroupNorm kernel now (once per machine, into errprop's cache folder) rather
# than in the first training; without a compiler errprop warns and uses PyTorch's ops.
.venv/bin/python -c "from errprop.nets import kernels; kernels.group_norm()"

# Debian packages, each installed only when missing: Fashion-MNIST, and headless Chromium (with a
# font) that tests/browser.py drives to render the HTML report as a reader sees it.
APT_UPDATED=""
apt_install() {  # apt_install WHAT PACKAGE...: quietly, as root or with password-less sudo
  local what=$1; shift
  command -v apt-get >/dev/null 2>&1 || { echo "setup: no apt-get; $what" >&2; return 0; }
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  if [ -z "$APT_UPDATED" ]; then $sudo apt-get update -qq >/dev/null 2>&1 && APT_UPDATED=1; fi
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
    || echo "setup: could not install $* (apt-get); $what" >&2
}
[ -e /usr/share/datasets/fashion-mnist ] \
  || apt_install "Fashion-MNIST tests will be skipped" dataset-fashion-mnist
if [ -z "${ERRPROP_CHROMIUM:-}" ] && [ ! -x /usr/lib/chromium/chromium ] \
  && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  apt_install "browser tests of the HTML report will be skipped (failed under CI)" chromium fonts-dejavu-core
fi
