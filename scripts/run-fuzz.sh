#!/usr/bin/env bash
# Run one libFuzzer target for a bounded time; one PASS or FAIL line.
#   scripts/run-fuzz.sh TARGET CORPUS_DIR SECONDS
set -uo pipefail
target=$1 corpus=$2 secs=$3
name=$(basename "$target")
art=$(mktemp -d /tmp/xkvm-fuzz-art.XXXXXX)
"$target" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$art/" -print_final_stats=1 "$corpus" > "$art/log" 2>&1
rc=$?
runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$art/log" | grep -o '[0-9]*$')
if [ $rc -eq 0 ]; then
  echo "PASS: $name (${runs:-?} runs in ${secs}s)"
else
  echo "FAIL: $name: exit $rc, artifacts in $art"
  grep -E 'ERROR|SUMMARY|runtime error' "$art/log" | head -5
fi
