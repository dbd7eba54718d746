#!/usr/bin/env bash
# Paired CPU benchmark against llm.c's train_gpt2.c (fp32, AdamW step).
#   dev/llmc-peer.sh LLMC_REPO TRUTHGPT_BIN PAIRS STEPS "L NH C V B T" ["L NH C V B T" ...]
# Builds llm.c's trainer into .peer/ (git-ignored; its code is never committed) as its Makefile
# does (-Ofast -march=native -fopenmp -DOMP), with main() patched to take the checkpoint, token
# file, B, T and step count from argv and to skip validation and sampling. Writes a random model
# and tokens of each shape (dev/llmc_export.py), then runs llm.c and `truthgpt bench model`
# alternately, PAIRS times, OMP_NUM_THREADS=2, and prints per pair the median step time of each
# (first step of each run dropped) and llm.c/truthgpt; then the median ratio.
set -euo pipefail
repo=$1 tg=$2 pairs=$3 steps=$4
shift 4
root=$(cd "$(dirname "$0")/.." && pwd)
peer=$root/.peer
py=${TG_PYTHON:-$("$root/scripts/test-venv.sh")}
mkdir -p "$peer"
if [ ! -x "$peer/train_gpt2" ]; then
  if [ -d "$repo/.git" ] || git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$repo" archive HEAD train_gpt2.c llmc | tar -x -C "$peer"
  else
    cp -r "$repo/train_gpt2.c" "$repo/llmc" "$peer/"
  fi
  sed -i -e 's/^int main() {/int main(int argc, char **argv) { (void)argc;/' \
      -e 's/"gpt2_124M.bin"/argv[1]/' \
      -e 's/^\(\s*const char\* train_tokens = \).*/\1argv[2];/' \
      -e 's/^\(\s*const char\* val_tokens = \).*/\1argv[2];/' \
      -e 's/^\(\s*int B = \)4;/\1atoi(argv[3]);/' -e 's/^\(\s*int T = \)64;/\1atoi(argv[4]);/' \
      -e 's/step <= 40;/step < atoi(argv[5]);/' -e 's/if (step % 10 == 0) {/if (0) {/' \
      -e 's/if (step > 0 \&\& step % 20 == 0) {/if (0) {/' "$peer/train_gpt2.c"
  (cd "$peer" && gcc -Ofast -Wno-unused-result -march=native -fopenmp -DOMP train_gpt2.c -lm -o train_gpt2)
fi
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
export OMP_NUM_THREADS=2
for shape in "$@"; do
  read -r L NH C V B T <<<"$shape"
  d=$peer/L${L}C${C}V${V}B${B}T${T}
  [ -f "$d/model.bin" ] || "$py" "$root/dev/llmc_export.py" "$d" "$L" "$NH" "$C" "$V" 1024 $(( (steps + 2) * B * T + 1 ))
  ratios=()
  for p in $(seq "$pairs"); do
    lm=$("$peer/train_gpt2" "$d/model.bin" "$d/tokens.bin" "$B" "$T" "$((steps + 1))" |
         sed -n 's/.*step [1-9][0-9]*: .*took \([0-9.]*\) ms.*/\1/p' | median)
    tm=$("$tg" bench model --config "$root/configs/tiny.ini" --batch "$B" --seq-len "$T" \
         --steps "$steps" --warmup 1 train.device=cpu model.n_layer="$L" model.n_head="$NH" \
         model.n_embd="$C" model.vocab_size="$V" model.seq_len=1024 | awk '/^ms\/step/ {getline; print $1}')
    r=$(awk -v a="$lm" -v b="$tm" 'BEGIN {printf "%.3f", a / b}')
    ratios+=("$r")
    echo "L=$L NH=$NH C=$C V=$V B=$B T=$T pair $p: llm.c $lm ms, truthgpt $tm ms, ratio $r"
  done
  echo "L=$L NH=$NH C=$C V=$V B=$B T=$T median llm.c/truthgpt over $pairs pairs: $(printf '%s\n' "${ratios[@]}" | median)"
done
