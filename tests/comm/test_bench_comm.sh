#!/usr/bin/env bash
# tests/comm/test_bench_comm.sh MPIEXEC TRUTHGPT — `truthgpt bench comm` on 2 MPI ranks, small
# sizes: exit 0, a row for every size of all three collectives, and #wrong (last column) 0.
set -u
MPIEXEC=$1
TRUTHGPT=$2
export OMPI_MCA_rmaps_base_oversubscribe=1
out=$(timeout 60 "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 "$TRUTHGPT" bench comm \
      --min-bytes 64 --max-bytes 64K --step 4 --iters 5 --warmup 1 --dtype f32 2>&1)
rc=$?
echo "$out"
[ $rc -eq 0 ] || { echo "FAIL: exit code $rc"; exit 1; }
for coll in all_reduce reduce_scatter all_gather; do
    grep -q "^# $coll" <<<"$out" || { echo "FAIL: no $coll section"; exit 1; }
done
# data rows: 64 B .. 64 KiB in x4 steps = 6 sizes, for 3 collectives
rows=$(grep -E '^ *[0-9]+ +[0-9]+ +float ' <<<"$out")
nrows=$(wc -l <<<"$rows")
[ "$nrows" -eq 18 ] || { echo "FAIL: expected 18 rows, got $nrows"; exit 1; }
bad=$(awk '$NF != 0' <<<"$rows")
[ -z "$bad" ] || { echo "FAIL: rows with wrong elements:"; echo "$bad"; exit 1; }
# only rank 0 prints the table
[ "$(grep -c '^# all_reduce' <<<"$out")" -eq 1 ] || { echo "FAIL: table printed twice"; exit 1; }
echo "PASS"
