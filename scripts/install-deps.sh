#!/usr/bin/env bash
# Installs the Debian packages cellcube needs to build, test and benchmark.
# Idempotent: does nothing when every package is already installed.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config clang-format
  libhdf5-dev hdf5-tools liblzf-dev libdeflate-dev zlib1g-dev
  libgtest-dev nlohmann-json3-dev pybind11-dev libmicrohttpd-dev libboost-math-dev
  python3-anndata python3-h5py python3-numpy python3-scipy python3-pandas python3-pytest
  python3-dev redis-server python3-redis python3-flask wrk
  snakemake nginx
  chromium
  clang-14 libclang-rt-14-dev
)
# The web page is bundled with npm; the machine image may bring its own Node.js.
command -v node >/dev/null 2>&1 || PACKAGES+=(nodejs)
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "Installing missing Debian packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
