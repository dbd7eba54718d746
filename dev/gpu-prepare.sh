#!/usr/bin/env bash
# dev/gpu-prepare.sh — run on the dev machine before a GPU session's device call.
# Builds build-gpu (CUDA ON, sm_90 only: the lent GPUs are H100/H200, and one architecture halves
# the binaries), copies the real-data shards, the PyTorch reference and the shared libraries the
# binaries need into git-ignored paths, checks that the call's tree stays under the device tool's
# 64 MiB, and prints the `carry` list. The GPU machine (Ubuntu 24.04) has no libinih and no apt;
# the libraries travel as one xz archive, a fallback that dev/gpu-check.sh unpacks and links
# in only for sonames the machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh build-gpu -DTRUTHGPT_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90
[ -e runs/demo/data/train_000000.h5 ] || scripts/demo.sh
mkdir -p gpu-data bench gpu-libs gpu-tests
cp runs/demo/data/*.h5 gpu-data/
# the CUDA test programs in one carried folder (the device tool takes at most 8 carried paths;
# dev/gpu-check.sh looks for them there when the build folder did not travel)
TESTS=(test_cuda_model test_cuda_attention test_cuda_kernels test_cuda_decode test_cuda_llama test_cuda_llama_kernels
       test_cuda_muon)
for t in "${TESTS[@]}"; do cp build-gpu/tests/cuda/$t gpu-tests/; done
[ -f ../shared/bench/torch_gpt2_bench.py ] && cp ../shared/bench/torch_gpt2_bench.py bench/
[ -f ../shared/bench/torch_llama_bench.py ] && cp ../shared/bench/torch_llama_bench.py bench/
for bin in build-gpu/truthgpt gpu-tests/*; do
    ldd "$bin" | awk '$3 ~ /^\// {print $3}'
done | sort -u | grep -v -E '/(libc|libm|libpthread|libdl|librt|libstdc\+\+|libgcc_s|libcublasLt|libcublas|libcudart|libnccl|libnvrtc[a-z-]*|libcudnn[a-z_]*)\.so' \
    | while read -r lib; do cp -L "$lib" gpu-libs/; done
tar -C gpu-libs -cJf gpu-libs.tar.xz .
CARRY=(build-gpu/truthgpt gpu-tests gpu-data bench gpu-libs.tar.xz)
du -sh "${CARRY[@]}"
# What travels: the tracked and untracked-not-ignored files plus the carried paths (limit 64 MiB).
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 cat 2>/dev/null | wc -c)
carried=$(du -cb "${CARRY[@]}" | tail -1 | cut -f1)
total=$((tree + carried))
echo "travels: $((total / 1048576)) MiB (tree $((tree / 1048576)) MiB + carried $((carried / 1048576)) MiB; limit 64 MiB)"
if [ "$total" -gt $((60 * 1048576)) ]; then
    echo "gpu-prepare: over 60 MiB: the device call would be refused; carry fewer binaries" >&2
    exit 1
fi
echo "device call: command 'OUT=\$OUT bash dev/gpu-check.sh' (its output's end is the summary and the verdict), timeout_s 590,"
printf 'carry: ['; printf '"%s", ' "${CARRY[@]:0:${#CARRY[@]}-1}"; printf '"%s"]\n' "${CARRY[-1]}"
