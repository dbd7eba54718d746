#!/usr/bin/env bash
# HF parity of the Llama CPU model: llama_hf_case.py writes random LlamaForCausalLM cases (GQA
# untied, MQA tied, MHA untied, GQA tied with Llama 3's RoPE scaling), test_llama_hf compares truthgpt's logits and loss with them.
# Usage: llama_hf.sh TEST_LLAMA_HF SRC_DIR TMP_DIR
set -euo pipefail
driver=$1 src=$2 tmp=$3
py=${TG_PYTHON:-$("$src/scripts/test-venv.sh")}
rm -rf "$tmp" && mkdir -p "$tmp"
"$py" "$src/tests/model/llama_hf_case.py" "$tmp/gqa.bin" 2 0 1
"$py" "$src/tests/model/llama_hf_case.py" "$tmp/mqa_tied.bin" 1 1 2
"$py" "$src/tests/model/llama_hf_case.py" "$tmp/mha.bin" 6 0 3
"$py" "$src/tests/model/llama_hf_case.py" "$tmp/llama3_rope.bin" 2 1 4 llama3
"$driver" "$tmp/gqa.bin" "$tmp/mqa_tied.bin" "$tmp/mha.bin" "$tmp/llama3_rope.bin"
