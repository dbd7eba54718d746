# CLI contract: help, version, usage errors exit 2, config errors name the key and exit non-zero.
source "$(dirname "$0")/lib.sh"
cd "$SRC"

check "--help exits 0" bash -c "'$TG' --help >/dev/null"
check "--version prints the version" bash -c "'$TG' --version | grep -q '^truthgpt [0-9]'"
check "train --help lists keys" bash -c "'$TG' train --help | grep -q 'train.total_batch_tokens'"
set +e
"$TG" train >"$TMP/o" 2>&1; rc=$?
check "train without a config exits 2 with usage" bash -c "[ $rc -eq 2 ] && grep -q 'no config file' '$TMP/o'"
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
# train.sample_every: needs a tokenizer; with one it prints decoded samples.
"$TG" train configs/tiny.ini train.sample_every=5 train.max_steps=5 run.out_dir="$TMP/s0" >"$TMP/o" 2>&1; rc=$?
check "sample_every without a tokenizer fails clearly" bash -c "[ $rc -ne 0 ] && grep -q 'sample_every needs data.tokenizer' '$TMP/o'"
printf 'the cat sat on the mat. the dog sat on the log.\n' >"$TMP/corpus.txt"
"$TG" tokenizer train --vocab-size 300 --out "$TMP/tok.tiktoken" "$TMP/corpus.txt" >/dev/null 2>&1
"$TG" train configs/tiny.ini data.tokenizer="$TMP/tok.tiktoken" train.sample_every=5 train.sample_tokens=8 \
    train.max_steps=10 train.eval_every=0 run.out_dir="$TMP/s1" >"$TMP/o" 2>&1; rc=$?
check "sample_every prints samples at steps 5 and 10" bash -c "[ $rc -eq 0 ] && [ \$(grep -c 'sample: ' '$TMP/o') -eq 2 ]"
# A tokenizer with train.sample_every left at 0 (off): trains, no samples (was SIGFPE at step 1).
"$TG" train configs/tiny.ini data.tokenizer="$TMP/tok.tiktoken" train.max_steps=3 train.eval_every=0 \
    run.out_dir="$TMP/s2" >"$TMP/o" 2>&1; rc=$?
check "data.tokenizer without sample_every trains (no SIGFPE)" bash -c "[ $rc -eq 0 ] && ! grep -q 'sample: ' '$TMP/o'"
set -e
finish
