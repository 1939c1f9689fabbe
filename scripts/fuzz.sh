#!/usr/bin/env bash
# Run every cargo-fuzz target for FUZZ_SECONDS each; print executions per target; fail on the
# first crash (its input is left in fuzz/artifacts/<target>/ to become a regression test).
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-60}
status=0
for target in ${FUZZ_TARGETS:-token jwks vault config challenge mcp connect_form okta signing_key state_machine}; do
  mkdir -p "corpus/$target"
  log="corpus/$target.log"
  cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  echo "fuzz $target: ${runs:-?} executions in ${seconds}s, exit $rc"
  if [ $rc -ne 0 ]; then
    grep -E "ERROR|SUMMARY|panicked|Test unit written" "$log" | head -20
    status=1
  fi
done
exit $status
