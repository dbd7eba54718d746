#!/usr/bin/env bash
# libFuzzer harnesses (tests/fuzz/fuzz_*.c) for the file readers: builds them with clang
# (-fsanitize=fuzzer,address,undefined) into build/fuzz and runs each for SECONDS (default 60)
# from its seed corpus tests/fuzz/corpus/<target>/ (new inputs go to build/fuzz/corpus/<target>/).
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]. A crash stops with the reproducer's path.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config tokenizer safetensors hf_tokenizer shard ckpt)
out=build/fuzz
mkdir -p "$out/obj"
CC=${FUZZ_CC:-clang}
hdf5_inc=$(pkg-config --cflags hdf5-serial 2>/dev/null || echo -I/usr/include/hdf5/serial)
hdf5_lib=$(pkg-config --libs hdf5-serial 2>/dev/null || echo "-L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5")
flags=(-std=gnu11 -g -O1 -fno-omit-frame-pointer -march=x86-64-v2 -I. $hdf5_inc
       -Wall -Wextra -Wno-source-uses-openmp -Wno-unknown-pragmas -DTG_FUZZ=1)
san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined)
# The library sources the readers need (prepare.c is OpenMP-parallel and not needed).
srcs=(core/*.c data/bpe_train.c data/docs.c data/h5util.c data/h5zstd.c data/loader.c data/shard.c
      data/synthetic.c data/tokenizer.c data/vocab.c interop/*.c ckpt/*.c model/gpt2.c model/llama.c
      train/config.c train/schedule.c)
objs=()
for s in "${srcs[@]}"; do
    o="$out/obj/$(echo "$s" | tr / _).o"
    $CC "${flags[@]}" "${san[@]}" -fsanitize=fuzzer-no-link -c "$s" -o "$o"
    objs+=("$o")
done
libs=($hdf5_lib -ljansson -lzstd -lpcre2-8 -lpthread -lm)
for t in "${targets[@]}"; do
    $CC "${flags[@]}" "${san[@]}" -fsanitize=fuzzer "tests/fuzz/fuzz_$t.c" "${objs[@]}" "${libs[@]}" \
        -o "$out/fuzz_$t"
done
[ "$secs" = 0 ] && exit 0
# Leaks in our code are failures (tests/lsan.supp: runtime internals only). A huge malloc that a
# corrupt size asks for returns NULL (HDF5 and our readers handle it) instead of aborting.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1:suppressions=$PWD/tests/fuzz/asan.supp}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
for t in "${targets[@]}"; do
    mkdir -p "$out/corpus/$t" "$out/crash/$t"
    echo "== fuzz_$t for ${secs}s"
    end=$(( $(date +%s) + secs ))
    while :; do
        left=$(( end - $(date +%s) ))
        [ $left -ge 1 ] || break
        if "$out/fuzz_$t" -max_total_time="$left" -max_len="$( [ "$t" = ckpt ] && echo 262144 || echo 65536)" \
            -rss_limit_mb=2048 -timeout=20 -artifact_prefix="$out/crash/$t/" -print_final_stats=1 \
            "$out/corpus/$t" "tests/fuzz/corpus/$t" 2>"$out/fuzz_$t.log"; then
            break
        fi
        # Debian's libhdf5 is not hardened against corrupt files: a crash whose top frame is inside
        # libhdf5 is HDF5's bug (kept in crash/, reported), and fuzzing goes on; anything else fails.
        # (the first frame of the report's stack that is not ASan's/libFuzzer's own, i.e. not in
        # the harness binary without a source line, and not libc's, decides)
        first=$(grep -E "^ +#[0-9]+ 0x" "$out/fuzz_$t.log" | grep -v -E "\(/[^ ]*/build/fuzz/fuzz_[a-z_]+\+0x" \
                | grep -v -E "/libc\.so|string/\.\./sysdeps/| in __interceptor_| in __asan_" | head -n 1)
        if grep -q "libhdf5_serial.so" <<<"$first"; then
            echo "fuzz_$t: crash inside libhdf5 (not ours), reproducer kept in $out/crash/$t/:"
            grep -E "^SUMMARY|ERROR: libFuzzer" "$out/fuzz_$t.log" | head -n 2; echo "  at: $first"
            continue
        fi
        # Out of memory with libhdf5 among the largest live allocations: HDF5's caches, not ours.
        if grep -q "libFuzzer: out-of-memory" "$out/fuzz_$t.log" && grep -q "libhdf5_serial.so" "$out/fuzz_$t.log"; then
            echo "fuzz_$t: out of memory inside libhdf5 (not ours), input kept in $out/crash/$t/"
            continue
        fi
        tail -n 60 "$out/fuzz_$t.log"; echo "fuzz_$t FAILED: reproducer in $out/crash/$t/"; exit 1
    done
    grep -E "^#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss" "$out/fuzz_$t.log" || true
done
