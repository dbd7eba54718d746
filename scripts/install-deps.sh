#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages truthgpt needs to build, test and run the demo, and, where
# nvcc exists, NVIDIA's header-only cudnn-frontend (PyPI wheel nvidia-cudnn-frontend, headers
# unpacked into .deps/cudnn-frontend; used by model/cuda/cudnn_attention.cpp).
# Skips apt-get entirely when everything is already there. Usage: scripts/install-deps.sh [--slurm]
set -euo pipefail
cd "$(dirname "$0")/.."
CUDNN_FE_VERSION=1.32.0
pkgs=(build-essential cmake pkg-config python3 libhdf5-dev hdf5-tools libzstd-dev
      libopenmpi-dev openmpi-bin libpcre2-dev libsleef-dev libjansson-dev fortunes fortunes-min
      python3-h5py libprotobuf-c-dev protobuf-c-compiler
      clang libclang-rt-14-dev iproute2)
have_nvcc=0
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then have_nvcc=1; fi
need_fe=0
if [ $have_nvcc = 1 ] && [ ! -f .deps/cudnn-frontend/include/cudnn_frontend.h ]; then
    need_fe=1
    pkgs+=(python3-pip)
fi
[ "${1:-}" = "--slurm" ] && pkgs+=(slurm-wlm munge)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO=sudo
    echo "installing: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ $need_fe = 1 ]; then
    echo "fetching cudnn-frontend $CUDNN_FE_VERSION headers (PyPI: nvidia-cudnn-frontend) into .deps/"
    rm -rf .deps/wheels .deps/cudnn-frontend
    mkdir -p .deps/wheels
    # Headers only: any one wheel of the version will do, so pin the platform for a stable pick.
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux_2_28_x86_64 -d .deps/wheels "nvidia-cudnn-frontend==$CUDNN_FE_VERSION"
    python3 - <<'PY'
import glob, zipfile
whl = glob.glob(".deps/wheels/nvidia_cudnn_frontend-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    z.extractall(".deps/cudnn-frontend", [n for n in z.namelist() if n.startswith("include/")])
PY
    rm -rf .deps/wheels
fi
