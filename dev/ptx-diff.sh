#!/usr/bin/env bash
# dev/ptx-diff.sh BUILD_BEFORE BUILD_AFTER — shows that a change left the CUDA kernels alone: dumps
# the PTX and SASS of every object of tg_model_cuda in two CUDA builds (scripts/build.sh DIR
# -DTRUTHGPT_CUDA=ON) and compares them per object. Left out of the comparison: line info (.loc,
# .file) and the DWARF sections, whose internal symbol names carry a hash of the translation unit
# (any header edit changes it), and the SASS listing's addresses. Needs cuobjdump and nvdisasm on
# PATH (the CUDA toolkit's, or `pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm`, whose
# binaries land in site-packages/nvidia/cu13/bin). Exit 1 when any object's kernels differ.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BUILD_BEFORE BUILD_AFTER" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
dump() { # dump BUILD DIR
    mkdir -p "$2"
    for o in "$1"/model/CMakeFiles/tg_model_cuda.dir/cuda/*.cu.o; do
        b=$(basename "$o" .o)
        cuobjdump -ptx "$o" | grep -v '^\s*\.loc\|^\s*\.file\|^identifier' |
            python3 -c 'import re, sys; sys.stdout.write(re.sub(r"\.section\s+\.debug_\w+\s*\{.*?\n\s*\}", "", sys.stdin.read(), flags=re.S))' \
            > "$2/$b.ptx"
        cuobjdump -sass "$o" | grep -v '^identifier' | sed 's@/\*[0-9a-f]*\*/@@g' > "$2/$b.sass"
    done
}
dump "$1" "$out/before"
dump "$2" "$out/after"
rc=0
for f in "$out"/before/*; do
    b=$(basename "$f")
    if [ ! -e "$out/after/$b" ]; then echo "gone       $b"; rc=1
    elif cmp -s "$f" "$out/after/$b"; then echo "identical  $b ($(grep -c '\.entry\|Function :' "$f") kernels)"
    else echo "DIFFERS    $b"; diff "$f" "$out/after/$b" | head -20; rc=1; fi
done
for f in "$out"/after/*; do
    b=$(basename "$f")
    [ -e "$out/before/$b" ] || echo "new        $b ($(grep -c '\.entry\|Function :' "$f") kernels)"
done
exit $rc
