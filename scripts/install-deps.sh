#!/usr/bin/env bash
# Installs the Debian packages a purpose needs:
#   scripts/install-deps.sh PURPOSE...   (no purpose: all of them)
#     build   compile cellcube, its Python module and the web bundle (make build, make demo)
#     test    build, plus the reference libraries, the browser, snakemake and nginx the
#             tests run against (make test, make test-asan, make test-e2e)
#     bench   test, plus the baselines the benchmarks compare with (make bench, make bench-atlas)
#     fuzz    build, plus clang-14 and its libFuzzer/sanitizer runtimes (make fuzz)
#     format  clang-format (make format)
# Idempotent: does nothing when every package is already installed. As root, or with sudo.
set -euo pipefail

BUILD=(
  build-essential cmake ninja-build pkg-config
  libhdf5-dev liblzf-dev libdeflate-dev zlib1g-dev libzstd-dev liburing-dev
  libgtest-dev nlohmann-json3-dev pybind11-dev libmicrohttpd-dev libboost-math-dev python3-dev
  hdf5-tools  # h5dump, which cellcube's message about a damaged file tells the user to run
)
# The web page is bundled with npm; the machine image may bring its own Node.js.
command -v node >/dev/null 2>&1 || BUILD+=(nodejs)
command -v npm >/dev/null 2>&1 || BUILD+=(npm)
TEST=(
  python3-anndata python3-h5py python3-numpy python3-scipy python3-pandas python3-pytest
  python3-zstandard  # the ontology tests read the term maps themselves
  chromium snakemake nginx
)
BENCH=(redis-server python3-redis python3-flask wrk)
FUZZ=(clang-14 libclang-rt-14-dev)
FORMAT=(clang-format)

usage() {
  echo "usage: scripts/install-deps.sh [build|test|bench|fuzz|format]..." >&2
  exit 2
}

[ $# -eq 0 ] && set -- build test bench fuzz format
PACKAGES=()
for purpose in "$@"; do
  case $purpose in
    build)  PACKAGES+=("${BUILD[@]}") ;;
    test)   PACKAGES+=("${BUILD[@]}" "${TEST[@]}") ;;
    bench)  PACKAGES+=("${BUILD[@]}" "${TEST[@]}" "${BENCH[@]}") ;;
    fuzz)   PACKAGES+=("${BUILD[@]}" "${FUZZ[@]}") ;;
    format) PACKAGES+=("${FORMAT[@]}") ;;
    *) usage ;;
  esac
done

missing=()
for p in "${PACKAGES[@]}"; do
  # A package named by two purposes is checked (and installed) once.
  case " ${missing[*]-} " in *" $p "*) continue ;; esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

# One line saying why, per purpose asked (the make target's), then what is missing.
for purpose in "$@"; do
  case $purpose in
    build)  why="compiling cellcube needs the HDF5 C library, the HTTP server, compression libraries, pybind11 and the build tools" ;;
    test)   why="the tests compare every number with anndata/h5py/numpy/scipy/pandas and drive the page in chromium" ;;
    bench)  why="the benchmarks time the seed discussion's approaches (Redis, Flask) and the server under wrk" ;;
    fuzz)   why="fuzzing needs clang-14's libFuzzer and sanitizer runtimes" ;;
    format) why="make format runs clang-format" ;;
  esac
  echo "cellcube: $purpose: $why" >&2
done
echo "Installing missing Debian packages ($*): ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
