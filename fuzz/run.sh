#!/usr/bin/env bash
# Runs each libFuzzer target for FUZZ_SECONDS on its corpus (`make fuzz`).
#   FUZZ_DIR      the CELLCUBE_FUZZ build (default build-fuzz): its fuzz/ holds the targets
#   FUZZ_SECONDS  per target (default 60)
#   FUZZ_TARGETS  which (default "h5ad_fuzz store_fuzz http_fuzz")
#   FUZZ_STRICT   1 = also fail on findings inside libhdf5 (default 0: listed, not fatal)
# libFuzzer runs in fork mode and keeps going after a finding, so one libhdf5 bug does
# not end the run; every finding is then replayed and attributed by its stack to
# libhdf5 (which cellcube cannot fix: docs/RELIABILITY.md lists the known ones) or to
# cellcube (fatal: fix it and keep the input in tests/regress/). Nothing is dropped:
# each finding is printed with its top frame and stays in artifacts/.
# Seeds: the real .h5ad files under 100 KB in ../shared/data/h5ad and small files made
# with the fuzz build's own cellcube (synth + build), plus fuzz/seeds/http. Corpora grow
# in $FUZZ_DIR/fuzz/corpus/TARGET across runs; a crash, leak, sanitizer report, timeout
# or out-of-memory leaves its input in $FUZZ_DIR/fuzz/artifacts/TARGET/ and fails the run.
# The totals go to $FUZZ_DIR/fuzz/summary.txt (docs/RELIABILITY.md quotes them).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
FUZZ_DIR=$(realpath "${FUZZ_DIR:-build-fuzz}")
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_TARGETS=${FUZZ_TARGETS:-"h5ad_fuzz store_fuzz http_fuzz"}
OUT=$FUZZ_DIR/fuzz
DATA=../shared/data/h5ad
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
FUZZ_STRICT=${FUZZ_STRICT:-0}
export FUZZ_TMPDIR=$OUT/tmp   # the targets' input files (a crashed job leaves its own)
mkdir -p "$FUZZ_TMPDIR"

# Seeds (made once).
SEEDS=$OUT/seeds
if [ ! -f "$SEEDS/.done" ]; then
  rm -rf "$SEEDS" && mkdir -p "$SEEDS/h5ad" "$SEEDS/store" "$SEEDS/tmp"
  if [ -d "$DATA" ]; then
    find "$DATA" -name '*.h5ad' -size -100k -exec cp {} "$SEEDS/h5ad/" \;
  fi
  "$FUZZ_DIR/cellcube" synth -o "$SEEDS/tmp" --datasets 3 --cells 300 --genes 300 --seed 7 --quiet || exit 1
  cp "$SEEDS/tmp/synth_01.h5ad" "$SEEDS/h5ad/synth_small.h5ad"
  "$FUZZ_DIR/cellcube" build -o "$SEEDS/store/one.h5ad" --quiet "$SEEDS/tmp/synth_01.h5ad" || exit 1
  "$FUZZ_DIR/cellcube" build -o "$SEEDS/store/two.h5ad" --quiet --groupby sex \
    "$SEEDS/tmp/synth_02.h5ad" "$SEEDS/tmp/synth_03.h5ad" || exit 1
  "$FUZZ_DIR/cellcube" build -o "$SEEDS/serve.h5ad" --quiet "$SEEDS"/tmp/synth_0*.h5ad || exit 1
  touch "$SEEDS/.done"
fi
export CELLCUBE_FUZZ_STORE=$SEEDS/serve.h5ad

status=0
: > "$OUT/summary.txt"
for target in $FUZZ_TARGETS; do
  case $target in
    h5ad_fuzz)  seeds=$SEEDS/h5ad;  opts=(-max_len=200000 -timeout=20) ;;
    store_fuzz) seeds=$SEEDS/store; opts=(-max_len=200000 -timeout=20) ;;
    http_fuzz)  seeds=fuzz/seeds/http; opts=(-max_len=4096 -timeout=10 -dict=fuzz/http.dict) ;;
    *) echo "unknown fuzz target $target" >&2; exit 2 ;;
  esac
  corpus=$OUT/corpus/$target
  artifacts=$OUT/artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  before=$(ls "$artifacts" | sort)
  log=$OUT/$target.log
  echo "== $target: ${FUZZ_SECONDS}s (log $log)"
  "$OUT/$target" "$corpus" "$seeds" "${opts[@]}" -max_total_time="$FUZZ_SECONDS" \
    -fork=1 -ignore_crashes=1 -ignore_ooms=1 -ignore_timeouts=1 \
    -rss_limit_mb=2048 -malloc_limit_mb=2048 -artifact_prefix="$artifacts/" > "$log" 2>&1
  rc=$?
  last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -1)
  runs=$(echo "$last" | sed -E 's/^#([0-9]+):.*/\1/')
  cov=$(echo "$last" | sed -E 's/.* cov: ([0-9]+).*/\1/')
  fails=$(echo "$last" | sed -nE 's#.*oom/timeout/crash: ([0-9/]+).*#\1#p')
  new=$(comm -13 <(echo "$before") <(ls "$artifacts" | sort) | grep -v '^$')
  ours=0 hdf5=0
  if [ -n "$new" ]; then
    (cd "$artifacts" && "$REPO/fuzz/triage.sh" "$OUT/$target" $new) > "$OUT/$target.triage"
    ours=$(grep -c '^cellcube ' "$OUT/$target.triage")
    hdf5=$(grep -c '^libhdf5 ' "$OUT/$target.triage")
    echo "   findings by place and kind (all in $OUT/$target.triage):"
    awk '{ sub(/0x[0-9a-f]+_+/, "", $3); print "     " $1, $2, $3 }' "$OUT/$target.triage" | sort | uniq -c
  fi
  line="$target: exit $rc, ${runs:-?} inputs in ${FUZZ_SECONDS}s, coverage ${cov:-?} edges, corpus $(ls "$corpus" | wc -l) files, oom/timeout/crash ${fails:-0/0/0}, new findings: $ours in cellcube, $hdf5 in libhdf5"
  echo "$line" | tee -a "$OUT/summary.txt"
  [ "$ours" -gt 0 ] && status=1
  [ "$FUZZ_STRICT" = 1 ] && [ "$hdf5" -gt 0 ] && status=1
done
rm -rf "$FUZZ_TMPDIR"
exit $status
