#!/usr/bin/env bash
# scripts/gpu-prepare.sh — run on the dev machine before a GPU session's device call.
# Builds build-gpu (CUDA ON, sm_80 + sm_90), copies the real-data shards, the PyTorch reference
# and the shared libraries the binaries need into git-ignored folders, and prints the `carry`
# list for the call. The GPU machine (Ubuntu 24.04) has no libinih and no apt; the libraries are
# a fallback that scripts/gpu-check.sh links in only for sonames the machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh build-gpu -DTRUTHGPT_CUDA=ON -DCMAKE_BUILD_TYPE=Release
[ -e runs/demo/data/train_000000.h5 ] || scripts/demo.sh
mkdir -p gpu-data bench gpu-libs
cp runs/demo/data/*.h5 gpu-data/
[ -f ../shared/bench/torch_gpt2_bench.py ] && cp ../shared/bench/torch_gpt2_bench.py bench/
for bin in build-gpu/train/truthgpt build-gpu/tests/cuda/test_cuda_model build-gpu/tests/cuda/test_cuda_attention build-gpu/tests/cuda/test_cuda_kernels; do
    ldd "$bin" | awk '$3 ~ /^\// {print $3}'
done | sort -u | grep -v -E '/(libc|libm|libpthread|libdl|librt|libstdc\+\+|libgcc_s|libcublasLt|libcublas|libcudart|libnccl|libnvrtc[a-z-]*|libcudnn[a-z_]*)\.so' \
    | while read -r lib; do cp -L "$lib" gpu-libs/; done
du -sh build-gpu/train/truthgpt build-gpu/tests/cuda/test_cuda_model build-gpu/tests/cuda/test_cuda_attention build-gpu/tests/cuda/test_cuda_kernels gpu-data bench gpu-libs
echo 'carry: ["build-gpu/train/truthgpt", "build-gpu/tests/cuda/test_cuda_model", "build-gpu/tests/cuda/test_cuda_attention", "build-gpu/tests/cuda/test_cuda_kernels", "gpu-data", "bench", "gpu-libs"]'
