#!/usr/bin/env bash
# Replays fuzz findings and attributes each to libhdf5 or to cellcube by its stack: the
# first frame that is in libhdf5 or in a cellcube source file (sanitizer interceptors
# such as memcpy/strdup are skipped). Prints "libhdf5|cellcube KIND FRAME FILE" per line.
#   fuzz/triage.sh TARGET_BINARY ARTIFACT...
set -uo pipefail
bin=$1; shift
for a in "$@"; do
  out=$(ASAN_OPTIONS=${ASAN_OPTIONS:-}:fast_unwind_on_malloc=0 "$bin" "$a" -runs=1 -timeout=30 -rss_limit_mb=2048 -malloc_limit_mb=2048 2>&1)
  kind=$(echo "$out" | grep -oE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer|UndefinedBehaviorSanitizer): [a-z-]+' | head -1 | awk '{print $NF}' | sed 's/^detected$/leak/')
  [ -z "$kind" ] && kind=$(echo "$out" | grep -oE 'runtime error: [a-z ]+' | head -1 | tr ' ' '-')
  frame=$(echo "$out" | grep -E '^ +#[0-9]+ ' | grep -E 'libhdf5|\.(cc|h):[0-9]+' | head -1 |
          sed -E 's/^ +#[0-9]+ 0x[0-9a-f]+ in //; s/ \(BuildId.*//; s/\(\/lib\/x86_64-linux-gnu\///')
  if [ -z "$kind" ]; then
    echo "none - - $a"   # no longer reproduces (fixed, or a flaky timeout)
  elif echo "$frame" | grep -q libhdf5; then
    echo "libhdf5 $kind ${frame// /_} $a"
  else
    echo "cellcube $kind ${frame// /_} $a"
  fi
done
