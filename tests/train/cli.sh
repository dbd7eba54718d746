# CLI contract: help, version, usage errors exit 2, config errors name the key and exit non-zero.
source "$(dirname "$0")/lib.sh"
cd "$SRC"

check "--help exits 0" "$TG" --help
check "--version prints the version" bash -c "'$TG' --version | grep -q '^truthgpt [0-9]'"
check "train --help lists keys" bash -c "'$TG' train --help | grep -q 'train.total_batch_tokens'"
set +e
"$TG" no-such-command >"$TMP/o" 2>&1; rc=$?
check "unknown command exits 2" [ $rc -eq 2 ]
check "unknown command prints usage" grep -q "usage: truthgpt" "$TMP/o"
"$TG" train --no-such-flag >"$TMP/o" 2>&1; rc=$?
check "unknown train flag exits 2" [ $rc -eq 2 ]
check "unknown flag prints usage" grep -q "usage: truthgpt train" "$TMP/o"
"$TG" bench --bogus >"$TMP/o" 2>&1; rc=$?
check "unknown bench flag exits 2" [ $rc -eq 2 ]

"$TG" train configs/tiny.ini train.lr=abc run.out_dir="$TMP/x" >"$TMP/o" 2>&1; rc=$?
check "train.lr=abc fails" [ $rc -ne 0 ]
check "train.lr=abc names the key and the source" grep -q "command line: bad value 'abc' for train.lr" "$TMP/o"
"$TG" train configs/tiny.ini train.no_such_key=1 >"$TMP/o" 2>&1; rc=$?
check "unknown key fails" [ $rc -ne 0 ]
check "unknown key is named" grep -q "unknown key 'train.no_such_key'" "$TMP/o"
"$TG" train configs/tiny.ini nosection.x=1 >"$TMP/o" 2>&1; rc=$?
check "unknown section fails and is named" bash -c "[ $rc -ne 0 ] && grep -q 'unknown section \[nosection\]' '$TMP/o'"
"$TG" train configs/tiny.ini train.beta1=1.5 >"$TMP/o" 2>&1; rc=$?
check "out-of-range value fails with the accepted range" bash -c "[ $rc -ne 0 ] && grep -q 'train.beta1: expected a number in' '$TMP/o'"
"$TG" train configs/tiny.ini train.schedule=exp >"$TMP/o" 2>&1; rc=$?
check "bad enum lists the choices" bash -c "[ $rc -ne 0 ] && grep -q 'one of cosine|linear|constant' '$TMP/o'"
printf '[train]\nlr = 1e-3\nmax_steps = 1x\n' >"$TMP/bad.ini"
"$TG" train "$TMP/bad.ini" >"$TMP/o" 2>&1; rc=$?
check "bad value in a file names file:line and key" bash -c "[ $rc -ne 0 ] && grep -q 'bad.ini:3: bad value .1x. for train.max_steps' '$TMP/o'"
printf '[train]\nthis line is not ini\n' >"$TMP/bad2.ini"
"$TG" train "$TMP/bad2.ini" >"$TMP/o" 2>&1; rc=$?
check "malformed ini line fails" bash -c "[ $rc -ne 0 ] && grep -q 'bad2.ini:2' '$TMP/o'"
"$TG" train configs/tiny.ini model.n_embd=100 model.n_head=3 >"$TMP/o" 2>&1; rc=$?
check "cross-key check (n_embd % n_head)" bash -c "[ $rc -ne 0 ] && grep -q 'multiple of model.n_head' '$TMP/o'"
"$TG" train configs/tiny.ini train.total_batch_tokens=1000 run.out_dir="$TMP/y" >"$TMP/o" 2>&1; rc=$?
check "total_batch_tokens must divide" bash -c "[ $rc -ne 0 ] && grep -q 'must be a multiple of micro_batch' '$TMP/o'"
"$TG" train /nonexistent.ini >"$TMP/o" 2>&1; rc=$?
check "missing config file is named" bash -c "[ $rc -ne 0 ] && grep -q '/nonexistent.ini: cannot open config' '$TMP/o'"
set -e
finish
