# dev/tests/gpu_decide.sh — dev/gpu-decide.py, the decision rule over a gpu-check call's
# step logs, on made-up logs: a faster row is a candidate, a slower one is not, profiled rows are
# held against the profiled default, a failed or missing gate is said, the PyTorch ratio is right.
source "$(dirname "$0")/../../tests/train/lib.sh"
D="$TMP/steps"
mkdir -p "$D"
bench_log() { # bench_log NAME MS [EXIT]
    printf 'truthgpt bench: ...\nms/step    tokens/s     TFLOP/s    MFU      alloc GB   device GB\n%s     565.0K       486.0      49.1%%    24.91      25.49\n--> exit %s\n' \
        "$2" "${3:-0}" > "$D/$1.log"
}
bench_log bench 115.90
bench_log ab-default 114.40
bench_log bench-prof 114.00
bench_log ab-resid 113.90
bench_log ab-bgrad 114.90
bench_log ab-xent-prof 113.50
bench_log ab-lnsmem-prof 114.20
printf 'cuda: died\n--> exit 1\n' > "$D/ab-wgrad.log"
printf '{"ms_per_step_median": 126.06, "tokens_per_s": 519900}\n--> exit 0\n' > "$D/torch.log"
printf 'all passed\n--> exit 0\n' > "$D/test.log"
printf 'all passed\n--> exit 0\n' > "$D/kernels.log"
printf '300 steps\n--> exit 0\n' > "$D/curve.log"

python3 "$SRC/dev/gpu-decide.py" "$D" > "$TMP/out.txt"
cat "$TMP/out.txt"
check "gates passed" grep -q "test passed, kernels passed, curve passed" "$TMP/out.txt"
check "faster row is a candidate" grep -Eq "ab-resid +113.90 ms .*candidate$" "$TMP/out.txt"
check "slower row is not" grep -Eq "ab-bgrad +114.90 ms .*not faster" "$TMP/out.txt"
check "profiled row against the profiled default" grep -Eq "ab-xent-prof +113.50 ms +default 114.00 .*candidate" "$TMP/out.txt"
check "profiled row slower than the profiled default" grep -Eq "ab-lnsmem-prof .*not faster" "$TMP/out.txt"
check "a row without a time says its exit" grep -Eq "ab-wgrad +no ms/step \(exit 1\)" "$TMP/out.txt"
check "timing table: a bench row" grep -Eq "^  ab-resid +113.90 +565.0K" "$TMP/out.txt"
check "timing table: the PyTorch line" grep -q '^  torch .*"ms_per_step_median": 126.06, "tokens_per_s": 519900' "$TMP/out.txt"
check "ratio to PyTorch against the faster default" grep -q "126.06 ms/step: default truthgpt 114.40 ms = 1.102x" "$TMP/out.txt"

# a failed gate and a cut-off one are said, and the candidate is qualified
printf 'FAIL\n--> exit 1\n' > "$D/kernels.log"
printf 'half a curve\n' > "$D/curve.log"
python3 "$SRC/dev/gpu-decide.py" "$D" > "$TMP/out2.txt"
check "failed gate named" grep -q "kernels FAILED (exit 1), curve not run or cut off" "$TMP/out2.txt"
check "candidate qualified" grep -Eq "ab-resid .*candidate \(but a gate did not pass\)" "$TMP/out2.txt"
check "no folder is an error" bash -c "! python3 '$SRC/dev/gpu-decide.py' '$TMP/none' 2>/dev/null"
# the call's archive as fetched (gpu-check.sh packs the step logs: at most 8 files come back)
# logs ending within one second, in reverse name order by nanoseconds: tar keeps whole seconds
i=0; for f in $(ls -r "$D"); do touch -d "2026-11-26 12:00:00.$((100 + i))" "$D/$f"; i=$((i + 1)); done
python3 "$SRC/dev/gpu-decide.py" "$D" > "$TMP/out2.txt"
tar -C "$D" -czf "$TMP/steps.tgz" .
python3 "$SRC/dev/gpu-decide.py" "$TMP/steps.tgz" > "$TMP/out3.txt"
check "an archive gives the same report as its folder" cmp "$TMP/out2.txt" "$TMP/out3.txt"
printf 'not a tar' > "$TMP/bad.tgz"
check "a file that is not an archive is an error" bash -c "! python3 '$SRC/dev/gpu-decide.py' '$TMP/bad.tgz' 2>/dev/null"
finish
