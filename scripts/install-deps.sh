#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages truthgpt needs to build, test and run the demo.
# Skips apt-get entirely when everything is already there. Usage: scripts/install-deps.sh [--slurm]
set -euo pipefail
pkgs=(build-essential cmake pkg-config python3 libhdf5-dev hdf5-tools libzstd-dev libinih-dev
      libopenmpi-dev openmpi-bin libpcre2-dev fortunes fortunes-min)
[ "${1:-}" = "--slurm" ] && pkgs+=(slurm-wlm munge)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
