#!/usr/bin/env bash
# Fuzzes every target (or those named after the time) for SECONDS each (default 60), starting
# from its stored corpus (fuzz/corpus/<target>, never modified: new inputs go to
# fuzz/target/corpus/<target>). libFuzzer's limits make a finding of a panic, an abort, an
# allocation over 2 GiB (-malloc_limit_mb), a resident size over 4 GiB (-rss_limit_mb) and an
# input running over 20 s (-timeout); a finding is saved under fuzz/artifacts/<target>/ and
# makes the script fail. Each target's executions and time go to fuzz/target/stats.tsv.
#
#   fuzz/run.sh 3600            # an hour per target
#   fuzz/run.sh 30 image configs
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Built without a
# sanitizer (-s none): a safe-Rust crate gains little from AddressSanitizer and runs several
# times faster without it.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-60}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(safetensors configs scheduler tokenizer image cli_args zero_cache server_request)
fi
cargo +nightly fuzz build -s none
mkdir -p target
failed=0
for t in "${targets[@]}"; do
    mkdir -p "target/corpus/$t"
    log="target/fuzz-$t.log"
    status=0
    cargo +nightly fuzz run -s none "$t" "target/corpus/$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 -malloc_limit_mb=2048 -timeout=20 \
        -max_len=65536 -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(grep -m1 '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    secs=$(grep -m1 '^stat::slowest_unit_time_sec' "$log" >/dev/null && echo "$seconds" || echo "?")
    printf '%s\t%s\t%s\t%s\n' "$t" "${runs:-?}" "$secs" "$([ $status -eq 0 ] && echo ok || echo FINDING)" \
        | tee -a target/stats.tsv
    if [ $status -ne 0 ]; then
        failed=1
        grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -20 || true
    fi
done
exit $failed
