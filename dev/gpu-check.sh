#!/usr/bin/env bash
# dev/gpu-check.sh — the one prepared check for a session that has a GPU.
#
#   here:  dev/gpu-prepare.sh          (builds build-gpu for sm_90, copies data, the PyTorch reference, libs)
#   run:   command "OUT=$OUT bash dev/gpu-check.sh", timeout_s 590, carry the list gpu-prepare.sh prints
#
# Steps (GPU_STEPS, space-separated), in the order they run: what a call cut off by its time
# limit must still bring back comes first (each step's log is packed into $OUT/steps.tgz as it ends):
#   test      test_cuda_model: every gradient against the CPU reference (fp32 / bf16 / recompute /
#             no-fusion / each attention implementation / tuning), the grad-ready hook's timing
#   kernels   test_cuda_kernels: the cross-entropy and LayerNorm backward kernels against
#             double-precision host references, each timed at GPT-2 124M's shapes
#   decode    test_cuda_decode: the KV-cache decoder (GPT-2; Llama GQA / MQA / MHA, tied / untied,
#             Llama 3 RoPE) against the full forward, the CPU decoder and full-recompute greedy
#             sampling; then dev/gpu-decode.sh: tokens/s of `truthgpt sample`
#             on GPT-2 124M at batch 1 (KV cache, 1000 tokens; and --no-cache) (~40 s: most of it
#             the checkpoint's one CPU training step)
#   llama     model.arch=llama on CUDA: test_cuda_llama_kernels (RMSNorm, RoPE re-layout, SwiGLU
#             against the CPU reference kernels) and test_cuda_llama (the backend against the CPU
#             backend: GQA / MQA / MHA, tied / untied, fp32 and bf16 with each attention)
#   muon      train.optimizer=muon on CUDA: test_cuda_muon (Muon's three phases on GPT-2 and Llama
#             against the CPU backends: bitwise momentum, Newton-Schulz within 5e-4, singular
#             values in the quintic's band, owner ranges) and tests/cuda/muon.sh (the trainer:
#             fp32 within 1% of the CPU, bitwise fp32/bf16 resume, ZeRO-1, Llama, 2 ranks on the GPU)
#   bench     truthgpt bench, GPT-2 124M, B=64, T=1024: default and the per-phase profile
#   torch     the PyTorch torch.compile reference, same shape (bench and torch log the SM clock and
#             power they ran at)
#   ceiling   dev/gpu-ceiling.py: the step's matmuls through cuBLAS, attention through each of
#             PyTorch's SDPA backends and the copy bandwidth, each under sustained load, summed
#             into the fastest step these libraries allow
#   variants  (not in the default list) 124M with flash attention, recompute 1 and 2, cuDNN with
#             atomics and the cuBLASLt attention: all measured on 2026-11-26 (docs/performance.md)
#   ab        the opt-in switches against the default: cuda.cublaslt_tune=1, cuda.cudnn_tune=1 (profiled),
#             both, the torch venv's newer cuDNN and cuBLAS, then the default again (six more
#             switches were measured on 2026-11-26, none faster, and removed: docs/performance.md)
#   curve     tests/cuda/curve.sh: 300 steps of tiny on real data, GPU vs CPU within 2%, and the
#             opt-in switches at once within the same 2% (TG_CURVE_EXTRA="flash naive" adds
#             diagnostic runs)
#   llamacurve  tests/cuda/llama_curve.sh: 300 steps of llama-tiny, GPU fp32 within 2% of the CPU,
#             bf16 within 5% (no bf16 CPU reference for Llama)
#   attn      test_cuda_attention: flash and cuDNN attention against the fp32 cuBLASLt attention,
#             cuDNN's grouped-query attention (Llama) against the flash kernels, timed (needed for
#             cuda.cudnn_tune)
#   resume    tests/cuda/resume.sh: one-rank NCCL training through the trainer (ZeRO 0 and 1), bitwise
#             bf16 resume, also with tuned cuBLASLt algorithms (needed for cuda.cublaslt_tune)
#   comm      (not in the default list) truthgpt bench comm --device cuda: the NCCL collectives
#             table (one rank)
#   bench350 / torch350   (not in the default list; measured 2026-11-26) the same for GPT-2 350M
#             at B=$B350 (default 32)
#   llamabench / llamatorch   (not in the default list) truthgpt bench at the smollm-135m shape
#             (B=16, T=2048) against bench/torch_llama_bench.py (torch.compile) at the same shape
#   fastest   (not in the default list) 124M with cuDNN's non-deterministic backward and tuned plans
#   ncu       Nsight Compute over every kernel of one bench step (time, DRAM bytes and % of peak,
#             SM % of peak), summarised per kernel by dev/ncu-summary.py; $OUT/step.ncu-rep
#   sanitize  last: the failing test(s) under compute-sanitizer memcheck (only after a failure)
#   racecheck (not in the default list) test_cuda_kernels' correctness cases under
#             compute-sanitizer racecheck: shared-memory hazards in the row kernels' block
#             reductions, which right answers alone do not rule out
# At the end dev/gpu-decide.py prints every step's timing and applies the decision rule to the
# step logs (run it by hand on the fetched $OUT/steps.tgz when the call was cut off).
# Everything is tee'd into $OUT/gpu-check.log (OUT defaults to ./gpu-out). Each step has a timeout
# so that one hang does not eat the device time, and the whole script keeps within GPU_BUDGET_S
# (default 560 s; give the call a timeout_s of ~590): a step that would pass it gets the time
# left, and under 20 s left the remaining steps are skipped, so the summary and the verdict are
# always printed. The device tool brings back at most 8 files from $OUT, hence one archive of the
# step logs: $OUT holds gpu-check.log, steps.tgz, curves.tgz, llama-curves.tgz and ncu's step.ncu-rep
# and CSV.
# The script goes on after a failure and exits non-zero if any step failed.
set -u -o pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
LOG="$OUT/gpu-check.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
BUILD=${GPU_BUILD:-$ROOT/build-gpu} # dev/tests/gpu_check_dry.sh points it at stand-in programs
TG="$BUILD/truthgpt"
# the test programs: in the build folder, else in gpu-tests/ (where dev/gpu-prepare.sh puts them)
tbin() { if [ -e "$BUILD/tests/cuda/$1" ]; then echo "$BUILD/tests/cuda/$1"; else echo "$ROOT/gpu-tests/$1"; fi; }
TEST=$(tbin test_cuda_model)
ATEST=$(tbin test_cuda_attention)
KTEST=$(tbin test_cuda_kernels)
LTEST=$(tbin test_cuda_llama)
LKTEST=$(tbin test_cuda_llama_kernels)
DTEST=$(tbin test_cuda_decode)
MTEST=$(tbin test_cuda_muon)
# The default fits one call with room for a second (292 s on 2026-11-26, with fastest): what is
# already measured (ab, variants, ncu, racecheck) is left to GPU_STEPS. Steps run
# in the file's order (most needed first), whatever the order in GPU_STEPS.
STEPS=${GPU_STEPS:-"test kernels decode llama muon bench torch ceiling curve llamacurve attn resume bench350 torch350 sanitize"}
B350=${B350:-32}
export PYTHONUNBUFFERED=1
fails=0
summary=()
T_START=$(date +%s)

want() { [[ " $STEPS " == *" $1 "* ]]; }
step() { echo; echo "=== $* [$(date -u +%H:%M:%S), +$(( $(date +%s) - T_START ))s]"; }
BUDGET=${GPU_BUDGET_S:-560}
SD=${GPU_STEPS_DIR:-/tmp/tg-gpu-steps} # the step logs, packed into $OUT/steps.tgz after each step
rm -rf "$SD" "$SD.tgz" "$OUT/steps" "$OUT/steps.tgz" # a reused OUT or /tmp: gpu-decide.py reads every log
mkdir -p "$SD"
pack_steps() { tar -C "$SD" -czf "$SD.tgz" . && cp "$SD.tgz" "$OUT/steps.tgz"; }
# SM clock, power and throttle reasons every 200 ms around a timed step ($SD/NAME.clocks.txt), and
# the mean of the samples under load (power within 80% of the peak: the timed steps, not start-up
# or torch.compile's compilation) appended to the step's log:
# ncu's kernel times (no load before each replay) add up to ~12 ms less than a step, 9 of it in
# the matmuls, which points at power-limited clocks under sustained load, for PyTorch too.
# Reasons (a bit mask): 0x4 software power cap, 0x20/0x40 thermal, 0x80 power brake, 0x1 idle.
CLK_PID=
clk_start() {
    CLK_PID=
    command -v nvidia-smi >/dev/null || return 0
    local q=timestamp,clocks.sm,clocks.mem,power.draw,temperature.gpu r
    for r in clocks_event_reasons.active clocks_throttle_reasons.active; do # (renamed in newer drivers)
        nvidia-smi --query-gpu="$q,$r" --format=csv,noheader >/dev/null 2>&1 && { q="$q,$r"; break; }
    done
    nvidia-smi --query-gpu="$q" --format=csv -lms 200 > "$SD/$1.clocks.txt" 2>&1 &
    CLK_PID=$!
}
clk_stop() {
    [ -n "$CLK_PID" ] || return 0
    kill "$CLK_PID" 2>/dev/null; wait "$CLK_PID" 2>/dev/null
    awk -F', ' 'NR > 1 && $4+0 > 0 {print $2+0, $4+0, $6}' "$SD/$1.clocks.txt" | sort -k2,2n |
        awk -v n="$1" '{c[NR]=$1; p[NR]=$2; r[NR]=$3} END {if (NR) {k=0; s=0; w=0; for (i=1; i<=NR; i++) if (p[i] >= 0.8*p[NR]) {k++; s+=c[i]; w+=p[i]}
             printf "%s clocks: %d samples, %d under load (>= 80%% of the peak power): SM %.0f MHz, %.0f W (mean); reasons at the peak %s\n", n, NR, k, s/k, w/k, r[NR]}}' |
        tee -a "$SD/$1.log"
    pack_steps
}
run() { # run NAME TIMEOUT_S CMD...: runs, reports the exit code, counts failures (77 = skipped);
        # the output also goes to $SD/NAME.log for the timing table at the end. Within the
        # budget: the timeout shrinks to the time left; under 20 s left the step is skipped (124).
    local name=$1 t=$2; shift 2
    local left=$(( BUDGET - ($(date +%s) - T_START) ))
    if [ $left -lt 20 ]; then
        echo "+ $*"
        echo "--> skipped: ${left}s left of GPU_BUDGET_S=$BUDGET"
        summary+=("$(printf '%-10s skipped (time budget)' "$name")")
        return 124
    fi
    [ "$t" -gt $left ] && t=$left
    echo "+ $*"
    local t0=$(date +%s)
    timeout "$t" "$@" 2>&1 | tee "$SD/$name.log"
    local rc=${PIPESTATUS[0]}
    echo "--> exit $rc"
    echo "--> exit $rc" >> "$SD/$name.log" # for dev/gpu-decide.py
    pack_steps
    summary+=("$(printf '%-10s exit %-3s %4ss' "$name" "$rc" "$(( $(date +%s) - t0 ))")")
    if [ $rc -ne 0 ] && [ $rc -ne 77 ]; then fails=$((fails + 1)); fi
    return $rc
}

step "device"
nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap,clocks.sm,clocks.max.sm --format=csv || true
# Libraries the machine lacks: link in the carried copies (gpu-libs.tar.xz from gpu-prepare.sh,
# unpacked to /tmp; an unpacked gpu-libs/ folder also works), soname by soname.
LIBS="$ROOT/gpu-libs"
if [ -f "$ROOT/gpu-libs.tar.xz" ]; then
    LIBS=/tmp/tg-gpu-libs
    mkdir -p "$LIBS"
    # python3's tarfile where the machine's tar has no xz program
    tar -C "$LIBS" -xJf "$ROOT/gpu-libs.tar.xz" 2>/dev/null || python3 -m tarfile -e "$ROOT/gpu-libs.tar.xz" "$LIBS" \
        || echo "cannot unpack gpu-libs.tar.xz"
fi
for pass in 1 2 3; do
    missing=$(ldd "$TG" "$TEST" "$ATEST" "$KTEST" "$LTEST" "$LKTEST" "$MTEST" 2>/dev/null | awk '/not found/ {print $1}' | sort -u)
    [ -z "$missing" ] && break
    mkdir -p /tmp/tglibs
    for m in $missing; do
        if [ -e "$LIBS/$m" ]; then ln -sf "$LIBS/$m" /tmp/tglibs/; else echo "no carried copy of $m"; fi
    done
    export LD_LIBRARY_PATH=/tmp/tglibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    echo "pass $pass: using carried copies of: $missing"
done
ldd "$TG" | grep -i "not found" && echo "WARNING: unresolved libraries"

G124=(--config "$ROOT/configs/gpt2-124m.ini" --batch 64 --seq-len 1024)
test_rc=0
if want test; then
    step "test_cuda_model"
    run test 240 "$TEST"
    test_rc=$?
fi
kern_rc=0
if want kernels; then
    step "test_cuda_kernels"
    run kernels 90 "$KTEST"
    kern_rc=$?
fi
if want decode; then
    step "test_cuda_decode (GPT-2 and Llama), then GPT-2 124M generation speed at batch 1 (dev/gpu-decode.sh)"
    run decode-test 150 "$DTEST"
    run decode 120 bash "$ROOT/dev/gpu-decode.sh" "$TG" "$ROOT" /tmp/tg-decode
fi
lk_rc=0
llama_rc=0
if want llama; then
    step "test_cuda_llama_kernels"
    run llama-kernels 60 "$LKTEST"
    lk_rc=$?
    step "test_cuda_llama"
    run llama 120 "$LTEST"
    llama_rc=$?
fi
muon_rc=0
if want muon; then
    step "test_cuda_muon, then train.optimizer=muon through the trainer (tests/cuda/muon.sh)"
    run muon-test 60 "$MTEST"
    muon_rc=$?
    run muon 150 bash "$ROOT/tests/cuda/muon.sh" "$TG" "$ROOT" /tmp/tg-muon
fi
bench_rc=1
if want bench; then
    step "bench GPT-2 124M, B=64, T=1024 (default attention)"
    clk_start bench
    run bench 60 "$TG" bench "${G124[@]}" --steps 30
    bench_rc=$?
    clk_stop bench
    step "per-phase profile (CUDA events around every op; 10 steps)"
    run bench-prof 60 "$TG" bench "${G124[@]}" --steps 10 cuda.profile=1
fi
if want torch && [ -f "$ROOT/bench/torch_gpt2_bench.py" ]; then
    step "PyTorch reference benchmark, GPT-2 124M, B=64"
    clk_start torch
    run torch 120 python3 "$ROOT/bench/torch_gpt2_bench.py" --compile 1 --B 64
    clk_stop torch
fi
if want ceiling; then
    step "the step's floor on this GPU: its matmuls (cuBLAS), attention (each SDPA backend), copy bandwidth (dev/gpu-ceiling.py)"
    run ceiling 150 python3 "$ROOT/dev/gpu-ceiling.py" ${GPU_CEILING_ARGS:-} # e.g. "--rounds 12"
fi
if want variants; then
    step "bench 124M with the flash kernels (cuda.attention=flash)"
    run bench-flash 60 "$TG" bench "${G124[@]}" --steps 20 cuda.attention=flash
    step "bench 124M with train.recompute=1 (LayerNorm outputs recomputed)"
    run bench-rc1 60 "$TG" bench "${G124[@]}" --steps 20 train.recompute=1
    step "bench 124M with train.recompute=2 (LayerNorm + GELU recomputed)"
    run bench-rc2 60 "$TG" bench "${G124[@]}" --steps 20 train.recompute=2
fi
if want ab; then # A/B switches, each against the default above (measured ones: docs/performance.md)
    step "A/B: cuBLASLt algorithms timed per shape, the fastest kept (cuda.cublaslt_tune=1)"
    run ab-lttune 60 "$TG" bench "${G124[@]}" --steps 30 cuda.cublaslt_tune=1
    step "A/B: cuDNN's attention plans timed, the fastest kept (cuda.cudnn_tune=1), profiled"
    run ab-cudnntune-prof 60 "$TG" bench "${G124[@]}" --steps 10 cuda.cudnn_tune=1 cuda.profile=1
    step "A/B: both"
    run ab-both-tuned 60 "$TG" bench "${G124[@]}" --steps 30 cuda.cublaslt_tune=1 cuda.cudnn_tune=1
    # Newer libraries of the same soname from the torch venv (cuDNN 9.19 against the system's
    # 9.14; its cuBLAS against CUDA 13.0's): the backend line names the versions loaded.
    VENV_NV=$(python3 -c 'import nvidia; print(list(nvidia.__path__)[0])' 2>/dev/null)
    venv_lib() { [ -n "$VENV_NV" ] && find "$VENV_NV" -name "$1" -printf '%h\n' 2>/dev/null | head -1; }
    CUDNN_VENV=$(venv_lib 'libcudnn.so.9')
    CUBLAS_VENV=$(venv_lib 'libcublasLt.so.13')
    if [ -n "$CUDNN_VENV" ]; then
        step "A/B: the torch venv's cuDNN ($CUDNN_VENV)"
        LD_LIBRARY_PATH="$CUDNN_VENV:${LD_LIBRARY_PATH:-}" run ab-cudnn-venv 60 "$TG" bench "${G124[@]}" --steps 30
    fi
    if [ -n "$CUBLAS_VENV" ]; then
        step "A/B: the torch venv's cuBLAS ($CUBLAS_VENV)"
        LD_LIBRARY_PATH="$CUBLAS_VENV:${LD_LIBRARY_PATH:-}" run ab-cublas-venv 60 "$TG" bench "${G124[@]}" --steps 30
    fi
    step "A/B: the default again (run-to-run spread)"
    run ab-default 60 "$TG" bench "${G124[@]}" --steps 30
fi
# After the timings: the curve (a gate for every switch) and the checks only some switches need.
if want curve; then
    step "300-step loss curve, GPU vs CPU (tests/cuda/curve.sh)"
    TG_CURVE_DATA=${TG_CURVE_DATA:-$ROOT/gpu-data} TG_CURVE_EXTRA=${TG_CURVE_EXTRA-} \
        run curve 90 bash "$ROOT/tests/cuda/curve.sh" "$TG" "$ROOT" /tmp/tg-curve
    (cd /tmp/tg-curve && tar czf "$OUT/curves.tgz" */metrics.jsonl 2>/dev/null) || true
fi
if want llamacurve; then
    step "300-step llama-tiny loss curve, GPU vs CPU (tests/cuda/llama_curve.sh)"
    TG_CURVE_DATA=${TG_CURVE_DATA:-$ROOT/gpu-data} \
        run llamacurve 150 bash "$ROOT/tests/cuda/llama_curve.sh" "$TG" "$ROOT" /tmp/tg-llama-curve
    (cd /tmp/tg-llama-curve && tar czf "$OUT/llama-curves.tgz" */metrics.jsonl 2>/dev/null) || true
fi
attn_rc=0
if want attn; then
    step "test_cuda_attention"
    run attn 150 "$ATEST"
    attn_rc=$?
fi
if want resume; then
    step "one-rank NCCL training + bitwise bf16 resume (tests/cuda/resume.sh)"
    run resume 90 bash "$ROOT/tests/cuda/resume.sh" "$TG" "$ROOT" /tmp/tg-resume
fi
if want comm; then
    step "truthgpt bench comm --device cuda (NCCL, one rank)"
    run comm 60 "$TG" bench comm --device cuda
fi
bench350_rc=1
if want bench350; then
    step "bench GPT-2 350M, B=$B350, T=1024"
    clk_start bench350
    run bench350 60 "$TG" bench --config "$ROOT/configs/gpt2-350m.ini" --batch "$B350" --seq-len 1024 --steps 20
    bench350_rc=$?
    clk_stop bench350
fi
if want torch350 && [ -f "$ROOT/bench/torch_gpt2_bench.py" ] && [ $bench350_rc -eq 0 ]; then
    step "PyTorch reference benchmark, GPT-2 350M, B=$B350"
    clk_start torch350
    run torch350 150 python3 "$ROOT/bench/torch_gpt2_bench.py" --compile 1 --B "$B350" --layers 24 --heads 16 --dim 1024
    clk_stop torch350
fi
llamabench_rc=1
if want llamabench; then
    step "bench Llama at the smollm-135m shape, B=16, T=2048"
    clk_start llamabench
    run llamabench 90 "$TG" bench --config "$ROOT/configs/smollm-135m.ini" --batch 16 --seq-len 2048 --steps 20
    llamabench_rc=$?
    clk_stop llamabench
fi
if want llamatorch && [ -f "$ROOT/bench/torch_llama_bench.py" ] && [ $llamabench_rc -eq 0 ]; then
    step "PyTorch reference benchmark, Llama smollm-135m shape, B=16, T=2048"
    clk_start llamatorch
    run llamatorch 150 python3 "$ROOT/bench/torch_llama_bench.py" --preset smollm-135m --compile 1 --B 16
    clk_stop llamatorch
fi
if want variants; then
    step "bench 124M, cuDNN backward with atomics (cuda.cudnn_deterministic=0)"
    run bench-atomic 60 "$TG" bench "${G124[@]}" --steps 20 cuda.cudnn_deterministic=0
    step "bench 124M with the cuBLASLt attention (cuda.attention=naive)"
    run bench-naive 60 "$TG" bench "${G124[@]}" --steps 10 cuda.attention=naive
fi
if want fastest; then # truthgpt's fastest settings, giving up bitwise-reproducible attention gradients
    step "bench 124M, cuDNN backward with atomics and tuned cuDNN plans (cuda.cudnn_deterministic=0 cuda.cudnn_tune=1)"
    run bench-fastest 60 "$TG" bench "${G124[@]}" --steps 30 cuda.cudnn_deterministic=0 cuda.cudnn_tune=1
fi
if want ncu; then
    # Every kernel of one training step (no warm-up step: two took more than 240 s) with Nsight Compute: time, DRAM
    # bytes and throughput, SM throughput; dev/ncu-summary.py groups them by kernel. Clocks
    # are left alone (METHOD.md), so times are close to, not equal to, the bench's.
    NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
    if [ -n "$NCU" ]; then
        step "Nsight Compute: the kernels of one step (124M, B=64; ~410 launches, ~0.3 s each)"
        run ncu 240 "$NCU" --clock-control none --target-processes all -f -o "$OUT/step" \
            --metrics gpu__time_duration.sum,dram__bytes.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,sm__throughput.avg.pct_of_peak_sustained_elapsed \
            "$TG" bench "${G124[@]}" --warmup 0 --steps 1
        "$NCU" --import "$OUT/step.ncu-rep" --csv --page raw > "$OUT/step-kernels.csv" 2>/dev/null &&
            python3 "$ROOT/dev/ncu-summary.py" "$OUT/step-kernels.csv" --top 40
    else
        echo "no ncu on this machine"
    fi
fi
# Last (slow, and only useful when a test failed): the memory checker on the failing test.
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if want sanitize && { { [ $test_rc -ne 0 ] && [ $test_rc -ne 77 ]; } || [ -n "${GPU_SANITIZE_ALWAYS:-}" ]; }; then
    step "compute-sanitizer memcheck: test_cuda_model"
    run sanitize 90 "$CS" --tool memcheck --error-exitcode 9 --print-limit 20 "$TEST"
fi
if want sanitize && { { [ $attn_rc -ne 0 ] && [ $attn_rc -ne 77 ]; } || [ -n "${GPU_SANITIZE_ALWAYS:-}" ]; }; then
    step "compute-sanitizer memcheck: test_cuda_attention (small shapes)"
    TG_ATTN_QUICK=1 run sanitize-a 90 "$CS" --tool memcheck --error-exitcode 9 --print-limit 20 "$ATEST"
fi
if want sanitize && { { [ $kern_rc -ne 0 ] && [ $kern_rc -ne 77 ]; } || [ -n "${GPU_SANITIZE_ALWAYS:-}" ]; }; then
    step "compute-sanitizer memcheck: test_cuda_kernels (no timing)"
    TG_KERNELS_QUICK=1 run sanitize-k 90 "$CS" --tool memcheck --error-exitcode 9 --print-limit 20 "$KTEST"
fi
for t in "llama:$llama_rc:$LTEST" "llama-kernels:$lk_rc:$LKTEST" "muon:$muon_rc:$MTEST"; do
    IFS=: read -r name rc bin <<< "$t"
    if want sanitize && { { [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; } || [ -n "${GPU_SANITIZE_ALWAYS:-}" ]; }; then
        step "compute-sanitizer memcheck: $name"
        run "sanitize-$name" 90 "$CS" --tool memcheck --error-exitcode 9 --print-limit 20 "$bin"
    fi
done
if want racecheck; then
    step "compute-sanitizer racecheck: test_cuda_kernels (no timing)"
    TG_KERNELS_QUICK=1 run racecheck 240 "$CS" --tool racecheck --error-exitcode 9 --print-limit 20 "$KTEST"
fi

step "summary"
printf '%s\n' "${summary[@]}"
echo
# The timings of every step and the decision rule of docs/performance.md, from the step logs
# (also runnable on a fetched $OUT/steps.tgz after a call that ran out of time): printed, not acted on.
python3 "$ROOT/dev/gpu-decide.py" "$SD" || true
echo "$fails failed step(s); log in $LOG"
exit $((fails > 0))
