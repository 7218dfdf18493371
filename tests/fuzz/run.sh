#!/bin/sh
# Runs the codec fuzzer for a bounded time: run.sh <codec_fuzz binary> [seconds]
# New corpus entries go to a temporary directory (removed afterwards), never into the source tree.
set -eu
fuzzer=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
seconds=${2:-30}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
cd "$work"
status=0
# libFuzzer reports a finding with exit code 77 unless told otherwise: meson's code for "skipped".
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -max_len=65536 -error_exitcode=1 \
  -dict="$here/json.dict" -print_final_stats=1 "$work" "$here/seeds" || status=$?
exit "$status"
