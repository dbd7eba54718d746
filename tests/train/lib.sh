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
