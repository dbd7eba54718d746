# tests/train/lib.sh — shared helpers for the shell tests. Each test is called as
#   bash test.sh TRUTHGPT_BIN SOURCE_DIR TMP_DIR
set -euo pipefail
TG=$1
SRC=$2
TMP=$3
rm -rf "$TMP"
mkdir -p "$TMP"
PASS=0
FAIL=0
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_mpi_yield_when_idle=1
MPIRUN=(mpirun --allow-run-as-root --oversubscribe --bind-to none)

ok() { PASS=$((PASS + 1)); echo "ok: $*"; }
bad() { FAIL=$((FAIL + 1)); echo "FAIL: $*"; }
check() { # check "description" command...
    local d=$1
    shift
    if "$@"; then ok "$d"; else bad "$d"; fi
}
finish() {
    echo "$PASS passed, $FAIL failed"
    [ "$FAIL" -eq 0 ]
}
# json_field FILE STEP FIELD -> value of FIELD in the train record of STEP
json_field() {
    python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("step") == int(sys.argv[2]) and sys.argv[3] in r and r[sys.argv[3]] is not None:
        print(r[sys.argv[3]])
        break
' "$1" "$2" "$3"
}
# cut_and_resume NAME ARGS...: the interrupted half of an exact-resume check. Trains
# `$TG train ARGS` into $TMP/NAME with checkpoint.every=8, cut by an injected fault at step 9 (a run
# with max_steps=8 would not be the same run: the schedule depends on max_steps), then again with
# train.resume=auto. Checks that the cut run stopped after saving step 8 and that the second run
# resumed there. Logs: $TMP/NAME.log, $TMP/NAME-resume.log.
cut_and_resume() {
    local name=$1 rc=0
    shift
    TRUTHGPT_FAULT_STEP=9 TRUTHGPT_FAULT_STEP_RANK=0 "$TG" train "$@" checkpoint.every=8 \
        run.out_dir="$TMP/$name" >"$TMP/$name.log" 2>&1 || rc=$?
    check "first half stops (injected fault at step 9)" [ $rc -ne 0 ]
    check "checkpoint at step 8 exists" test -f "$TMP/$name/checkpoints/step_00000008.h5"
    "$TG" train "$@" checkpoint.every=8 run.out_dir="$TMP/$name" train.resume=auto \
        >"$TMP/$name-resume.log" 2>&1 || { cat "$TMP/$name-resume.log"; bad "resume run exits 0"; }
    check "resume says where it resumed" grep -q "resumed from .*step_00000008.h5 at step 8" \
        "$TMP/$name-resume.log"
}
