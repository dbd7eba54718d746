#!/usr/bin/env bash
# Prints the path of a Python that has the tests' peers (tests/requirements.txt), creating the venv
# on first use. The venv lives in ~/.cache/truthgpt/venv-<hash of the requirements and python>, so a
# fresh clone finds it again; a lock keeps concurrent tests from installing it twice.
# Usage: scripts/test-venv.sh  ->  /root/.cache/truthgpt/venv-XXXX/bin/python
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
req="$root/tests/requirements.txt"
py=${TG_BASE_PYTHON:-python3}
key=$( (cat "$req"; "$py" -c 'import sys; print(sys.version)') | sha256sum | cut -c1-12)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/truthgpt
venv="$cache/venv-$key"
mkdir -p "$cache"
if [ ! -f "$venv/.complete" ]; then
    exec 9>"$venv.lock"
    flock 9
    if [ ! -f "$venv/.complete" ]; then
        echo "test-venv: installing tests/requirements.txt into $venv (first use; torch is large)" >&2
        rm -rf "$venv"
        "$py" -m venv "$venv" >&2
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req" >&2
        touch "$venv/.complete"
    fi
fi
echo "$venv/bin/python"
